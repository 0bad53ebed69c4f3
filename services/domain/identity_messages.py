"""What the hub tells partners, and records, about an identity conflict.

Each source whose data disagree gets a DetectedIssue naming only the identifiers it sent
itself: never another source's NHS number or CRN, nor which partner disagrees (that a
mental health trust holds a record is itself sensitive), nor anything that only applies to
people on probation. An operator's decision on a conflict is recorded as an AuditEvent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final

from schemas.identifiers import NHS_NUMBER, PROBATION_CRN
from schemas.vocabulary import (
    ALERT_SYSTEM,
    BASIS_PREFIX,
    OPERATOR_SYSTEM,
    RECIPIENT_EXTENSION,
    ROLE_SYSTEM,
)
from services.domain.audit import AUDIT_NAMESPACE, audit_resource
from services.domain.identity import Conflict, system_of
from services.domain.instants import fhir_instant

RAISED_EVENT: Final = "identity.conflict.raised"
RESOLVED_EVENT: Final = "identity.conflict.resolved"
OPERATOR_AUDIT_EVENT: Final = "audit.identity.resolved"
NOTICE_NAMESPACE: Final = uuid.UUID("3c1f6a2e-7d4b-5e90-8a13-5b2c9e4d7f61")
CONFLICT_CODE: Final = "identity-conflict"
_LABELS: Final = {NHS_NUMBER: "NHS number", PROBATION_CRN: "case reference number (CRN)"}


@dataclass(frozen=True, slots=True)
class ConflictNotice:
    """One DetectedIssue about a conflict, for one of the sources whose data disagree."""

    recipient: str
    event_id: uuid.UUID
    event_type: str
    resource: dict[str, Any]
    token: str  # one of the recipient's own identifiers: whose record the notice is about


def _labels(conflict: Conflict) -> str:
    # A local system names its partner, so it is only ever "a local identifier".
    labels = sorted({_LABELS.get(system, "local identifier") for system in conflict.systems})
    return " and ".join(labels)


def _detail(conflict: Conflict) -> str:
    """One plain sentence or three: what disagrees, what the hub did, what to do. No values."""
    which = f"Identity conflict {conflict.conflict_id}"
    if conflict.status == "open":
        return (
            f"{which}: partners' records disagree about this person's {_labels(conflict)}. "
            "The hub has not joined the records and keeps the people apart until this is "
            "resolved. Check the identifiers named here against your record: re-send the "
            "record corrected if it is wrong, or ask the hub operator to resolve the conflict."
        )
    if conflict.status == "corrected":
        return f"{which} resolved: a corrected record was received; nothing disagrees any more."
    if conflict.status == "kept-apart":
        return (
            f"{which} resolved: the hub operator found these are different people; "
            "the hub keeps them apart."
        )
    return (
        f"{which} resolved: the hub operator confirmed these records are one person; "
        "the hub now joins them."
    )


def conflict_notices(conflict: Conflict, cause: str) -> list[ConflictNotice]:
    """A DetectedIssue for each source told of the conflict, as raised or as resolved now.

    `cause` (the event or operator request that changed the conflict) makes each notice's
    event id, so a repeated change is a recognisable duplicate.
    """
    if conflict.status == "merged":
        return []  # the source merged its own records: nobody's data disagree
    action = "raised" if conflict.status == "open" else "resolved"
    notices = []
    for recipient, tokens in sorted(conflict.told.items()):
        own = sorted(tokens)
        issue = {
            "resourceType": "DetectedIssue",
            "id": conflict.conflict_id,
            "contained": [
                {
                    "resourceType": "Patient",
                    "id": "person",
                    "identifier": [
                        {"system": system_of(token), "value": token.rpartition("|")[2]}
                        for token in own
                    ],
                }
            ],
            "extension": [{"url": RECIPIENT_EXTENSION, "valueString": recipient}],
            "status": "final" if action == "raised" else "cancelled",
            "code": {"coding": [{"system": ALERT_SYSTEM, "code": CONFLICT_CODE}]},
            "severity": "high",
            "patient": {"reference": "#person"},
            "identifiedDateTime": fhir_instant(conflict.raised_at),
            "detail": _detail(conflict),
        }
        event_id = uuid.uuid5(
            NOTICE_NAMESPACE, f"{conflict.conflict_id}|{action}|{cause}|{recipient}"
        )
        event_type = RAISED_EVENT if action == "raised" else RESOLVED_EVENT
        notices.append(ConflictNotice(recipient, event_id, event_type, issue, own[0]))
    return notices


def operator_audit(conflict: Conflict, person_id: str, cause: str) -> dict[str, Any]:
    """The AuditEvent of an operator's decision on a conflict, for one person it concerns.

    The operator's reason stays on the conflict record: free text may hold identifiers, and
    the audit topic must not become an index of them.
    """
    if conflict.resolved_at is None or conflict.resolved_by is None:
        raise ValueError("the conflict has not been settled by an operator")
    decision = "kept apart" if conflict.status == "kept-apart" else "linked"
    operator = {
        "type": {"coding": [{"system": ROLE_SYSTEM, "code": "hub-operator"}]},
        "who": {"identifier": {"system": OPERATOR_SYSTEM, "value": conflict.resolved_by}},
        "requestor": True,
        "policy": [f"{BASIS_PREFIX}operator-decision"],
    }
    return audit_resource(
        str(uuid.uuid5(AUDIT_NAMESPACE, f"{conflict.conflict_id}|{cause}|{person_id}")),
        event_type=("110110", "Patient Record", "U"),
        subtype="identity-conflict-resolved",
        at=conflict.resolved_at,
        agent=operator,
        person_id=person_id,
        what=f"DetectedIssue/{conflict.conflict_id}",
        outcome=f"identity conflict {conflict.conflict_id} resolved: {decision}",
    )
