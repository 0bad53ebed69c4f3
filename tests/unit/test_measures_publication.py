"""The commissioners' figures as published: valid FHIR, one Measure per figure, nothing about a
person, no count from 1 to 7, CSV with a data dictionary, SVG charts; and the commissioner, a
partner kind that sends nothing about people."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.measure import Measure
from fhir.resources.R4B.measurereport import MeasureReport

from connectors.pages.charts import bar_chart, breakdown_chart
from schemas.measures import BY_CODE, FIGURES, HERE, measure
from schemas.referrals import CATEGORIES
from services.domain.intake import unusable
from services.domain.measure_reports import (
    CSV_COLUMNS,
    AreaMap,
    counts_of_reports,
    measure_reports,
    table,
)
from services.domain.measures import Counted, add_to_cells
from services.domain.partners import PartnerDirectory
from services.runtime import ROOT, area_map
from services.stream.outbox import report_outs
from services.web.measures import bundle_of, chosen_reports, report_of, reports_csv

AREAS = area_map(ROOT / "deploy" / "areas.yaml")
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
LAMBETH, SOUTHWARK, WANDSWORTH = "E09000022", "E09000028", "E09000032"


def facts(figure: str, area: str, n: int, category: str = "crisis-support", **more) -> list:
    return [
        Counted(
            f"{figure}-{area}-{category}-{i}", figure, "2026-11", area, category, "routine", **more
        )
        for i in range(n)
    ]


CELLS = add_to_cells(
    {},
    facts("referrals-made", LAMBETH, 40)
    + facts("referrals-made", SOUTHWARK, 3)  # small: hidden
    + facts("referrals-made", WANDSWORTH, 22, category="talking-therapies")
    + [
        Counted(
            f"d-{i}",
            "days-to-acceptance",
            "2026-11",
            LAMBETH,
            "crisis-support",
            "routine",
            days=i % 6,
        )
        for i in range(12)
    ],
)


def reports(figure: str = "referrals-made") -> list[dict]:
    return measure_reports(table(BY_CODE[figure], "2026-11", CELLS, AREAS), AREAS, NOW)


def test_every_report_is_a_valid_fhir_measure_report_of_a_published_measure() -> None:
    for figure in FIGURES:
        for report in reports(figure.code):
            MeasureReport.model_validate(report)
            assert report["measure"] == figure.url
        Measure.model_validate(measure(figure))


def test_the_published_measure_definitions_are_current() -> None:
    """`python -m schemas.measures` writes them; one file per figure, none left over."""
    assert sorted(p.stem for p in HERE.glob("*.json")) == sorted(f.code for f in FIGURES)
    for figure in FIGURES:
        assert json.loads((HERE / f"{figure.code}.json").read_text()) == measure(figure)


def test_no_published_count_is_from_1_to_7_and_the_small_area_is_hidden() -> None:
    published = reports()
    counts = counts_of_reports(published)
    assert counts
    assert all(c in {"*", 0} or (c >= 10 and c % 5 == 0) for c in counts)

    def headline(area: str) -> dict:
        report = next(r for r in published if r["id"] == f"referrals-made-2026-11-{area}")
        return report["group"][0]["population"][0]

    assert "_count" in headline(SOUTHWARK)
    # Southwark's 3 and its ICB's total would give it away: Lambeth, the smaller, is hidden too.
    assert "_count" in headline(LAMBETH)
    assert headline("QKK")["count"] == 45  # 43, rounded
    assert headline(WANDSWORTH)["count"] == 20  # 22, rounded


def test_a_median_is_shown_over_8_or_more_and_masked_below() -> None:
    [lambeth] = [r for r in reports("days-to-acceptance") if r["id"].endswith(LAMBETH)]
    median, p90 = lambeth["group"]
    assert median["measureScore"]["value"] == 2.5  # 0,0,0,1,1,2,2,3,3,4,4,5 (two of 0 and 1)
    assert p90["measureScore"]["value"] == pytest.approx(4.9)
    [southwark] = [r for r in reports("days-to-acceptance") if r["id"].endswith(SOUTHWARK)]
    assert "value" not in southwark["group"][0]["measureScore"]


PERSON_LEVEL = re.compile(
    r"(\bp-[0-9a-f]{20}\b|\b\d{10}\b|\b[A-Z]\d{6}\b|nhs-number|probation-crn|urn:concord:id:)"
)


def test_nothing_published_names_a_person() -> None:
    """No hub person id, NHS number, CRN or identifier system anywhere in what is published."""
    outs = report_outs([r for f in FIGURES for r in reports(f.code)], NOW)
    for out in outs:
        assert not PERSON_LEVEL.search(out.value.decode()), out.key
        assert json.loads(out.value)["subject"] is None


def test_the_measures_record_reads_back_and_is_chosen_by_month_and_figure() -> None:
    outs = report_outs(reports() + reports("days-to-acceptance"), NOW)
    read = [report_of(out.value) for out in outs]
    chosen = chosen_reports(read, "2026-11", "referrals-made")
    assert {r["measure"] for r in chosen} == {BY_CODE["referrals-made"].url}
    assert chosen_reports(read, "2026-10", None) == []
    assert bundle_of(chosen)["total"] == len(chosen) == len(AREAS.areas()) + 2 + 1  # ICBs, all
    with pytest.raises(ValueError, match="month: '11-2026' is not a month"):
        chosen_reports(read, "11-2026", None)
    with pytest.raises(ValueError, match="figure: 'beds'"):
        chosen_reports(read, None, "beds")


def test_csv_has_the_dictionarys_columns_and_only_what_the_reports_show() -> None:
    text = reports_csv(reports())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    wandsworth_therapies = [
        r
        for r in rows
        if r["area"] == WANDSWORTH
        and r["breakdown"] == "category"
        and r["value"] == "talking-therapies"
    ]
    assert [r["count"] for r in wandsworth_therapies] == ["20"]
    southwark = [r for r in rows if r["area"] == SOUTHWARK and r["breakdown"] == "all"]
    assert [r["count"] for r in southwark] == ["*"]
    assert {r["area_level"] for r in rows} == {"local-authority", "icb", "all"}
    dictionary = (HERE / "data-dictionary.md").read_text()
    for column in CSV_COLUMNS:
        assert f"`{column}`" in dictionary, f"the data dictionary describes {column}"
    for figure in FIGURES:
        assert f"`{figure.code}`" in dictionary, f"the data dictionary describes {figure.code}"


def test_the_chart_draws_a_bar_per_area_and_no_bar_for_a_hidden_count() -> None:
    svg = bar_chart(reports())  # Lambeth and Southwark hidden; their ICB, Wandsworth's, all shown
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = root.findall(f"{ns}rect[@class='bar']")
    hidden = root.findall(f"{ns}rect[@class='suppressed']")
    assert len(bars) == 4
    assert len(hidden) == 2
    values = [t.text for t in root.findall(f"{ns}text[@class='value']")]
    assert sorted(values, key=str) == ["*", "*", "20", "20", "45", "65"]
    widths = {
        t.text: int(b.get("width"))
        for t, b in zip(
            [t for t in root.findall(f"{ns}text[@class='value']") if t.text != "*"],
            bars,
            strict=True,
        )
    }
    assert widths["20"] < widths["45"] < widths["65"], "bars are drawn to scale"
    assert "Referrals made, 2026-11" in svg
    assert "href" not in svg, "no drill-down"


def test_the_area_map_rolls_local_authorities_up_to_icbs_and_names_a_bad_entry() -> None:
    assert AREAS.icb_of[LAMBETH] == AREAS.icb_of[SOUTHWARK] != AREAS.icb_of[WANDSWORTH]
    with pytest.raises(ValueError, match="icb entry 1 \\(QX\\): needs a list of areas"):
        AreaMap.from_dict({"icbs": [{"code": "QX", "name": "X"}]})
    with pytest.raises(ValueError, match="area E1 is in two ICBs"):
        AreaMap.from_dict(
            {
                "icbs": [
                    {"code": "Q1", "name": "a", "areas": [{"code": "E1", "name": "e"}]},
                    {"code": "Q2", "name": "b", "areas": [{"code": "E1", "name": "e"}]},
                ]
            }
        )


def test_commissioner_is_a_partner_kind_that_sends_nothing_about_people() -> None:
    directory = PartnerDirectory.from_dict(
        {"partners": [{"id": "commissioner-sel", "kind": "commissioner", "name": "SEL ICB"}]}
    )
    assert directory.kind_of("commissioner-sel") == "commissioner"
    assert directory.kind_of("commissioner-other") == "commissioner"  # the id convention
    why = unusable(
        {"resourceType": "Appointment"},
        source="commissioner-sel",
        kind="commissioner",
        occurred_at=NOW,
    )
    assert why == (
        "Appointment: commissioner-sel is a commissioner: commissioners receive aggregate "
        "figures and send no events about people"
    )


def test_categories_in_reports_are_the_referral_categories() -> None:
    [lambeth] = [r for r in reports() if r["id"].endswith(LAMBETH)]
    [by_category, by_urgency] = lambeth["group"][0]["stratifier"]
    codes = [s["value"]["coding"][0]["code"] for s in by_category["stratum"]]
    assert codes == [*CATEGORIES, "unknown"]
    assert [s["value"]["coding"][0]["code"] for s in by_urgency["stratum"]] == ["routine", "urgent"]


def test_a_breakdown_chart_draws_one_areas_figure_by_category() -> None:
    [wandsworth] = [r for r in reports() if r["id"].endswith(WANDSWORTH)]
    root = ET.fromstring(breakdown_chart(wandsworth, "category"))
    ns = "{http://www.w3.org/2000/svg}"
    labels = [t.text for t in root.findall(f"{ns}text[@text-anchor='end']")]
    assert labels == [*CATEGORIES, "unknown"]
    values = [t.text for t in root.findall(f"{ns}text[@class='value']")]
    assert values[labels.index("talking-therapies")] == "20"
    assert "Wandsworth, by category" in root.find(f"{ns}title").text
    with pytest.raises(ValueError, match="no breakdown by 'reason'"):
        breakdown_chart(wandsworth, "reason")
