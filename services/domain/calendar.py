"""Per-person appointment calendar and its reconciliation: clashes between agencies'
appointments and no-shows explained by attendance at a health appointment."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import combinations
from typing import Literal, TypeAlias

from services.domain.consent import ConsentDecision, record
from services.domain.kinds import HEALTH_KINDS, OBLIGATION_KINDS, AgencyKind
from services.domain.partners import PartnerDirectory
from services.domain.referrals import Referral
from services.domain.relationships import (
    Relationship,
    from_case_record,
    from_consents,
    from_referrals,
    officers,
    relate,
)
from services.domain.versions import Version, is_stale

__all__ = [
    "HEALTH_KINDS",
    "OBLIGATION_KINDS",
    "AgencyKind",
    "Version",
]  # re-exported: the calendar's vocabulary

AlertKind = Literal["clash", "explained-absence"]
AlertAction = Literal["raised", "resolved"]
# (kind, id_a, id_b): clash ids sorted; explained-absence ids are (missed, evidence).
AlertKey: TypeAlias = tuple[AlertKind, str, str]

LIVE_STATUSES: frozenset[str] = frozenset({"booked", "arrived", "checked-in"})
ATTENDED_STATUSES: frozenset[str] = frozenset({"arrived", "checked-in", "fulfilled"})
DEFAULT_TRAVEL_BUFFER = timedelta(minutes=30)


def _require_aware(name: str, value: datetime | None) -> None:
    # Naive and aware datetimes do not compare; fail at construction, not mid-reconcile.
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Slot:
    """One appointment as the hub keeps it: compact, no clinical text."""

    appointment_id: str  # unique across agencies: "<partner>/<fhir id>"
    partner: str  # partner id of the booking agency
    kind: AgencyKind
    status: str  # FHIR Appointment.status
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


@dataclass(frozen=True, slots=True)
class Alert:
    """A decision to tell partners that a condition opened or closed."""

    kind: AlertKind
    action: AlertAction
    person_id: str
    appointment_ids: tuple[str, str]  # clash: the pair sorted; explained: (missed, evidence)
    recipients: tuple[str, ...]  # partner ids
    slots: tuple[Slot, Slot]  # in appointment_ids order


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


def overlaps(a: Slot, b: Slot, buffer: timedelta = DEFAULT_TRAVEL_BUFFER) -> bool:
    """True if `a` and `b` overlap once travel time between them is counted.

    No travel is needed between two appointments at the same known location; a gap of
    exactly the buffer is enough to get from one to the other.
    """
    if a.start is None or a.end is None or b.start is None or b.end is None:
        return False
    same_place = a.location is not None and a.location == b.location
    buf = timedelta(0) if same_place else buffer
    return a.start < b.end + buf and b.start < a.end + buf


def _is_explained(missed: Slot, evidence: Slot) -> bool:
    return (
        missed.kind in OBLIGATION_KINDS
        and missed.status == "noshow"
        and evidence.kind in HEALTH_KINDS
        and evidence.status in ATTENDED_STATUSES
    )


def _pair_keys(a: Slot, b: Slot, buffer: timedelta) -> Iterator[AlertKey]:
    if a.partner == b.partner or not overlaps(a, b, buffer):
        return
    if a.status in LIVE_STATUSES and b.status in LIVE_STATUSES:
        first, second = sorted((a.appointment_id, b.appointment_id))
        yield ("clash", first, second)
    for missed, evidence in ((a, b), (b, a)):
        if _is_explained(missed, evidence):
            yield ("explained-absence", missed.appointment_id, evidence.appointment_id)


def open_alert_keys(
    calendar: Calendar, buffer: timedelta = DEFAULT_TRAVEL_BUFFER
) -> frozenset[AlertKey]:
    """Every condition open in `calendar`: a function of its slots alone, not of history."""
    return frozenset(
        key for a, b in combinations(calendar.slots.values(), 2) for key in _pair_keys(a, b, buffer)
    )


def _keys_involving(calendar: Calendar, slot: Slot, buffer: timedelta) -> frozenset[AlertKey]:
    # Only pairs that include the changed slot can open or close, so a change costs
    # O(n) rather than the O(n^2) of open_alert_keys.
    return frozenset(
        key
        for other in calendar.slots.values()
        if other.appointment_id != slot.appointment_id
        for key in _pair_keys(slot, other, buffer)
    )


def _alert(calendar: Calendar, key: AlertKey, action: AlertAction) -> Alert:
    kind, first_id, second_id = key
    first, second = calendar.slots[first_id], calendar.slots[second_id]
    if kind == "clash":
        recipients = tuple(sorted({first.partner, second.partner}))
    else:
        # The booker of the missed appointment and the person's probation officers: each only
        # with a relationship with the person, since the alert discloses attendance elsewhere.
        related = calendar.relationships
        booker = (first.partner,) if first.partner in related else ()
        recipients = (*booker, *sorted(officers(related) - {first.partner}))
    return Alert(
        kind=kind,
        action=action,
        person_id=calendar.person_id,
        appointment_ids=(first_id, second_id),
        recipients=recipients,
        slots=(first, second),
    )


def told_on_relating(
    before: Calendar, after: Calendar, buffer: timedelta = DEFAULT_TRAVEL_BUFFER
) -> list[Alert]:
    """The explained absences open in `before` (and still in `after`), raised again to each
    partner related in `after` but not in `before`: those it would have been told of, had it
    been related when they opened."""
    new = after.relationships.keys() - before.relationships.keys()
    if not new:
        return []
    alerts = []
    for key in sorted(open_alert_keys(before, buffer) & open_alert_keys(after, buffer)):
        if key[0] != "explained-absence":
            continue
        alert = _alert(after, key, "raised")
        told = tuple(r for r in alert.recipients if r in new)
        if told:
            alerts.append(replace(alert, recipients=told))
    return alerts


def _diff(
    calendar: Calendar, before: frozenset[AlertKey], after: frozenset[AlertKey]
) -> list[Alert]:
    # Resolutions first, so a moved appointment's old clash clears before its new one.
    return [_alert(calendar, key, "resolved") for key in sorted(before - after)] + [
        _alert(calendar, key, "raised") for key in sorted(after - before)
    ]


def reconcile(
    calendar: Calendar, slot: Slot, buffer: timedelta = DEFAULT_TRAVEL_BUFFER
) -> tuple[Calendar, list[Alert]]:
    """Apply one change and decide which alerts it raises or resolves."""
    updated = apply_change(calendar, slot)
    if updated is calendar:
        return calendar, []
    previous = calendar.slots.get(slot.appointment_id)
    before = frozenset() if previous is None else _keys_involving(calendar, previous, buffer)
    after = _keys_involving(updated, slot, buffer)
    return updated, _diff(updated, before, after)


def merge(
    a: Calendar, b: Calendar, person_id: str, buffer: timedelta = DEFAULT_TRAVEL_BUFFER
) -> tuple[Calendar, list[Alert]]:
    """Join the calendars of two provisional people found to be one person.

    Alerts already open under either person are not raised again; conditions that only
    appear once both calendars are seen together are raised under `person_id`.
    """
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
    merged = Calendar(
        person_id, slots, {**a.partners, **b.partners}, consents, referrals, relationships
    )
    before = open_alert_keys(a, buffer) | open_alert_keys(b, buffer)
    return merged, _diff(merged, before, open_alert_keys(merged, buffer))
