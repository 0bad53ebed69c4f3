"""What each stream step decides, as plain functions from a message (and state) to outputs.

Agents in services/agents.py only decode, call these and emit; every rule lives
in services/domain/. Outputs name their topic, key and bytes, so a step is
tested without Kafka or faust.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from schemas import topics
from schemas.codec import dumps, with_person
from schemas.envelope import Envelope, Subject
from schemas.identifiers import PersonIdentifier, check_identifier
from schemas.topics import Topic
from services.domain.alerts import alert_messages
from services.domain.appointments import slot_from_appointment
from services.domain.audit import audit_event
from services.domain.calendar import Alert, Calendar, add_consent, add_partner, merge, reconcile
from services.domain.consent import decision_from_consent
from services.domain.identity import PersonIndex, Resolution, person_id_for, resolve
from services.domain.partners import PartnerDirectory
from services.state import decode_calendar, encode_calendar

HUB_SOURCE = "concord-hub"
AUDIT_EVENT_TYPE = "audit.disclosure.recorded"


@dataclass(frozen=True, slots=True)
class Out:
    """One message to emit."""

    topic: Topic
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Context:
    """What the reconciler needs besides the message: partners, the buffer, the clock."""

    directory: PartnerDirectory
    buffer: timedelta
    now: datetime


def identifiers_of(envelope: Mapping[str, Any]) -> list[PersonIdentifier]:
    """The subject identifiers of an envelope dict; IdentifierError for an invalid one.

    The edge has checked them already; checking again is cheap and keeps a producer
    that bypasses the edge from planting a bad NHS number in the person index.
    """
    subject = envelope.get("subject") or {}
    return [check_identifier(i["system"], i["value"]) for i in subject.get("identifiers", ())]


# --- person index: inbound (keyed by identifier token) -> person-events (keyed by person) ---


def index_event(envelope: Mapping[str, Any], raw: bytes, assigned: str | None) -> list[Out]:
    """Route one inbound envelope: to the linker when it joins identifiers, else to its person.

    `assigned` is the person the token was linked to, if any; an identifier never
    linked is its own provisional person, so no lookup across partitions is needed.
    """
    identifiers = identifiers_of(envelope)
    if not identifiers:
        return []  # hub-wide resources (e.g. MeasureReport) name nobody
    if len(identifiers) > 1:
        return [Out(topics.LINKS, identifiers[0].token().encode(), raw)]
    person = assigned or person_id_for(identifiers[0])
    return [Out(topics.PERSON_EVENTS, person.encode(), with_person(dict(envelope), person))]


def token_of(envelope: Mapping[str, Any]) -> str | None:
    """The single identifier token an envelope is keyed by, or None when it carries several."""
    identifiers = identifiers_of(envelope)
    return identifiers[0].token() if len(identifiers) == 1 else None


# --- identity linker: links (one partition) -> assignments, merges, the event itself ---


def link_event(
    envelope: Mapping[str, Any], index: PersonIndex
) -> tuple[PersonIndex, Resolution, list[Out]]:
    """Join the identifiers of one linking event; emit who each token now belongs to."""
    identifiers = identifiers_of(envelope)
    updated, resolution = resolve(index, identifiers)
    survivor = resolution.person_id
    outs = [
        Out(topics.ASSIGNMENTS, token.encode(), survivor.encode())
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


def person_event(
    stored: bytes | None, message: Mapping[str, Any], ctx: Context
) -> tuple[bytes | None, list[Out]]:
    """Apply one person-keyed message to that person's stored calendar.

    Returns the calendar's new bytes (None when unchanged) and the messages to emit.
    """
    command = message.get("command")
    if command == "merge":
        return _hand_over(stored, message)
    if command == "transfer":
        return _take_over(stored, message, ctx)
    person_id = message["subject"]["person_id"]
    calendar, merged_into = _load(stored, person_id)
    if merged_into is not None:
        return None, [
            Out(topics.PERSON_EVENTS, merged_into.encode(), with_person(dict(message), merged_into))
        ]
    source = message["source"]
    kind = ctx.directory.kind_of(source)
    updated = add_partner(calendar, source, kind)
    alerts: list[Alert] = []
    resource = message["resource"]
    if resource.get("resourceType") == "Consent":
        decision = decision_from_consent(
            resource, source=source, occurred_at=_instant(message["occurred_at"])
        )
        updated = add_consent(updated, decision)
    elif resource.get("resourceType") == "Appointment":
        slot = slot_from_appointment(
            resource,
            source=source,
            kind=kind,
            event_id=message["event_id"],
            occurred_at=_instant(message["occurred_at"]),
        )
        updated, alerts = reconcile(updated, slot, ctx.buffer)
    if updated is calendar:
        return None, []
    return encode_calendar(updated), alert_outs(alerts, updated, ctx, message["event_id"])


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
            event_id = uuid.uuid5(uuid.UUID(message.alert_id), message.recipient)
            correlation = uuid.UUID(cause) if cause else event_id
            sent = hub_envelope(
                event_id,
                message.event_type,
                person_id=alert.person_id,
                resource=message.resource,
                now=ctx.now,
                correlation_id=correlation,
            )
            outs.append(Out(topics.ALERTS, message.recipient.encode(), sent))
            audit = audit_event(
                disclosure_id=str(event_id),
                person_id=alert.person_id,
                recipient=message.recipient,
                role=message.role,
                what=f"DetectedIssue/{message.alert_id}",
                basis=message.basis,
                at=ctx.now,
            )
            audit_id = uuid.UUID(audit["id"])
            record = hub_envelope(
                audit_id,
                AUDIT_EVENT_TYPE,
                person_id=alert.person_id,
                resource=audit,
                now=ctx.now,
                correlation_id=event_id,
            )
            outs.append(Out(topics.AUDIT, alert.person_id.encode(), record))
    return outs


def hub_envelope(
    event_id: uuid.UUID,
    event_type: str,
    *,
    person_id: str,
    resource: dict[str, Any],
    now: datetime,
    correlation_id: uuid.UUID,
) -> bytes:
    """An envelope the hub itself sends about a person, encoded."""
    envelope = Envelope(
        event_id=event_id,
        event_type=event_type,
        source=HUB_SOURCE,
        subject=Subject(person_id=person_id),
        occurred_at=now,
        recorded_at=now,
        correlation_id=correlation_id,
        resource=resource,
    )
    return envelope.model_dump_json().encode()


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
