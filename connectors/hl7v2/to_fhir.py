"""Mental Health Trust HL7 v2 messages (SIU scheduling, REF/RRI referrals, ADT in adt.py) as FHIR
R4 resources.

Pure functions: message text in, FHIR resources (plain dicts) out, or an `Hl7Error` naming the
segment and field at fault, which the MLLP listener turns into an ERR segment. Files of messages
become `Record`s for `concord publish`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.fhir_input import Record
from connectors.hl7v2 import adt
from connectors.hl7v2.message import (
    APPLICATION_INTERNAL_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
    Hl7Error,
    Hl7Message,
    Segment,
    parse_message,
    split_messages,
    unescape,
)
from connectors.hl7v2.person import FHIR_ID, fhir_id, fhir_instant, meta, person_resources
from connectors.publish import partner_kind
from schemas.fhir import Problem, problems_in
from services.domain.kinds import AgencyKind
from services.domain.referrals import check_referrer

_NOT_ID_CHARACTER = re.compile(r"[^A-Za-z0-9\-.]")
LONGEST_DURATION = timedelta(days=366)

APPOINTMENT_STATUS: Mapping[str, str] = {
    "S12": "booked",
    "S13": "booked",
    "S14": "booked",
    "S15": "cancelled",
    "S16": "cancelled",  # discontinued: the appointment will not take place
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
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("wk", "week", "weeks"), 7 * 86400),
}
# SCH-11.3 (TQ duration): a letter for the unit and a whole number, e.g. M60, H2, D1.
_TQ_DURATION = re.compile(r"^([SMHDWsmhdw])(\d{1,6})$")
_TQ_DURATION_UNITS: Mapping[str, str] = {"S": "s", "M": "min", "H": "h", "D": "d", "W": "wk"}
_SPELLED_DURATION = re.compile(r"^(\d{1,6}(?:\.\d{1,3})?)\s*([A-Za-z]*)$")
# (segment, start field, duration field, duration units field) of the scheduled resources.
RESOURCE_TIMES = (("AIS", 4, 7, 8), ("AIG", 8, 11, 12), ("AIL", 6, 9, 10), ("AIP", 6, 9, 10))


@dataclass(frozen=True, slots=True)
class MappedMessage:
    """The resources one message maps to, with the message it came from."""

    message: Hl7Message
    resources: tuple[dict[str, Any], ...]


# --- appointments -------------------------------------------------------------------------


Place = tuple[int, int | None]  # (field, component) a value was read from, for its error


def _duration(
    segment: Segment, raw: str, units: str, at: Place, units_at: Place
) -> timedelta | None:
    """An amount `raw` of `units` as a timedelta; None when absent; HL7 takes minutes by default.

    Errors name the field (and component) the amount or units were read from.
    """
    if not raw:
        return None
    position, component = at
    try:
        amount = float(raw)
    except ValueError:
        raise segment.error(position, f"not a number: {raw!r}", component=component) from None
    if not math.isfinite(amount):
        raise segment.error(position, f"not a number: {raw!r}", component=component)
    if amount < 0:
        raise segment.error(position, "a duration cannot be negative", component=component)
    unit = units.lower() or "min"
    if unit not in SECONDS_PER_UNIT:
        raise segment.error(
            units_at[0],
            f"unknown duration unit {unit!r} (use s, min, h, d or wk)",
            component=units_at[1],
            code=TABLE_VALUE_NOT_FOUND,
        )
    seconds = amount * SECONDS_PER_UNIT[unit]
    if seconds > LONGEST_DURATION.total_seconds():
        raise segment.error(
            position, "a duration over a year is not an appointment's", component=component
        )
    return timedelta(seconds=seconds)


def _field_duration(segment: Segment, position: int, units_position: int) -> timedelta | None:
    """A duration in one field with its units in another (SCH-9/10, AIS-7/8 and the like)."""
    raw, units = segment.get(position), segment.get(units_position)
    return _duration(segment, raw, units, (position, None), (units_position, None))


def _quantity_duration(segment: Segment, position: int) -> timedelta | None:
    """A duration as a CQ quantity: amount in component 1, units code in component 2 (TQ1-6, -13)."""
    raw, units = segment.get(position, 1), segment.get(position, 2)
    return _duration(segment, raw, units, (position, 1), (position, 2))


def _timing_duration(sch: Segment) -> timedelta | None:
    """SCH-11.3, the TQ duration: "M60" (S, M, H, D or W and a number), "60" or "2 hours"."""
    raw = sch.get(11, 3)
    if not raw:
        return None
    if (coded := _TQ_DURATION.match(raw)) is not None:
        letter, amount = coded.groups()
        unit = _TQ_DURATION_UNITS[letter.upper()]
    elif (spelled := _SPELLED_DURATION.match(raw)) is not None:
        amount, unit = spelled.groups()
    else:
        raise sch.error(11, f"not a duration: {raw!r} (e.g. M60 or 60)", component=3)
    return _duration(sch, amount, unit, (11, 3), (11, 3))


Period = tuple[datetime | None, datetime | None]


def _tq1_period(message: Hl7Message) -> Period:
    """TQ1-7 start; TQ1-8 end, else the start plus TQ1-6 service or TQ1-13 occurrence duration."""
    for tq1 in message.all("TQ1"):
        start = tq1.time(7)
        if start is None:
            continue
        end = tq1.time(8)
        if end is None:
            duration = _quantity_duration(tq1, 6) or _quantity_duration(tq1, 13)
            end = None if duration is None else start + duration
        return start, end
    return None, None


def _sch_period(sch: Segment) -> Period:
    """SCH-11 (withdrawn in v2.7, still sent): .4 start; .5 end, else the start plus .3 duration."""
    start = sch.time(11, 4)
    if start is None:
        return None, None
    end = sch.time(11, 5)
    if end is None and (duration := _timing_duration(sch)) is not None:
        end = start + duration
    return start, end


def _resource_period(message: Hl7Message, fallback: timedelta | None) -> Period:
    """The span of the scheduled resources: AIS-4, AIG-8, AIL-6, AIP-6 starts and their durations."""
    periods = []
    for name, start_at, duration_at, units_at in RESOURCE_TIMES:
        for segment in message.all(name):
            start = segment.time(start_at)
            if start is None:
                continue
            duration = _field_duration(segment, duration_at, units_at) or fallback
            periods.append((start, None if duration is None else start + duration))
    if not periods:
        return None, None
    ends = [e for _, e in periods if e is not None]
    return min(s for s, _ in periods), max(ends) if ends else None


def _appointment_period(message: Hl7Message, sch: Segment) -> Period:
    """(start, end) from the first source that has a start, in this order:

    1. TQ1 (v2.5 on; the only place from v2.7): TQ1-7 start, TQ1-8 end or TQ1-6/TQ1-13 duration;
    2. SCH-11 (v2.3-v2.6): .4 start, .5 end or .3 duration;
    3. the scheduled resources (AIS, AIG, AIL, AIP): earliest start to latest end.

    A start without an end takes the appointment duration SCH-9 (units SCH-10).
    """
    fallback = _field_duration(sch, 9, 10)  # read, and refused when unusable, even if unused
    start, end = _tq1_period(message)
    if start is None:
        start, end = _sch_period(sch)
    if start is None:
        return _resource_period(message, fallback)
    if end is None and fallback is not None:
        end = start + fallback
    return start, end


def _appointment_times(message: Hl7Message, sch: Segment, status: str) -> dict[str, str]:
    start, end = _appointment_period(message, sch)
    if start is None:
        if status == "cancelled":
            return {}  # a cancellation may name the appointment without its times
        raise sch.error(
            11,
            "no appointment start: give TQ1-7, SCH-11.4 or a resource start (AIS-4, AIG-8, AIL-6, AIP-6)",
            code=REQUIRED_FIELD_MISSING,
        )
    if end is None:
        raise sch.error(
            11,
            "no appointment end: give TQ1-8 or a TQ1-6 duration, SCH-11.5, a resource duration (AIS-7, AIG-11, AIL-9, AIP-9) or SCH-9",
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
        return fhir_id(sch, 2, "the filler appointment id")
    if sch.get(1):
        return fhir_id(sch, 1, "the placer appointment id")
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
    identifier, patients = person_resources(message, partner)
    locations = [loc for ail in message.all("AIL") if (loc := _location(ail)) is not None]
    services = [
        {"text": text} for ais in message.all("AIS") if (text := ais.get(3, 2) or ais.get(3, 1))
    ]
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "meta": meta(message),
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
    return fhir_id(rf1, 6, "the originating referral identifier")


def _text(segment: Segment, position: int) -> str:
    """A coded element's text (component 2), else its code."""
    return segment.get(position, 2) or segment.get(position, 1)


def service_request_from(message: Hl7Message, partner: str) -> list[dict[str, Any]]:
    """A REF^I12 referral request as a ServiceRequest, after a linking Patient when needed."""
    rf1 = message.require("RF1")
    referral_id = _referral_id(rf1)
    identifier, patients = person_resources(message, partner)
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": referral_id,
        "meta": meta(message),
        "status": "active",
        "intent": "order",
        "priority": "urgent" if rf1.get(2).upper() in URGENT_PRIORITIES else "routine",
    }
    if category := _text(rf1, 3):
        request["category"] = [{"text": category}]
    request["subject"] = {"identifier": identifier}
    authored = rf1.time(7) or message.sent_at
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
    if not FHIR_ID.match(task_id):
        raise rf1.error(6, "the originating referral identifier is too long to name its Task")
    identifier, patients = person_resources(message, partner)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "meta": meta(message),
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
REFERRAL_REQUEST = ("REF", "I12")
MAPPERS: Mapping[tuple[str, str], Mapper] = {
    **{("SIU", trigger): appointment_from for trigger in APPOINTMENT_STATUS},
    **adt.MAPPERS,
    REFERRAL_REQUEST: service_request_from,
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


def _check_referrer(message: Hl7Message, partner: str, kind: AgencyKind) -> None:
    """The hub's rule on who refers (services/domain/referrals.py), for a referral request."""
    if (message.message_type, message.trigger) != REFERRAL_REQUEST:
        return
    try:
        check_referrer(partner, kind)
    except ValueError as exc:
        reason = str(exc).removeprefix("ServiceRequest: ")
        raise Hl7Error("RF1", None, reason, code=APPLICATION_INTERNAL_ERROR) from None


def map_message(text: str, partner: str, *, kind: AgencyKind | None = None) -> MappedMessage:
    """Parse and map one message from `partner`; Hl7Error says what is wrong and where.

    With the partner's `kind` (the directory's), who may send the message is asked first: a
    trust's referral request is refused for that, whatever else is wrong with it, as the
    trust can do nothing about it but refer directly.
    """
    message = parse_message(text)
    mapper = _mapper(message)
    if kind is not None:
        _check_referrer(message, partner, kind)
    return MappedMessage(message, tuple(mapper(message, partner)))


# --- files --------------------------------------------------------------------------------


def _message_records(text: str, origin: str, partner: str) -> Iterator[Record]:
    try:
        mapped = map_message(text, partner, kind=partner_kind(partner))
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
