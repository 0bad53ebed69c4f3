"""The per-person record the hub keeps: appointments, the partners heard from, consents,
referrals and relationships, and how each changes. What the appointments mean to partners
(clashes, explained absences) is decided in services/domain/reconciliation.py."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.domain.consent import ConsentDecision, record
from services.domain.kinds import HEALTH_KINDS, OBLIGATION_KINDS, AgencyKind
from services.domain.partners import PartnerDirectory
from services.domain.referrals import Referral
from services.domain.relationships import (
    Relationship,
    from_case_record,
    from_consents,
    from_referrals,
    relate,
)
from services.domain.versions import Version, is_stale

__all__ = [
    "HEALTH_KINDS",
    "OBLIGATION_KINDS",
    "AgencyKind",
    "Version",
]  # re-exported: the calendar's vocabulary


def _require_aware(name: str, value: datetime | None) -> None:
    # Naive and aware datetimes do not compare; fail at construction, not mid-reconcile.
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Slot:
    """One appointment (or attended encounter) as the hub keeps it: compact, no clinical text.

    A start with no end is a visit or stay still under way (an Encounter in progress): it
    lasts until a later version ends it.
    """

    appointment_id: (
        str  # unique across agencies: "<partner>/<fhir id>" ("<partner>/Encounter/<id>")
    )
    partner: str  # partner id of the booking agency
    kind: AgencyKind
    status: str  # FHIR Appointment.status (an Encounter's mapped to it)
    start: datetime | None
    end: datetime | None
    location: str | None  # a location key; None = unknown
    version: Version
    service_type: str | None = None  # sensitive: disclosed only with consent
    based_on: str | None = None  # referral id when booked for a referral

    def __post_init__(self) -> None:
        _require_aware("start", self.start)
        _require_aware("end", self.end)
        _require_aware("version.updated", self.version.updated)


@dataclass(frozen=True, slots=True)
class Calendar:
    """All appointments known for one person, by appointment id.

    `slots` is a plain dict for easy encoding; it is never mutated after construction.
    """

    person_id: str
    slots: Mapping[str, Slot] = field(default_factory=dict)
    # every partner that has sent anything about the person, and its kind: whose feed could
    # hold evidence. Anyone can send something: it is no relationship (see `relationships`).
    partners: Mapping[str, AgencyKind] = field(default_factory=dict)
    # the person's consent decisions, latest per consent (services.domain.consent.record)
    consents: tuple[ConsentDecision, ...] = ()
    # the person's referrals, by referral id
    referrals: Mapping[str, Referral] = field(default_factory=dict)
    # the partners with a relationship with the person, from trusted facts only
    # (services.domain.relationships): who may ask about the person, and be told
    relationships: Mapping[str, Relationship] = field(default_factory=dict)
    # the person this one was found to be: the record then holds nothing, and whatever
    # arrives for it goes on to the survivor's record
    merged_into: str | None = None
    # each partner's own words for the person: the identifiers (`system|value` tokens) its
    # events named the person by, which it may always be told back (services/domain/disclosure.py)
    known_as: Mapping[str, frozenset[str]] = field(default_factory=dict)


def _supersedes(slot: Slot, current: Slot | None) -> bool:
    # Equal versions are the same change delivered again: no second effect.
    return current is None or slot.version > current.version


def add_consent(calendar: Calendar, decision: ConsentDecision) -> Calendar:
    """Record a consent decision (the same object when it changes nothing)."""
    consents = record(calendar.consents, decision)
    return calendar if consents is calendar.consents else replace(calendar, consents=consents)


def put_referral(calendar: Calendar, referral: Referral) -> Calendar:
    """Store a referral's new state (the same object when it is unchanged)."""
    if calendar.referrals.get(referral.referral_id) == referral:
        return calendar
    return replace(calendar, referrals={**calendar.referrals, referral.referral_id: referral})


def add_partner(calendar: Calendar, partner: str, kind: AgencyKind) -> Calendar:
    """Record that `partner` has a relationship with the person (the same object if known)."""
    if calendar.partners.get(partner) == kind:
        return calendar
    return replace(calendar, partners={**calendar.partners, partner: kind})


def add_names(calendar: Calendar, partner: str, tokens: Iterable[str]) -> Calendar:
    """Record that `partner` named the person by `tokens` (the same object if it had already)."""
    held = calendar.known_as.get(partner, frozenset())
    named = held.union(tokens)
    if named == held:
        return calendar
    return replace(calendar, known_as={**calendar.known_as, partner: named})


def stale_change(calendar: Calendar, slot: Slot) -> Version | None:
    """The newer version the calendar holds when `slot` is an older change to its appointment.

    None when `slot` is newer, or is the change already held delivered again: a duplicate has
    no second effect and is nothing to refuse.
    """
    current = calendar.slots.get(slot.appointment_id)
    if current is None or not is_stale(slot.version, current.version):
        return None
    return current.version


def with_relationships(
    calendar: Calendar,
    directory: PartnerDirectory,
    *,
    source: str | None = None,
    kind: AgencyKind | None = None,
    systems: tuple[str, ...] = (),
    event_id: str = "",
) -> Calendar:
    """The relationships the calendar's facts establish, and the event `source` (of `kind`) sent
    naming the person in `systems`; the same object when nothing changes."""
    related = calendar.relationships
    if source is not None and kind is not None:
        related = from_case_record(
            related, source=source, kind=kind, systems=systems, event_id=event_id
        )
    related = from_referrals(related, calendar.referrals.values(), directory)
    related = from_consents(related, calendar.consents, directory)
    if related is calendar.relationships:
        return calendar
    return replace(calendar, relationships=related)


def apply_change(calendar: Calendar, slot: Slot) -> Calendar:
    """Upsert `slot` if it is newer than what the calendar holds; otherwise return `calendar`."""
    if not _supersedes(slot, calendar.slots.get(slot.appointment_id)):
        return calendar
    return replace(calendar, slots={**calendar.slots, slot.appointment_id: slot})


def moved(person_id: str, survivor: str) -> Calendar:
    """The record of a person found to be `survivor`: empty, and naming the survivor."""
    return Calendar(person_id, merged_into=survivor)


def join(a: Calendar, b: Calendar, person_id: str) -> Calendar:
    """The records of two provisional people found to be one person, as `person_id`'s: the newer
    version of each appointment and referral, every consent and relationship of either."""
    slots = dict(a.slots)
    for slot in b.slots.values():
        if _supersedes(slot, slots.get(slot.appointment_id)):
            slots[slot.appointment_id] = slot
    consents = a.consents
    for decision in b.consents:
        consents = record(consents, decision)
    referrals = dict(a.referrals)
    for referral_id, referral in b.referrals.items():
        mine = referrals.get(referral_id)
        if mine is None or (referral.updated or referral.requested) > (
            mine.updated or mine.requested
        ):
            referrals[referral_id] = referral
    relationships = a.relationships
    for partner, relationship in sorted(b.relationships.items()):
        relationships = relate(relationships, partner, relationship)
    known_as = dict(a.known_as)
    for partner, tokens in b.known_as.items():
        known_as[partner] = known_as.get(partner, frozenset()) | tokens
    return Calendar(
        person_id,
        slots,
        {**a.partners, **b.partners},
        consents,
        referrals,
        relationships,
        known_as=known_as,
    )
