"""Server-rendered SVG charts of the commissioners' figures, drawn from published MeasureReports.

Pure: MeasureReports in, SVG text out. A chart shows only what the reports show (a suppressed
count is drawn as a marked gap labelled `*`, never as a bar), and carries no link to anything
finer: there is no person-level drill-down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import escape

from schemas.measures import BY_CODE

WIDTH, BAR_HEIGHT, GAP, LABEL_WIDTH, TOP = 640, 22, 8, 200, 40


def _shown(node: Mapping[str, Any]) -> tuple[int | None, str]:
    """(bar length's count, or None when hidden; the value shown) of a group or stratum."""
    population = (node.get("population") or [{}])[0]
    score = node.get("measureScore") or {}
    if "value" in score:  # a distribution: its median in working days
        return round(float(score["value"])), f"{score['value']:.1f} days"
    if "measureScore" not in node and "count" in population:
        return int(population["count"]), str(population["count"])
    return None, "*"


def _title(report: Mapping[str, Any]) -> str:
    code = str(report["measure"]).rpartition(":")[2]
    figure = BY_CODE.get(code)
    return f"{figure.title if figure else code}, {str(report['period']['start'])[:7]}"


def bar_chart(reports: Iterable[Mapping[str, Any]], title: str | None = None) -> str:
    """A horizontal bar chart, one bar per report (typically one figure's month, by area), as
    SVG text. Suppressed counts and medians not shown are labelled `*` with no bar."""
    chosen = list(reports)
    bars = []
    for report in chosen:
        bars.append((_label(report), *_shown(report["group"][0])))
    return _draw(title or (_title(chosen[0]) if chosen else ""), bars)


def breakdown_chart(report: Mapping[str, Any], breakdown: str, title: str | None = None) -> str:
    """A horizontal bar chart of one report broken down (`category`, `urgency`, `reason`): one
    bar per value, e.g. one area's unmet need by category. ValueError when it has no such
    breakdown."""
    group = report["group"][0]
    for stratifier in group.get("stratifier", []):
        if stratifier["code"][0]["coding"][0]["code"] == breakdown:
            bars = [
                (str(s["value"]["coding"][0]["code"]), *_shown(s)) for s in stratifier["stratum"]
            ]
            area = (report.get("subject") or {}).get("display", "all areas")
            return _draw(title or f"{_title(report)}, {area}, by {breakdown}", bars)
    raise ValueError(f"the report {report.get('id')} has no breakdown by {breakdown!r}")


def by_figure(reports: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One month's reports as the figures page lays them out: per figure (in the order the
    Measures are defined), its title, its chart by area, and the same bars as table rows."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for report in reports:
        grouped.setdefault(str(report["measure"]).rpartition(":")[2], []).append(report)
    laid_out = []
    for code in [c for c in BY_CODE if c in grouped]:
        chosen = sorted(grouped[code], key=lambda r: str(r["id"]))
        rows = [(_label(r), _shown(r["group"][0])[1]) for r in chosen]
        laid_out.append(
            {"code": code, "title": _title(chosen[0]), "svg": bar_chart(chosen), "rows": rows}
        )
    return laid_out


def _label(report: Mapping[str, Any]) -> str:
    subject = report.get("subject") or {}
    return str(subject.get("display") or subject.get("identifier", {}).get("value", "all areas"))


def _draw(title: str, bars: list[tuple[str, int | None, str]]) -> str:
    """The SVG of labelled bars, drawn to scale; a bar with no count is a dashed gap marked `*`."""
    largest = max([count for _, count, _ in bars if count is not None] + [1])
    span = WIDTH - LABEL_WIDTH - 60
    height = TOP + len(bars) * (BAR_HEIGHT + GAP) + GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="8" y="24" font-family="sans-serif" font-size="16">{escape(title)}</text>',
    ]
    for number, (label, count, shown) in enumerate(bars):
        y = TOP + number * (BAR_HEIGHT + GAP)
        middle = y + BAR_HEIGHT * 0.7
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{middle:.0f}" text-anchor="end" '
            f'font-family="sans-serif" font-size="13">{escape(label)}</text>'
        )
        if count is None:
            parts.append(
                f'<rect class="suppressed" x="{LABEL_WIDTH}" y="{y}" width="24" '
                f'height="{BAR_HEIGHT}" fill="none" stroke="#888" stroke-dasharray="3 2"/>'
            )
            end = LABEL_WIDTH + 24
        else:
            length = 0 if count == 0 else max(2, round(span * count / largest))
            parts.append(
                f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{length}" '
                f'height="{BAR_HEIGHT}" fill="#005eb8"/>'
            )
            end = LABEL_WIDTH + length
        parts.append(
            f'<text class="value" x="{end + 6}" y="{middle:.0f}" font-family="sans-serif" '
            f'font-size="13">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
