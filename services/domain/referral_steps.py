"""A referral's steps on the person's record: routed and delivered, followed through its one
Task, linked to its first appointment, ended by its referrer, escalated when overdue.

Each step takes the record and returns the new record and its decisions; the rules they apply
(routing, the lifecycle, deadlines) are in services/domain/referrals.py.

The referral has one Task (`referral_messages.task_id`): delivered to the service beside the
ServiceRequest, updated by the service and the referrer, each change sent as a new version. The
hub keeps the referral's person under the referral's token as each party names it
(schemas/keys.py `referral_token`), so a Task naming no person is still found by its referral.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from schemas.keys import referral_home, referral_token
from services.domain.calendar import Calendar, put_referral
from services.domain.consent import ROLE_OF_KIND, basis_for
from services.domain.decisions import (
    Assigned,
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
    task_id,
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
    "referral-ended": "referral.appointment.flagged",
}
NOT_ROUTED = {
    "no-service": "referral-not-routed",
    "incomplete": "referral-not-routed",
    "held": "referral-held",
}
ORIGIN = "referral-lifecycle"  # what the dead letter of a refused referral update names
# A referrer ends a referral by its ServiceRequest's status (or by cancelling its Task); the
# words say how, in the flag to a service that booked for it (never the referrer's own text).
REQUEST_ENDINGS = {
    "revoked": "withdrew it",
    "completed": "closed it",
    "entered-in-error": "withdrew it as entered in error",
}
CANCELLED_BY_REFERRER = "cancelled it"
ENDED = frozenset({"completed", "rejected", "cancelled"})
# The appointment statuses a referral's ending may make unneeded: booked, not yet attended.
STILL_BOOKED = frozenset({"proposed", "pending", "booked", "waitlist"})


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
    ending = REQUEST_ENDINGS.get(str(resource.get("status")))
    if ending is not None:
        return _ended_by_request(calendar, message, existing, ending, rules)
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
    filed = filed_under(calendar.person_id, referral)
    if referral.recipient is None or referral.status == "held":
        code = NOT_ROUTED.get(referral.status, "referral-not-routed")
        return calendar, filed + _alert(
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
    told = _tell_parties(calendar, referral, rules, cause, to_service=True)
    return calendar, filed + delivered + told


def filed_under(person_id: str, referral: Referral) -> list[Decision]:
    """The referral's person, kept under the referral's token as its referrer names it and, once
    delivered, as its service does: a Task naming no person is found by it (schemas/keys.py)."""
    parties = [referral.referrer]
    if referral.recipient is not None and referral.status not in UNSENT_REFERRAL_STATUSES:
        parties.append(referral.recipient)
    tokens = [referral_token(party, referral.fhir_id) for party in parties]
    return [Assigned(token, person_id, referral_home(token)) for token in tokens]


def _ended_by_request(
    calendar: Calendar,
    message: Mapping[str, Any],
    existing: Referral | None,
    how: str,
    rules: Rules,
) -> Step:
    """A referrer's ServiceRequest ending a referral (revoked, completed, entered-in-error): the
    referral is cancelled, both parties see its Task, and a service that booked for it is told
    its appointment may no longer be needed. Ending one already ended has no effect."""
    if existing is None:
        status = message["resource"].get("status")
        reason = (
            f"ServiceRequest.status: {status}, but the hub holds no referral "
            f"{message['resource']['id']!r} from {message['source']} to end"
        )
        return calendar, [_refused(message, Refusal(reason, "not-found"))]
    if existing.status in ENDED:
        return calendar, []
    ended = replace(existing, status="cancelled", updated=rules.now)
    return _ended(calendar, ended, how, rules, caused(message["event_id"]))


def _ended(
    calendar: Calendar, ended: Referral, how: str, rules: Rules, cause: uuid.UUID | None
) -> Step:
    """A referral its referrer ended: recorded, its Task to both parties, and the flag."""
    calendar = put_referral(calendar, ended)
    told = _tell_parties(calendar, ended, rules, cause, to_service=True)
    return calendar, told + appointment_flag(calendar, ended, how, rules, cause)


def appointment_flag(
    calendar: Calendar, referral: Referral, how: str, rules: Rules, cause: uuid.UUID | None
) -> list[Decision]:
    """The flag to the service that booked a referral's first appointment, when its referrer
    ended the referral (`how`) while that appointment is still booked and to come: the
    appointment may no longer be needed. Only a flag: the booking is the service's to cancel or
    keep, never the hub's. Its id is fixed per referral and service: one flag per ending."""
    booked = calendar.slots.get(referral.first_appointment or "")
    if (
        referral.status != "cancelled"
        or booked is None
        or booked.status not in STILL_BOOKED
        or (booked.start is not None and booked.start <= rules.now)
    ):
        return []
    own_id = booked.appointment_id.removeprefix(f"{booked.partner}/")
    detail = (
        f"The referrer {how}: referral {referral.fhir_id} has ended. The first appointment "
        f"booked for it (Appointment/{own_id}) may no longer be needed. The hub has not "
        "cancelled it: whether it goes ahead is for your service to decide."
    )
    return _alert(
        calendar,
        referral,
        code="referral-ended",
        detail=detail,
        recipient=booked.partner,
        rules=rules,
        cause=cause,
        implicated=(f"Appointment/{own_id}",),
    )


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


def _tell_parties(
    calendar: Calendar,
    referral: Referral,
    rules: Rules,
    cause: uuid.UUID | None,
    what: str | None = None,
    *,
    to_service: bool = False,
) -> list[Decision]:
    """The referral's one Task, as it now stands, to the referrer and, when it is new to the
    service (delivered, or changed by the referrer), to the service; and its inbox entry.

    The service gets the Task it is to update: its id, and the hub's person id in `for`, which
    the service's update echoes back.
    """
    task = referral_task(referral, calendar.person_id, rules.now)
    parties = [(referral.referrer, "own-record")]
    if referral.recipient is not None and to_service:
        parties.append((referral.recipient, "role-default"))
    decisions: list[Decision] = [
        Disclose(
            person_id=calendar.person_id,
            recipient=party,
            role=ROLE_OF_KIND[rules.directory.kind_of(party)],
            event_id=message_id(referral, f"task:{what or referral.status}", party),
            event_type="referral.task.updated",
            resource=task,
            what=f"Task/{task['id']}",
            basis=basis,
            cause=cause,
        )
        for party, basis in parties
    ]
    return [*decisions, InboxEntryChanged(calendar.person_id, referral)]


def _alert(
    calendar: Calendar,
    referral: Referral,
    *,
    code: str,
    detail: str,
    recipient: str,
    rules: Rules,
    cause: uuid.UUID | None,
    implicated: tuple[str, ...] = (),
) -> list[Decision]:
    """An alert about the referral (not routed, held, overdue, ended) to one party, naming the
    person as that party knows them and implicating the referral and any of the party's own
    resources named; and its inbox entry."""
    person, kind = calendar.person_id, rules.directory.kind_of(recipient)
    resource = referral_alert(
        referral,
        code=code,
        detail=detail,
        recipient=recipient,
        person=person_as_known(identifiers_known_to(calendar.known_as, recipient, kind), person),
        now=rules.now,
    )
    resource["implicated"] += [{"reference": reference} for reference in implicated]
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
    """A Task update from a party to a referral: the referral it names (Task.focus or basedOn),
    sent by or to the partner updating it, moves along its lifecycle; an update the hub cannot
    apply is refused. The referral names its person: the Task need not (it may name the person
    by the sender's own id, or no one), and is never used to link anyone.

    A referral its referrer cancels is ended: the service sees the cancelled Task, and is
    flagged when it booked an appointment for it."""
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
    # The Task's own id names the referral when two referrers used the same ServiceRequest id.
    named = [r for r in matches if task_id(r) == update.task_id]
    referral = (named or matches)[0]
    try:
        updated = transition(referral, update.status, by=source, reason=update.reason, at=rules.now)
    except IllegalTransition as exc:
        return calendar, [_refused(message, Refusal(str(exc), "business-rule"))]
    if updated is referral:
        return calendar, []
    cause = caused(message["event_id"])
    if updated.status == "cancelled" and source == referral.referrer:
        return _ended(calendar, updated, CANCELLED_BY_REFERRER, rules, cause)
    calendar = put_referral(calendar, updated)
    return calendar, _tell_parties(calendar, updated, rules, cause)


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
            told = _tell_parties(calendar, linked, rules, caused(cause), "first-appointment")
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
