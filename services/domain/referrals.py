"""Referrals from probation: the service directory, routing, the Task lifecycle and escalation.

Pure rules: a referral is routed by category and area, held when its content needs a
consent the person has not given, moves only along the lifecycle's legal transitions,
and is escalated once when it is not accepted by its working-day deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from schemas.keys import referral_named
from schemas.referrals import CATEGORIES as REFERRAL_CATEGORIES
from schemas.vocabulary import AREA_SYSTEM, PARTNER_SYSTEM
from schemas.vocabulary import REFERRAL_CATEGORY_SYSTEM as CATEGORY_SYSTEM
from services.domain.consent import ROLE_OF_KIND, ConsentDecision, basis_for
from services.domain.kinds import AgencyKind
from services.domain.referral_parties import ReferralParties

CATEGORIES: tuple[str, ...] = tuple(REFERRAL_CATEGORIES)  # one list: schemas/referrals.py

# Elements of a ServiceRequest beyond the minimum a receiving service needs to act.
CONTENT_ELEMENTS = ("reasonCode", "reasonReference", "note", "supportingInfo")

# The Task lifecycle; anything else is refused.
TRANSITIONS: Mapping[str, frozenset[str]] = {
    "requested": frozenset({"received", "accepted", "rejected", "cancelled"}),
    "received": frozenset({"accepted", "rejected", "cancelled"}),
    "accepted": frozenset({"in-progress", "completed", "cancelled"}),
    "in-progress": frozenset({"completed", "cancelled"}),
    "rejected": frozenset(),
    "completed": frozenset(),
    "cancelled": frozenset(),
}
# Who may move a referral to each status: the receiving service, or the referrer.
BY_RECIPIENT = frozenset({"received", "accepted", "rejected", "in-progress", "completed"})
BY_REFERRER = frozenset({"cancelled"})
AWAITING_ACCEPTANCE = frozenset({"requested", "received"})

DEFAULT_SLA_WORKING_DAYS: Mapping[str, int] = {"routine": 5, "urgent": 1}


# --- the service directory ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Service:
    """One organisation's offer of one category of service over some areas."""

    partner: str
    kind: AgencyKind
    name: str
    category: str
    areas: frozenset[str]


@dataclass(frozen=True, slots=True)
class ServiceDirectory:
    """Which organisation takes which category of referral where."""

    services: tuple[Service, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServiceDirectory:
        """Build from the YAML shape of deploy/services.yaml; ValueError names a bad entry."""
        if not isinstance(data, Mapping) or not isinstance(data.get("organisations"), list):
            raise ValueError("service directory must have a list of organisations")
        services = []
        for number, org in enumerate(data["organisations"], start=1):
            where = f"organisation {number}"
            if not isinstance(org, Mapping) or not all(
                isinstance(org.get(k), str) and org[k] for k in ("partner", "type", "name")
            ):
                raise ValueError(f"{where}: partner, type and name are required strings")
            if org["type"] not in get_args(AgencyKind):
                raise ValueError(f"{where} ({org['partner']}): type {org['type']!r} is not known")
            for offer in org.get("services") or []:
                category, areas = offer.get("category"), offer.get("areas")
                if category not in CATEGORIES:
                    raise ValueError(f"{where} ({org['partner']}): unknown category {category!r}")
                if not isinstance(areas, list) or not areas:
                    raise ValueError(
                        f"{where} ({org['partner']}): {category} needs a list of areas"
                    )
                services.append(
                    Service(
                        org["partner"],
                        org["type"],
                        org["name"],
                        category,
                        frozenset(map(str, areas)),
                    )
                )
        return cls(tuple(services))

    def offering(self, category: str, area: str) -> list[Service]:
        """The services of a category covering an area, in a stable order."""
        matches = [s for s in self.services if s.category == category and area in s.areas]
        return sorted(matches, key=lambda s: s.partner)


# --- routing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralRequest:
    """What routing needs from a probation ServiceRequest."""

    referral_id: str  # "<referrer>/<ServiceRequest.id>"
    fhir_id: str
    referrer: str
    category: str | None
    urgency: str
    area: str | None
    preferred: str | None
    has_content: bool
    authored: datetime


def _codes(concepts: Any, system: str) -> list[str]:
    return [
        str(coding.get("code"))
        for concept in concepts or []
        for coding in concept.get("coding", [])
        if coding.get("system") == system
    ]


def check_referrer(source: str, kind: AgencyKind) -> None:
    """ValueError unless `source` may refer through the hub: the hub routes probation's referrals."""
    if kind != "probation":
        raise ValueError(
            f"ServiceRequest: the hub routes referrals from probation services only (the partner "
            f"directory lists {source} as {kind}): refer to the service directly, or ask the "
            "person's probation officer to refer through the hub"
        )


def request_from_service_request(
    resource: Mapping[str, Any], *, source: str, occurred_at: datetime
) -> ReferralRequest:
    """The routing facts of a ServiceRequest; ValueError naming the element when one is missing."""
    if not resource.get("id"):
        raise ValueError("ServiceRequest.id: field required to track the referral")
    categories = _codes(resource.get("category"), CATEGORY_SYSTEM)
    areas = _codes(resource.get("locationCode"), AREA_SYSTEM)
    preferred = [
        p["identifier"]["value"]
        for p in resource.get("performer", [])
        if p.get("identifier", {}).get("system") == PARTNER_SYSTEM
    ]
    return ReferralRequest(
        referral_id=f"{source}/{resource['id']}",
        fhir_id=str(resource["id"]),
        referrer=source,
        category=categories[0] if categories else None,
        urgency="urgent" if resource.get("priority") in ("urgent", "asap", "stat") else "routine",
        area=areas[0] if areas else None,
        preferred=preferred[0] if preferred else None,
        has_content=any(resource.get(element) for element in CONTENT_ELEMENTS),
        authored=occurred_at,
    )


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Where a referral goes, or why it goes nowhere yet."""

    outcome: Literal["routed", "no-service", "held-for-consent", "incomplete"]
    service: Service | None
    reason: str


def route(
    request: ReferralRequest,
    directory: ServiceDirectory,
    consents: tuple[ConsentDecision, ...],
    now: datetime,
) -> RoutingDecision:
    """Choose the receiving organisation: the preferred one if it offers the service there."""
    if request.category is None or request.area is None:
        missing = "category" if request.category is None else "area (locationCode)"
        return RoutingDecision("incomplete", None, f"the referral has no {missing}")
    offers = directory.offering(request.category, request.area)
    if not offers:
        return RoutingDecision(
            "no-service", None, f"no service offers {request.category} in area {request.area}"
        )
    chosen = next((s for s in offers if s.partner == request.preferred), offers[0])
    if request.has_content:
        basis = basis_for(
            consents,
            recipient=chosen.partner,
            role=ROLE_OF_KIND[chosen.kind],
            category="referral-content",
            at=now,
        )
        if basis is None:
            return RoutingDecision(
                "held-for-consent",
                chosen,
                f"the referral's reason and notes need the person's consent to share "
                f"referral content with {chosen.name}",
            )
    return RoutingDecision("routed", chosen, f"routed to {chosen.name}")


# --- the referral's lifecycle ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Referral:
    """One referral as the hub tracks it."""

    referral_id: str
    fhir_id: str
    referrer: str
    recipient: str | None
    status: str  # a Task.status, or "held" / "no-service" / "incomplete" before routing
    category: str | None
    urgency: str
    requested: datetime
    deadline: datetime | None
    escalated: bool = False
    reason: str | None = None  # why rejected, held or not routed
    first_appointment: str | None = None
    updated: datetime | None = None
    # The event the referral was routed from: delivered again it is no change; another is refused.
    event_id: str | None = None
    # Who the person is and who referred them, as the referrer sent them: for the service only.
    parties: ReferralParties | None = field(default=None, repr=False)
    area: str | None = None  # the area it was made for (a local authority code): figures by area


@dataclass(frozen=True, slots=True)
class TaskUpdate:
    """What a partner's Task says about a referral."""

    task_id: str  # the sender's own id for the Task, to name it when the hub answers
    referral: str  # the ServiceRequest id its focus (or basedOn) names
    status: str
    reason: str | None


def task_update(resource: Mapping[str, Any]) -> TaskUpdate:
    """Read a referral's Task update; ValueError naming the element the hub cannot act on."""
    task_id = resource.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise ValueError("Task.id: field required: the hub names the update by it when it answers")
    referral = referral_named(resource)
    if referral is None:
        raise ValueError(
            "Task.focus: must reference the referral as ServiceRequest/<id> (or Task.basedOn)"
        )
    status = str(resource.get("status"))
    if status not in TRANSITIONS:
        allowed = ", ".join(TRANSITIONS)
        raise ValueError(f"Task.status: {status!r} is not a referral lifecycle status ({allowed})")
    reason = resource.get("statusReason")
    text = reason.get("text") if isinstance(reason, Mapping) else None
    return TaskUpdate(task_id, referral, status, text if isinstance(text, str) else None)


class IllegalTransition(ValueError):  # noqa: N818 -- reads as the refusal it is
    """A Task update the lifecycle does not allow; the message says why."""


def working_deadline(start: datetime, working_days: int) -> datetime:
    """`start` plus a number of working days, weekends excluded."""
    deadline = start
    remaining = working_days
    while remaining > 0:
        deadline += timedelta(days=1)
        if deadline.weekday() < 5:
            remaining -= 1
    # A referral made at a weekend is due as if made first thing on Monday.
    while deadline.weekday() >= 5:
        deadline += timedelta(days=1)
    return deadline


def open_referral(
    request: ReferralRequest,
    decision: RoutingDecision,
    sla: Mapping[str, int] = DEFAULT_SLA_WORKING_DAYS,
) -> Referral:
    """The referral record after routing."""
    status = {"routed": "requested", "held-for-consent": "held"}.get(
        decision.outcome, decision.outcome
    )
    routed = decision.outcome == "routed" and decision.service is not None
    return Referral(
        referral_id=request.referral_id,
        fhir_id=request.fhir_id,
        referrer=request.referrer,
        recipient=decision.service.partner if decision.service else None,
        status=status,
        category=request.category,
        urgency=request.urgency,
        requested=request.authored,
        deadline=working_deadline(request.authored, sla[request.urgency]) if routed else None,
        reason=None if routed else decision.reason,
        updated=request.authored,
        area=request.area,
    )


def transition(
    referral: Referral, status: str, *, by: str, reason: str | None, at: datetime
) -> Referral:
    """Move the referral to `status` on behalf of partner `by`, or IllegalTransition saying why."""
    if status == referral.status:
        return referral  # the same update delivered again
    allowed = TRANSITIONS.get(referral.status, frozenset())
    if status not in allowed:
        raise IllegalTransition(
            f"referral {referral.fhir_id} is {referral.status}; it cannot become {status}"
        )
    if status in BY_RECIPIENT and by != referral.recipient:
        raise IllegalTransition(
            f"only the receiving service may mark referral {referral.fhir_id} {status}"
        )
    if status in BY_REFERRER and by not in (referral.referrer, referral.recipient):
        raise IllegalTransition(
            f"only the referrer or the receiving service may cancel referral {referral.fhir_id}"
        )
    return replace(
        referral,
        status=status,
        reason=reason if status == "rejected" else referral.reason,
        updated=at,
    )


def routed_change(referral: Referral) -> str:
    """Why a changed ServiceRequest for a referral already routed is not taken."""
    return (
        f"ServiceRequest/{referral.fhir_id}: the referral is already routed (status "
        f"{referral.status}) and the hub does not take changes to a routed referral: to withdraw "
        "it, send its Task with status cancelled, then refer again under a new id"
    )


def link_appointment(referral: Referral, appointment_id: str) -> Referral:
    """Record the first appointment booked for the referral (the same object if already known)."""
    if referral.first_appointment is not None:
        return referral
    return replace(referral, first_appointment=appointment_id)


def due_for_escalation(referral: Referral, now: datetime) -> bool:
    """True once, when a routed referral is still not accepted after its deadline."""
    return (
        not referral.escalated
        and referral.status in AWAITING_ACCEPTANCE
        and referral.deadline is not None
        and now >= referral.deadline
    )


def escalate(referral: Referral) -> Referral:
    """Mark the referral escalated, so it is escalated only once."""
    return replace(referral, escalated=True)
