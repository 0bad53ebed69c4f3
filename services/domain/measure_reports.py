"""The commissioners' figures as they may be published: per figure and month, a table of areas
(each local authority, its ICB, all areas) by breakdown (all, each category, each urgency, each
rejection reason), small numbers suppressed (services/domain/suppression.py), rendered as FHIR
MeasureReports and as CSV rows. Nothing here is about a person: the input is aggregate cells.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final

from schemas.measures import (
    BREAKDOWN_SYSTEM,
    BY_CODE,
    DATA_ABSENT_REASON,
    FIGURE_SYSTEM,
    POPULATION_SYSTEM,
    REJECTION_REASON_SYSTEM,
    Figure,
)
from schemas.referrals import CATEGORIES, URGENCIES
from schemas.vocabulary import AREA_SYSTEM, REFERRAL_CATEGORY_SYSTEM
from services.domain.measures import REJECTION_REASONS, Cell, CellKey
from services.domain.suppression import Sum, percentile, protect, shown

ALL: Final = "all"
AREA_LEVEL_SYSTEM: Final = "urn:concord:area-level"  # local-authority | icb
UNKNOWN: Final = "unknown"
Row = tuple[str, str]  # (level: local-authority | icb | all, area code)
Column = tuple[str, str]  # (breakdown: all | category | urgency | reason, value)
Key = tuple[Row, Column]


@dataclass(frozen=True, slots=True)
class AreaMap:
    """Local authorities and the ICB each belongs to, with their names (deploy/areas.yaml)."""

    icb_of: Mapping[str, str] = field(default_factory=dict)  # local authority -> ICB code
    names: Mapping[str, str] = field(default_factory=dict)  # any area code -> its name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AreaMap:
        """From `{"icbs": [{code, name, areas: [{code, name}]}]}`; ValueError names a bad entry."""
        icbs = data.get("icbs") if isinstance(data, Mapping) else None
        if not isinstance(icbs, list):
            raise ValueError("the area map must be a mapping with an 'icbs' list")
        icb_of: dict[str, str] = {}
        names: dict[str, str] = {}
        for number, icb in enumerate(icbs, start=1):
            where = f"icb entry {number}"
            if not isinstance(icb, Mapping) or not all(
                isinstance(icb.get(k), str) and icb[k] for k in ("code", "name")
            ):
                raise ValueError(f"{where}: code and name are required strings")
            if not isinstance(icb.get("areas"), list) or not icb["areas"]:
                raise ValueError(f"{where} ({icb['code']}): needs a list of areas")
            names[icb["code"]] = icb["name"]
            for area in icb["areas"]:
                if not isinstance(area, Mapping) or not all(
                    isinstance(area.get(k), str) and area[k] for k in ("code", "name")
                ):
                    raise ValueError(f"{where} ({icb['code']}): each area needs a code and name")
                if area["code"] in icb_of:
                    raise ValueError(f"{where}: area {area['code']} is in two ICBs")
                icb_of[area["code"]] = icb["code"]
                names[area["code"]] = area["name"]
        return cls(icb_of, names)

    def areas(self) -> list[str]:
        """Every local authority the map lists."""
        return sorted(self.icb_of)


def _columns(figure: Figure) -> list[Column]:
    columns: list[Column] = [(ALL, "")]
    values = {
        "category": [*CATEGORIES, UNKNOWN],
        "urgency": list(URGENCIES),
        "reason": sorted(REJECTION_REASONS),
    }
    for breakdown in figure.breakdowns:
        columns += [(breakdown, value) for value in values[breakdown]]
    return columns


def _column_of(breakdown: str, key: CellKey) -> Column:
    _, _, _, category, urgency, reason = key
    value = {"category": category or UNKNOWN, "urgency": urgency, "reason": reason}[breakdown]
    return (breakdown, value)


@dataclass(frozen=True, slots=True)
class Table:
    """One figure's month: every cell's count, its days, and which cells are suppressed."""

    figure: Figure
    month: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    counts: Mapping[Key, int]
    days: Mapping[Key, Mapping[int, int]]
    suppressed: frozenset[Key]
    sums: tuple[Sum[Key], ...]


def table(figure: Figure, month: str, cells: Mapping[CellKey, Cell], areas: AreaMap) -> Table:
    """The published table of one figure's month, from the aggregate cells (any figure, month)."""
    mine = {k: c for k, c in cells.items() if k[0] == figure.code and k[1] == month}
    local = sorted(set(areas.areas()) | {k[2] for k in mine})
    icbs = sorted(set(areas.icb_of.values()))
    rows: list[Row] = [("local-authority", a) for a in local]
    rows += [("icb", i) for i in icbs] + [(ALL, ALL)]
    columns = _columns(figure)
    counts: dict[Key, int] = {(r, c): 0 for r in rows for c in columns}
    days: dict[Key, dict[int, int]] = {(r, c): {} for r in rows for c in columns}
    for key, cell in mine.items():
        area = key[2]
        row_keys = [("local-authority", area), (ALL, ALL)]
        if area in areas.icb_of:
            row_keys.append(("icb", areas.icb_of[area]))
        column_keys = [(ALL, "")] + [_column_of(b, key) for b in figure.breakdowns]
        for row in row_keys:
            for column in column_keys:
                counts[(row, column)] += cell.count
                histogram = days[(row, column)]
                for d, n in cell.days.items():
                    histogram[d] = histogram.get(d, 0) + n
    sums: list[Sum[Key]] = []
    for row in rows:  # each breakdown adds up to the row's all
        for breakdown in figure.breakdowns:
            parts = [(row, c) for c in columns if c[0] == breakdown]
            sums.append(((row, (ALL, "")), parts))
    for column in columns:  # local authorities add up to their ICB, and all areas to the total
        for icb in icbs:
            members = [
                (("local-authority", a), column) for a in local if areas.icb_of.get(a) == icb
            ]
            sums.append(((("icb", icb), column), members))
        tops = [(("icb", i), column) for i in icbs]
        tops += [(("local-authority", a), column) for a in local if a not in areas.icb_of]
        sums.append((((ALL, ALL), column), tops))
    suppressed = protect(counts, sums)
    return Table(figure, month, tuple(rows), tuple(columns), counts, days, suppressed, tuple(sums))


def months_of(cells: Iterable[CellKey]) -> list[str]:
    """The months the cells count, in order."""
    return sorted({key[1] for key in cells})


def tables(cells: Mapping[CellKey, Cell], areas: AreaMap, month: str) -> list[Table]:
    """Every figure's table for a month."""
    return [table(BY_CODE[code], month, cells, areas) for code in BY_CODE]


# --- FHIR MeasureReport --------------------------------------------------------------------------


def _period(month: str) -> dict[str, str]:
    year, number = int(month[:4]), int(month[5:7])
    end = date(year + number // 12, number % 12 + 1, 1).toordinal() - 1
    return {"start": f"{month}-01", "end": date.fromordinal(end).isoformat()}


def _count(value: int, suppressed: bool) -> dict[str, Any]:
    published = shown(value, suppressed)
    if isinstance(published, int):
        return {"count": published}
    return {"_count": {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}}


def _population(value: int, suppressed: bool) -> list[dict[str, Any]]:
    code = {"coding": [{"system": POPULATION_SYSTEM, "code": "initial-population"}]}
    return [{"code": code, **_count(value, suppressed)}]


def _score(days: Mapping[int, int], fraction: float) -> dict[str, Any]:
    value = percentile(days, fraction)
    if value is None:
        # A Quantity, not a primitive: its absence is said by an extension inside it.
        return {"measureScore": {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}}
    quantity = {"value": round(value, 1), "unit": "working days"}
    return {"measureScore": {**quantity, "system": "http://unitsofmeasure.org", "code": "d"}}


def _stratum_value(column: Column) -> dict[str, Any]:
    breakdown, value = column
    system = {
        "category": REFERRAL_CATEGORY_SYSTEM,
        "urgency": "http://hl7.org/fhir/request-priority",
        "reason": REJECTION_REASON_SYSTEM,
    }[breakdown]
    return {"coding": [{"system": system, "code": value}]}


def _group(t: Table, row: Row, score: str) -> dict[str, Any]:
    fraction = {"median": 0.5, "p90": 0.9}.get(score)
    total = (row, (ALL, ""))
    group: dict[str, Any] = {
        "code": {"coding": [{"system": FIGURE_SYSTEM, "code": f"{t.figure.code}#{score}"}]},
        "population": _population(t.counts[total], total in t.suppressed),
    }
    if fraction is not None:
        group.update(_score(t.days[total], fraction))
    stratifiers = []
    for breakdown in t.figure.breakdowns:
        strata = []
        for column in (c for c in t.columns if c[0] == breakdown):
            key = (row, column)
            stratum: dict[str, Any] = {
                "value": _stratum_value(column),
                "population": _population(t.counts[key], key in t.suppressed),
            }
            if fraction is not None:
                stratum.update(_score(t.days[key], fraction))
            strata.append(stratum)
        code = {"coding": [{"system": BREAKDOWN_SYSTEM, "code": breakdown}]}
        stratifiers.append({"code": [code], "stratum": strata})
    if stratifiers:
        group["stratifier"] = stratifiers
    return group


def report_id(figure: str, month: str, area: str) -> str:
    """A MeasureReport's id and its key on the measures topic."""
    return f"{figure}-{month}-{area}"


def measure_report(t: Table, row: Row, areas: AreaMap, generated: datetime) -> dict[str, Any]:
    """The MeasureReport of one figure, month and area (a local authority, an ICB, or all)."""
    level, area = row
    scores = ("median", "p90") if t.figure.scoring == "distribution" else ("count",)
    subject: dict[str, Any] = {"display": "all areas"}
    if level != ALL:
        subject = {
            "identifier": {
                "type": {"coding": [{"system": AREA_LEVEL_SYSTEM, "code": level}]},
                "system": AREA_SYSTEM,
                "value": area,
            },
            "display": areas.names.get(area, area),
        }
    return {
        "resourceType": "MeasureReport",
        "id": report_id(t.figure.code, t.month, area),
        "status": "complete",
        "type": "summary",
        "measure": t.figure.url,
        "subject": subject,
        "date": generated.isoformat().replace("+00:00", "Z"),
        "period": _period(t.month),
        "group": [_group(t, row, score) for score in scores],
    }


def measure_reports(t: Table, areas: AreaMap, generated: datetime) -> list[dict[str, Any]]:
    """Every area's MeasureReport of one table."""
    return [measure_report(t, row, areas, generated) for row in t.rows]


# --- CSV -------------------------------------------------------------------------------------------

CSV_COLUMNS: Final = (
    "month",
    "figure",
    "area_level",
    "area",
    "area_name",
    "breakdown",
    "value",
    "count",
    "median_working_days",
    "p90_working_days",
)


def _shown_count(node: Mapping[str, Any]) -> str:
    population = node.get("population") or [{}]
    return str(population[0]["count"]) if "count" in population[0] else "*"


def _shown_score(node: Mapping[str, Any]) -> str:
    score = node.get("measureScore") or {}
    return f"{score['value']:.1f}" if "value" in score else ""


def report_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """A published MeasureReport as CSV rows, one per breakdown value (CSV_COLUMNS; what each
    holds: schemas/measures/data-dictionary.md). Only what the report shows: `*` stays `*`."""
    subject = report.get("subject") or {}
    identifier = subject.get("identifier") or {}
    area = identifier.get("value", ALL)
    groups = {g["code"]["coding"][0]["code"].partition("#")[2]: g for g in report["group"]}
    first = next(iter(groups.values()))
    lines: list[
        tuple[str, str, Mapping[str, Any], Mapping[str, Any] | None, Mapping[str, Any] | None]
    ] = [(ALL, "", first, groups.get("median"), groups.get("p90"))]
    for number, stratifier in enumerate(first.get("stratifier", [])):
        breakdown = stratifier["code"][0]["coding"][0]["code"]
        for index, stratum in enumerate(stratifier["stratum"]):
            value = stratum["value"]["coding"][0]["code"]
            median = (
                groups["median"]["stratifier"][number]["stratum"][index]
                if "median" in groups
                else None
            )
            p90 = groups["p90"]["stratifier"][number]["stratum"][index] if "p90" in groups else None
            lines.append((breakdown, value, stratum, median, p90))
    levels = identifier.get("type", {}).get("coding", [{"code": ALL}])
    level = str(levels[0]["code"])
    return [
        {
            "month": report["period"]["start"][:7],
            "figure": report["measure"].rpartition(":")[2],
            "area_level": level,
            "area": area,
            "area_name": str(subject.get("display", "")),
            "breakdown": breakdown,
            "value": value,
            "count": _shown_count(node),
            "median_working_days": _shown_score(median) if median else "",
            "p90_working_days": _shown_score(p90) if p90 else "",
        }
        for breakdown, value, node, median, p90 in lines
    ]


def counts_of_reports(reports: Iterable[Mapping[str, Any]]) -> list[int | str]:
    """Every count a set of MeasureReports publishes (`*` for a masked one): what a reader sees."""
    found: list[int | str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if "count" in node:
                found.append(node["count"])
            if "_count" in node:
                found.append("*")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for report in reports:
        walk(report)
    return found
