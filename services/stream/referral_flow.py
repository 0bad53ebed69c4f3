"""The referral steps of the person stream: route, deliver, follow the Task, link, escalate.

Each step takes the person's record and returns the new record and what to send;
the rules themselves are in services/domain/referrals.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas import topics
from services.domain.calendar import Calendar, put_referral
from services.domain.consent import ROLE_OF_KIND, Role, basis_for
from services.domain.disclosure import disclose
from services.domain.referral_messages import (
    message_id,
    overdue_detail,
    referral_alert,
    referral_task,
)
from services.domain.referrals import (
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
from services.stream.outbox import Context, Disclosed, Out, disclosure_outs, refusal_outs

Step = tuple[Calendar, list[Out]]
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


def on_service_request(
    calendar: Calendar, message: Mapping[str, Any], ctx: Context, occurred_at: datetime
) -> Step:
    """A referral from a referrer: route it and tell the receiving service and the referrer."""
    resource = message["resource"]
    source = message["source"]
    try:
        check_referrer(source, ctx.directory.kind_of(source))  # the edge refuses these first
    except ValueError as exc:
        return calendar, _refused(message, Refusal(str(exc), "business-rule"), ctx)
    request = request_from_service_request(
        resource, source=source, occurred_at=_authored(resource, occurred_at)
    )
    existing = calendar.referrals.get(request.referral_id)
    if existing is not None and existing.status not in ("held", "no-service", "incomplete"):
        if existing.event_id in (None, message["event_id"]):
            return calendar, []  # the routed referral delivered again: no second effect
        return calendar, _refused(message, Refusal(routed_change(existing), "business-rule"), ctx)
    referral = replace(
        open_referral(request, route(request, ctx.services, calendar.consents, ctx.now), ctx.sla),
        event_id=message["event_id"],
    )
    return _routed(put_referral(calendar, referral), referral, resource, ctx, message["event_id"])


def _refused(message: Mapping[str, Any], refusal: Refusal, ctx: Context) -> list[Out]:
    """A refused update, kept on the dead-letter topic and told to its sender."""
    return refusal_outs(message, refusal, ctx.now, origin="referral-lifecycle")


def _authored(resource: Mapping[str, Any], fallback: datetime) -> datetime:
    authored = resource.get("authoredOn")
    if isinstance(authored, str) and "T" in authored:
        return datetime.fromisoformat(authored.replace("Z", "+00:00")).astimezone(UTC)
    return fallback


def _routed(
    calendar: Calendar, referral: Referral, resource: Mapping[str, Any], ctx: Context, cause: str
) -> Step:
    person = calendar.person_id
    if referral.recipient is None or referral.status == "held":
        code = NOT_ROUTED.get(referral.status, "referral-not-routed")
        return calendar, _alert(
            referral,
            code=code,
            detail=referral.reason or code,
            recipient=referral.referrer,
            person=person,
            ctx=ctx,
            cause=cause,
        )
    outs = _deliver(calendar, referral, resource, ctx, cause)
    outs += _tell_referrer(calendar, referral, ctx, cause)
    return calendar, outs


def _deliver(
    calendar: Calendar, referral: Referral, resource: Mapping[str, Any], ctx: Context, cause: str
) -> list[Out]:
    recipient = referral.recipient
    assert recipient is not None
    role = ROLE_OF_KIND[ctx.directory.kind_of(recipient)]
    shown = disclose(
        resource,
        resource_type="ServiceRequest",
        role=role,
        own=False,
        agency_kind=None,
        consents=calendar.consents,
        recipient=recipient,
        at=ctx.now,
    )
    # The hub's person id lets the service answer about the same person.
    delivered = {
        **shown.resource,
        "subject": {"identifier": {"system": "urn:concord:id:person", "value": calendar.person_id}},
    }
    basis = (
        _consent_basis(calendar, recipient, role, ctx)
        if resource_has_content(resource)
        else shown.basis
    )
    disclosed = Disclosed(
        topic=topics.OUTBOUND,
        event_id=message_id(referral, "delivered", recipient),
        event_type="referral.request.delivered",
        recipient=recipient,
        role=role,
        resource=delivered,
        what=f"ServiceRequest/{referral.fhir_id}",
        basis=basis,
    )
    return [
        *disclosure_outs(disclosed, calendar.person_id, ctx.now, uuid.UUID(cause)),
        _index(calendar, referral),
    ]


def resource_has_content(resource: Mapping[str, Any]) -> bool:
    """True when the referral carries reason or notes beyond the minimum."""
    return any(resource.get(k) for k in ("reasonCode", "reasonReference", "note", "supportingInfo"))


def _consent_basis(calendar: Calendar, recipient: str, role: Role, ctx: Context) -> str:
    basis = basis_for(
        calendar.consents, recipient=recipient, role=role, category="referral-content", at=ctx.now
    )
    return basis or "role-default"


def _tell_referrer(
    calendar: Calendar, referral: Referral, ctx: Context, cause: str | None, what: str | None = None
) -> list[Out]:
    """The referral's Task, as it now stands, to the referrer; and the inbox entry."""
    task = referral_task(referral, calendar.person_id, ctx.now)
    marker = what or referral.status
    disclosed = Disclosed(
        topic=topics.OUTBOUND,
        event_id=message_id(referral, f"task:{marker}", referral.referrer),
        event_type="referral.task.updated",
        recipient=referral.referrer,
        role=ROLE_OF_KIND[ctx.directory.kind_of(referral.referrer)],
        resource=task,
        what=f"Task/{task['id']}",
        basis="own-record",
    )
    cause_id = uuid.UUID(cause) if cause else None
    return [
        *disclosure_outs(disclosed, calendar.person_id, ctx.now, cause_id),
        _index(calendar, referral),
    ]


def _alert(
    referral: Referral,
    *,
    code: str,
    detail: str,
    recipient: str,
    person: str,
    ctx: Context,
    cause: str | None,
) -> list[Out]:
    resource = referral_alert(
        referral, code=code, detail=detail, recipient=recipient, person_id=person, now=ctx.now
    )
    disclosed = Disclosed(
        topic=topics.ALERTS,
        event_id=message_id(referral, f"alert:{code}", recipient),
        event_type=ALERT_EVENT_TYPES[code],
        recipient=recipient,
        role=ROLE_OF_KIND[ctx.directory.kind_of(recipient)],
        resource=resource,
        what=f"DetectedIssue/{resource['id']}",
        basis="role-default",
    )
    return [
        *disclosure_outs(disclosed, person, ctx.now, uuid.UUID(cause) if cause else None),
        _index_for(person, referral),
    ]


def _index(calendar: Calendar, referral: Referral) -> Out:
    return _index_for(calendar.person_id, referral)


def _index_for(person: str, referral: Referral) -> Out:
    """The referral's inbox entry: who sent it to whom, and where it stands."""

    def when(value: datetime | None) -> str | None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None

    entry = {
        "referral_id": referral.referral_id,
        "id": referral.fhir_id,
        "person_id": person,
        "referrer": referral.referrer,
        "recipient": referral.recipient,
        "status": referral.status,
        "category": referral.category,
        "urgency": referral.urgency,
        "requested": when(referral.requested),
        "deadline": when(referral.deadline),
        "escalated": referral.escalated,
        "first_appointment": referral.first_appointment,
        "reason": referral.reason,
        "updated": when(referral.updated),
    }
    return Out(topics.REFERRALS, referral.referral_id.encode(), orjson.dumps(entry))


def on_task(calendar: Calendar, message: Mapping[str, Any], ctx: Context) -> Step:
    """A Task update from a party to a referral; an update the hub cannot apply is refused."""
    source = message["source"]
    update = task_update(message["resource"])
    matches = [
        r
        for r in calendar.referrals.values()
        if r.fhir_id == update.referral and source in (r.referrer, r.recipient)
    ]
    if not matches:
        reason = f"Task.focus: no referral {update.referral!r} addressed to or sent by {source}"
        return calendar, _refused(message, Refusal(reason, "not-found"), ctx)
    referral = matches[0]
    try:
        updated = transition(referral, update.status, by=source, reason=update.reason, at=ctx.now)
    except IllegalTransition as exc:
        return calendar, _refused(message, Refusal(str(exc), "business-rule"), ctx)
    if updated is referral:
        return calendar, []
    calendar = put_referral(calendar, updated)
    return calendar, _tell_referrer(calendar, updated, ctx, message["event_id"])


def on_booking(
    calendar: Calendar, based_on: str | None, appointment_id: str, ctx: Context, cause: str
) -> Step:
    """An appointment booked for a referral: the referrer sees "first appointment booked"."""
    if not based_on or not based_on.startswith("ServiceRequest/"):
        return calendar, []
    fhir_id = based_on.removeprefix("ServiceRequest/")
    for referral in calendar.referrals.values():
        if referral.fhir_id == fhir_id and appointment_id.startswith(f"{referral.recipient}/"):
            linked = link_appointment(referral, appointment_id)
            if linked is referral:
                return calendar, []
            calendar = put_referral(calendar, linked)
            return calendar, _tell_referrer(calendar, linked, ctx, cause, what="first-appointment")
    return calendar, []


def on_deadlines(calendar: Calendar, now: datetime, ctx: Context) -> Step:
    """Escalate, once, every referral not accepted by its deadline: to referrer and service."""
    outs: list[Out] = []
    for referral in list(calendar.referrals.values()):
        if not due_for_escalation(referral, now):
            continue
        escalated = escalate(referral)
        calendar = put_referral(calendar, escalated)
        for recipient in (referral.referrer, referral.recipient):
            if recipient:
                outs += _alert(
                    escalated,
                    code="referral-overdue",
                    detail=overdue_detail(referral),
                    recipient=recipient,
                    person=calendar.person_id,
                    ctx=ctx,
                    cause=None,
                )
    return calendar, outs


def next_deadline(calendar: Calendar) -> datetime | None:
    """The earliest deadline among referrals still awaiting acceptance and not escalated."""
    deadlines = [
        r.deadline
        for r in calendar.referrals.values()
        if r.deadline is not None and not r.escalated and r.status in ("requested", "received")
    ]
    return min(deadlines) if deadlines else None
