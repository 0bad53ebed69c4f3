"""Voluntary-sector CSV uploads of appointments and attendance, as spreadsheets export them,
mapped to FHIR Appointments (and identity-link Patients) as Records that the publish path
validates and sends.

The columns, their usual spreadsheet names, the attendance words and the date layouts are
specified in connectors/feeds/README.md.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
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
from connectors.feeds.spreadsheet import decode, read_date_time, read_time, separator
from connectors.fhir_input import Record
from schemas.fhir import Problem
from schemas.identifiers import NHS_NUMBER, PARTNER_ID, PROBATION_CRN, local_system

COLUMNS = (
    "client_id",
    "nhs_number",
    "crn",
    "appointment_id",
    "date",
    "start_time",
    "end_time",
    "duration",
    "status",
    "location",
    "service",
    "version",
)
REQUIRED = ("appointment_id", "date", "status")
PERSON_COLUMNS = ("client_id", "nhs_number", "crn")  # at least one names the person

# The names spreadsheets give each column, compared as `header_key` leaves them (lower case,
# punctuation and spacing as single spaces): "NHS No." and "nhs_no" are both "nhs no".
SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "client_id": (
        "client id",
        "clientid",
        "client",
        "client ref",
        "client reference",
        "client no",
        "client number",
        "service user id",
        "service user ref",
        "customer id",
    ),
    "nhs_number": ("nhs number", "nhs no", "nhs num", "nhsno", "nhs"),
    "crn": ("crn", "case reference number", "probation crn"),
    "appointment_id": (
        "appointment id",
        "appointment ref",
        "appointment reference",
        "appointment no",
        "appointment number",
        "appt id",
        "appt ref",
        "booking id",
        "booking ref",
        "booking reference",
        "session id",
    ),
    "date": (
        "date",
        "appointment date",
        "appt date",
        "session date",
        "date of appointment",
        "appointment date time",
        "date time",
    ),
    "start_time": ("start time", "time", "appointment time", "appt time", "from", "time from"),
    "end_time": ("end time", "finish time", "end", "finish", "to", "time to"),
    "duration": (
        "duration",
        "duration mins",
        "duration minutes",
        "length",
        "length mins",
        "minutes",
        "mins",
    ),
    "status": (
        "status",
        "outcome",
        "attendance",
        "attended",
        "attendance status",
        "attendance outcome",
        "appointment status",
        "appointment outcome",
    ),
    "location": ("location", "venue", "site", "appointment location"),
    "service": ("service", "service type", "appointment type", "session type", "activity"),
    "version": ("version",),
}
# Names that could be more than one column: reported, and left for a partner mapping to place.
AMBIGUOUS: Mapping[str, tuple[str, ...]] = {
    "id": ("client_id", "appointment_id"),
    "ref": ("client_id", "appointment_id"),
    "reference": ("client_id", "appointment_id"),
    "number": ("client_id", "appointment_id", "nhs_number"),
    "no": ("client_id", "appointment_id", "nhs_number"),
    "start": ("date", "start_time"),
    "type": ("service",),  # could as well be a client's category or a contact's channel
}

# Attendance words, compared as `value_key` leaves them → FHIR Appointment.status, and the
# cancelation reason a word carries.
ATTENDANCE: Mapping[str, tuple[str, str | None]] = {
    "booked": ("booked", None),
    "attended": ("fulfilled", None),
    "seen": ("fulfilled", None),
    "yes": ("fulfilled", None),
    "arrived": ("fulfilled", None),
    "did not attend": ("noshow", None),
    "dna": ("noshow", None),
    "no show": ("noshow", None),
    "noshow": ("noshow", None),
    "not attended": ("noshow", None),
    "failed to attend": ("noshow", None),
    "cancelled": ("cancelled", None),
    "canceled": ("cancelled", None),
    "cancelled by client": ("cancelled", "cancelled by the client"),
    "cancelled by patient": ("cancelled", "cancelled by the client"),
    "cancelled by service": ("cancelled", "cancelled by the service"),
}
# The accepted words by what they mean, for errors: "booked; attended, seen, …; dna, …".
ATTENDANCE_HINT = "; ".join(
    ", ".join(word for word, (status, _) in ATTENDANCE.items() if status == meaning)
    for meaning in dict.fromkeys(status for status, _ in ATTENDANCE.values())
)
MAX_DURATION_MIN = 24 * 60


def header_key(name: str) -> str:
    """A header as compared: lower case, each run of other characters than letters and digits
    one space ("Duration (mins)" → "duration mins", "client_id" → "client id")."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", name.lower()).split())


def value_key(value: str) -> str:
    """An attendance word as compared: lower case, hyphens and runs of spaces as one space."""
    return " ".join(value.lower().replace("-", " ").replace("_", " ").split())


_SYNONYM_OF = {header_key(name): column for column, names in SYNONYMS.items() for name in names}


@dataclass(frozen=True, slots=True)
class Header:
    """A file's header read: the column each of our fields is in, and what it is called there."""

    width: int = 0  # how many columns the header has, named or not
    positions: Mapping[str, int] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)  # our field → the header as written
    problems: tuple[Problem, ...] = ()
    notices: tuple[str, ...] = ()  # columns left unread, each said once per file

    def row(self, values: list[str]) -> dict[str, str]:
        """A row's values by our field names (columns left unread are dropped)."""
        return {name: values[position] for name, position in self.positions.items()}

    def named(self, problems: list[Problem]) -> list[Problem]:
        """Problems named by the file's own column names, as the partner knows them."""
        return [Problem(self.names.get(p.path, p.path), p.message) for p in problems]


def read_header(cells: list[str], columns: Mapping[str, str] | None = None) -> Header:
    """Which field each header cell gives: the partner's own `columns` setting (their header →
    our field) first, then the usual names. Unknown and ambiguous names are left unread with a
    notice; a field given by two columns, or a required one by none, stops the file."""
    own = {header_key(theirs): ours for theirs, ours in (columns or {}).items()}
    problems = [
        Problem(
            "(header)",
            f"the partner's csv_columns setting maps {theirs!r} to {ours!r}, which is not a "
            f"column (the columns are: {', '.join(COLUMNS)})",
        )
        for theirs, ours in (columns or {}).items()
        if ours not in COLUMNS
    ]
    names = [cell.strip() for cell in cells]
    if not any(names):
        return Header(problems=(Problem("(header)", f"a header row is required: {_sample()}"),))
    positions: dict[str, int] = {}
    written: dict[str, str] = {}
    notices: list[str] = []
    unnamed = [str(number) for number, name in enumerate(names, start=1) if not name]
    if unnamed:
        problems.append(Problem("(header)", f"column(s) without a name: {', '.join(unnamed)}"))
    for position, name in enumerate(names):
        if not name:
            continue
        key = header_key(name)
        column = own.get(key) or _SYNONYM_OF.get(key)
        if column not in COLUMNS:
            notices.append(_unread(name, AMBIGUOUS.get(key, ())))
        elif column in positions and written[column] == name:
            problems.append(Problem("(header)", f"column {name!r} is given twice"))
        elif column in positions:
            problems.append(
                Problem(
                    "(header)",
                    f"columns {written[column]!r} and {name!r} both give {column}: keep one, or "
                    "map one elsewhere in the partner's csv_columns setting",
                )
            )
        else:
            positions[column], written[column] = position, name
    missing = [name for name in REQUIRED if name not in positions]
    if not any(name in positions for name in PERSON_COLUMNS):
        missing.append(" or ".join(PERSON_COLUMNS))
    if "end_time" not in positions and "duration" not in positions:
        missing.append("end_time or duration")
    if missing:
        problems.append(Problem("(header)", f"missing required column(s): {', '.join(missing)}"))
    return Header(len(names), positions, written, tuple(problems), tuple(notices))


def _unread(name: str, could_be: tuple[str, ...]) -> str:
    if could_be:
        return (
            f"column {name!r} is not read: it could be {' or '.join(could_be)}; name it in the "
            "partner's csv_columns setting to have it read"
        )
    return (
        f"column {name!r} is not read: the hub has no column of that name (it reads "
        f"{', '.join(COLUMNS)} and their usual names)"
    )


def _sample() -> str:
    return ",".join(("client_id", "appointment_id", "date", "start_time", "end_time", "status"))


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


HINT = "; save the sheet as CSV UTF-8"


def records_from_csv_file(
    path: Path, partner: str, columns: Mapping[str, str] | None = None
) -> Iterator[Record]:
    """Records from a CSV upload by `partner`, whose client ids are local to it; `columns` is
    the partner's own header mapping (their header → our column)."""
    yield from records_from_csv_bytes(path.read_bytes(), path.name, partner, columns)


def records_from_csv_bytes(
    data: bytes, origin: str, partner: str, columns: Mapping[str, str] | None = None
) -> Iterator[Record]:
    """Records from a CSV export as bytes (UTF-8, UTF-16 with a byte-order mark, or
    Windows-1252); text in none of them is one rejected record."""
    try:
        text = decode(data, HINT)
    except ValueError as exc:
        raw = data.decode("utf-8", errors="replace")
        yield Record(origin, raw, problems=(Problem("(file)", str(exc)),))
        return
    yield from records_from_csv_text(text, origin, partner, columns)


def records_from_csv_text(
    text: str, origin: str, partner: str, columns: Mapping[str, str] | None = None
) -> Iterator[Record]:
    """Records from CSV text; `origin` (a file name) names each row as origin:line."""
    if not PARTNER_ID.match(partner):
        raise ValueError(f"{partner!r} is not a partner id")
    text = text.removeprefix("\ufeff")
    lines = _Lines(text)
    rows = csv.reader(lines, strict=True, delimiter=separator(text.partition("\n")[0]))
    try:
        header = read_header(next(rows, []), columns)
        header_text = lines.take()
        # Said even when the header stops the file: a column not read may be the one missing.
        for notice in header.notices:
            yield Record(f"{origin}:1", header_text, ignored_because=notice)
        if header.problems:
            yield Record(f"{origin}:1", text, problems=header.problems)
            return
        links: set[tuple[str, ...]] = set()
        last_line = rows.line_num
        for row in rows:
            where, last_line = f"{origin}:{last_line + 1}", rows.line_num
            raw = header_text + lines.take()
            if not any(value.strip() for value in row):
                continue  # blank lines and the empty rows spreadsheets leave at the end
            if len(row) == header.width:
                resources, problems = map_row(header.row(row), partner)
            else:
                count = f"has {len(row)} values, the header has {header.width} columns"
                resources, problems = [], [Problem("(row)", count)]
            if problems:
                yield Record(where, raw, problems=tuple(header.named(problems)))
                continue
            for resource in resources:
                if resource["resourceType"] == "Patient":
                    linked = tuple(identifier["value"] for identifier in resource["identifier"])
                    if linked in links:
                        continue  # already linked by this file; a resend would only be a duplicate
                    links.add(linked)
                yield Record(where, raw, resource=resource)
    except csv.Error as exc:
        # A broken quote leaves the rest of the file unreadable as rows.
        where = f"{origin}:{rows.line_num}"
        yield Record(where, lines.take(), problems=(Problem("(row)", f"not valid CSV: {exc}"),))


def map_row(row: dict[str, str], partner: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The FHIR resources for one row (a link Patient first), or every problem with it.

    `row` holds values by our column names; problems name those columns.
    """
    fields = FieldReader(row, missing="value required")
    client = fields.mapped("client_id", lambda v: person(local_system(partner), v))
    nhs = fields.mapped("nhs_number", lambda v: person(NHS_NUMBER, v))
    crn = fields.mapped("crn", lambda v: person(PROBATION_CRN, v))
    appointment_id = fields.mapped("appointment_id", fhir_id, required=True)
    day_and_time = fields.mapped("date", read_date_time, required=True)
    start_time = fields.mapped("start_time", read_time)
    end_time = fields.mapped("end_time", read_time)
    duration = fields.mapped("duration", _minutes)
    attendance = fields.mapped("status", attendance_status, required=True)
    version = fields.mapped("version", version_id)
    location, service = fields.text("location"), fields.text("service")
    named_by = next((i for i in (crn, nhs) if linkable(i)), client)
    if named_by is None and not any(p.path in PERSON_COLUMNS for p in fields.problems):
        given = [column for column in PERSON_COLUMNS if column in row]
        where = given[0] if len(given) == 1 else "(row)"
        if nhs is not None or crn is not None:
            why = "a placeholder identifier names no one: give client_id too"
        else:
            why = "value required" if len(given) == 1 else f"one of {', '.join(given)} is required"
        fields.problems.append(Problem(where, why))
    start = end = None
    if day_and_time is not None:
        day = day_and_time[0]
        at = _start_time(fields, day_and_time[1], start_time, "start_time" in row)
        start = _instant(fields, "start_time" if start_time else "date", day, at)
        end = _end(fields, day, start, end_time, duration)
    if fields.problems or not (named_by and appointment_id and attendance and start and end):
        return [], fields.problems
    status, cancelled_by = attendance
    appointment: dict[str, Any] = {"resourceType": "Appointment", "id": appointment_id}
    if version:
        appointment["meta"] = meta(version, None)
    appointment["status"] = status
    if cancelled_by:
        appointment["cancelationReason"] = {"text": cancelled_by}
    if service:
        appointment["serviceType"] = [{"text": service}]
    appointment["start"] = fhir_instant(start)
    appointment["end"] = fhir_instant(end)
    appointment["participant"] = [person_participant(named_by)]
    if location:
        appointment["participant"].append(location_participant(location))
    # Placeholders are carried nowhere as links. The Patient carries no id: client ids may
    # hold characters a FHIR id may not.
    linked = [i for i in (client, nhs, crn) if i is not None and (i is client or linkable(i))]
    link = [{"resourceType": "Patient", "identifier": linked}] if len(linked) > 1 else []
    return [*link, appointment], []


def attendance_status(value: str) -> tuple[str, str | None]:
    """An attendance word as FHIR Appointment.status and the cancelation reason it carries."""
    found = ATTENDANCE.get(value_key(value))
    if found is None:
        raise FieldError(f"{value!r} is not an attendance value ({ATTENDANCE_HINT})")
    return found


def _minutes(value: str) -> timedelta:
    if value.isdigit() and 0 < int(value) <= MAX_DURATION_MIN:
        return timedelta(minutes=int(value))
    raise FieldError(f"{value!r} is not a whole number of minutes (1-{MAX_DURATION_MIN})")


def _start_time(
    fields: FieldReader, in_date: time | None, start_time: time | None, has_column: bool
) -> time | None:
    """The start time: the start_time column's, else the time written in the date."""
    if start_time is not None:
        # A spreadsheet's date cell often shows midnight: only another time disagrees.
        if in_date not in (None, time(0), start_time):
            fields.problems.append(
                Problem("date", f"its time {in_date:%H:%M} is not start_time {start_time:%H:%M}")
            )
        return start_time
    if any(p.path == "start_time" for p in fields.problems):
        return None  # already said what is wrong with it
    if in_date not in (None, time(0)):
        return in_date
    # Midnight alone is how a spreadsheet shows a date without a time, not an appointment time.
    where = "start_time" if has_column else "date"
    fields.problems.append(
        Problem(
            where, "a start time is required (09:30 in start_time, or 31/12/2026 09:30 in date)"
        )
    )
    return None


def _end(
    fields: FieldReader,
    day: date,
    start: datetime | None,
    end_time: time | None,
    duration: timedelta | None,
) -> datetime | None:
    """The end: end_time on the same day, else start plus duration; both must agree."""
    if start is None:
        return None
    by_duration = start + duration if duration is not None else None
    if end_time is None:
        if by_duration is None and not any(
            p.path in ("end_time", "duration") for p in fields.problems
        ):
            fields.problems.append(Problem("end_time", "value required (or give duration)"))
        return by_duration
    end = _instant(fields, "end_time", day, end_time)
    if end is None:
        return None
    if end <= start:
        fields.problems.append(Problem("end_time", "must be later than the start time"))
        return None
    if by_duration is not None and by_duration != end:
        minutes = int((end - start).total_seconds() // 60)
        fields.problems.append(
            Problem("duration", f"is not the {minutes} minutes from the start time to end_time")
        )
        return None
    return end


def _instant(fields: FieldReader, column: str, day: date, at: time | None) -> datetime | None:
    if at is None:
        return None
    try:
        return london_to_utc(datetime.combine(day, at))
    except FieldError as exc:
        fields.problems.append(Problem(column, str(exc)))
        return None
