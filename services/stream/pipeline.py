"""What each stream step decides, as plain functions from a message (and state) to outputs.

Agents in services/stream/agents.py only decode, call these and emit; every rule lives
in services/domain/. Outputs name their topic, key and bytes, so a step is
tested without Kafka or faust.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from schemas import topics
from schemas.codec import CodecError, checked_envelope, dumps, peek, with_person
from schemas.fhir import validate
from schemas.identifiers import (
    HUB_PERSON,
    IdentifierError,
    PersonIdentifier,
    check_identifier,
    parse_token,
    without_placeholders,
)
from schemas.keys import PersonKey, person_id_for, person_id_for_token, token_home
from services.domain.alerts import alert_messages
from services.domain.appointments import slot_from_appointment
from services.domain.calendar import (
    Calendar,
    Slot,
    add_consent,
    add_partner,
    stale_change,
    with_relationships,
)
from services.domain.consent import ROLE_OF_KIND, decision_from_consent
from services.domain.consent import stale_reason as consent_stale_reason
from services.domain.disclosure import disclose
from services.domain.identity import (
    PersonIndex,
    RefusedLink,
    Resolution,
    conflict_record,
    flag_changes,
    holder,
    record_of,
    resolve,
    settle,
)
from services.domain.identity_messages import (
    OPERATOR_AUDIT_EVENT,
    conflict_notices,
    operator_audit,
)
from services.domain.reconciliation import Alert, merge, reconcile, told_on_relating
from services.domain.refusals import Refusal
from services.domain.versions import stale_reason
from services.stream import referral_flow
from services.stream.outbox import (
    Context,
    Disclosed,
    Out,
    disclosure_outs,
    hub_envelope,
    refusal_outs,
    relationship_audits,
)
from services.stream.state import decode_calendar, encode_calendar

# What a step may raise on a malformed message; the agents keep such a message on the
# dead-letter topic with the reason. (CodecError and IdentifierError are ValueErrors.)
MALFORMED = (KeyError, TypeError, ValueError)


def identifiers_of(envelope: Mapping[str, Any]) -> list[PersonIdentifier]:
    """The subject identifiers of an envelope dict, placeholders left out; IdentifierError for
    an invalid one, or when only placeholders name the person.

    The edge has checked them already; checking again is cheap and keeps a producer
    that bypasses the edge from planting a bad NHS number or a placeholder in the person index.
    """
    subject = envelope.get("subject") or {}
    checked = [check_identifier(i["system"], i["value"]) for i in subject.get("identifiers", ())]
    return list(without_placeholders(checked))


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


def index_event(
    envelope: Mapping[str, Any], raw: bytes, assigned: str | None, key: PersonKey
) -> list[Out]:
    """Route one inbound envelope: to the linker when it is about identity, else to its person.

    `assigned` is the person the token was linked to, if any; an identifier never
    linked is its own provisional person, so no lookup across partitions is needed.
    """
    identifiers = identifiers_of(envelope)
    person = None if to_linker(envelope, identifiers) else person_of(identifiers, assigned, key)
    return routed(envelope, raw, identifiers, person)


def to_linker(envelope: Mapping[str, Any], identifiers: list[PersonIdentifier]) -> bool:
    """True for an event the identity linker must see: one joining identifiers, or a Patient.

    A Patient naming one identifier joins nothing, but it may be a source's correction of a
    record whose link the linker refused.
    """
    if len(identifiers) > 1:
        return True
    resource = envelope.get("resource") or {}
    return (
        resource.get("resourceType") == "Patient"
        and len(identifiers) == 1
        and identifiers[0].system != HUB_PERSON
    )


def routed(
    envelope: Mapping[str, Any], raw: bytes, identifiers: list[PersonIdentifier], person: str | None
) -> list[Out]:
    """`index_event` for identifiers already checked and the person they resolved to."""
    if to_linker(envelope, identifiers):
        return [Out(topics.LINKS, identifiers[0].token().encode(), raw)]
    if person is None:
        return []  # hub-wide resources (e.g. MeasureReport) name nobody
    return [Out(topics.PERSON_EVENTS, person.encode(), with_person(dict(envelope), person))]


def person_of(
    identifiers: list[PersonIdentifier], assigned: str | None, key: PersonKey
) -> str | None:
    """The person an event naming these identifiers is about; None when they are several or none.

    `assigned` is the person the one identifier was linked to, if any.
    """
    if len(identifiers) != 1:
        return None
    if identifiers[0].system == HUB_PERSON:
        return identifiers[0].value  # a reply about a person the hub named, e.g. a referral Task
    return assigned or person_id_for(identifiers[0], key)


# --- identity linker: links (one partition) -> assignments, merges, conflicts, the event ---

RESOLVE_COMMAND = "resolve-conflict"
FLAGS_COMMAND = "identity-conflicts"


class LinkStep(NamedTuple):
    """What one message on the links topic did: the new index, its outputs, a log summary."""

    updated: PersonIndex
    outs: list[Out]
    summary: dict[str, Any]


def link_step(message: Mapping[str, Any], index: PersonIndex, ctx: Context) -> LinkStep:
    """One message for the linker: a partner's event, or an operator's decision on a conflict."""
    if message.get("command") == RESOLVE_COMMAND:
        return resolve_command(message, index, ctx)
    updated, decision, outs = link_event(checked_envelope(dict(message)), index, ctx)
    summary: dict[str, Any] = {"event_id": message["event_id"], "partner": message["source"]}
    if isinstance(decision, RefusedLink):
        summary.update(conflict_id=decision.conflict.conflict_id, raised=decision.raised)
    else:
        summary.update(person_id=decision.person_id, merges=len(decision.merges))
    return LinkStep(updated, outs, summary)


def link_event(
    envelope: Mapping[str, Any], index: PersonIndex, ctx: Context
) -> tuple[PersonIndex, Resolution | RefusedLink, list[Out]]:
    """Join the identifiers of one event, or refuse the link as an identity conflict.

    A joined event goes to its person, with who each token now belongs to; a refused one
    is applied nowhere, and its sources and the operator are told instead.
    """
    identifiers = identifiers_of(envelope)
    source, resource = envelope["source"], envelope["resource"]
    tokens = [i.token() for i in identifiers]
    updated, decision = resolve(
        index,
        identifiers,
        source=source,
        record=record_of(source, resource.get("resourceType"), resource.get("id"), tokens),
        at=_instant(envelope["recorded_at"]),
    )
    outs = conflict_outs(index, updated, tokens, envelope["event_id"], ctx)
    if isinstance(decision, RefusedLink):
        return updated, decision, outs
    survivor = decision.person_id
    outs = joined_outs(index, updated, decision) + outs
    outs.append(Out(topics.PERSON_EVENTS, survivor.encode(), with_person(dict(envelope), survivor)))
    return updated, decision, outs


def joined_outs(before: PersonIndex, after: PersonIndex, resolution: Resolution) -> list[Out]:
    """Who each token now belongs to, and the merges that move calendars to the survivor."""
    survivor = resolution.person_id
    # Each assignment goes to the partition where its identifier's inbound events arrive.
    outs = [
        Out(topics.ASSIGNMENTS, token.encode(), survivor.encode(), token_home(token, after.key))
        for token in sorted(after.members.get(survivor, frozenset()))
        if before.person_of.get(token) != survivor
    ]
    # A token seen before its first link has its own provisional person, which the
    # linker never recorded: merge it too, so its calendar joins the survivor's.
    absorbed = {m.absorbed for m in resolution.merges}
    absorbed |= {person_id_for_token(token, after.key) for token in resolution.new_tokens}
    absorbed.discard(survivor)
    return outs + [
        Out(topics.PERSON_EVENTS, person.encode(), merge_command(person, survivor))
        for person in sorted(absorbed)
    ]


def conflict_outs(
    before: PersonIndex, after: PersonIndex, tokens: list[str], cause: str, ctx: Context
) -> list[Out]:
    """For each conflict that changed: its record for the operator, and a notice to each source
    whose data disagree; then each person whose open conflicts changed is told so."""
    changed = [c for cid, c in sorted(after.conflicts.items()) if before.conflicts.get(cid) != c]
    outs = []
    for conflict in changed:
        record = dumps(conflict_record(conflict))
        outs.append(Out(topics.IDENTITY_CONFLICTS, conflict.conflict_id.encode(), record))
        for notice in conflict_notices(conflict, cause):
            role = ROLE_OF_KIND[ctx.directory.kind_of(notice.recipient)]
            shown = disclose(
                notice.resource,
                resource_type="DetectedIssue",
                role=role,
                own=False,
                agency_kind=None,
                consents=(),
                recipient=notice.recipient,
                at=ctx.now,
            )
            disclosed = Disclosed(
                topic=topics.ALERTS,
                event_id=notice.event_id,
                event_type=notice.event_type,
                recipient=notice.recipient,
                role=role,
                resource=shown.resource,
                what=f"DetectedIssue/{conflict.conflict_id}",
                basis=shown.basis,
            )
            person = holder(after, notice.token)
            outs += disclosure_outs(disclosed, person, ctx.now, uuid.UUID(cause))
    affected = set(tokens).union(*(c.tokens for c in changed))
    outs += [
        Out(topics.PERSON_EVENTS, person.encode(), flags_command(person, open_ids))
        for person, open_ids in flag_changes(before, after, sorted(affected)).items()
    ]
    return outs


def flags_command(person: str, open_ids: tuple[str, ...]) -> bytes:
    """Tell the worker holding a person's calendar which identity conflicts the person is under."""
    return dumps({"command": FLAGS_COMMAND, "person_id": person, "open": list(open_ids)})


def flags_entry(message: Mapping[str, Any]) -> bytes | None:
    """The identity-flags table value a flags command leaves: the open conflicts, or None."""
    open_ids = [str(conflict_id) for conflict_id in message["open"]]
    return dumps({"open": open_ids}) if open_ids else None


def resolve_command(message: Mapping[str, Any], index: PersonIndex, ctx: Context) -> LinkStep:
    """An operator's decision on a conflict: applied, told to its sources, audited."""
    decision = message["decision"]
    if decision not in ("keep-apart", "link"):
        raise ValueError(f"decision must be keep-apart or link, not {decision!r}")
    request = str(uuid.UUID(message["request_id"]))
    updated, settlement = settle(
        index,
        message["conflict_id"],
        decision,
        operator=str(message["operator"]),
        reason=str(message["reason"]),
        at=_instant(message["at"]),
    )
    summary = {"command": RESOLVE_COMMAND, "conflict_id": settlement.conflict.conflict_id}
    if not settlement.changed:
        return LinkStep(updated, [], {**summary, "status": "unchanged"})
    conflict = settlement.conflict
    outs = joined_outs(index, updated, settlement.resolution) if settlement.resolution else []
    outs += conflict_outs(index, updated, [], request, ctx)
    people = sorted({holder(updated, token) for token in conflict.tokens})
    for person in people:
        audit = operator_audit(conflict, person, request)
        record = hub_envelope(
            uuid.UUID(audit["id"]),
            OPERATOR_AUDIT_EVENT,
            person_id=person,
            resource=audit,
            now=ctx.now,
            correlation_id=uuid.UUID(request),
        )
        outs.append(Out(topics.AUDIT, person.encode(), record))
    return LinkStep(updated, outs, {**summary, "status": conflict.status})


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
    FLAGS_COMMAND: ("person_id",),
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
    if command == "transfer" and "calendar" not in value:
        raise CodecError("transfer command: calendar is missing")
    if command == FLAGS_COMMAND and not isinstance(value.get("open"), list):
        raise CodecError(f"{command} command: open is missing or not a list")
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
    outs += relationship_audits(calendar, updated, ctx.now)
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
    # Before reconciling: an explained absence goes only to partners related to the person.
    systems = tuple(i["system"] for i in (message.get("subject") or {}).get("identifiers") or ())
    updated, told = _relate(
        add_partner(calendar, source, kind),
        ctx,
        cause,
        source=source,
        kind=kind,
        systems=systems,
        event_id=cause,
    )
    resource_type = resource.get("resourceType")
    if resource_type in VALIDATED_AGAIN:
        validate(resource)
    if resource_type == "Consent":
        decision = decision_from_consent(resource, source=source, occurred_at=occurred_at)
        stale = consent_stale_reason(updated.consents, decision)
        if stale:
            return updated, told + _stale(message, stale, ctx)
        updated, more = _relate(add_consent(updated, decision), ctx, cause)
        return updated, told + more
    if resource_type == "ServiceRequest":
        updated, outs = referral_flow.on_service_request(updated, message, ctx, occurred_at)
        updated, more = _relate(updated, ctx, cause)
        return updated, told + outs + more
    if resource_type == "Task":
        updated, outs = referral_flow.on_task(updated, message, ctx)
        return updated, told + outs
    if resource_type != "Appointment":
        return updated, told
    slot = slot_from_appointment(
        resource, source=source, kind=kind, event_id=cause, occurred_at=occurred_at
    )
    updated, outs = _appointment(updated, slot, message, ctx)
    return updated, told + outs


def _appointment(
    calendar: Calendar, slot: Slot, message: Mapping[str, Any], ctx: Context
) -> tuple[Calendar, list[Out]]:
    """An appointment change: reconciled, linked to its referral; a stale version refused."""
    held = stale_change(calendar, slot)
    if held is not None:
        return calendar, _stale(message, stale_reason("Appointment", slot.version, held), ctx)
    cause = message["event_id"]
    updated, alerts = reconcile(calendar, slot, ctx.buffer)
    outs = alert_outs(alerts, updated, ctx, cause)
    updated, booked = referral_flow.on_booking(
        updated, slot.based_on, slot.appointment_id, ctx, cause
    )
    return updated, outs + booked


def _relate(
    calendar: Calendar, ctx: Context, cause: str | None, **fact: Any
) -> tuple[Calendar, list[Out]]:
    """The relationships the calendar's facts (and `fact`, an event) establish, and the open
    explained absences each newly related partner is told of."""
    related = with_relationships(calendar, ctx.directory, **fact)
    return related, alert_outs(told_on_relating(calendar, related, ctx.buffer), related, ctx, cause)


def _stale(message: Mapping[str, Any], reason: str, ctx: Context) -> list[Out]:
    """An older version than the one held: not applied, and its sender told why."""
    return refusal_outs(message, Refusal(reason, "conflict"), ctx.now, origin="reconciler")


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
    # The merged consents may end or begin consent relationships; a partner related on one side
    # only is told of the explained absences open on the other.
    merged = with_relationships(merged, ctx.directory)
    told = told_on_relating(mine, merged, ctx.buffer) + told_on_relating(theirs, merged, ctx.buffer)
    # A relationship either side held was audited when it began: only ones new to both are.
    held = replace(mine, relationships={**theirs.relationships, **mine.relationships})
    outs = alert_outs(alerts + told, merged, ctx, None) + relationship_audits(held, merged, ctx.now)
    return encode_calendar(merged), outs


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
