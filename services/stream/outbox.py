"""The one place where decisions become messages (`render`): hub envelopes for partners, every
disclosure with its AuditEvent, refusals and data-quality messages that reach their sender,
referral inbox entries, and the hub's own commands between one record and another.

A decision says what was decided (services/domain/decisions.py); how it is encoded, on which
topic and under which key, is decided only here, so every disclosure is built and audited in one
way and every refusal after acceptance is kept and told in one way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from schemas import topics
from schemas.codec import (
    dumps,
    encode,
    encode_assignment,
    encode_hub_envelope,
    encode_internal,
    letter_text,
    with_person,
)
from schemas.envelope import DeadLetter, Envelope
from schemas.identifiers import PersonIdentifier
from schemas.internal import (
    DeadlinesCommand,
    IdentityConflictRecord,
    IdentityFlagsCommand,
    MeasureFact,
    MergeCommand,
    ReferralInboxEntry,
    TransferCommand,
)
from schemas.topics import Topic
from schemas.vocabulary import HUB_SOURCE
from services.domain.audit import AuditSubtype, audit_event
from services.domain.consent import ROLE_OF_KIND, Role
from services.domain.data_quality import data_quality_outcome, flag_id, flagged_event_type
from services.domain.decisions import (
    Answered,
    Assigned,
    CheckDeadlines,
    ConflictChanged,
    ConflictSettled,
    DataQualityFlagged,
    Decision,
    Disclose,
    Forward,
    IdentityFlagsChanged,
    InboxEntryChanged,
    Merge,
    RelationshipBegun,
    Transfer,
    UpdateRefused,
)
from services.domain.identity import conflict_record, to_linker
from services.domain.identity_messages import OPERATOR_AUDIT_EVENT, operator_audit
from services.domain.instants import fhir_instant
from services.domain.measures import Counted
from services.domain.referrals import Referral
from services.domain.refusals import (
    Refusal,
    Sender,
    refusal_id,
    refusal_outcome,
    refused_event_type,
    sender_of,
)
from services.domain.relationships import audit_terms
from services.stream.state import encode_calendar

AUDIT_EVENT_TYPES = {
    "disclosure": "audit.disclosure.recorded",
    "relationship": "audit.relationship.recorded",
}
# Fixed, so a relationship recorded again after a restart gets the same audit id.
RELATIONSHIP_NAMESPACE = uuid.UUID("5f0c8a6e-2b1d-5c4e-9a7f-6d3e1b2c4a58")
# The hub's commands on the person-events topic, by name.
MERGE, TRANSFER, DEADLINES, FLAGS = "merge", "transfer", "deadlines", "identity-conflicts"


@dataclass(frozen=True, slots=True)
class Out:
    """One message to emit."""

    topic: Topic
    key: bytes
    value: bytes
    partition: int | None = None  # None: the default partitioner's, by key


def render(decisions: Iterable[Decision], now: datetime) -> list[Out]:
    """The messages that carry out `decisions`, in order, as sent at `now`."""
    outs: list[Out] = []
    for decision in decisions:
        outs += _RENDERERS[type(decision)](decision, now)
    return outs


# --- envelopes the hub sends about a person, and their audit records ---------------------------


def _disclosure(d: Disclose, now: datetime) -> list[Out]:
    """The resource to the partner, keyed by the partner, and its AuditEvent, keyed by the person.

    An alert (a DetectedIssue) goes on the alerts topic; a referral or its Task on the outbound one.
    """
    topic = topics.ALERTS if d.resource.get("resourceType") == "DetectedIssue" else topics.OUTBOUND
    sent = encode_hub_envelope(
        d.event_id,
        d.event_type,
        person_id=d.person_id,
        resource=d.resource,
        now=now,
        correlation_id=d.cause or d.event_id,
    )
    return [Out(topic, d.recipient.encode(), sent), _audit(d.event_id, **_terms(d), now=now)]


def _answered(d: Answered, now: datetime) -> list[Out]:
    """The AuditEvent of a disclosure made in an answer: the answer itself is not a message."""
    return [_audit(d.disclosure_id, **_terms(d), now=now, user=d.user)]


def _terms(d: Disclose | Answered) -> dict[str, Any]:
    """What a disclosure's audit record names: about whom, to whom, in which role, what, why."""
    return {
        "person_id": d.person_id,
        "recipient": d.recipient,
        "role": d.role,
        "what": d.what,
        "basis": d.basis,
    }


def _relationship_begun(d: RelationshipBegun, now: datetime) -> list[Out]:
    """The AuditEvent of a new relationship: who, whom, on what basis."""
    what, basis = audit_terms(d.relationship)
    audit_id = uuid.uuid5(RELATIONSHIP_NAMESPACE, f"{d.person_id}/{d.partner}/{what}")
    role = ROLE_OF_KIND[d.relationship.kind]
    return [
        _audit(
            audit_id,
            person_id=d.person_id,
            recipient=d.partner,
            role=role,
            what=what,
            basis=basis,
            now=now,
            subtype="relationship",
        )
    ]


def _audit(
    disclosure_id: uuid.UUID,
    *,
    person_id: str,
    recipient: str,
    role: Role,
    what: str,
    basis: str,
    now: datetime,
    subtype: AuditSubtype = "disclosure",
    user: str | None = None,
) -> Out:
    """The AuditEvent of one disclosure (or new relationship), on the audit topic, keyed by the
    person, correlated to the disclosure."""
    audit = audit_event(
        disclosure_id=str(disclosure_id),
        person_id=person_id,
        recipient=recipient,
        role=role,
        what=what,
        basis=basis,
        at=now,
        subtype=subtype,
        user=user,
    )
    record = encode_hub_envelope(
        uuid.UUID(audit["id"]),
        AUDIT_EVENT_TYPES[subtype],
        person_id=person_id,
        resource=audit,
        now=now,
        correlation_id=disclosure_id,
    )
    return Out(topics.AUDIT, person_id.encode(), record)


def _conflict_settled(d: ConflictSettled, now: datetime) -> list[Out]:
    """The AuditEvent of an operator's decision on a conflict, for one person it concerns."""
    audit = operator_audit(d.conflict, d.person_id, d.request)
    record = encode_hub_envelope(
        uuid.UUID(audit["id"]),
        OPERATOR_AUDIT_EVENT,
        person_id=d.person_id,
        resource=audit,
        now=now,
        correlation_id=uuid.UUID(d.request),
    )
    return [Out(topics.AUDIT, d.person_id.encode(), record)]


# --- refusals ----------------------------------------------------------------------------------


def dead_letter(
    message: Mapping[str, Any], reason: str, now: datetime, *, origin: str, raw: bytes | None = None
) -> Out:
    """An input accepted and not applied, kept on the dead-letter topic with the reason."""
    sender = sender_of(message)
    source = message.get("source")
    letter = DeadLetter(
        reason=reason,
        source=source if isinstance(source, str) and source else "unknown",
        origin=origin,
        received_at=now,
        raw=letter_text(raw if raw is not None else orjson.dumps(message)),
        event_id=uuid.UUID(sender.event_id) if sender else None,
    )
    return Out(topics.DEADLETTER, letter.source.encode(), encode(letter))


def refusal_outs(
    message: Mapping[str, Any],
    refusal: Refusal,
    now: datetime,
    *,
    origin: str,
    raw: bytes | None = None,
) -> list[Out]:
    """An input refused after acceptance: kept on the dead-letter topic with the reason, and, when
    its sender can be told, a `<domain>.<entity>.refused` message to them on the outbound topic.

    `message` is what could be read of the input (it may be malformed); `raw` its bytes when
    they are all there is. The refusal names no person, so it is not a disclosure to audit.
    """
    sender = sender_of(message)
    outs = [dead_letter(message, refusal.reason, now, origin=origin, raw=raw)]
    if sender is None:
        return outs
    outs.append(
        _to_sender(
            sender,
            refusal_id(sender),
            refused_event_type(sender.event_type),
            refusal_outcome(sender, refusal),
            now,
        )
    )
    return outs


def _to_sender(
    sender: Sender, event_id: uuid.UUID, event_type: str, outcome: dict[str, Any], now: datetime
) -> Out:
    """An answer about the sender's own input (a refusal, a flag), on the outbound topic keyed by
    the sender; correlated to its message, else to the event it answers."""
    answered = uuid.UUID(sender.correlation_id or sender.event_id)
    told = Envelope(
        event_id=event_id,
        event_type=event_type,
        source=HUB_SOURCE,
        subject=None,
        occurred_at=now,
        recorded_at=now,
        correlation_id=answered,
        resource=outcome,
    )
    return Out(topics.OUTBOUND, sender.partner.encode(), encode(told))


def _update_refused(d: UpdateRefused, now: datetime) -> list[Out]:
    return refusal_outs(d.message, d.refusal, now, origin=d.origin)


# --- data quality ------------------------------------------------------------------------------

DATA_QUALITY_ORIGIN = "data-quality"  # what the dead letter of an update not applied names


def _data_quality_flagged(d: DataQualityFlagged, now: datetime) -> list[Out]:
    """A contradiction told to the sender: a `<domain>.<entity>.flagged` OperationOutcome on the
    outbound topic, keyed by the sender, as a refusal is. An update not applied is also kept on
    the dead-letter topic, with the reasons, as a refused one is: nothing accepted is lost.

    It names no person (the sender's own resources only), so it is not a disclosure to audit.
    """
    sender = sender_of(d.message)
    outs: list[Out] = []
    if not d.applied:
        reason = "; ".join(issue.detail for issue in d.issues)
        outs.append(dead_letter(d.message, reason, now, origin=DATA_QUALITY_ORIGIN))
    if sender is None:
        return outs
    outcome = data_quality_outcome(sender, d.issues)
    return [
        *outs,
        _to_sender(sender, flag_id(sender), flagged_event_type(sender.event_type), outcome, now),
    ]


# --- referral inboxes --------------------------------------------------------------------------


def inbox_entry(person_id: str, referral: Referral) -> bytes:
    """A referral's inbox entry: who sent it to whom, and where it stands."""
    entry = ReferralInboxEntry(
        referral_id=referral.referral_id,
        id=referral.fhir_id,
        person_id=person_id,
        referrer=referral.referrer,
        recipient=referral.recipient,
        status=referral.status,
        category=referral.category,
        urgency=referral.urgency,
        requested=fhir_instant(referral.requested),
        deadline=_instant_or_none(referral.deadline),
        escalated=referral.escalated,
        first_appointment=referral.first_appointment,
        reason=referral.reason,
        updated=_instant_or_none(referral.updated),
    )
    return encode_internal(entry)


def _instant_or_none(value: datetime | None) -> str | None:
    return fhir_instant(value) if value else None


def _inbox_entry_changed(d: InboxEntryChanged, now: datetime) -> list[Out]:
    key = d.referral.referral_id.encode()
    return [Out(topics.REFERRALS, key, inbox_entry(d.person_id, d.referral))]


# --- the hub's commands between records, and where events go -----------------------------------


def merge_command(absorbed: str, survivor: str) -> bytes:
    """Tell the absorbed person's record to move to the survivor."""
    return encode_internal(MergeCommand(absorbed=absorbed, survivor=survivor))


def transfer_command(absorbed: str, survivor: str, calendar: bytes) -> bytes:
    """The absorbed person's record (as the calendars table stores it), for the survivor."""
    return encode_internal(TransferCommand(absorbed=absorbed, survivor=survivor, calendar=calendar))


def deadlines_command(person_id: str, now: datetime) -> bytes:
    """Ask the person's record to escalate its referrals overdue at `now`."""
    return encode_internal(DeadlinesCommand(person_id=person_id, now=now))


def flags_command(person_id: str, open_ids: Sequence[str]) -> bytes:
    """Tell the worker holding a person's record which identity conflicts the person is under."""
    return encode_internal(IdentityFlagsCommand(person_id=person_id, open=tuple(open_ids)))


def flags_entry(command: IdentityFlagsCommand) -> bytes | None:
    """The identity-flags table value a flags command leaves: the open conflicts, or None."""
    return dumps({"open": list(command.open)}) if command.open else None


def _person_event(person_id: str, value: bytes) -> list[Out]:
    return [Out(topics.PERSON_EVENTS, person_id.encode(), value)]


def _forward(d: Forward, now: datetime) -> list[Out]:
    return _person_event(d.person_id, with_person(dict(d.envelope), d.person_id))


def _merge(d: Merge, now: datetime) -> list[Out]:
    return _person_event(d.absorbed, merge_command(d.absorbed, d.survivor))


def _transfer(d: Transfer, now: datetime) -> list[Out]:
    calendar = encode_calendar(d.calendar)
    return _person_event(d.survivor, transfer_command(d.absorbed, d.survivor, calendar))


def _check_deadlines(d: CheckDeadlines, now: datetime) -> list[Out]:
    return _person_event(d.person_id, deadlines_command(d.person_id, d.now))


def _identity_flags_changed(d: IdentityFlagsChanged, now: datetime) -> list[Out]:
    return _person_event(d.person_id, flags_command(d.person_id, d.open_ids))


def _assigned(d: Assigned, now: datetime) -> list[Out]:
    # Each assignment goes to the partition where its identifier's inbound events arrive.
    key, value = encode_assignment(d.token, d.person_id)
    return [Out(topics.ASSIGNMENTS, key, value, d.partition)]


def _conflict_changed(d: ConflictChanged, now: datetime) -> list[Out]:
    record = encode_internal(IdentityConflictRecord.model_validate(conflict_record(d.conflict)))
    return [Out(topics.IDENTITY_CONFLICTS, d.conflict.conflict_id.encode(), record)]


def routed(
    envelope: Mapping[str, Any],
    raw: bytes,
    identifiers: Sequence[PersonIdentifier],
    person: str | None,
) -> list[Out]:
    """Where the person index sends an inbound envelope: to the linker when it is about identity
    (as it arrived), else to its person's record (`person`, None for a hub-wide resource)."""
    if to_linker(envelope, identifiers):
        return [Out(topics.LINKS, identifiers[0].token().encode(), raw)]
    if person is None:
        return []  # hub-wide resources (e.g. MeasureReport) name nobody
    return [Out(topics.PERSON_EVENTS, person.encode(), with_person(dict(envelope), person))]


_RENDERERS: Mapping[type, Callable[[Any, datetime], list[Out]]] = {
    Disclose: _disclosure,
    Answered: _answered,
    RelationshipBegun: _relationship_begun,
    UpdateRefused: _update_refused,
    DataQualityFlagged: _data_quality_flagged,
    InboxEntryChanged: _inbox_entry_changed,
    Forward: _forward,
    Merge: _merge,
    Transfer: _transfer,
    CheckDeadlines: _check_deadlines,
    IdentityFlagsChanged: _identity_flags_changed,
    Assigned: _assigned,
    ConflictChanged: _conflict_changed,
    ConflictSettled: _conflict_settled,
}


# --- the commissioners' figures ---------------------------------------------------------------

# Fixed, so a report published again for the same figure, month and area has the same event id.
MEASURE_NAMESPACE = uuid.UUID("9a4e6b2c-1f3d-5a8e-b7c6-0d2e4f6a8b13")


def fact_outs(facts: Iterable[Counted]) -> list[Out]:
    """Each countable fact on the measure-events topic, keyed by its month and area."""
    return [
        Out(
            topics.MEASURE_EVENTS,
            f"{fact.month}|{fact.area}".encode(),
            encode_internal(
                MeasureFact(
                    counted_id=fact.counted_id,
                    figure=fact.figure,
                    month=fact.month,
                    area=fact.area,
                    category=fact.category,
                    urgency=fact.urgency,
                    reason=fact.reason,
                    days=fact.days,
                )
            ),
        )
        for fact in facts
    ]


def report_outs(reports: Iterable[Mapping[str, Any]], now: datetime) -> list[Out]:
    """Each published MeasureReport, in its envelope, on the measures topic keyed by report id."""
    outs = []
    for report in reports:
        event_id = uuid.uuid5(MEASURE_NAMESPACE, f"{report['id']}|{report['date']}")
        envelope = Envelope(
            event_id=event_id,
            event_type="stats.measure.reported",
            source=HUB_SOURCE,
            subject=None,
            occurred_at=now,
            recorded_at=now,
            correlation_id=event_id,
            resource=dict(report),
        )
        outs.append(Out(topics.MEASURES, str(report["id"]).encode(), encode(envelope)))
    return outs
