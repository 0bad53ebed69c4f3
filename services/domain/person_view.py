"""The person page's answer: one person's appointments across agencies on one timeline, their open
clashes with what to do, and a breach-check verdict for each missed appointment, all as the asking
partner may see them. Pure: the worker (services/web/views.py) audits it and sends it.

Everything of another agency passes the disclosure policy (disclosure.disclose, the same rule as
the breach check's evidence), and the verdicts are the breach check's own (breach.py), so a page
can show nothing the policy keeps from the partner's own system.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.domain.breach import (
    ASKING_KINDS,
    EXPLANATIONS,
    NO_SUCH_PERSON,
    NotAnswered,
    breach_check,
    breach_check_answer,
)
from services.domain.calendar import HEALTH_KINDS, Calendar, Slot
from services.domain.consent import ROLE_OF_KIND
from services.domain.decisions import Answered
from services.domain.disclosure import (
    OWN_RECORD,
    ROLE_DEFAULT,
    detail_consent,
    disclose,
    organisation_shown,
    withholding_consent,
)
from services.domain.instants import fhir_instant
from services.domain.partners import Partner, PartnerDirectory
from services.domain.reconciliation import open_alert_keys

CLASH_ADVICE = (
    "Both appointments still stand and the person cannot attend both. Contact the person and "
    "agree which to move, then rebook yours; the other service is told of the same clash."
)
IDENTITY_CONFLICT = EXPLANATIONS["identity-conflict"]
# Times on the pages are read in England and Wales.
LOCAL = ZoneInfo("Europe/London")


def _when(value: datetime | None) -> str | None:
    return fhir_instant(value) if value else None


def _shown_appointment(
    slot: Slot,
    number: int,
    *,
    calendar: Calendar,
    asking: Partner,
    directory: PartnerDirectory,
    at: datetime,
) -> tuple[dict[str, Any], str]:
    """One appointment as the asking partner may see it, and the basis it is shown on."""
    role = ROLE_OF_KIND[asking.kind]
    own = slot.partner == asking.id
    partner = directory.get(slot.partner)
    detail = detail_consent(
        calendar.consents, recipient=asking.id, role=role, agency_kind=slot.kind, at=at
    )
    organisation = organisation_shown(
        slot.kind,
        slot.partner,
        partner.name if partner else None,
        own=own,
        detail=detail is not None,
    )
    full = {
        # A partner's appointment id names the partner: shown only with its name.
        "appointment_id": (
            slot.appointment_id.removeprefix(f"{asking.id}/")
            if own
            else slot.appointment_id
            if organisation.partner
            else f"other-{number}"
        ),
        "organisation": organisation.name,
        "organisation_type": organisation.type_code,
        "status": slot.status,
        "start": _when(slot.start),
        "end": _when(slot.end),
        "service_type": slot.service_type,
    }
    shown = disclose(
        full,
        resource_type="BreachEvidence",
        role=role,
        own=own,
        agency_kind=slot.kind,
        consents=calendar.consents,
        recipient=asking.id,
        at=at,
    )
    entry = {k: v for k, v in shown.resource.items() if v is not None}
    entry["own"] = own
    entry["organisation_label"] = organisation.type_label
    return entry, shown.basis


def _freshness(
    calendar: Calendar,
    asking: Partner,
    directory: PartnerDirectory,
    last_heard: Mapping[str, datetime],
    at: datetime,
) -> list[dict[str, Any]]:
    """When the hub last heard from each health partner that could hold evidence about the person."""
    role = ROLE_OF_KIND[asking.kind]
    kinds = {s.partner: s.kind for s in calendar.slots.values() if s.kind in HEALTH_KINDS}
    kinds.update({p: k for p, k in calendar.partners.items() if k in HEALTH_KINDS})
    shown = []
    for partner_id, kind in sorted(kinds.items()):
        partner = directory.get(partner_id)
        detail = detail_consent(
            calendar.consents, recipient=asking.id, role=role, agency_kind=kind, at=at
        )
        organisation = organisation_shown(
            kind,
            partner_id,
            partner.name if partner else None,
            own=partner_id == asking.id,
            detail=detail is not None,
        )
        entry = {
            "organisation_label": organisation.name or organisation.type_label,
            "last_heard": _when(last_heard.get(partner_id)),
        }
        shown.append(entry)
    return shown


def person_view(
    calendar: Calendar | None,
    asking: Partner,
    *,
    last_heard: Mapping[str, datetime],
    buffer: timedelta,
    identity_conflict: bool,
    directory: PartnerDirectory,
    at: datetime,
    disclosure_id: uuid.UUID,
    user: str | None = None,
) -> tuple[dict[str, Any], Answered]:
    """The person page for `asking` (signed in as `user`), and the disclosure to audit first.

    A partner with no relationship with the person gets NotAnswered exactly as for an unknown
    person. While the person denies the partner other agencies' appointments, or their identity
    is in conflict, the page holds the partner's own appointments only, and says why.
    """
    if calendar is None or asking.id not in calendar.relationships:
        raise NotAnswered("not-known", NO_SUCH_PERSON)
    role = ROLE_OF_KIND[asking.kind]
    denied = withholding_consent(calendar.consents, recipient=asking.id, role=role, at=at)
    others_hidden = denied is not None or identity_conflict
    ordered = sorted(calendar.slots.values(), key=lambda s: (s.start or at, s.appointment_id))
    appointments, bases, shown_ids = [], [], {}
    for number, slot in enumerate(ordered, start=1):
        if others_hidden and slot.partner != asking.id:
            continue
        entry, basis = _shown_appointment(
            slot, number, calendar=calendar, asking=asking, directory=directory, at=at
        )
        appointments.append(entry)
        bases.append(basis)
        shown_ids[slot.appointment_id] = entry

    clashes = []
    for kind, first, second in sorted(open_alert_keys(calendar, buffer)):
        if kind != "clash" or (first not in shown_ids or second not in shown_ids):
            continue
        mine = [shown_ids[i] for i in (first, second) if shown_ids[i]["own"]]
        theirs = [shown_ids[i] for i in (first, second) if not shown_ids[i]["own"]]
        if len(mine) == 1 and len(theirs) == 1:
            clashes.append({"yours": mine[0], "other": theirs[0], "advice": CLASH_ADVICE})

    missed = []
    if asking.kind in ASKING_KINDS:
        for slot in ordered:
            if slot.partner != asking.id or slot.status != "noshow":
                continue
            check = breach_check(
                calendar,
                slot.appointment_id,
                calendar.partners,
                last_heard,
                buffer,
                identity_conflict=identity_conflict,
            )
            answer, basis = breach_check_answer(check, calendar, asking, directory, at)
            answer["appointment"] = shown_ids[slot.appointment_id]
            answer["sentence"] = verdict_sentence(answer)
            missed.append(answer)
            bases.append(basis)

    view: dict[str, Any] = {
        "person_id": calendar.person_id,
        "referrals": _referrals(calendar, asking, directory),
        "appointments": appointments,
        "clashes": clashes,
        "missed": missed,
        "partners": []
        if others_hidden
        else _freshness(calendar, asking, directory, last_heard, at),
    }
    if identity_conflict:
        view["notice"] = IDENTITY_CONFLICT
    elif denied is not None:
        view["notice"] = EXPLANATIONS["withheld"]
    consent_bases = [b for b in bases if b not in (ROLE_DEFAULT, OWN_RECORD)]
    answered = Answered(
        disclosure_id=disclosure_id,
        person_id=calendar.person_id,
        recipient=asking.id,
        role=role,
        what=f"PersonView/{calendar.person_id}",
        basis=denied or (consent_bases[0] if consent_bases else ROLE_DEFAULT),
        user=user,
    )
    return view, answered


def _referrals(
    calendar: Calendar, asking: Partner, directory: PartnerDirectory
) -> list[dict[str, Any]]:
    """The referrals the asking partner sent or received for the person, and where each stands:
    what its Task tells either end (the Task rule: status, reason, owner and requester)."""
    shown = []
    for referral in sorted(calendar.referrals.values(), key=lambda r: r.requested):
        if asking.id not in (referral.referrer, referral.recipient):
            continue
        other = referral.recipient if referral.referrer == asking.id else referral.referrer
        partner = directory.get(other) if other else None
        shown.append(
            {
                "id": referral.fhir_id,
                "sent": referral.referrer == asking.id,
                "with": partner.name if partner else other,
                "status": referral.status,
                "urgency": referral.urgency,
                "deadline": _when(referral.deadline),
                "escalated": referral.escalated,
                "first_appointment_booked": referral.first_appointment is not None,
                "reason": referral.reason,
            }
        )
    return shown


# --- the verdict in a plain sentence ------------------------------------------------------------


def _local(instant: str | None) -> datetime | None:
    return datetime.fromisoformat(instant).astimezone(LOCAL) if instant else None


def spoken_time(start: str | None, end: str | None) -> str:
    """The time as people say it, "10:00 to 10:30 on 3 December" with an en dash (local time),
    or what is known of it."""
    begins, ends = _local(start), _local(end)
    if begins is None:
        return "at a time not known"
    day = f"{begins.day} {begins:%B}"
    if ends is None:
        return f"from {begins:%H:%M} on {day}"
    return f"{begins:%H:%M}\u2013{ends:%H:%M} on {day}"


def _organisation(evidence: Mapping[str, Any]) -> str:
    name = evidence.get("organisation")
    if name:
        return f"an appointment with {name}"
    kind = str(evidence.get("organisation_type", "other-service")).replace("-", " ")
    return f"a {kind} appointment"


ATTENDANCE = {"arrived": "arrived for", "checked-in": "checked in for", "fulfilled": "attended"}


def _confirmed(evidence: list[Mapping[str, Any]]) -> str:
    """When the service recorded the attendance, as the officer's evidence note needs it:
    "confirmed by the service at 09:12 on 3 December" (the latest, if several)."""
    recorded = [r for e in evidence if (r := _local(e.get("recorded"))) is not None]
    if not recorded:
        return "as the service confirmed"
    latest = max(recorded)
    return f"confirmed by the service at {latest:%H:%M} on {latest.day} {latest:%B}"


def verdict_sentence(answer: Mapping[str, Any]) -> str:
    """The breach check's verdict as an officer would say it, from the answer they may see."""
    verdict = answer["verdict"]
    evidence = answer.get("evidence", [])
    if verdict == "explained":
        parts = [
            f"{ATTENDANCE.get(e.get('status', ''), 'attended')} {_organisation(e)} "
            f"{spoken_time(e.get('start'), e.get('end'))}"
            for e in evidence
        ]
        said = "; and ".join(parts)
        return f"Explained: the person {said}, {_confirmed(evidence)}."
    if verdict == "possible-conflict":
        parts = [
            f"{_organisation(e)} was booked {spoken_time(e.get('start'), e.get('end'))}"
            for e in evidence
        ]
        said = "; and ".join(parts)
        return f"Possible conflict: {said}, but attendance is not yet confirmed."
    if verdict == "no-known-conflict":
        return (
            "No known conflict: the hub holds no health appointment at that time. Check when "
            "each health service was last heard from before relying on this."
        )
    return str(answer.get("explanation") or EXPLANATIONS.get(verdict, verdict))
