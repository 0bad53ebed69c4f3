"""The stream steps as plain functions: a record decoded, decided by services/domain/, rendered by
services/stream/outbox.py. Outputs name their topic, key and bytes, so a step is tested without
Kafka or faust; the agents (services/stream/agents.py) only read, call these, and emit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from schemas.codec import CodecError, checked_envelope, peek
from schemas.fhir import validate
from schemas.identifiers import (
    IdentifierError,
    PersonIdentifier,
    check_identifier,
    parse_token,
    without_placeholders,
)
from services.domain.calendar import Calendar
from services.domain.decisions import CheckDeadlines, Merge, PersonMessage, Rules, Transfer
from services.domain.identity import PersonIndex, RefusedLink
from services.domain.instants import read_instant
from services.domain.linking import link_event, settle_conflict
from services.domain.person import decide, person_named
from services.domain.referral_steps import next_deadline
from services.stream.outbox import DEADLINES, FLAGS, MERGE, TRANSFER, Out, render
from services.stream.state import calendar_of, decode_calendar, encode_calendar

# What a step may raise on a malformed message; the agents keep such a message on the
# dead-letter topic with the reason. (CodecError and IdentifierError are ValueErrors.)
MALFORMED = (KeyError, TypeError, ValueError)

RESOLVE_COMMAND = "resolve-conflict"


def identifiers_of(envelope: Mapping[str, Any]) -> list[PersonIdentifier]:
    """The subject identifiers of an envelope dict, placeholders left out; IdentifierError for
    an invalid one, or when only placeholders name the person.

    The edge has checked them already; checking again is cheap and keeps a producer
    that bypasses the edge from planting a bad NHS number or a placeholder in the person index.
    """
    subject = envelope.get("subject") or {}
    checked = [check_identifier(i["system"], i["value"]) for i in subject.get("identifiers", ())]
    return list(without_placeholders(checked))


def assignment_of(key: bytes | None, value: bytes | None) -> tuple[str, bytes | None]:
    """(token, person id as stored) of an assignments record, the person None when the token
    is forgotten; CodecError when the record is not one the linker would write."""
    try:
        token = parse_token((key or b"").decode())
        person = None if value is None else value.decode()
    except (UnicodeDecodeError, IdentifierError) as exc:
        raise CodecError(f"not an assignment: {type(exc).__name__}") from exc
    if person is not None and (not person.isprintable() or not person or " " in person):
        raise CodecError("not an assignment: the person id is not a printable word")
    return token.token(), value


# --- identity linker: links (one partition) -> assignments, merges, conflicts, the event ---


class LinkStep(NamedTuple):
    """What one message on the links topic did: the new index, its outputs, a log summary."""

    updated: PersonIndex
    outs: list[Out]
    summary: dict[str, Any]


def link_step(message: Mapping[str, Any], index: PersonIndex, rules: Rules) -> LinkStep:
    """One message for the linker: a partner's event, or an operator's decision on a conflict."""
    if message.get("command") == RESOLVE_COMMAND:
        return _resolve_command(message, index, rules)
    envelope = checked_envelope(dict(message))
    updated, resolution, decisions = link_event(index, envelope, identifiers_of(envelope), rules)
    summary: dict[str, Any] = {"event_id": message["event_id"], "partner": message["source"]}
    if isinstance(resolution, RefusedLink):
        summary.update(conflict_id=resolution.conflict.conflict_id, raised=resolution.raised)
    else:
        summary.update(person_id=resolution.person_id, merges=len(resolution.merges))
    return LinkStep(updated, render(decisions, rules.now), summary)


def _resolve_command(message: Mapping[str, Any], index: PersonIndex, rules: Rules) -> LinkStep:
    """An operator's decision on a conflict, as the operator's command (services/ops) sends it."""
    decision = message["decision"]
    if decision not in ("keep-apart", "link"):
        raise ValueError(f"decision must be keep-apart or link, not {decision!r}")
    request = str(uuid.UUID(message["request_id"]))
    updated, settlement, decisions = settle_conflict(
        index,
        message["conflict_id"],
        decision,
        operator=str(message["operator"]),
        reason=str(message["reason"]),
        at=read_instant(message["at"]),
        request=request,
        rules=rules,
    )
    summary = {"command": RESOLVE_COMMAND, "conflict_id": settlement.conflict.conflict_id}
    status = settlement.conflict.status if settlement.changed else "unchanged"
    return LinkStep(updated, render(decisions, rules.now), {**summary, "status": status})


# --- reconciler: person-events (keyed by person) -> calendars table, alerts ---

# The referral and consent rules read these resources as the edge validated them. They are
# few, so they are validated again here: a record from a producer that bypassed the edge is
# refused naming its problem instead of failing inside a rule. Appointments, the bulk of the
# traffic, are read defensively by the domain's slot_from_appointment instead.
VALIDATED_AGAIN = frozenset({"ServiceRequest", "Task", "Consent"})

# The fields of each hub command on person-events, each a string but a transfer's calendar.
_COMMAND_FIELDS = {
    MERGE: ("absorbed", "survivor"),
    TRANSFER: ("absorbed", "survivor"),
    DEADLINES: ("person_id", "now"),
    FLAGS: ("person_id",),
}


def person_id_of_key(key: bytes | None) -> str:
    """The hub person id a person-events record is keyed by; CodecError when it has none."""
    try:
        person = (key or b"").decode()
    except UnicodeDecodeError as exc:
        raise CodecError("person key is not UTF-8 text") from exc
    if not person:
        raise CodecError("a person-events record needs the person id as its key")
    return person


def peek_person_message(data: bytes) -> dict[str, Any]:
    """A person-events record: a hub command with its fields, or an envelope resolved to a
    person, as `person_event` reads it; CodecError naming what is missing."""
    value = peek(data)
    command = value.get("command")
    if command is None:
        checked_envelope(value)
        subject = value.get("subject") or {}
        if not isinstance(value.get("person_id") or subject.get("person_id"), str):
            raise CodecError("not resolved to a person: subject.person_id is missing")
        return value
    if not isinstance(command, str) or command not in _COMMAND_FIELDS:
        raise CodecError("not a hub command: unknown command")
    for name in _COMMAND_FIELDS[command]:
        if not isinstance(value.get(name), str):
            raise CodecError(f"{command} command: {name} is missing or not a str")
    if command == TRANSFER and "calendar" not in value:
        raise CodecError("transfer command: calendar is missing")
    if command == FLAGS and not isinstance(value.get("open"), list):
        raise CodecError(f"{command} command: open is missing or not a list")
    return value


def person_message(message: Mapping[str, Any]) -> PersonMessage:
    """What a person's record decides on: a hub command as the domain's value, or a partner's
    event whose referral or consent resource is valid FHIR (schemas.fhir.validate)."""
    command = message.get("command")
    if command == MERGE:
        return Merge(message["absorbed"], message["survivor"])
    if command == TRANSFER:
        calendar = calendar_of(message["calendar"])
        return Transfer(message["absorbed"], message["survivor"], calendar)
    if command == DEADLINES:
        return CheckDeadlines(message["person_id"], read_instant(message["now"]))
    if command is not None:
        raise ValueError(f"a {command} command is not for the person's record")
    if message["resource"].get("resourceType") in VALIDATED_AGAIN:
        validate(message["resource"])
    return message


class PersonStep(NamedTuple):
    """What one person-keyed message did: the record's new bytes, messages, the next deadline."""

    stored: bytes | None  # None when the record is unchanged
    outs: list[Out]
    next_deadline: datetime | None = None  # earliest referral deadline, when stored changed
    # False when the person has no referrals, so there is no deadline to set or clear.
    has_referrals: bool = True


def person_event(stored: bytes | None, message: Mapping[str, Any], rules: Rules) -> PersonStep:
    """Apply one person-keyed message to that person's record (calendar, consents, referrals)."""
    decoded = person_message(message)
    person = person_named(decoded)
    record = decode_calendar(stored) if stored is not None else Calendar(person)
    updated, decisions = decide(record, decoded, rules)
    outs = render(decisions, rules.now)
    if updated is record:
        return PersonStep(None, outs)
    if isinstance(decoded, Merge | Transfer):
        # A hand-over clears the escalation entry; the survivor's is set by its next change.
        return PersonStep(encode_calendar(updated), outs)
    return PersonStep(
        encode_calendar(updated), outs, next_deadline(updated), bool(updated.referrals)
    )
