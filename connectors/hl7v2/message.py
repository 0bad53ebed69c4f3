"""Map Mental Health Trust HL7 v2 messages (SIU scheduling, REF/RRI referrals) to FHIR R4 resources.

Pure functions: message text in, FHIR resources (plain dicts) out, or an `Hl7Error` naming the
segment and field at fault, which the MLLP listener turns into an ERR segment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import get_message_info, parse_segment

from connectors.fhir_input import Record
from schemas.fhir import Problem, problems_in
from schemas.identifiers import (
    NHS_NUMBER,
    PLACEHOLDER_ONLY,
    PersonIdentifier,
    is_placeholder,
    local_system,
)
from schemas.vocabulary import UK_TIME as LONDON

# HL7 table 0357 (message error condition codes) used in ERR-3.
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
APPLICATION_INTERNAL_ERROR = 207
ERROR_CODE_TEXT: Mapping[int, str] = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}

# Segment structures are read from the v2.5 definitions whatever MSH-12 says: the fields
# mapped here keep their positions from v2.3 to v2.8, but hl7apy refuses fields a later
# version withdrew (SCH-11 in v2.7+), which trusts still send.
REFERENCE_VERSION = "2.5"
# Only these are parsed field by field; other segments (RGS, MSA, PRD, PV1, Z-segments, segments
# newer than v2.5) are checked for a well-formed name and otherwise passed by.
READ_SEGMENTS = frozenset(
    ["MSH", "SCH", "TQ1", "PID", "AIS", "AIG", "AIL", "AIP", "RF1", "DG1", "NTE"]
)
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_NOT_ID_CHARACTER = re.compile(r"[^A-Za-z0-9\-.]")
_DTM = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?(?:([+-])(\d{2})(\d{2}))?$"
)
FIRST_YEAR, LAST_YEAR = 1900, 2999  # of a usable DTM
LONGEST_DURATION = timedelta(days=366)
NHS_NUMBER_OID = "2.16.840.1.113883.2.1.4.1"
# Identifier types (HL7 table 0203) taken as the trust's own patient number.
LOCAL_ID_TYPES = frozenset({"MR", "PI"})

APPOINTMENT_STATUS: Mapping[str, str] = {
    "S12": "booked",
    "S13": "booked",
    "S14": "booked",
    "S15": "cancelled",
    "S17": "entered-in-error",
    "S26": "noshow",
}
# SCH-25 filler status (HL7 table 0278) refines a booking; the other triggers say it all.
FILLER_STATUS: Mapping[str, str] = {
    "pending": "booked",
    "booked": "booked",
    "started": "arrived",
    "complete": "fulfilled",
    "noshow": "noshow",
}
TASK_STATUS: Mapping[str, str] = {
    "A": "accepted",
    "R": "rejected",
    "P": "received",
    "E": "cancelled",
}
URGENT_PRIORITIES = frozenset({"S", "A"})  # HL7 table 0280: STAT, ASAP
SECONDS_PER_UNIT: Mapping[str, int] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
# (segment, start field, duration field, duration units field) of the scheduled resources.
RESOURCE_TIMES = (("AIS", 4, 7, 8), ("AIG", 8, 11, 12), ("AIL", 6, 9, 10), ("AIP", 6, 9, 10))


class Hl7Error(ValueError):
    """A message the hub cannot map: where (segment, field) and why, in the words of an ERR segment."""

    def __init__(
        self,
        segment: str,
        field: int | None,
        reason: str,
        *,
        component: int | None = None,
        sequence: int = 1,
        code: int = DATA_TYPE_ERROR,
    ) -> None:
        self.segment = segment
        self.field = field
        self.reason = reason
        self.component = component
        self.sequence = sequence
        self.code = code
        super().__init__(f"{self.where}: {reason}")

    @property
    def where(self) -> str:
        """The place in HL7's usual notation: "SCH-11.4", "PID-3", "PID" or "message"."""
        if not self.segment:
            return "message"
        if self.field is None:
            return self.segment
        place = f"{self.segment}-{self.field}"
        return place if self.component is None else f"{place}.{self.component}"

    @property
    def rejects_message(self) -> bool:
        """True when the message cannot be processed at all (its MSH): answered AR, not AE."""
        return self.segment == "MSH"

    def report(self) -> ErrorReport:
        """The error as an ERR segment reports it."""
        location = ""
        if self.segment:
            parts = [self.segment, str(self.sequence)]
            if self.field is not None:
                parts.append(str(self.field))
                if self.component is not None:
                    parts += ["1", str(self.component)]
            location = "^".join(parts)
        return ErrorReport(str(self), location, self.code)


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """One ERR segment: the user message (ERR-8), location (ERR-2, ERL) and code (ERR-3)."""

    message: str
    location: str = ""
    code: int = APPLICATION_INTERNAL_ERROR


@dataclass(frozen=True, slots=True)
class Separators:
    """A message's encoding characters (MSH-1 and MSH-2)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def msh2(self) -> str:
        """The MSH-2 value that declares these separators."""
        return self.component + self.repetition + self.escape + self.subcomponent


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: its name, which occurrence it is, and its fields' repetitions, still escaped."""

    name: str
    sequence: int
    fields: Mapping[int, tuple[str, ...]]
    separators: Separators

    def repetitions(self, position: int) -> tuple[str, ...]:
        """The raw repetitions of a field; () when the field is empty or absent."""
        return tuple(r for r in self.fields.get(position, ()) if r)

    def get(
        self, position: int, component: int = 1, subcomponent: int = 1, repetition: int = 0
    ) -> str:
        """One value, unescaped and stripped; "" when absent."""
        reps = self.fields.get(position, ())
        if repetition >= len(reps):
            return ""
        return part(reps[repetition], self.separators, component, subcomponent)

    def error(
        self,
        position: int | None,
        reason: str,
        *,
        component: int | None = None,
        code: int = DATA_TYPE_ERROR,
    ) -> Hl7Error:
        """An Hl7Error located in this segment."""
        return Hl7Error(
            self.name, position, reason, component=component, sequence=self.sequence, code=code
        )


@dataclass(frozen=True, slots=True)
class Hl7Message:
    """A parsed message: the MSH facts the mapping needs and every segment in order."""

    message_type: str
    trigger: str
    control_id: str
    sent_at: datetime
    segments: tuple[Segment, ...]

    def all(self, name: str) -> list[Segment]:
        """Every segment with this name, in message order."""
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        """The first segment with this name, or None."""
        return next((s for s in self.segments if s.name == name), None)

    def require(self, name: str) -> Segment:
        """The first segment with this name; Hl7Error when the message has none."""
        found = self.first(name)
        if found is None:
            raise Hl7Error(name, None, "segment required but missing", code=SEGMENT_SEQUENCE_ERROR)
        return found


@dataclass(frozen=True, slots=True)
class MappedMessage:
    """The resources one message maps to, with the message it came from."""

    message: Hl7Message
    resources: tuple[dict[str, Any], ...]


# --- text ---------------------------------------------------------------------------------


def unescape(value: str, separators: Separators) -> str:
    r"""Undo HL7 escape sequences: \F\ \S\ \T\ \R\ \E\, \Xhh\ and the FT line break \.br\."""
    esc = separators.escape
    if esc not in value:
        return value
    literal = {
        "F": separators.field,
        "S": separators.component,
        "T": separators.subcomponent,
        "R": separators.repetition,
        "E": esc,
    }

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in literal:
            return literal[code]
        if code.startswith((".br", ".sp")):
            return "\n"
        if code.startswith("X") and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", code[1:]):
            data = bytes.fromhex(code[1:])
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if code in ("H", "N") or code.startswith((".", "C", "M", "Z")):
            return ""  # highlighting, formatting and character-set hints carry no text
        return match.group(0)

    return re.sub(f"{re.escape(esc)}([^{re.escape(esc)}]*){re.escape(esc)}", replace, value)


def escape(value: str, separators: Separators) -> str:
    """Escape text for an HL7 field; line breaks become spaces (ERR-8 and MSA-3 are one line)."""
    esc = separators.escape
    text = value.replace(esc, f"{esc}E{esc}")
    for char, code in (
        (separators.field, "F"),
        (separators.component, "S"),
        (separators.subcomponent, "T"),
        (separators.repetition, "R"),
    ):
        text = text.replace(char, f"{esc}{code}{esc}")
    return " ".join(text.splitlines())


def part(raw: str, separators: Separators, component: int = 1, subcomponent: int = 1) -> str:
    """One component's subcomponent of a raw field repetition, unescaped and stripped."""
    components = raw.split(separators.component)
    if component > len(components):
        return ""
    subcomponents = components[component - 1].split(separators.subcomponent)
    if subcomponent > len(subcomponents):
        return ""
    return unescape(subcomponents[subcomponent - 1], separators).strip()


def split_segments(text: str) -> list[str]:
    """Segments of one message, accepting \\r, \\n or \\r\\n between them and MLLP framing bytes."""
    cleaned = text.strip("\x0b\x1c\r\n\t ")
    return [line for line in re.split(r"\r\n|\r|\n", cleaned) if line.strip()]


def split_messages(text: str) -> list[str]:
    """The messages of a file, each from its MSH up to the next, segments joined by \\r."""
    messages: list[list[str]] = []
    for line in split_segments(text.replace("\x0b", "\n").replace("\x1c", "\n")):
        if line.startswith("MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return ["\r".join(lines) for lines in messages]


# --- times --------------------------------------------------------------------------------


def parse_dtm(value: str) -> datetime:
    """An HL7 DTM (YYYYMMDDHHMM[SS[.S…]][+/-ZZZZ]) as an aware datetime; local time is Europe/London.

    Raises ValueError saying why the value is not usable.
    """
    match = _DTM.match(value)
    if match is None:
        raise ValueError(f"not a valid datetime {value!r}: expected YYYYMMDDHHMM[SS][+/-ZZZZ]")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    if not FIRST_YEAR <= int(year) <= LAST_YEAR:
        # Appointments and referrals happen in these years; outside them the arithmetic
        # below (UTC offsets, durations) could leave the range a datetime can hold.
        raise ValueError(f"not a valid datetime {value!r}: year outside {FIRST_YEAR}-{LAST_YEAR}")
    try:
        naive = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError as exc:
        raise ValueError(f"not a valid datetime {value!r}: {exc}") from None
    if sign is not None:
        if int(off_h) > 14 or int(off_m) > 59:
            raise ValueError(f"not a valid datetime {value!r}: offset out of range")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        return (naive - offset if sign == "+" else naive + offset).replace(tzinfo=UTC)
    # Without an offset the trust's wall-clock time is meant. In the autumn hour that occurs
    # twice the first (BST) reading is taken; a time inside the spring gap never happened.
    local = naive.replace(tzinfo=LONDON)
    if local.astimezone(UTC).astimezone(LONDON).replace(tzinfo=None) != naive:
        raise ValueError(
            f"not a valid datetime {value!r}: that local time does not exist in Europe/London "
            "(clocks go forward); send it with its UTC offset"
        )
    return local.astimezone(UTC)


def fhir_instant(moment: datetime) -> str:
    """A FHIR instant in UTC, e.g. 2026-12-04T13:00:00Z."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds") + "Z"


def _time(
    segment: Segment, position: int, component: int = 1, subcomponent: int = 1
) -> datetime | None:
    value = segment.get(position, component, subcomponent)
    if not value:
        return None
    try:
        return parse_dtm(value)
    except ValueError as exc:
        shown = component if component != 1 or subcomponent != 1 else None
        raise segment.error(position, str(exc), component=shown) from None


# --- parsing ------------------------------------------------------------------------------


def _separators(first_segment: str) -> tuple[Separators, dict[str, str]]:
    try:
        encoding, _structure, _version = get_message_info(first_segment)
    except Exception as exc:  # hl7apy reports bad encoding characters with assorted types
        raise Hl7Error(
            "MSH", 2, f"invalid encoding characters ({exc.__class__.__name__})"
        ) from None
    separators = Separators(
        encoding["FIELD"],
        encoding["COMPONENT"],
        encoding["REPETITION"],
        encoding["ESCAPE"],
        encoding["SUBCOMPONENT"],
    )
    # The v2.7 truncation character means nothing to the v2.5 structures read here.
    encoding.pop("TRUNCATION", None)
    return separators, encoding


def _segment(line: str, sequence: int, separators: Separators, encoding: dict[str, str]) -> Segment:
    name = line[:3]
    if name not in READ_SEGMENTS:
        return Segment(name, sequence, {}, separators)
    try:
        parsed = parse_segment(
            line,
            version=REFERENCE_VERSION,
            encoding_chars=encoding,
            validation_level=VALIDATION_LEVEL.TOLERANT,
        )
    except Exception as exc:  # hl7apy reports malformed segments with assorted types
        raise Hl7Error(
            name, None, f"cannot be parsed ({exc.__class__.__name__})", sequence=sequence
        ) from None
    fields: dict[int, list[str]] = {}
    for child in parsed.children:
        if child.name is None:
            continue  # beyond the v2.5 definition of the segment: nothing mapped lives there
        position = int(str(child.name).rpartition("_")[2])
        fields.setdefault(position, []).append(child.to_er7(encoding_chars=encoding))
    return Segment(name, sequence, {k: tuple(v) for k, v in fields.items()}, separators)


def parse_message(text: str) -> Hl7Message:
    """Parse one message; Hl7Error names the first segment or field that is not usable."""
    lines = split_segments(text)
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 8:
        raise Hl7Error(
            "MSH",
            None,
            "not an HL7 v2 message: it must start with an MSH segment",
            code=SEGMENT_SEQUENCE_ERROR,
        )
    separators, encoding = _separators(lines[0])
    counts: dict[str, int] = {}
    segments = []
    for index, line in enumerate(lines):
        name = line[:3]
        if not _SEGMENT_NAME.match(name) or line[3:4] not in ("", separators.field):
            raise Hl7Error(
                "", None, f"line {index + 1} is not an HL7 segment", code=SEGMENT_SEQUENCE_ERROR
            )
        counts[name] = counts.get(name, 0) + 1
        segment = _segment(line, counts[name], separators, encoding)
        if index and segment.name == "MSH":
            raise segment.error(
                None, "a second MSH: one message at a time", code=SEGMENT_SEQUENCE_ERROR
            )
        segments.append(segment)
    msh = segments[0]
    message_type, trigger = msh.get(9, 1).upper(), msh.get(9, 2).upper()
    if not message_type:
        raise msh.error(
            9, "field required: the message type, e.g. SIU^S12", code=REQUIRED_FIELD_MISSING
        )
    control_id = msh.get(10)
    if not control_id:
        raise msh.error(10, "field required: the message control id", code=REQUIRED_FIELD_MISSING)
    sent_at = _time(msh, 7)
    if sent_at is None:
        raise msh.error(7, "field required: the message date/time", code=REQUIRED_FIELD_MISSING)
    return Hl7Message(message_type, trigger, control_id, sent_at, tuple(segments))


# --- the person ---------------------------------------------------------------------------


def _identifiers(
    message: Hl7Message, partner: str
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """(NHS number, local MRN) from PID-3, either possibly None but not both.

    A placeholder NHS number (feeds send 9999999999 for "not known") is left out, so the
    message names its person by the MRN alone and links nothing.
    """
    people = message.all("PID")
    if not people:
        raise Hl7Error(
            "PID",
            None,
            "segment required: the person the message is about",
            code=SEGMENT_SEQUENCE_ERROR,
        )
    if len(people) > 1:
        raise people[1].error(
            None,
            "more than one person: the hub carries one person per message",
            code=SEGMENT_SEQUENCE_ERROR,
        )
    pid = people[0]
    nhs: dict[str, str] | None = None
    local: dict[str, str] | None = None
    placeholder = False
    for raw in pid.repetitions(3):
        value = part(raw, pid.separators, 1)
        authority = part(raw, pid.separators, 4, 1).upper()
        authority_oid = part(raw, pid.separators, 4, 2)
        kind = part(raw, pid.separators, 5).upper()
        if not value:
            continue
        if nhs is None and (authority == "NHS" or kind == "NH" or authority_oid == NHS_NUMBER_OID):
            compact = value.replace(" ", "")
            if is_placeholder(PersonIdentifier(NHS_NUMBER, compact)):
                placeholder = True
            else:
                nhs = {"system": NHS_NUMBER, "value": compact}
        elif local is None and kind in LOCAL_ID_TYPES:
            local = {"system": local_system(partner), "value": value}
    if nhs is None and local is None:
        if placeholder:
            raise pid.error(3, PLACEHOLDER_ONLY, code=TABLE_VALUE_NOT_FOUND)
        if not pid.repetitions(3):
            raise pid.error(
                3,
                "field required: the person's NHS number or local MRN",
                code=REQUIRED_FIELD_MISSING,
            )
        raise pid.error(
            3,
            "no NHS number (assigning authority NHS or type NH) or local MRN (type MR) among the identifiers",
            code=TABLE_VALUE_NOT_FOUND,
        )
    return nhs, local


def _person_resources(
    message: Hl7Message, partner: str
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The identifier a resource names its person by, and a linking Patient when PID has two."""
    nhs, local = _identifiers(message, partner)
    if nhs is not None and local is not None:
        patient = {
            "resourceType": "Patient",
            "meta": _meta(message),
            "identifier": [nhs, local],
        }
        return nhs, [patient]
    identifier = nhs or local
    assert identifier is not None  # _identifiers raises when it has neither
    return identifier, []


def _meta(message: Hl7Message) -> dict[str, str]:
    # HL7 v2 carries no resource version: the message time orders updates, newest wins.
    return {"lastUpdated": fhir_instant(message.sent_at)}


def _fhir_id(segment: Segment, position: int, what: str) -> str:
    value = segment.get(position)
    if not _FHIR_ID.match(value):
        raise segment.error(
            position, f"{what} is not usable as an id (1-64 letters, digits, '-' or '.')"
        )
    return value


# --- appointments -------------------------------------------------------------------------


def _duration(segment: Segment, position: int, units_position: int) -> timedelta | None:
    raw = segment.get(position)
    if not raw:
        return None
    try:
        amount = float(raw)
    except ValueError:
        raise segment.error(position, f"not a number: {raw!r}") from None
    if not math.isfinite(amount):
        raise segment.error(position, f"not a number: {raw!r}")
    if amount < 0:
        raise segment.error(position, "a duration cannot be negative")
    # HL7 takes minutes when the units are not given.
    unit = segment.get(units_position).lower() or "min"
    if unit not in SECONDS_PER_UNIT:
        raise segment.error(
            units_position,
            f"unknown duration unit {unit!r} (use s, min, h or d)",
            code=TABLE_VALUE_NOT_FOUND,
        )
    seconds = amount * SECONDS_PER_UNIT[unit]
    if seconds > LONGEST_DURATION.total_seconds():
        raise segment.error(position, "a duration over a year is not an appointment's")
    return timedelta(seconds=seconds)


def _resource_periods(
    message: Hl7Message, fallback: timedelta | None
) -> list[tuple[datetime, datetime | None]]:
    periods = []
    for name, start_at, duration_at, units_at in RESOURCE_TIMES:
        for segment in message.all(name):
            start = _time(segment, start_at)
            if start is None:
                continue
            duration = _duration(segment, duration_at, units_at) or fallback
            periods.append((start, None if duration is None else start + duration))
    return periods


def _appointment_period(
    message: Hl7Message, sch: Segment
) -> tuple[datetime | None, datetime | None]:
    """(start, end): SCH-11 timing, else TQ1, else the span of the scheduled resources."""
    fallback = _duration(sch, 9, 10)
    start, end = _time(sch, 11, 4), _time(sch, 11, 5)
    if start is None and (tq1 := message.first("TQ1")) is not None:
        start, end = _time(tq1, 7), _time(tq1, 8)
    if start is None:
        periods = _resource_periods(message, fallback)
        if periods:
            start = min(s for s, _ in periods)
            ends = [e for _, e in periods if e is not None]
            end = max(ends) if ends else None
    elif end is None and fallback is not None:
        end = start + fallback
    return start, end


def _appointment_times(message: Hl7Message, sch: Segment, status: str) -> dict[str, str]:
    start, end = _appointment_period(message, sch)
    if start is None:
        if status == "cancelled":
            return {}  # a cancellation may name the appointment without its times
        raise sch.error(
            11,
            "no appointment start: give SCH-11.4, TQ1-7 or a resource start (AIS-4, AIG-8, AIL-6, AIP-6)",
            code=REQUIRED_FIELD_MISSING,
        )
    if end is None:
        raise sch.error(
            11,
            "no appointment end: give SCH-11.5, TQ1-8, a resource duration (AIS-7, AIG-11, AIL-9, AIP-9) or SCH-9",
            code=REQUIRED_FIELD_MISSING,
        )
    if end <= start:
        raise sch.error(11, "the appointment must end after it starts", component=5)
    return {"start": fhir_instant(start), "end": fhir_instant(end)}


def _appointment_status(message: Hl7Message, sch: Segment) -> str:
    status = APPOINTMENT_STATUS[message.trigger]
    if status != "booked":
        return status
    filler = sch.get(25, 1).lower() or sch.get(25, 2).lower()
    return FILLER_STATUS.get(filler, status)


def _location(ail: Segment) -> dict[str, Any] | None:
    code = ail.get(3, 1) or ail.get(3, 2) or ail.get(3, 4)
    if not code:
        return None
    # The reference is a key, not something resolved: tidy the trust's code into id characters.
    actor: dict[str, str] = {"reference": f"Location/{_NOT_ID_CHARACTER.sub('-', code)[:64]}"}
    display = ail.get(3, 9)
    if display:
        actor["display"] = display
    return {"actor": actor, "status": "accepted"}


def _appointment_id(sch: Segment) -> str:
    if sch.get(2):
        return _fhir_id(sch, 2, "the filler appointment id")
    if sch.get(1):
        return _fhir_id(sch, 1, "the placer appointment id")
    raise sch.error(
        2,
        "field required: the filler appointment id (or the placer id in SCH-1)",
        code=REQUIRED_FIELD_MISSING,
    )


def appointment_from(message: Hl7Message, partner: str) -> list[dict[str, Any]]:
    """An SIU message as an Appointment, after a linking Patient when PID names two identifiers."""
    sch = message.require("SCH")
    appointment_id = _appointment_id(sch)
    status = _appointment_status(message, sch)
    identifier, patients = _person_resources(message, partner)
    locations = [loc for ail in message.all("AIL") if (loc := _location(ail)) is not None]
    services = [
        {"text": text} for ais in message.all("AIS") if (text := ais.get(3, 2) or ais.get(3, 1))
    ]
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "meta": _meta(message),
        "status": status,
    }
    if services:
        appointment["serviceType"] = services
    appointment |= _appointment_times(message, sch, status)
    appointment["participant"] = [
        {"actor": {"identifier": identifier}, "status": "accepted"},
        *locations,
    ]
    return [*patients, appointment]


# --- referrals ----------------------------------------------------------------------------


def _referral_id(rf1: Segment) -> str:
    if not rf1.get(6):
        raise rf1.error(
            6, "field required: the originating referral identifier", code=REQUIRED_FIELD_MISSING
        )
    return _fhir_id(rf1, 6, "the originating referral identifier")


def _text(segment: Segment, position: int) -> str:
    """A coded element's text (component 2), else its code."""
    return segment.get(position, 2) or segment.get(position, 1)


def service_request_from(message: Hl7Message, partner: str) -> list[dict[str, Any]]:
    """A REF^I12 referral request as a ServiceRequest, after a linking Patient when needed."""
    rf1 = message.require("RF1")
    referral_id = _referral_id(rf1)
    identifier, patients = _person_resources(message, partner)
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": referral_id,
        "meta": _meta(message),
        "status": "active",
        "intent": "order",
        "priority": "urgent" if rf1.get(2).upper() in URGENT_PRIORITIES else "routine",
    }
    if category := _text(rf1, 3):
        request["category"] = [{"text": category}]
    request["subject"] = {"identifier": identifier}
    authored = _time(rf1, 7) or message.sent_at
    request["authoredOn"] = fhir_instant(authored)
    reasons = [_text(rf1, 10)] + [dg1.get(4) or _text(dg1, 3) for dg1 in message.all("DG1")]
    if any(reasons):
        request["reasonCode"] = [{"text": reason} for reason in reasons if reason]
    return [*patients, request]


def _notes(message: Hl7Message) -> str:
    texts = [
        unescape(raw, nte.separators).strip()
        for nte in message.all("NTE")
        for raw in nte.repetitions(3)
    ]
    return "\n".join(text for text in texts if text)


def task_from(message: Hl7Message, partner: str) -> list[dict[str, Any]]:
    """An RRI^I12 referral response as the referral's Task, after a linking Patient when needed."""
    rf1 = message.require("RF1")
    referral_id = _referral_id(rf1)
    code = rf1.get(1).upper()
    if not code:
        raise rf1.error(
            1, "field required: the referral status (A, R, P or E)", code=REQUIRED_FIELD_MISSING
        )
    if code not in TASK_STATUS:
        raise rf1.error(
            1, f"unknown referral status {code!r} (use A, R, P or E)", code=TABLE_VALUE_NOT_FOUND
        )
    task_id = f"task-{referral_id}"
    if not _FHIR_ID.match(task_id):
        raise rf1.error(6, "the originating referral identifier is too long to name its Task")
    identifier, patients = _person_resources(message, partner)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "meta": _meta(message),
        "status": TASK_STATUS[code],
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral_id}"},
        "for": {"identifier": identifier},
        "lastModified": fhir_instant(message.sent_at),
    }
    if notes := _notes(message):
        task["statusReason"] = {"text": notes}
    return [*patients, task]


# --- dispatch -----------------------------------------------------------------------------

Mapper = Callable[[Hl7Message, str], list[dict[str, Any]]]
MAPPERS: Mapping[tuple[str, str], Mapper] = {
    **{("SIU", trigger): appointment_from for trigger in APPOINTMENT_STATUS},
    ("REF", "I12"): service_request_from,
    ("RRI", "I12"): task_from,
}


def _mapper(message: Hl7Message) -> Mapper:
    mapper = MAPPERS.get((message.message_type, message.trigger))
    if mapper is not None:
        return mapper
    triggers = sorted(t for m, t in MAPPERS if m == message.message_type)
    if triggers:
        raise Hl7Error(
            "MSH",
            9,
            f"unsupported trigger event {message.message_type}^{message.trigger} "
            f"(supported for {message.message_type}: {', '.join(triggers)})",
            component=2,
            code=UNSUPPORTED_EVENT_CODE,
        )
    kinds = ", ".join(sorted({m for m, _ in MAPPERS}))
    raise Hl7Error(
        "MSH",
        9,
        f"unsupported message type {message.message_type!r} (supported: {kinds})",
        component=1,
        code=UNSUPPORTED_MESSAGE_TYPE,
    )


def map_message(text: str, partner: str) -> MappedMessage:
    """Parse and map one message from `partner`; Hl7Error says what is wrong and where."""
    message = parse_message(text)
    mapper = _mapper(message)
    return MappedMessage(message, tuple(mapper(message, partner)))


def resources_from_hl7(text: str, partner: str) -> list[dict[str, Any]]:
    """The FHIR resources one HL7 v2 message from `partner` maps to (a linking Patient first)."""
    return list(map_message(text, partner).resources)


# --- files --------------------------------------------------------------------------------


def _message_records(text: str, origin: str, partner: str) -> Iterator[Record]:
    try:
        mapped = map_message(text, partner)
    except Hl7Error as exc:
        yield Record(origin, text, problems=(Problem(exc.where, exc.reason),))
        return
    # A message is accepted or rejected whole, as over MLLP: never half a booking.
    problems = tuple(p for resource in mapped.resources for p in problems_in(resource))
    if problems:
        yield Record(origin, text, problems=problems)
        return
    for resource in mapped.resources:
        yield Record(origin, text, resource, correlation=mapped.message.control_id)


def records_from_hl7_text(text: str, origin: str, partner: str) -> Iterator[Record]:
    """Records of every message in HL7 v2 text; a bad message is one Record with its problem."""
    messages = split_messages(text)
    if not messages:
        yield Record(
            origin, text, problems=(Problem("(file)", "no HL7 v2 message (MSH segment) found"),)
        )
        return
    for index, message in enumerate(messages):
        yield from _message_records(message, f"{origin}#msg[{index}]", partner)


def records_from_hl7_file(path: Path, partner: str) -> Iterator[Record]:
    """Records of every message in a .hl7 file, for `connectors.publish.publish_records`."""
    yield from records_from_hl7_bytes(path.read_bytes(), path.name, partner)


def records_from_hl7_bytes(data: bytes, origin: str, partner: str) -> Iterator[Record]:
    """`records_from_hl7_file` for bytes already read; `origin` names them in errors."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Trust systems that are not UTF-8 are ISO 8859-1 (MSH-18 "8859/1"), which cannot fail.
        text = data.decode("latin-1")
    yield from records_from_hl7_text(text, origin, partner)


# --- MLLP framing -------------------------------------------------------------------------

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"


def frame(message: str) -> bytes:
    """One HL7 message in its MLLP envelope: 0x0B, the message, 0x1C 0x0D."""
    return START_BLOCK + message.encode("utf-8") + END_BLOCK


# --- acknowledgements ---------------------------------------------------------------------

AckCode = Literal["AA", "AE", "AR"]


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """What an acknowledgement echoes from the message's MSH, read leniently from its first line."""

    separators: Separators = field(default_factory=Separators)
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    trigger: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = REFERENCE_VERSION


def reply_to(text: str) -> ReplyTo:
    """The MSH facts an ACK echoes, as far as they can be read; never raises."""
    lines = split_segments(text)
    first = lines[0] if lines else ""
    if not first.startswith("MSH") or len(first) < 8:
        return ReplyTo()
    sep = first[3]
    encoding = first[4:8]
    if len(set(encoding + sep)) != 5:
        return ReplyTo()
    separators = Separators(sep, encoding[0], encoding[1], encoding[2], encoding[3])
    # MSH-1 is the separator itself, so MSH-n is fields[n - 1].
    fields = first.split(sep)

    def at(position: int) -> str:
        return fields[position - 1] if position - 1 < len(fields) else ""

    return ReplyTo(
        separators,
        sending_application=at(3),
        sending_facility=at(4),
        receiving_application=at(5),
        receiving_facility=at(6),
        trigger=at(9).split(separators.component)[1] if separators.component in at(9) else "",
        control_id=at(10),
        processing_id=at(11) or "P",
        version=at(12).split(separators.component)[0] or REFERENCE_VERSION,
    )


def control_id_of(text: str) -> str:
    """MSH-10 of a message as sent, or "" when it cannot be read."""
    return reply_to(text).control_id


def acknowledgement(
    original: ReplyTo,
    code: AckCode,
    errors: Sequence[ErrorReport] = (),
    *,
    ack_control_id: str,
    now: datetime,
) -> str:
    """The ACK answering a message: MSA-1 `code`, MSA-2 its control id, one ERR per error."""
    s = original.separators
    msh = s.field.join(
        [
            "MSH",
            s.msh2,
            original.receiving_application or "CONCORD",
            original.receiving_facility,
            original.sending_application,
            original.sending_facility,
            now.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000"),
            "",
            s.component.join(["ACK", original.trigger, "ACK"]),
            ack_control_id,
            original.processing_id,
            original.version,
        ]
    )
    msa = ["MSA", code, original.control_id]
    if errors:
        msa.append(escape(errors[0].message[:80], s))  # MSA-3, for receivers older than v2.5
    segments = [msh, s.field.join(msa)]
    for error in errors:
        label = s.component.join([str(error.code), ERROR_CODE_TEXT.get(error.code, ""), "HL70357"])
        segments.append(
            s.field.join(
                ["ERR", "", error.location, label, "E", "", "", "", escape(error.message, s)]
            )
        )
    return "\r".join(segments) + "\r"
