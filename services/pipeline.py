"""What each stream step decides, as plain functions from a message (and state) to outputs.

Agents in services/agents.py only decode, call these and emit; every rule lives
in services/domain/. Outputs name their topic, key and bytes, so a step is
tested without Kafka or faust.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from schemas import topics
from schemas.codec import CodecError, checked_envelope, dumps, encode, peek, with_person
from schemas.envelope import DeadLetter
from schemas.fhir import validate
from schemas.identifiers import (
    HUB_PERSON,
    IdentifierError,
    PersonIdentifier,
    check_identifier,
    parse_token,
)
from services import referral_flow
from services.domain.alerts import alert_messages
from services.domain.appointments import slot_from_appointment
from services.domain.calendar import Alert, Calendar, add_consent, add_partner, merge, reconcile
from services.domain.consent import decision_from_consent
from services.domain.identity import PersonIndex, Resolution, person_id_for, resolve
from services.outputs import Context, Disclosed, Out, disclosure_outs
from services.partitioning import token_home
from services.state import decode_calendar, encode_calendar

# What a step may raise on a malformed message; the agents keep such a message on the
# dead-letter topic with the reason. (CodecError and IdentifierError are ValueErrors.)
MALFORMED = (KeyError, TypeError, ValueError)


def identifiers_of(envelope: Mapping[str, Any]) -> list[PersonIdentifier]:
    """The subject identifiers of an envelope dict; IdentifierError for an invalid one.

    The edge has checked them already; checking again is cheap and keeps a producer
    that bypasses the edge from planting a bad NHS number in the person index.
    """
    subject = envelope.get("subject") or {}
    return [check_identifier(i["system"], i["value"]) for i in subject.get("identifiers", ())]


# --- person index: inbound (keyed by identifier token) -> person-events (keyed by person) ---


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


def index_event(envelope: Mapping[str, Any], raw: bytes, assigned: str | None) -> list[Out]:
    """Route one inbound envelope: to the linker when it joins identifiers, else to its person.

    `assigned` is the person the token was linked to, if any; an identifier never
    linked is its own provisional person, so no lookup across partitions is needed.
    """
    identifiers = identifiers_of(envelope)
    return routed(envelope, raw, identifiers, person_of(identifiers, assigned))


def routed(
    envelope: Mapping[str, Any], raw: bytes, identifiers: list[PersonIdentifier], person: str | None
) -> list[Out]:
    """`index_event` for identifiers already checked and the person they resolved to."""
    if len(identifiers) > 1:
        return [Out(topics.LINKS, identifiers[0].token().encode(), raw)]
    if person is None:
        return []  # hub-wide resources (e.g. MeasureReport) name nobody
    return [Out(topics.PERSON_EVENTS, person.encode(), with_person(dict(envelope), person))]


def person_of(identifiers: list[PersonIdentifier], assigned: str | None) -> str | None:
    """The person an event naming these identifiers is about; None when they are several or none.

    `assigned` is the person the one identifier was linked to, if any.
    """
    if len(identifiers) != 1:
        return None
    if identifiers[0].system == HUB_PERSON:
        return identifiers[0].value  # a reply about a person the hub named, e.g. a referral Task
    return assigned or person_id_for(identifiers[0])


# --- identity linker: links (one partition) -> assignments, merges, the event itself ---


def link_event(
    envelope: Mapping[str, Any], index: PersonIndex
) -> tuple[PersonIndex, Resolution, list[Out]]:
    """Join the identifiers of one linking event; emit who each token now belongs to."""
    identifiers = identifiers_of(envelope)
    updated, resolution = resolve(index, identifiers)
    survivor = resolution.person_id
    # Each assignment goes to the partition where its identifier's inbound events arrive.
    outs = [
        Out(topics.ASSIGNMENTS, token.encode(), survivor.encode(), token_home(token))
        for token in sorted(updated.members.get(survivor, frozenset()))
        if index.person_of.get(token) != survivor
    ]
    # A token seen before its first link has its own provisional person, which the
    # linker never recorded: merge it too, so its calendar joins the survivor's.
    absorbed = {m.absorbed for m in resolution.merges}
    absorbed |= {person_id_for(i) for i in identifiers if i.token() in resolution.new_tokens}
    absorbed.discard(survivor)
    outs += [
        Out(topics.PERSON_EVENTS, person.encode(), merge_command(person, survivor))
        for person in sorted(absorbed)
    ]
    outs.append(Out(topics.PERSON_EVENTS, survivor.encode(), with_person(dict(envelope), survivor)))
    return updated, resolution, outs


def merge_command(absorbed: str, survivor: str) -> bytes:
    """Tell the absorbed person's calendar to move to the survivor."""
    return dumps({"command": "merge", "absorbed": absorbed, "survivor": survivor})


# --- reconciler: person-events (keyed by person) -> calendars table, alerts ---

# The referral and consent rules read these resources as the edge validated them. They are
# few, so they are validated again here: a record from a producer that bypassed the edge is
# refused naming its problem instead of failing inside a rule. Appointments, the bulk of the
# traffic, are read defensively by slot_from_appointment instead.
VALIDATED_AGAIN = frozenset({"ServiceRequest", "Task", "Consent"})

# The fields of each hub command on person-events, each a string but a transfer's calendar.
_COMMAND_FIELDS = {
    "merge": ("absorbed", "survivor"),
    "transfer": ("absorbed", "survivor"),
    "deadlines": ("person_id", "now"),
}


def person_key(key: bytes | None) -> str:
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
    if command == "transfer" and "calendar" not in value:
        raise CodecError("transfer command: calendar is missing")
    return value


class PersonStep(NamedTuple):
    """What one person-keyed message did: the record's new bytes, messages, the next deadline."""

    stored: bytes | None  # None when the record is unchanged
    outs: list[Out]
    next_deadline: datetime | None = None  # earliest referral deadline, when stored changed
    # False when the person has no referrals, so there is no deadline to set or clear.
    has_referrals: bool = True


def person_event(stored: bytes | None, message: Mapping[str, Any], ctx: Context) -> PersonStep:
    """Apply one person-keyed message to that person's record (calendar, consents, referrals)."""
    command = message.get("command")
    if command == "merge":
        return PersonStep(*_hand_over(stored, message))
    if command == "transfer":
        return _done(*_take_over(stored, message, ctx))
    person_id = message.get("person_id") or message["subject"]["person_id"]
    calendar, merged_into = _load(stored, person_id)
    if merged_into is not None:
        return PersonStep(None, [_forward(message, merged_into)])
    if command == "deadlines":
        updated, outs = referral_flow.on_deadlines(calendar, _instant(message["now"]), ctx)
        return _done(None if updated is calendar else encode_calendar(updated), outs, updated)
    updated, outs = _apply(calendar, message, ctx)
    if updated is calendar:
        return PersonStep(None, outs)
    return _done(encode_calendar(updated), outs, updated)


def _done(stored: bytes | None, outs: list[Out], calendar: Calendar | None = None) -> PersonStep:
    deadline = referral_flow.next_deadline(calendar) if calendar is not None and stored else None
    return PersonStep(stored, outs, deadline, calendar is None or bool(calendar.referrals))


def _forward(message: Mapping[str, Any], survivor: str) -> Out:
    if "command" in message:
        return Out(
            topics.PERSON_EVENTS, survivor.encode(), dumps({**message, "person_id": survivor})
        )
    return Out(topics.PERSON_EVENTS, survivor.encode(), with_person(dict(message), survivor))


def _apply(
    calendar: Calendar, message: Mapping[str, Any], ctx: Context
) -> tuple[Calendar, list[Out]]:
    """One partner event on the person's record: what changes, and what to send."""
    source, resource, cause = message["source"], message["resource"], message["event_id"]
    kind = ctx.directory.kind_of(source)
    occurred_at = _instant(message["occurred_at"])
    updated = add_partner(calendar, source, kind)
    resource_type = resource.get("resourceType")
    if resource_type in VALIDATED_AGAIN:
        validate(resource)
    if resource_type == "Consent":
        decision = decision_from_consent(resource, source=source, occurred_at=occurred_at)
        return add_consent(updated, decision), []
    if resource_type == "ServiceRequest":
        return referral_flow.on_service_request(updated, message, ctx, occurred_at)
    if resource_type == "Task":
        updated, outs, refusal = referral_flow.on_task(updated, message, ctx)
        if refusal:
            outs.append(_refused(message, refusal, ctx))
        return updated, outs
    if resource_type != "Appointment":
        return updated, []
    slot = slot_from_appointment(
        resource, source=source, kind=kind, event_id=cause, occurred_at=occurred_at
    )
    updated, alerts = reconcile(updated, slot, ctx.buffer)
    outs = alert_outs(alerts, updated, ctx, cause)
    updated, booked = referral_flow.on_booking(
        updated, slot.based_on, slot.appointment_id, ctx, cause
    )
    return updated, outs + booked


def _refused(message: Mapping[str, Any], reason: str, ctx: Context) -> Out:
    """A refused update kept on the dead-letter topic, with the reason."""
    letter = DeadLetter(
        reason=reason,
        source=message["source"],
        origin="referral-lifecycle",
        received_at=ctx.now,
        raw=orjson.dumps(message).decode(),
        event_id=uuid.UUID(message["event_id"]),
    )
    return Out(topics.DEADLETTER, message["source"].encode(), encode(letter))


def _load(stored: bytes | None, person_id: str) -> tuple[Calendar, str | None]:
    if stored is None:
        return Calendar(person_id), None
    return decode_calendar(stored)


def _hand_over(stored: bytes | None, message: Mapping[str, Any]) -> tuple[bytes | None, list[Out]]:
    absorbed, survivor = message["absorbed"], message["survivor"]
    calendar, merged_into = _load(stored, absorbed)
    if merged_into is not None:
        # Already handed over (a repeated command, or a later merge): pass the survivor along.
        if merged_into == survivor:
            return None, []
        return None, [
            Out(topics.PERSON_EVENTS, merged_into.encode(), merge_command(merged_into, survivor))
        ]
    transfer = orjson.dumps(
        {
            "command": "transfer",
            "absorbed": absorbed,
            "survivor": survivor,
            "calendar": orjson.Fragment(encode_calendar(calendar)),
        }
    )
    tombstone = encode_calendar(Calendar(absorbed), merged_into=survivor)
    return tombstone, [Out(topics.PERSON_EVENTS, survivor.encode(), transfer)]


def _take_over(
    stored: bytes | None, message: Mapping[str, Any], ctx: Context
) -> tuple[bytes | None, list[Out]]:
    survivor = message["survivor"]
    mine, merged_into = _load(stored, survivor)
    if merged_into is not None:
        return None, [
            Out(
                topics.PERSON_EVENTS,
                merged_into.encode(),
                orjson.dumps({**message, "survivor": merged_into}),
            )
        ]
    theirs, _ = decode_calendar(orjson.dumps(message["calendar"]))
    merged, alerts = merge(mine, theirs, survivor, ctx.buffer)
    return encode_calendar(merged), alert_outs(alerts, merged, ctx, None)


def alert_outs(
    alerts: list[Alert], calendar: Calendar, ctx: Context, cause: str | None
) -> list[Out]:
    """Alert envelopes as the policy lets each recipient see them, each with its audit record."""
    outs = []
    for alert in alerts:
        for message in alert_messages(alert, ctx.directory, ctx.now, calendar.consents):
            # One event per recipient; the DetectedIssue id names the alert they share.
            disclosed = Disclosed(
                topic=topics.ALERTS,
                event_id=uuid.uuid5(uuid.UUID(message.alert_id), message.recipient),
                event_type=message.event_type,
                recipient=message.recipient,
                role=message.role,
                resource=message.resource,
                what=f"DetectedIssue/{message.alert_id}",
                basis=message.basis,
            )
            outs += disclosure_outs(
                disclosed, alert.person_id, ctx.now, uuid.UUID(cause) if cause else None
            )
    return outs


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
