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
from services.domain.referral_parties import parties_from_record, parties_record
from services.domain.referrals import Referral
from services.domain.relationships import Relationship

# Bump with an upcaster when the row layout changes; tables outlive deployments.
# 2: relationships, after referrals. 3: each partner's identifiers for the person, last.
FORMAT = 3
# A slot is one row: appointment_id, partner, kind, status, start, end, location,
# version.number, version.updated, version.event_id, service_type, based_on.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Microseconds rather than milliseconds: envelope times carry them, and a truncated
# stored version would make a redelivered event look newer than the one it duplicates.
_TICK = timedelta(microseconds=1)


def _ticks(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _TICK


def _instant(ticks: int | None) -> datetime | None:
    if ticks is None:
        return None
    try:
        return _EPOCH + ticks * _TICK
    except OverflowError:
        raise ValueError("stored time is out of range") from None


# The JSON type of each field of a stored row, in order: a row that does not match is
# corrupt, refused as such (ValueError) before any of it reaches the domain types.
_TEXT, _COUNT, _FLAG, _LIST = (str,), (int,), (bool,), (list,)
_MAYBE_TEXT, _MAYBE_COUNT = (str, type(None)), (int, type(None))
_SLOT_TYPES = (_TEXT, _TEXT, _TEXT, _TEXT, _MAYBE_COUNT, _MAYBE_COUNT, _MAYBE_TEXT, _COUNT,
               _COUNT, _TEXT, _MAYBE_TEXT, _MAYBE_TEXT)  # fmt: skip
_CONSENT_TYPES = (_TEXT, _TEXT, _FLAG, _LIST, _LIST, _LIST, _MAYBE_COUNT, _MAYBE_COUNT, _COUNT,
                  _FLAG)  # fmt: skip
_MAYBE_OBJECT = (dict, type(None))
_REFERRAL_TYPES = (_TEXT, _TEXT, _TEXT, _MAYBE_TEXT, _TEXT, _MAYBE_TEXT, _TEXT, _COUNT,
                   _MAYBE_COUNT, _FLAG, _MAYBE_TEXT, _MAYBE_TEXT, _MAYBE_COUNT,
                   _MAYBE_TEXT, _MAYBE_OBJECT, _MAYBE_TEXT)  # fmt: skip
_RELATIONSHIP_TYPES = (_TEXT, _TEXT, _TEXT)


def _typed(
    row: Any, types: tuple[tuple[type, ...], ...], what: str, optional: int = 0
) -> list[Any]:
    """The row when each field has its type (and lists hold strings); ValueError otherwise.

    The last `optional` fields were added later: rows stored before may lack them.
    """
    if (
        not isinstance(row, list)
        or not len(types) - optional <= len(row) <= len(types)
        or not all(isinstance(value, kinds) for value, kinds in zip(row, types, strict=False))
        or any(isinstance(v, list) and not all(isinstance(x, str) for x in v) for v in row)
    ):
        raise ValueError(f"stored {what} is not in format {FORMAT}")
    return row


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
    aid, partner, kind, status, start, end, location, number, updated, event_id, stype, based = (
        _typed(row, _SLOT_TYPES, "slot")
    )
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
    consent_id, source, permit, recipients, roles, categories, start, end, recorded, *rest = _typed(
        row, _CONSENT_TYPES, "consent", optional=1
    )
    # Rows written before denies were told apart from withdrawals have nine fields: read each
    # non-permit there as a deny, which can only disclose less.
    denies = rest[0] if rest else not permit
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
        parties_record(r.parties) if r.parties else None,
        r.area,
    ]


def _referral(row: list[Any]) -> Referral:
    # Rows stored before a referral kept its event id have 13 fields: the id reads as unknown;
    # before it kept who the person and the referrer are, 14: none are known; before it
    # kept its area, 15: the area reads as unknown.
    (referral_id, fhir_id, referrer, recipient, status, category, urgency, requested, deadline,
     escalated, reason, first_appointment, updated, event_id, parties, area) = [
         *_typed(row, _REFERRAL_TYPES, "referral", optional=3), None, None, None][:16]  # fmt: skip
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
        parties=parties_from_record(parties) if parties is not None else None,
        area=area,
    )


def _relationship(row: list[Any]) -> Relationship:
    kind, basis, evidence = _typed(row, _RELATIONSHIP_TYPES, "relationship")
    return Relationship(kind, basis, evidence)


def encode_calendar(cal: Calendar) -> bytes:
    """The table value for `cal` (a person absorbed into another names the survivor)."""
    rows = [_row(s) for s in cal.slots.values()]
    consents = [_consent_row(c) for c in cal.consents]
    referrals = [_referral_row(r) for r in cal.referrals.values()]
    partners = dict(cal.partners)
    related = {p: [r.kind, r.basis, r.evidence] for p, r in cal.relationships.items()}
    known_as = {p: sorted(tokens) for p, tokens in cal.known_as.items()}
    return orjson.dumps(
        [
            FORMAT,
            cal.person_id,
            cal.merged_into,
            rows,
            partners,
            consents,
            referrals,
            related,
            known_as,
        ]
    )


def upcast_v1_v2(value: list[Any]) -> list[Any]:
    """A format 1 value as format 2: with no relationships.

    Format 1 kept only who had sent anything, which is no relationship; each is established
    again by the next trusted fact (a probation event under the CRN, a referral, a consent).
    """
    return [2, *value[1:], {}]


def upcast_v2_v3(value: list[Any]) -> list[Any]:
    """A format 2 value as format 3: no partner's identifiers known yet.

    Each partner's are learnt again from its next event about the person; until then an alert
    names the person to it by the hub person id alone, as format 2's did.
    """
    return [3, *value[1:], {}]


_UPCASTERS = {1: upcast_v1_v2, 2: upcast_v2_v3}
_LENGTHS = {1: 7, 2: 8, 3: 9}


def decode_calendar(data: bytes) -> Calendar:
    """The calendar stored by `encode_calendar`; ValueError if corrupt."""
    return calendar_of(orjson.loads(data))


def calendar_of(value: Any) -> Calendar:
    """The calendar of a table value already read as JSON (a transfer command carries one);
    ValueError if corrupt."""
    stored_format = value[0] if isinstance(value, list) and value else None
    if type(stored_format) is not int or _LENGTHS.get(stored_format) != len(value):
        raise ValueError(f"stored calendar is not in a known format (this is format {FORMAT})")
    while value[0] != FORMAT:
        value = _UPCASTERS[value[0]](value)
    _, person_id, merged_into, rows, partners, consents, referral_rows, related, known_as = value
    if (
        not isinstance(person_id, str)
        or not isinstance(merged_into, str | None)
        or not all(isinstance(part, list) for part in (rows, consents, referral_rows))
        or not all(isinstance(part, dict) for part in (partners, related, known_as))
        or not all(isinstance(kind, str) for kind in partners.values())
        or not all(
            isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)
            for tokens in known_as.values()
        )
    ):
        raise ValueError(f"stored calendar is not in format {FORMAT}")
    slots = {slot.appointment_id: slot for slot in map(_slot, rows)}
    decisions = tuple(_consent(row) for row in consents)
    referrals = {referral.referral_id: referral for referral in map(_referral, referral_rows)}
    relationships = {partner: _relationship(row) for partner, row in related.items()}
    return Calendar(
        person_id,
        slots,
        partners,
        decisions,
        referrals,
        relationships,
        merged_into,
        {partner: frozenset(tokens) for partner, tokens in known_as.items()},
    )
