"""A referral's steps on the person's record: routed and delivered, followed through its Task,
linked to its first appointment, escalated when overdue.

Each step takes the record and returns the new record and its decisions; the rules they apply
(routing, the lifecycle, deadlines) are in services/domain/referrals.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.domain.calendar import Calendar, put_referral
from services.domain.consent import ROLE_OF_KIND, basis_for
from services.domain.decisions import (
    Decision,
    Disclose,
    InboxEntryChanged,
    Rules,
    UpdateRefused,
    caused,
)
from services.domain.disclosure import identifiers_known_to, person_as_known
from services.domain.instants import read_instant
from services.domain.referral_messages import (
    message_id,
    overdue_detail,
    referral_alert,
    referral_for_service,
    referral_task,
)
from services.domain.referral_parties import parties_of
from services.domain.referrals import (
    AWAITING_ACCEPTANCE,
    IllegalTransition,
    Referral,
    check_referrer,
    due_for_escalation,
    escalate,
    link_appointment,
    open_referral,
    request_from_service_request,
    route,
    routed_change,
    task_update,
    transition,
)
from services.domain.refusals import Refusal
from services.domain.relationships import UNSENT_REFERRAL_STATUSES

Step = tuple[Calendar, list[Decision]]
ALERT_EVENT_TYPES = {
    "referral-not-routed": "referral.routing.failed",
    "referral-held": "referral.routing.held",
    "referral-overdue": "referral.deadline.missed",
}
NOT_ROUTED = {
    "no-service": "referral-not-routed",
    "incomplete": "referral-not-routed",
    "held": "referral-held",
}
ORIGIN = "referral-lifecycle"  # what the dead letter of a refused referral update names


def on_service_request(
    calendar: Calendar, message: Mapping[str, Any], rules: Rules, occurred_at: datetime
) -> Step:
    """A referral from a referrer: routed, and the receiving service and the referrer told.

    Only probation refers through the hub. A referral already routed is not routed again: the
    same event delivered again has no second effect, and a changed one is refused.
    """
    resource, source, event_id = message["resource"], message["source"], message["event_id"]
    try:
        check_referrer(source, rules.directory.kind_of(source))  # the edge refuses these first
    except ValueError as exc:
        return calendar, [_refused(message, Refusal(str(exc), "business-rule"))]
    request = request_from_service_request(
        resource, source=source, occurred_at=_authored(resource, occurred_at)
    )
    existing = calendar.referrals.get(request.referral_id)
    if existing is not None and existing.status not in UNSENT_REFERRAL_STATUSES:
        if existing.event_id in (None, event_id):
            return calendar, []
        return calendar, [_refused(message, Refusal(routed_change(existing), "business-rule"))]
    decision = route(request, rules.services, calendar.consents, rules.now)
    referral = replace(
        open_referral(request, decision, rules.sla),
        event_id=event_id,
        parties=parties_of(resource),
    )
    calendar = put_referral(calendar, referral)
    if referral.recipient is None or referral.status == "held":
        code = NOT_ROUTED.get(referral.status, "referral-not-routed")
        return calendar, _alert(
            calendar,
            referral,
            code=code,
            detail=referral.reason or code,
            recipient=referral.referrer,
            rules=rules,
            cause=caused(event_id),
        )
    cause = uuid.UUID(event_id)
    delivered = _delivered(
        calendar, referral, resource, has_content=request.has_content, rules=rules, cause=cause
    )
    return calendar, delivered + _tell_referrer(calendar, referral, rules, cause)


def _refused(message: Mapping[str, Any], refusal: Refusal) -> UpdateRefused:
    return UpdateRefused(message, refusal, ORIGIN)


def _authored(resource: Mapping[str, Any], fallback: datetime) -> datetime:
    """When the referral was made: its authoredOn when that is a dateTime, else `fallback`."""
    authored = resource.get("authoredOn")
    if isinstance(authored, str) and "T" in authored:
        return read_instant(authored).astimezone(UTC)
    return fallback


def _delivered(
    calendar: Calendar,
    referral: Referral,
    resource: Mapping[str, Any],
    *,
    has_content: bool,
    rules: Rules,
    cause: uuid.UUID,
) -> list[Decision]:
    """The referral as the receiving service may see it: who the person is and who referred them
    on direct care (services/domain/referral_parties.py); its content on the person's consent."""
    recipient = referral.recipient
    assert recipient is not None
    kind = rules.directory.kind_of(recipient)
    role = ROLE_OF_KIND[kind]
    shown = referral_for_service(
        resource,
        referral.parties,
        identifiers_known_to(calendar.known_as, recipient, kind),
        calendar.person_id,
        role=role,
        consents=calendar.consents,
        recipient=recipient,
        at=rules.now,
    )
    basis = shown.basis
    if has_content:
        consented = basis_for(
            calendar.consents,
            recipient=recipient,
            role=role,
            category="referral-content",
            at=rules.now,
        )
        basis = consented or shown.basis
    return [
        Disclose(
            person_id=calendar.person_id,
            recipient=recipient,
            role=role,
            event_id=message_id(referral, "delivered", recipient),
            event_type="referral.request.delivered",
            resource=shown.resource,
            what=f"ServiceRequest/{referral.fhir_id}",
            basis=basis,
            cause=cause,
        ),
        InboxEntryChanged(calendar.person_id, referral),
    ]


def _tell_referrer(
    calendar: Calendar,
    referral: Referral,
    rules: Rules,
    cause: uuid.UUID | None,
    what: str | None = None,
) -> list[Decision]:
    """The referral's Task, as it now stands, to the referrer; and its inbox entry."""
    task = referral_task(referral, calendar.person_id, rules.now)
    return [
        Disclose(
            person_id=calendar.person_id,
            recipient=referral.referrer,
            role=ROLE_OF_KIND[rules.directory.kind_of(referral.referrer)],
            event_id=message_id(referral, f"task:{what or referral.status}", referral.referrer),
            event_type="referral.task.updated",
            resource=task,
            what=f"Task/{task['id']}",
            basis="own-record",
            cause=cause,
        ),
        InboxEntryChanged(calendar.person_id, referral),
    ]


def _alert(
    calendar: Calendar,
    referral: Referral,
    *,
    code: str,
    detail: str,
    recipient: str,
    rules: Rules,
    cause: uuid.UUID | None,
) -> list[Decision]:
    """An alert about the referral (not routed, held, overdue) to one party, naming the person
    as that party knows them; and its inbox entry."""
    person, kind = calendar.person_id, rules.directory.kind_of(recipient)
    resource = referral_alert(
        referral,
        code=code,
        detail=detail,
        recipient=recipient,
        person=person_as_known(identifiers_known_to(calendar.known_as, recipient, kind), person),
        now=rules.now,
    )
    return [
        Disclose(
            person_id=person,
            recipient=recipient,
            role=ROLE_OF_KIND[kind],
            event_id=message_id(referral, f"alert:{code}", recipient),
            event_type=ALERT_EVENT_TYPES[code],
            resource=resource,
            what=f"DetectedIssue/{resource['id']}",
            basis="role-default",
            cause=cause,
        ),
        InboxEntryChanged(person, referral),
    ]


def on_task(calendar: Calendar, message: Mapping[str, Any], rules: Rules) -> Step:
    """A Task update from a party to a referral: the referral it names, sent by or to the
    partner updating it, moves along its lifecycle; an update the hub cannot apply is refused."""
    source = message["source"]
    update = task_update(message["resource"])
    matches = [
        r
        for r in calendar.referrals.values()
        if r.fhir_id == update.referral and source in (r.referrer, r.recipient)
    ]
    if not matches:
        reason = f"Task.focus: no referral {update.referral!r} addressed to or sent by {source}"
        return calendar, [_refused(message, Refusal(reason, "not-found"))]
    referral = matches[0]
    try:
        updated = transition(referral, update.status, by=source, reason=update.reason, at=rules.now)
    except IllegalTransition as exc:
        return calendar, [_refused(message, Refusal(str(exc), "business-rule"))]
    if updated is referral:
        return calendar, []
    calendar = put_referral(calendar, updated)
    return calendar, _tell_referrer(calendar, updated, rules, caused(message["event_id"]))


def on_booking(
    calendar: Calendar,
    based_on: str | None,
    appointment_id: str,
    rules: Rules,
    cause: str,
) -> Step:
    """An appointment the receiving service booked for a referral (Appointment.basedOn names
    the ServiceRequest): the referrer sees "first appointment booked"."""
    if not based_on or not based_on.startswith("ServiceRequest/"):
        return calendar, []
    fhir_id = based_on.removeprefix("ServiceRequest/")
    for referral in calendar.referrals.values():
        if referral.fhir_id == fhir_id and appointment_id.startswith(f"{referral.recipient}/"):
            linked = link_appointment(referral, appointment_id)
            if linked is referral:
                return calendar, []
            calendar = put_referral(calendar, linked)
            told = _tell_referrer(calendar, linked, rules, caused(cause), "first-appointment")
            return calendar, told
    return calendar, []


def on_deadlines(calendar: Calendar, now: datetime, rules: Rules) -> Step:
    """Escalate, once, every referral not accepted by its deadline: to referrer and service."""
    decisions: list[Decision] = []
    for referral in list(calendar.referrals.values()):
        if not due_for_escalation(referral, now):
            continue
        escalated = escalate(referral)
        calendar = put_referral(calendar, escalated)
        detail = overdue_detail(referral)
        for recipient in (referral.referrer, referral.recipient):
            if recipient:
                decisions += _alert(
                    calendar,
                    escalated,
                    code="referral-overdue",
                    detail=detail,
                    recipient=recipient,
                    rules=rules,
                    cause=None,
                )
    return calendar, decisions


def next_deadline(calendar: Calendar) -> datetime | None:
    """The earliest deadline among referrals still awaiting acceptance and not escalated."""
    deadlines = [
        r.deadline
        for r in calendar.referrals.values()
        if r.deadline is not None and not r.escalated and r.status in AWAITING_ACCEPTANCE
    ]
    return min(deadlines) if deadlines else None
