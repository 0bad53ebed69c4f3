"""Voluntary-sector CSV uploads of appointments and attendance, mapped to FHIR Appointments
(and identity-link Patients) as Records that the publish path validates and sends.

The column specification is in connectors/feeds/README.md.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from connectors.feeds.fields import (
    FieldError,
    FieldReader,
    fhir_id,
    fhir_instant,
    linkable,
    location_participant,
    london_to_utc,
    meta,
    person,
    person_participant,
    version_id,
)
from connectors.fhir_input import Record, read_partner_file
from schemas.fhir import Problem
from schemas.identifiers import PARTNER_ID, PROBATION_CRN, local_system

COLUMNS = (
    "client_id",
    "crn",
    "appointment_id",
    "date",
    "start_time",
    "end_time",
    "status",
    "location",
    "service",
    "version",
)
REQUIRED = ("client_id", "appointment_id", "date", "start_time", "end_time", "status")
STATUSES = {
    "booked": "booked",
    "attended": "fulfilled",
    "did-not-attend": "noshow",
    "cancelled": "cancelled",
}

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_UK_DATE = re.compile(r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})$")
_TIME = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")


class _Lines:
    """The text's lines as the csv reader takes them, remembering each row's own text."""

    def __init__(self, text: str) -> None:
        # newline="" splits on \n, \r\n and \r only, as the csv module expects.
        self._lines = io.StringIO(text, newline="")
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line

    def take(self) -> str:
        """The text read since the last call."""
        text = "".join(self.taken)
        self.taken.clear()
        return text


def records_from_csv_file(path: Path, partner: str) -> Iterator[Record]:
    """Records from a CSV upload by `partner`, whose client ids are local to it."""

    def parse(text: str, origin: str) -> Iterator[Record]:
        return records_from_csv_text(text, origin, partner)

    yield from read_partner_file(path, parse, hint="; save the sheet as CSV UTF-8")


def records_from_csv_text(text: str, origin: str, partner: str) -> Iterator[Record]:
    """Records from CSV text; `origin` (a file name) names each row as origin:line."""
    if not PARTNER_ID.match(partner):
        raise ValueError(f"{partner!r} is not a partner id")
    lines = _Lines(text)
    rows = csv.reader(lines, strict=True)
    try:
        header = [name.strip().lower() for name in next(rows, [])]
        header_text = lines.take()
        problems = header_problems(header)
        if problems:
            yield Record(f"{origin}:1", text, problems=tuple(problems))
            return
        links: set[tuple[str, str]] = set()
        last_line = rows.line_num
        for row in rows:
            where, last_line = f"{origin}:{last_line + 1}", rows.line_num
            raw = header_text + lines.take()
            if not any(value.strip() for value in row):
                continue  # blank lines and the empty rows spreadsheets leave at the end
            if len(row) == len(header):
                resources, problems = map_row(dict(zip(header, row, strict=True)), partner)
            else:
                count = f"has {len(row)} values, the header has {len(header)} columns"
                resources, problems = [], [Problem("(row)", count)]
            if problems:
                yield Record(where, raw, problems=tuple(problems))
                continue
            for resource in resources:
                if resource["resourceType"] == "Patient":
                    client, crn = (identifier["value"] for identifier in resource["identifier"])
                    if (client, crn) in links:
                        continue  # already linked by this file; a resend would only be a duplicate
                    links.add((client, crn))
                yield Record(where, raw, resource=resource)
    except csv.Error as exc:
        # A broken quote leaves the rest of the file unreadable as rows.
        where = f"{origin}:{rows.line_num}"
        yield Record(where, lines.take(), problems=(Problem("(row)", f"not valid CSV: {exc}"),))


def header_problems(header: list[str]) -> list[Problem]:
    """What is wrong with a header row; any problem stops the whole file."""
    if not any(header):
        return [Problem("(header)", f"a header row is required: {','.join(COLUMNS)}")]
    problems = []
    unnamed = [str(number) for number, name in enumerate(header, start=1) if not name]
    if unnamed:
        problems.append(Problem("(header)", f"column(s) without a name: {', '.join(unnamed)}"))
    unknown = [name for name in header if name and name not in COLUMNS]
    if unknown:
        problems.append(
            Problem(
                "(header)",
                f"unknown column(s): {', '.join(unknown)} (the columns are: {', '.join(COLUMNS)})",
            )
        )
    twice = sorted({name for name in header if name and header.count(name) > 1})
    if twice:
        problems.append(Problem("(header)", f"column(s) given twice: {', '.join(twice)}"))
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        problems.append(Problem("(header)", f"missing required column(s): {', '.join(missing)}"))
    return problems


def map_row(row: dict[str, str], partner: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The FHIR resources for one row (a link Patient first), or every problem with it."""
    fields = FieldReader(row, missing="value required")
    client = fields.mapped("client_id", lambda v: person(local_system(partner), v), required=True)
    crn = fields.mapped("crn", lambda v: person(PROBATION_CRN, v))
    appointment_id = fields.mapped("appointment_id", fhir_id, required=True)
    day = fields.mapped("date", _date, required=True)
    start_time = fields.mapped("start_time", _time, required=True)
    end_time = fields.mapped("end_time", _time, required=True)
    status = fields.mapped("status", _status, required=True)
    version = fields.mapped("version", version_id)
    location, service = fields.text("location"), fields.text("service")
    start = _instant(fields, "start_time", day, start_time)
    end = _instant(fields, "end_time", day, end_time)
    if start is not None and end is not None and end <= start:
        fields.problems.append(Problem("end_time", "must be later than start_time"))
    if fields.problems or not (client and appointment_id and status and start and end):
        return [], fields.problems
    appointment: dict[str, Any] = {"resourceType": "Appointment", "id": appointment_id}
    if version:
        appointment["meta"] = meta(version, None)
    appointment["status"] = status
    if service:
        appointment["serviceType"] = [{"text": service}]
    appointment["start"] = fhir_instant(start)
    appointment["end"] = fhir_instant(end)
    appointment["participant"] = [person_participant(crn if linkable(crn) else client)]
    if location:
        appointment["participant"].append(location_participant(location))
    # The Patient carries no id: client ids may hold characters a FHIR id may not.
    link = [{"resourceType": "Patient", "identifier": [client, crn]}] if linkable(crn) else []
    return [*link, appointment], []


def _instant(
    fields: FieldReader, column: str, day: date | None, at: time | None
) -> datetime | None:
    if day is None or at is None:
        return None
    try:
        return london_to_utc(datetime.combine(day, at))
    except FieldError as exc:
        fields.problems.append(Problem(column, str(exc)))
        return None


def _date(value: str) -> date:
    try:
        if _ISO_DATE.match(value):
            return date.fromisoformat(value)
        uk = _UK_DATE.match(value)
        if uk:
            day, month, year = (int(part) for part in uk.groups())
            return date(year, month, day)
    except ValueError:
        raise FieldError(f"{value!r} is not a date") from None
    raise FieldError(f"{value!r} is not a date (write 2026-12-03 or 03/12/2026)")


def _time(value: str) -> time:
    found = _TIME.match(value)
    if found and int(found[1]) < 24 and int(found[2]) < 60:
        return time(int(found[1]), int(found[2]))
    raise FieldError(f"{value!r} is not a time (write HH:MM, 24-hour clock)")


def _status(value: str) -> str:
    status = STATUSES.get(value.lower())
    if status is None:
        raise FieldError(f"{value!r} is not one of: {', '.join(STATUSES)}")
    return status
