"""The commissioners' figures as the worker serves them: the published MeasureReports (read from
the measures topic, small numbers already suppressed) chosen by month and figure, as a FHIR
Bundle or as CSV. Pure: services/web/views.py does the HTTP."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.codec import CodecError, decode
from schemas.measures import BY_CODE, MEASURE_PREFIX
from services.domain.measure_reports import CSV_COLUMNS, report_rows

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def report_of(value: bytes | None) -> dict[str, Any]:
    """The MeasureReport a measures-topic record carries; CodecError when it carries none."""
    envelope = decode(value)
    resource = envelope.resource
    if resource.get("resourceType") != "MeasureReport" or not resource.get("id"):
        raise CodecError("a measures record must carry a MeasureReport with an id")
    return dict(resource)


def chosen_reports(
    reports: Iterable[Mapping[str, Any]], month: str | None, figure: str | None
) -> list[Mapping[str, Any]]:
    """The reports of one month and figure (either may be None: all); ValueError naming a bad one."""
    if month is not None and not MONTH.match(month):
        raise ValueError(f"month: {month!r} is not a month as YYYY-MM")
    if figure is not None and figure not in BY_CODE:
        raise ValueError(f"figure: {figure!r} is not one of {', '.join(BY_CODE)}")
    chosen = [
        r
        for r in reports
        if (month is None or r["period"]["start"].startswith(month))
        and (figure is None or r["measure"] == MEASURE_PREFIX + figure)
    ]
    return sorted(chosen, key=lambda r: str(r["id"]))


def bundle_of(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The reports as a FHIR collection Bundle."""
    entries = [{"resource": dict(r)} for r in reports]
    return {"resourceType": "Bundle", "type": "collection", "total": len(entries), "entry": entries}


def reports_csv(reports: Iterable[Mapping[str, Any]]) -> str:
    """The reports as CSV (schemas/measures/data-dictionary.md describes the columns)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for report in reports:
        writer.writerows(report_rows(report))
    return out.getvalue()
