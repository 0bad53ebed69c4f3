"""What the hub's steps decide, as values, and the rules they decide under.

A decision says what was decided (tell this partner this, refuse that update, hand this record
over), never how it is encoded: services/stream/outbox.py renders every decision as the messages
the hub sends. The commands one person's record sends another (merge, transfer, check deadlines)
are decisions too, and the messages the receiving record decides on.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from services.domain.calendar import Calendar
from services.domain.consent import Role
from services.domain.data_quality import DataQualityIssue
from services.domain.identity import Conflict, Merge
from services.domain.partners import PartnerDirectory
from services.domain.reconciliation import DEFAULT_TRAVEL_BUFFER
from services.domain.referrals import DEFAULT_SLA_WORKING_DAYS, Referral, ServiceDirectory
from services.domain.refusals import Refusal
from services.domain.relationships import Relationship

__all__ = ["Merge"]  # re-exported: a merge is one of the commands between records


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """What a decision needs besides the message and the record: who the partners are, which
    services take which referrals and how soon, the travel time between appointments, and now."""

    directory: PartnerDirectory
    now: datetime
    services: ServiceDirectory = field(default_factory=lambda: ServiceDirectory(()))
    sla: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SLA_WORKING_DAYS))
    buffer: timedelta = DEFAULT_TRAVEL_BUFFER


# --- disclosures: each is audited ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disclose:
    """Send one partner a resource about the person, as the disclosure policy lets it see it,
    with the terms its audit record names: what (`DetectedIssue/<id>`…) on which basis."""

    person_id: str
    recipient: str
    role: Role
    event_id: uuid.UUID  # deterministic, so a reprocessed change is a recognisable duplicate
    event_type: str
    resource: dict[str, Any]
    what: str
    basis: str
    cause: uuid.UUID | None  # the event it answers; None when the hub acts on its own (a merge)


def caused(event_id: str | None) -> uuid.UUID | None:
    """The event that caused a disclosure, as its message correlates to it (None if unnamed).

    Read only when a disclosure is made: an event with no disclosure is never refused for it.
    """
    return uuid.UUID(event_id) if event_id else None


@dataclass(frozen=True, slots=True)
class Answered:
    """A disclosure made in the answer to a partner's question (the breach check): only its
    audit record is sent; the answer itself goes back to the partner that asked."""

    disclosure_id: uuid.UUID
    person_id: str
    recipient: str
    role: Role
    what: str
    basis: str
    # the individual who asked, signed in to the pages (None: the partner's own system)
    user: str | None = None


@dataclass(frozen=True, slots=True)
class RelationshipBegun:
    """A partner became related to the person: audited once, when it begins."""

    person_id: str
    partner: str
    relationship: Relationship


# --- the person's record ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxEntryChanged:
    """A referral's entry in the referrer's and the service's inboxes changed."""

    person_id: str
    referral: Referral


@dataclass(frozen=True, slots=True)
class UpdateRefused:
    """An accepted update the hub will not apply: kept for the operator, told to its sender."""

    message: Mapping[str, Any]
    refusal: Refusal
    origin: str  # the step that refused it ("reconciler", "referral-lifecycle")


@dataclass(frozen=True, slots=True)
class DataQualityFlagged:
    """A partner's update contradicts what the same partner said before: the calendar keeps the
    defensible state (services/domain/data_quality.py), and the sender is told which rules fired.
    An update not applied is also kept for the operator, as a refused one is."""

    message: Mapping[str, Any]
    issues: tuple[DataQualityIssue, ...]  # never empty

    @property
    def applied(self) -> bool:
        """Whether the update was applied (the issues that keep the held state come alone)."""
        return all(issue.applied for issue in self.issues)


@dataclass(frozen=True, slots=True)
class Forward:
    """A partner's event goes to the record of the person it is about: `person_id`'s."""

    person_id: str
    envelope: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Transfer:
    """The record of a person found to be another, for the survivor's record to take over."""

    absorbed: str
    survivor: str
    calendar: Calendar


@dataclass(frozen=True, slots=True)
class CheckDeadlines:
    """Escalate the person's referrals not accepted by `now`."""

    person_id: str
    now: datetime


# --- the person index ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Assigned:
    """An identifier now belongs to a person."""

    token: str
    person_id: str
    partition: int  # where the identifier's inbound events arrive (schemas/keys.py token_home)


@dataclass(frozen=True, slots=True)
class ConflictChanged:
    """An identity conflict was raised or settled: its record, for the operator."""

    conflict: Conflict


@dataclass(frozen=True, slots=True)
class IdentityFlagsChanged:
    """The identity conflicts open about a person changed: the breach check reads them."""

    person_id: str
    open_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConflictSettled:
    """An operator settled a conflict concerning the person: audited, by request."""

    person_id: str
    conflict: Conflict
    request: str  # the operator's request id


Decision: TypeAlias = (
    Disclose
    | Answered
    | RelationshipBegun
    | InboxEntryChanged
    | UpdateRefused
    | DataQualityFlagged
    | Forward
    | Merge
    | Transfer
    | CheckDeadlines
    | Assigned
    | ConflictChanged
    | IdentityFlagsChanged
    | ConflictSettled
)
# What a person's record decides on: a partner's event (an envelope resolved to the person, as
# a plain mapping: the hot path reads it without building a model), or a command from the hub.
PersonMessage: TypeAlias = Mapping[str, Any] | Merge | Transfer | CheckDeadlines
