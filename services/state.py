"""The calendars table's value encoding: a person's calendar as compact positional JSON.

Read and written on every appointment event, so it is small and cheap; it must round-trip
exactly, because a duplicate event is recognised by comparing versions with what is stored.
Values written by an earlier format are upcast when read (`upcast_v1_v2`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.domain.calendar import Calendar, Slot, Version
from services.domain.consent import ConsentDecision
from services.domain.referrals import Referral
from services.domain.relationships import Relationship

# Bump with an upcaster when the row layout changes; tables outlive deployments.
# 2: relationships, after referrals.
FORMAT = 2
# A slot is one row: appointment_id, partner, kind, status, start, end, location,
# version.number, version.updated, version.event_id, service_type, based_on.
_ROW_LENGTH = 12

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Microseconds rather than milliseconds: envelope times carry them, and a truncated
# stored version would make a redelivered event look newer than the one it duplicates.
_TICK = timedelta(microseconds=1)


def _ticks(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _TICK


def _instant(ticks: int | None) -> datetime | None:
    return None if ticks is None else _EPOCH + ticks * _TICK


def _row(slot: Slot) -> list[Any]:
    number, updated, event_id = slot.version
    return [
        slot.appointment_id,
        slot.partner,
        slot.kind,
        slot.status,
        _ticks(slot.start),
        _ticks(slot.end),
        slot.location,
        number,
        _ticks(updated),
        event_id,
        slot.service_type,
        slot.based_on,
    ]


def _slot(row: list[Any]) -> Slot:
    if not isinstance(row, list) or len(row) != _ROW_LENGTH:
        raise ValueError(f"stored slot must be a list of {_ROW_LENGTH} fields")
    aid, partner, kind, status, start, end, location, number, updated, event_id, stype, based = row
    return Slot(
        appointment_id=aid,
        partner=partner,
        kind=kind,
        status=status,
        start=_instant(start),
        end=_instant(end),
        location=location,
        version=Version(number, _ticks_required(updated), event_id),
        service_type=stype,
        based_on=based,
    )


def _ticks_required(ticks: int) -> datetime:
    value = _instant(ticks)
    if value is None:
        raise ValueError("stored slot has no version time")
    return value


def _consent_row(decision: ConsentDecision) -> list[Any]:
    return [
        decision.consent_id,
        decision.source,
        decision.permit,
        sorted(decision.recipients),
        sorted(decision.roles),
        sorted(decision.categories),
        _ticks(decision.start),
        _ticks(decision.end),
        _ticks(decision.recorded),
        decision.denies,
    ]


def _consent(row: list[Any]) -> ConsentDecision:
    consent_id, source, permit, recipients, roles, categories, start, end, recorded = row[:9]
    # Rows written before denies were told apart from withdrawals have nine fields: read each
    # non-permit there as a deny, which can only disclose less.
    denies = row[9] if len(row) > 9 else not permit
    return ConsentDecision(
        consent_id=consent_id,
        source=source,
        permit=permit,
        recipients=frozenset(recipients),
        roles=frozenset(roles),
        categories=frozenset(categories),
        start=_instant(start),
        end=_instant(end),
        recorded=_ticks_required(recorded),
        denies=denies,
    )


def _referral_row(r: Referral) -> list[Any]:
    return [
        r.referral_id,
        r.fhir_id,
        r.referrer,
        r.recipient,
        r.status,
        r.category,
        r.urgency,
        _ticks(r.requested),
        _ticks(r.deadline),
        r.escalated,
        r.reason,
        r.first_appointment,
        _ticks(r.updated),
        r.event_id,
    ]


def _referral(row: list[Any]) -> Referral:
    # Rows stored before a referral kept its event id have 13 fields: the id reads as unknown.
    (referral_id, fhir_id, referrer, recipient, status, category, urgency, requested, deadline,
     escalated, reason, first_appointment, updated, event_id) = [*row, None][:14]  # fmt: skip
    return Referral(
        referral_id=referral_id,
        fhir_id=fhir_id,
        referrer=referrer,
        recipient=recipient,
        status=status,
        category=category,
        urgency=urgency,
        requested=_ticks_required(requested),
        deadline=_instant(deadline),
        escalated=escalated,
        reason=reason,
        first_appointment=first_appointment,
        updated=_instant(updated),
        event_id=event_id,
    )


def _relationship(row: list[Any]) -> Relationship:
    kind, basis, evidence = row
    return Relationship(kind, basis, evidence)


def encode_calendar(cal: Calendar, merged_into: str | None = None) -> bytes:
    """The table value for `cal`; `merged_into` marks a person absorbed into another."""
    rows = [_row(s) for s in cal.slots.values()]
    consents = [_consent_row(c) for c in cal.consents]
    referrals = [_referral_row(r) for r in cal.referrals.values()]
    partners = dict(cal.partners)
    related = {p: [r.kind, r.basis, r.evidence] for p, r in cal.relationships.items()}
    return orjson.dumps(
        [FORMAT, cal.person_id, merged_into, rows, partners, consents, referrals, related]
    )


def upcast_v1_v2(value: list[Any]) -> list[Any]:
    """A format 1 value as format 2: with no relationships.

    Format 1 kept only who had sent anything, which is no relationship; each is established
    again by the next trusted fact (a probation event under the CRN, a referral, a consent).
    """
    return [2, *value[1:], {}]


_UPCASTERS = {1: upcast_v1_v2}
_LENGTHS = {1: 7, 2: 8}


def decode_calendar(data: bytes) -> tuple[Calendar, str | None]:
    """The calendar and merged-into person id stored by `encode_calendar`; ValueError if corrupt."""
    value = orjson.loads(data)
    if not isinstance(value, list) or not value or _LENGTHS.get(value[0]) != len(value):
        raise ValueError(f"stored calendar is not in a known format (this is format {FORMAT})")
    while value[0] != FORMAT:
        value = _UPCASTERS[value[0]](value)
    _, person_id, merged_into, rows, partners, consents, referral_rows, related = value
    slots = {row[0]: _slot(row) for row in rows}
    decisions = tuple(_consent(row) for row in consents)
    referrals = {row[0]: _referral(row) for row in referral_rows}
    relationships = {partner: _relationship(row) for partner, row in related.items()}
    calendar = Calendar(person_id, slots, partners, decisions, referrals, relationships)
    return calendar, merged_into
