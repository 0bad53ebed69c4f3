"""The FHIR resources the hub sends about a referral: the Task the referrer follows, and alerts.

Built from the referral record only; the referral's own content reaches the receiving
service through the disclosure policy, never through these.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from schemas.identifiers import HUB_PERSON
from schemas.vocabulary import ALERT_SYSTEM, PARTNER_SYSTEM, RECIPIENT_EXTENSION
from services.domain.instants import fhir_instant
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
    referral: Referral, *, code: str, detail: str, recipient: str, person_id: str, now: datetime
) -> dict[str, Any]:
    """A DetectedIssue about a referral for one recipient (not routed, held, overdue, refused)."""
    return {
        "resourceType": "DetectedIssue",
        "id": str(message_id(referral, code, recipient)),
        "extension": [{"url": RECIPIENT_EXTENSION, "valueString": recipient}],
        "status": "final",
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": code}]},
        "severity": "high" if code == "referral-overdue" else "moderate",
        "patient": {"identifier": {"system": HUB_PERSON, "value": person_id}},
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
