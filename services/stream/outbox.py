"""What stream steps emit: messages for a topic, disclosures that carry their audit record, and
refusals that reach their sender.

Shared by the reconciler and referral steps so that every disclosure to a partner is
built, and audited, in one way, and every refusal after acceptance is kept and told in one way.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from schemas import topics
from schemas.codec import encode
from schemas.envelope import DeadLetter, Envelope, Subject
from schemas.keys import PersonKey
from schemas.topics import Topic
from schemas.vocabulary import HUB_SOURCE
from services.domain.audit import AuditSubtype, audit_event
from services.domain.calendar import Calendar
from services.domain.consent import ROLE_OF_KIND, Role
from services.domain.partners import PartnerDirectory
from services.domain.referrals import DEFAULT_SLA_WORKING_DAYS, ServiceDirectory
from services.domain.refusals import (
    Refusal,
    refusal_id,
    refusal_outcome,
    refused_event_type,
    sender_of,
)
from services.domain.relationships import audit_terms, new_relationships

AUDIT_EVENT_TYPES = {
    "disclosure": "audit.disclosure.recorded",
    "relationship": "audit.relationship.recorded",
}


@dataclass(frozen=True, slots=True)
class Out:
    """One message to emit."""

    topic: Topic
    key: bytes
    value: bytes
    partition: int | None = None  # None: the default partitioner's, by key


@dataclass(frozen=True, slots=True)
class Context:
    """What the stream steps need besides the message: directories, settings, the clock."""

    directory: PartnerDirectory
    buffer: timedelta
    now: datetime
    key: PersonKey
    services: ServiceDirectory = field(default_factory=lambda: ServiceDirectory(()))
    sla: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SLA_WORKING_DAYS))


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


@dataclass(frozen=True, slots=True)
class Disclosed:
    """One resource going to one partner, already minimised, and the basis for sending it."""

    topic: Topic
    event_id: uuid.UUID
    event_type: str
    recipient: str
    role: Role
    resource: dict[str, Any]
    what: str  # "DetectedIssue/<id>", "ServiceRequest/<id>"…
    basis: str


def disclosure_outs(
    d: Disclosed, person_id: str, now: datetime, cause: uuid.UUID | None
) -> list[Out]:
    """The message to the partner, keyed by the partner, and its AuditEvent, keyed by the person."""
    sent = hub_envelope(
        d.event_id,
        d.event_type,
        person_id=person_id,
        resource=d.resource,
        now=now,
        correlation_id=cause or d.event_id,
    )
    audit = audit_out(
        d.event_id,
        person_id=person_id,
        recipient=d.recipient,
        role=d.role,
        what=d.what,
        basis=d.basis,
        now=now,
    )
    return [Out(d.topic, d.recipient.encode(), sent), audit]


def audit_out(
    disclosure_id: uuid.UUID,
    *,
    person_id: str,
    recipient: str,
    role: Role,
    what: str,
    basis: str,
    now: datetime,
    subtype: AuditSubtype = "disclosure",
) -> Out:
    """The AuditEvent of one disclosure (or new relationship), for the audit topic, keyed by the person."""
    audit = audit_event(
        disclosure_id=str(disclosure_id),
        person_id=person_id,
        recipient=recipient,
        role=role,
        what=what,
        basis=basis,
        at=now,
        subtype=subtype,
    )
    record = hub_envelope(
        uuid.UUID(audit["id"]),
        AUDIT_EVENT_TYPES[subtype],
        person_id=person_id,
        resource=audit,
        now=now,
        correlation_id=disclosure_id,
    )
    return Out(topics.AUDIT, person_id.encode(), record)


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
    source = message.get("source")
    letter = DeadLetter(
        reason=refusal.reason,
        source=source if isinstance(source, str) and source else "unknown",
        origin=origin,
        received_at=now,
        raw=(raw if raw is not None else orjson.dumps(message)).decode("utf-8", errors="replace"),
        event_id=uuid.UUID(sender.event_id) if sender else None,
    )
    outs = [Out(topics.DEADLETTER, letter.source.encode(), encode(letter))]
    if sender is None:
        return outs
    refused = uuid.UUID(sender.event_id)
    told = Envelope(
        event_id=refusal_id(sender),
        event_type=refused_event_type(sender.event_type),
        source=HUB_SOURCE,
        subject=None,
        occurred_at=now,
        recorded_at=now,
        correlation_id=uuid.UUID(sender.correlation_id) if sender.correlation_id else refused,
        resource=refusal_outcome(sender, refusal),
    )
    outs.append(Out(topics.OUTBOUND, sender.partner.encode(), encode(told)))
    return outs


# Fixed, so a relationship recorded again after a restart gets the same audit id.
RELATIONSHIP_NAMESPACE = uuid.UUID("5f0c8a6e-2b1d-5c4e-9a7f-6d3e1b2c4a58")


def relationship_audits(before: Calendar, after: Calendar, now: datetime) -> list[Out]:
    """An AuditEvent for each partner newly related to the person: who, whom, on what basis."""
    outs = []
    for partner, relationship in new_relationships(before.relationships, after.relationships):
        what, basis = audit_terms(relationship)
        outs.append(
            audit_out(
                uuid.uuid5(RELATIONSHIP_NAMESPACE, f"{after.person_id}/{partner}/{what}"),
                person_id=after.person_id,
                recipient=partner,
                role=ROLE_OF_KIND[relationship.kind],
                what=what,
                basis=basis,
                now=now,
                subtype="relationship",
            )
        )
    return outs
