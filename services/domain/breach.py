"""The breach check: before deciding on a breach, what the hub knows about where the
person was when they missed an appointment, and how current that knowledge is."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from schemas.identifiers import IdentifierError, PersonIdentifier, parse_token
from services.domain.calendar import HEALTH_KINDS, AgencyKind, Calendar, Slot
from services.domain.consent import ROLE_OF_KIND
from services.domain.decisions import Answered
from services.domain.disclosure import (
    Organisation,
    detail_consent,
    disclose,
    organisation_shown,
    withholding_consent,
)
from services.domain.instants import fhir_instant
from services.domain.partners import Partner, PartnerDirectory
from services.domain.reconciliation import ATTENDED_STATUSES, DEFAULT_TRAVEL_BUFFER, overlaps
from services.domain.relationships import systems_to_ask_by

Verdict = Literal[
    "explained", "possible-conflict", "no-known-conflict", "identity-conflict", "withheld"
]
# Verdicts that stand in for an answer the hub may not give, with the sentence that says why.
EXPLANATIONS: Mapping[Verdict, str] = {
    "withheld": "the hub holds information it may not share; ask the person",
    "identity-conflict": (
        "The hub holds identity data for this person that disagrees between partners, so its "
        "evidence may belong to someone else; no answer is given until the hub operator "
        "resolves the identity conflict."
    ),
}


# Who may ask for a breach check: the agencies whose appointments can be missed.
ASKING_KINDS: frozenset[AgencyKind] = frozenset({"probation", "voluntary"})
ROLE_MAY_NOT_ASK = "your organisation's role may not ask this"
NO_SUCH_PERSON = "no such person known to the hub"
NO_SUCH_APPOINTMENT = "no such appointment for this person"
# Why a question is not answered: the asker may not ask it, it is not asked so the hub can
# answer, or the hub knows nothing it may say.
Unanswered = Literal["not-allowed", "not-asked-so", "not-known"]


class NotAnswered(Exception):  # noqa: N818 -- reads as what the asker is told
    """A breach-check question the hub does not answer, with the sentence that says why."""

    def __init__(self, why: Unanswered, message: str) -> None:
        super().__init__(message)
        self.why, self.message = why, message


class UnknownAppointment(KeyError):  # noqa: N818 -- name fixed by the shared API
    """The appointment asked about is not in the person's calendar."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """A health appointment as an officer may see it: no service type, no location."""

    appointment_id: str
    partner: str
    kind: AgencyKind
    status: str
    start: datetime | None
    end: datetime | None
    recorded: datetime  # when the service last recorded it (its version's lastUpdated)


@dataclass(frozen=True, slots=True)
class PartnerFreshness:
    """When the hub last heard from a partner that could hold evidence (None: never)."""

    partner: str
    kind: AgencyKind
    last_heard: datetime | None


@dataclass(frozen=True, slots=True)
class BreachCheck:
    """The answer for one missed appointment, with what it rests on."""

    person_id: str
    appointment_id: str
    verdict: Verdict
    evidence: tuple[Evidence, ...]
    partners: tuple[PartnerFreshness, ...]


def _evidence(slots: list[Slot]) -> tuple[Evidence, ...]:
    ordered = sorted(slots, key=lambda s: (s.start, s.appointment_id))
    return tuple(
        Evidence(s.appointment_id, s.partner, s.kind, s.status, s.start, s.end, s.version.updated)
        for s in ordered
    )


def breach_check(
    calendar: Calendar,
    appointment_id: str,
    health_partners: Mapping[str, AgencyKind],
    last_heard: Mapping[str, datetime],
    buffer: timedelta = DEFAULT_TRAVEL_BUFFER,
    *,
    identity_conflict: bool = False,
) -> BreachCheck:
    """Judge a missed appointment against the person's health appointments.

    `health_partners` are the health partners known to have a relationship with the
    person; they are listed with their freshness even when the calendar holds nothing
    from them, because their silence may only mean their feed is behind. The verdict
    ignores the missed appointment's own status, so it can be asked before the no-show
    is recorded. While the person is under an unresolved `identity_conflict` the verdict
    says so instead of using evidence that may belong to someone else.
    """
    missed = calendar.slots.get(appointment_id)
    if missed is None:
        raise UnknownAppointment(appointment_id)
    if identity_conflict:  # nothing held may be this person's: no evidence, no partners either
        return BreachCheck(calendar.person_id, appointment_id, "identity-conflict", (), ())

    nearby = [
        s
        for s in calendar.slots.values()
        if s.kind in HEALTH_KINDS and s.partner != missed.partner and overlaps(missed, s, buffer)
    ]
    attended = [s for s in nearby if s.status in ATTENDED_STATUSES]
    booked = [s for s in nearby if s.status == "booked"]
    verdict: Verdict
    if attended:
        verdict, evidence = "explained", _evidence(attended)
    elif booked:
        verdict, evidence = "possible-conflict", _evidence(booked)
    else:
        verdict, evidence = "no-known-conflict", ()

    # The passed-in relationships win over what the calendar implies about a partner;
    # partners of other kinds are left out because they cannot hold evidence.
    kinds = {s.partner: s.kind for s in calendar.slots.values() if s.kind in HEALTH_KINDS}
    kinds.update({p: k for p, k in health_partners.items() if k in HEALTH_KINDS})
    partners = tuple(
        PartnerFreshness(partner, kind, last_heard.get(partner))
        for partner, kind in sorted(kinds.items())
    )
    return BreachCheck(calendar.person_id, appointment_id, verdict, evidence, partners)


def _when(value: datetime | None) -> str | None:
    return fhir_instant(value) if value else None


def breach_check_answer(
    check: BreachCheck,
    calendar: Calendar,
    asking: Partner,
    directory: PartnerDirectory,
    at: datetime,
) -> tuple[dict[str, Any], str]:
    """The breach check as the asking partner may see it, and the basis of the disclosure.

    While the person denies the asking partner other agencies' appointments, the answer is
    one fixed `withheld` verdict whatever the calendar holds, so it reveals nothing.
    """
    role = ROLE_OF_KIND[asking.kind]
    consents = calendar.consents
    denied = withholding_consent(consents, recipient=asking.id, role=role, at=at)
    if denied is not None:
        withheld = {
            "person_id": check.person_id,
            "appointment_id": check.appointment_id,
            "verdict": "withheld",
            "explanation": EXPLANATIONS["withheld"],
            "evidence": [],
            "partners": [],
        }
        return withheld, denied

    def seen(partner_id: str, kind: AgencyKind) -> Organisation:
        partner = directory.get(partner_id)
        detail = detail_consent(consents, recipient=asking.id, role=role, agency_kind=kind, at=at)
        return organisation_shown(
            kind,
            partner_id,
            partner.name if partner else None,
            own=partner_id == asking.id,
            detail=detail is not None,
        )

    evidence, bases = [], []
    for number, e in enumerate(check.evidence, start=1):
        organisation = seen(e.partner, e.kind)
        full = {
            # A partner's appointment id names the partner: shown only with its name.
            "appointment_id": e.appointment_id if organisation.partner else f"evidence-{number}",
            "organisation": organisation.name,
            "organisation_type": organisation.type_code,
            "status": e.status,
            "start": _when(e.start),
            "end": _when(e.end),
            "recorded": _when(e.recorded),
            "service_type": calendar.slots[e.appointment_id].service_type,
        }
        shown = disclose(
            full,
            resource_type="BreachEvidence",
            role=role,
            own=e.partner == asking.id,
            agency_kind=e.kind,
            consents=consents,
            recipient=asking.id,
            at=at,
        )
        evidence.append({k: v for k, v in shown.resource.items() if v is not None})
        bases.append(shown.basis)
    partners = []
    for f in check.partners:
        organisation = seen(f.partner, f.kind)
        entry = {"organisation_type": organisation.type_code, "last_heard": _when(f.last_heard)}
        partners.append(
            {"partner": organisation.partner, **entry} if organisation.partner else entry
        )
    answer = {
        "person_id": check.person_id,
        "appointment_id": check.appointment_id,
        "verdict": check.verdict,
        "evidence": evidence,
        "partners": partners,
    }
    if check.verdict in EXPLANATIONS:
        answer["explanation"] = EXPLANATIONS[check.verdict]
    consent_bases = [b for b in bases if b not in ("role-default", "own-record")]
    return answer, consent_bases[0] if consent_bases else "role-default"


# --- who may ask, about whom, and the answer -------------------------------------------------


def check_asker(asking: Partner) -> None:
    """NotAnswered unless the partner is of a kind that may ask for a breach check."""
    if asking.kind not in ASKING_KINDS:
        raise NotAnswered("not-allowed", ROLE_MAY_NOT_ASK)


def asked_by(asking: Partner, token: str) -> PersonIdentifier:
    """The identifier (`system|value`) a partner names the person by: valid, and in a system of
    its own (relationships.systems_to_ask_by); NotAnswered otherwise."""
    try:
        identifier = parse_token(token)
    except IdentifierError as exc:
        raise NotAnswered("not-asked-so", str(exc)) from None
    own = systems_to_ask_by(asking.id, asking.kind)
    if identifier.system not in own:
        raise NotAnswered(
            "not-asked-so",
            "name the person by an identifier of your own system: " + ", ".join(sorted(own)),
        )
    return identifier


def own_appointment(calendar: Calendar, asking: Partner, wanted: str) -> str:
    """The calendar's id of the asking partner's appointment `wanted` (ID, or PARTNER/ID).

    Another partner's appointment is not found, exactly as one that does not exist.
    """
    appointment_id = wanted if wanted.startswith(asking.id + "/") else f"{asking.id}/{wanted}"
    slot = calendar.slots.get(appointment_id)
    if slot is None or slot.partner != asking.id:
        raise NotAnswered("not-known", NO_SUCH_APPOINTMENT)
    return appointment_id


def answer_breach_check(
    calendar: Calendar | None,
    asking: Partner,
    wanted: str,
    *,
    last_heard: Mapping[str, datetime],
    buffer: timedelta,
    identity_conflict: bool,
    directory: PartnerDirectory,
    at: datetime,
    disclosure_id: uuid.UUID,
) -> tuple[dict[str, Any], Answered]:
    """The breach check a partner asked about its appointment `wanted`, as it may see it, and
    the disclosure to audit (`disclosure_id`) before the answer is given.

    A partner with no relationship with the person is answered exactly as if there were no
    such person, so nobody can probe whom the hub knows; NotAnswered says so.
    """
    if calendar is None or asking.id not in calendar.relationships:
        raise NotAnswered("not-known", NO_SUCH_PERSON)
    appointment = own_appointment(calendar, asking, wanted)
    check = breach_check(
        calendar,
        appointment,
        calendar.partners,
        last_heard,
        buffer,
        identity_conflict=identity_conflict,
    )
    answer, basis = breach_check_answer(check, calendar, asking, directory, at)
    answered = Answered(
        disclosure_id=disclosure_id,
        person_id=calendar.person_id,
        recipient=asking.id,
        role=ROLE_OF_KIND[asking.kind],
        what=f"BreachCheck/{appointment}",
        basis=basis,
    )
    return answer, answered
