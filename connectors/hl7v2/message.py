"""HL7 v2 message text: separators, escaping, times, the MSH header, and the parse of a message.

Pure functions. A message that cannot be read raises an `Hl7Error` naming the segment and field at
fault, in the words of the ERR segment the MLLP listener answers with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import get_message_info, parse_segment

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
# Only these are parsed field by field; other segments (RGS, MSA, PRD, OBX, Z-segments, segments
# newer than v2.5) are checked for a well-formed name and otherwise passed by.
READ_SEGMENTS = frozenset(
    [
        "MSH",
        "EVN",
        "SCH",
        "TQ1",
        "PID",
        "PV1",
        "PV2",
        "MRG",
        "AIS",
        "AIG",
        "AIL",
        "AIP",
        "RF1",
        "DG1",
        "NTE",
    ]
)
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
# Fractions of a second come after a point (HL7) or, from some senders, straight after the
# seconds (20110613122406637: a 17-digit timestamp in milliseconds).
_DTM = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(?:(\d{2})(?:\.?(\d{1,4}))?)?(?:([+-])(\d{2})(\d{2}))?$"
)
FIRST_YEAR, LAST_YEAR = 1900, 2999  # of a usable DTM
# HL7's explicit null: the sender says the value is now empty (not the text "").
EXPLICIT_NULL = '""'
# Batch envelope segments (file and batch header and trailer) around the messages of a file.
BATCH_SEGMENTS = frozenset(["FHS", "BHS", "BTS", "FTS"])


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


DEFAULT_SEPARATORS = Separators()


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: its name, which occurrence it is, and its fields' repetitions, still escaped."""

    name: str
    sequence: int
    fields: Mapping[int, tuple[str, ...]]
    separators: Separators

    def repetitions(self, position: int) -> tuple[str, ...]:
        """The raw repetitions of a field; () when the field is empty, null ("") or absent."""
        return tuple(r for r in self.fields.get(position, ()) if r and r != EXPLICIT_NULL)

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

    def time(self, position: int, component: int = 1, subcomponent: int = 1) -> datetime | None:
        """A DTM value as an aware datetime; None when absent; Hl7Error naming it when unusable."""
        value = self.get(position, component, subcomponent)
        if not value:
            return None
        try:
            return parse_dtm(value)
        except ValueError as exc:
            shown = component if component != 1 or subcomponent != 1 else None
            raise self.error(position, str(exc), component=shown) from None


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
class Header:
    """A message's MSH as sent (values still escaped), read once: what a reply echoes and logs name.

    The mapping's own checked values (upper-cased type and trigger, unescaped control id, the
    message time) come from the full parse, `parse_message`.
    """

    separators: Separators = DEFAULT_SEPARATORS
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    message_type: str = ""
    trigger: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = REFERENCE_VERSION
    accept_ack_type: str = ""  # MSH-15: AL, NE, ER, SU; with MSH-16, empty means original mode
    application_ack_type: str = ""  # MSH-16


def read_header(text: str) -> Header:
    """The MSH of a message as far as it can be read from its first line; never raises.

    Anything unreadable (no MSH, bad encoding characters) gives the default Header, so that
    even a reply to something that is not HL7 is HL7.
    """
    lines = split_segments(text)
    first = lines[0] if lines else ""
    if not first.startswith("MSH") or len(first) < 8:
        return Header()
    sep = first[3]
    encoding = first[4:8]
    if len(set(encoding + sep)) != 5:
        return Header()
    separators = Separators(sep, encoding[0], encoding[1], encoding[2], encoding[3])
    # MSH-1 is the separator itself, so MSH-n is fields[n - 1].
    fields = first.split(sep)

    def at(position: int) -> str:
        return fields[position - 1] if position - 1 < len(fields) else ""

    message_type = at(9).split(separators.component)
    return Header(
        separators,
        sending_application=at(3),
        sending_facility=at(4),
        receiving_application=at(5),
        receiving_facility=at(6),
        message_type=message_type[0],
        trigger=message_type[1] if len(message_type) > 1 else "",
        control_id=at(10),
        processing_id=at(11) or "P",
        version=at(12).split(separators.component)[0] or REFERENCE_VERSION,
        accept_ack_type=at(15).strip().upper(),
        application_ack_type=at(16).strip().upper(),
    )


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


def escape(
    value: str, separators: Separators = DEFAULT_SEPARATORS, *, keep_lines: bool = False
) -> str:
    r"""Escape text for an HL7 field.

    Line breaks become spaces (ERR-8 and MSA-3 are one line), or with `keep_lines` the
    formatted-text break \.br\ (the text the hub sends in OBX-5).
    """
    esc = separators.escape
    text = value.replace(esc, f"{esc}E{esc}")
    for char, code in (
        (separators.field, "F"),
        (separators.component, "S"),
        (separators.subcomponent, "T"),
        (separators.repetition, "R"),
    ):
        text = text.replace(char, f"{esc}{code}{esc}")
    if keep_lines:
        line_break = f"{esc}.br{esc}"
        return text.replace("\r\n", line_break).replace("\r", line_break).replace("\n", line_break)
    return " ".join(text.splitlines())


def part(raw: str, separators: Separators, component: int = 1, subcomponent: int = 1) -> str:
    """One component's subcomponent of a raw field repetition, unescaped and stripped.

    The explicit null `""` reads as "" (no value), never as two quote marks.
    """
    components = raw.split(separators.component)
    if component > len(components):
        return ""
    subcomponents = components[component - 1].split(separators.subcomponent)
    if subcomponent > len(subcomponents):
        return ""
    value = subcomponents[subcomponent - 1]
    if value.strip() == EXPLICIT_NULL:
        return ""
    return unescape(value, separators).strip()


def split_segments(text: str) -> list[str]:
    """Segments of one message, accepting \\r, \\n or \\r\\n between them and MLLP framing bytes."""
    cleaned = text.strip("\x0b\x1c\r\n\t ")
    return [line for line in re.split(r"\r\n|\r|\n", cleaned) if line.strip()]


def split_messages(text: str) -> list[str]:
    """The messages of a file, each from its MSH up to the next, segments joined by \\r.

    The batch envelope (FHS, BHS, BTS, FTS) is framing and is left out.
    """
    messages: list[list[str]] = []
    for line in split_segments(text.replace("\x0b", "\n").replace("\x1c", "\n")):
        if line[:3] in BATCH_SEGMENTS and not line[3:4].isalnum():
            continue
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


def hl7_timestamp(moment: datetime) -> str:
    """An HL7 v2 DTM in UTC with an explicit offset (YYYYMMDDHHMMSS+0000)."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


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
    sent_at = msh.time(7)
    if sent_at is None:
        raise msh.error(7, "field required: the message date/time", code=REQUIRED_FIELD_MISSING)
    return Hl7Message(message_type, trigger, control_id, sent_at, tuple(segments))
