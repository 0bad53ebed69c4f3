"""The FHIR resources the hub sends about a referral: the ServiceRequest the receiving service
is sent, the Task the referrer follows, and alerts.

The Task and alerts are built from the referral record only; the referral's own content reaches
the receiving service through the disclosure policy (`referral_for_service`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from schemas.identifiers import HUB_PERSON
from schemas.vocabulary import ALERT_SYSTEM, PARTNER_SYSTEM, RECIPIENT_EXTENSION
from services.domain.consent import ConsentDecision, Role
from services.domain.disclosure import (
    DIRECT_CARE,
    ROLE_DEFAULT,
    Disclosure,
    disclose,
    person_as_known,
    reference_to,
)
from services.domain.instants import fhir_instant
from services.domain.referral_parties import ReferralParties
from services.domain.referrals import Referral

MESSAGE_NAMESPACE: Final = uuid.UUID("0d4b5f7a-8c2e-5a51-9f3b-6e7d1c2a4b90")


def message_id(referral: Referral, what: str, recipient: str) -> uuid.UUID:
    """A deterministic id, so a reprocessed referral change is a recognisable duplicate."""
    return uuid.uuid5(MESSAGE_NAMESPACE, f"{referral.referral_id}|{what}|{recipient}")


def task_id(referral: Referral) -> str:
    """The id of the referral's one Task, which the referrer follows and the service updates:
    the same for both, and on every worker and replay."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{referral.referral_id}|task"))


def _partner(partner_id: str) -> dict[str, Any]:
    return {"identifier": {"system": PARTNER_SYSTEM, "value": partner_id}}


def referral_task(referral: Referral, person_id: str, now: datetime) -> dict[str, Any]:
    """The referral's state as its one FHIR Task, for the referrer and the receiving service;
    each change is a new version (meta.lastUpdated)."""
    changed = fhir_instant(referral.updated or now)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id(referral),
        "meta": {"lastUpdated": changed},
        "status": referral.status if referral.status in _TASK_STATUSES else "draft",
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral.fhir_id}"},
        "for": {"identifier": {"system": HUB_PERSON, "value": person_id}},
        "requester": _partner(referral.referrer),
        "authoredOn": fhir_instant(referral.requested),
        "lastModified": changed,
    }
    if referral.recipient:
        task["owner"] = _partner(referral.recipient)
    if referral.first_appointment:
        task["businessStatus"] = {"text": "first appointment booked"}
    elif referral.status in ("held", "no-service", "incomplete"):
        task["businessStatus"] = {"text": referral.status}
    if referral.reason:
        task["statusReason"] = {"text": referral.reason}
    return task


_TASK_STATUSES = frozenset(
    [
        "draft",
        "requested",
        "received",
        "accepted",
        "rejected",
        "ready",
        "cancelled",
        "in-progress",
        "on-hold",
        "failed",
        "completed",
        "entered-in-error",
    ]
)


def referral_alert(
    referral: Referral,
    *,
    code: str,
    detail: str,
    recipient: str,
    person: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """A DetectedIssue about a referral for one recipient (not routed, held, overdue, refused);
    `person` the contained Patient naming the person as the recipient knows them
    (services.domain.disclosure.person_as_known)."""
    return {
        "resourceType": "DetectedIssue",
        "id": str(message_id(referral, code, recipient)),
        "contained": [person],
        "extension": [{"url": RECIPIENT_EXTENSION, "valueString": recipient}],
        "status": "final",
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": code}]},
        "severity": "high" if code == "referral-overdue" else "moderate",
        "patient": reference_to(person),
        "identifiedDateTime": fhir_instant(now),
        "implicated": [{"reference": f"ServiceRequest/{referral.fhir_id}"}],
        "detail": detail,
    }


def overdue_detail(referral: Referral) -> str:
    """The escalation sentence: which referral, how urgent, since when; nothing clinical."""
    deadline = fhir_instant(referral.deadline) if referral.deadline else "its deadline"
    return (
        f"Referral {referral.fhir_id} ({referral.urgency}, {referral.category}) has not been "
        f"accepted by {deadline}."
    )


def referral_for_service(
    service_request: Mapping[str, Any],
    parties: ReferralParties | None,
    identifiers: tuple[str, ...],
    person_id: str,
    *,
    role: Role,
    consents: tuple[ConsentDecision, ...],
    recipient: str,
    at: datetime,
) -> Disclosure:
    """The ServiceRequest as the service it is sent to may see it: the person as a contained
    Patient (`#patient`: the identifiers `identifiers_known_to` gives the service, the hub person
    id, and the person's details), the referrer as a contained PractitionerRole (`#requester`),
    each through its own row of the disclosure policy.

    The referrer's own contained resources never pass: what they hold besides is not kept. With
    no details sent, the Patient names the person by identifiers alone. The basis is the consent
    that let the referral's content through, else direct care when the service is told who the
    person is beyond the hub's id or who referred them, else the role's default.
    """
    offered = [
        {**person_as_known(identifiers, person_id), **(parties.person if parties else {})},
        *(parties.requester if parties else ()),
    ]
    terms: dict[str, Any] = {
        "role": role,
        "own": False,
        "agency_kind": None,
        "consents": consents,
        "recipient": recipient,
        "at": at,
    }
    shown = [disclose(part, resource_type=part["resourceType"], **terms) for part in offered]
    contained = [part.resource for part in shown if part.resource]
    ids = {part["id"]: part for part in contained}
    request = {
        name: value
        for name, value in service_request.items()
        if name not in ("contained", "subject", "requester")
    }
    hub = {"identifier": {"system": HUB_PERSON, "value": person_id}}
    request["subject"] = reference_to(ids["patient"]) if "patient" in ids else hub
    given = service_request.get("requester")
    if "requester" in ids:
        request["requester"] = {"reference": "#requester"}
    elif isinstance(given, Mapping) and not str(given.get("reference", "")).startswith("#"):
        request["requester"] = given  # named some other way than by a resource left behind
    disclosed = disclose(request, resource_type="ServiceRequest", **terms)
    # The parts passed their own rules; contained resources come first after the id.
    resource = {name: disclosed.resource[name] for name in ("resourceType", "id")}
    if contained:
        resource["contained"] = contained
    resource |= disclosed.resource
    person = parties.person if parties else {}
    told_who = ("patient" in ids and bool(identifiers or person)) or "requester" in ids
    basis = DIRECT_CARE if told_who and disclosed.basis == ROLE_DEFAULT else disclosed.basis
    return Disclosure(resource, basis)
