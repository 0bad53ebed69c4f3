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


def _bar(report: Mapping[str, Any]) -> tuple[str, int | None, str]:
    """(label, count or None when suppressed, the value shown) of one report's headline."""
    subject = report.get("subject") or {}
    label = str(subject.get("display") or subject.get("identifier", {}).get("value", "all areas"))
    group = report["group"][0]
    population = (group.get("population") or [{}])[0]
    score = group.get("measureScore") or {}
    if "value" in score:  # a distribution: its median in working days
        return label, round(float(score["value"])), f"{score['value']:.1f} days"
    if "count" in population:
        return label, int(population["count"]), str(population["count"])
    return label, None, "*"


def bar_chart(reports: Iterable[Mapping[str, Any]], title: str | None = None) -> str:
    """A horizontal bar chart, one bar per report (typically one figure's month, by area), as
    SVG text. Suppressed counts and medians not shown are labelled `*` with no bar."""
    chosen = list(reports)
    if title is None and chosen:
        code = str(chosen[0]["measure"]).rpartition(":")[2]
        figure = BY_CODE.get(code)
        month = str(chosen[0]["period"]["start"])[:7]
        title = f"{figure.title if figure else code}, {month}"
    bars = [_bar(r) for r in chosen]
    largest = max([count for _, count, _ in bars if count is not None] + [1])
    span = WIDTH - LABEL_WIDTH - 60
    height = TOP + len(bars) * (BAR_HEIGHT + GAP) + GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title or "")}">',
        f"<title>{escape(title or '')}</title>",
        f'<text x="8" y="24" font-family="sans-serif" font-size="16">{escape(title or "")}</text>',
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
