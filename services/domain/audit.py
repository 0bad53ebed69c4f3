"""The audit record of a disclosure: a FHIR AuditEvent saying who received what about whom,
and under which basis (the role's default, their own record, or a consent); and of a new
relationship: which partner, which person, on what basis (case record, referral or consent)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final, Literal

from schemas.identifiers import HUB_PERSON
from schemas.vocabulary import (
    AUDIT_SUBTYPE_SYSTEM,
    BASIS_PREFIX,
    CONSENT_PREFIX,
    PARTNER_SYSTEM,
    ROLE_SYSTEM,
)
from services.domain.consent import Role
from services.domain.instants import fhir_instant

# Fixed, so a disclosure reprocessed after a restart gets the same audit id.
AUDIT_NAMESPACE: Final = uuid.UUID("0b7d7c1e-5f52-5a55-8a4e-3c6f9d2e7a41")
_NAMED_BASES: Final = frozenset(
    {"role-default", "own-record", "case-record", "referral", "direct-care"}
)
AuditSubtype = Literal["disclosure", "relationship"]
# DICOM audit event types: a disclosure exports data; a relationship changes the person's record.
_EVENT_TYPES: Final = {
    "disclosure": ("110106", "Export", "R"),
    "relationship": ("110110", "Patient Record", "C"),
}


def audit_id(disclosure_id: str) -> str:
    """The AuditEvent id for a disclosure: one per disclosure, the same when it is reprocessed."""
    return str(uuid.uuid5(AUDIT_NAMESPACE, disclosure_id))


def _policy_uri(basis: str) -> str:
    return f"{BASIS_PREFIX}{basis}" if basis in _NAMED_BASES else f"{CONSENT_PREFIX}{basis}"


def audit_event(
    *,
    disclosure_id: str,
    person_id: str,
    recipient: str,
    role: Role,
    what: str,
    basis: str,
    at: datetime,
    subtype: AuditSubtype = "disclosure",
) -> dict[str, Any]:
    """The AuditEvent for one disclosure of `what` ("DetectedIssue/<id>") to `recipient` at `at`.

    With subtype "relationship": `recipient` became related to the person, on `basis`, by `what`.
    """
    code, display, action = _EVENT_TYPES[subtype]
    agent = {
        "type": {"coding": [{"system": ROLE_SYSTEM, "code": role}]},
        "who": {"identifier": {"system": PARTNER_SYSTEM, "value": recipient}},
        "requestor": False,
        "policy": [_policy_uri(basis)],
    }
    return audit_resource(
        audit_id(disclosure_id),
        event_type=(code, display, action),
        subtype=subtype,
        at=at,
        agent=agent,
        person_id=person_id,
        what=what,
    )


def audit_resource(
    resource_id: str,
    *,
    event_type: tuple[str, str, str],
    subtype: str,
    at: datetime,
    agent: dict[str, Any],
    person_id: str,
    what: str,
    outcome: str | None = None,
) -> dict[str, Any]:
    """An AuditEvent of the hub's: `agent` did `event_type` (DICOM code, display, FHIR action)
    to the person's record, about `what`; `outcome` a sentence naming no one."""
    if at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    code, display, action = event_type
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": resource_id,
        "type": {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": code,
            "display": display,
        },
        "subtype": [{"system": AUDIT_SUBTYPE_SYSTEM, "code": subtype}],
        "action": action,
        "recorded": fhir_instant(at),
        "outcome": "0",
    }
    if outcome is not None:
        resource["outcomeDesc"] = outcome
    resource["agent"] = [agent]
    resource["source"] = {"observer": {"display": "concord hub"}}
    resource["entity"] = [
        {
            # The hub person id only: the audit topic must not become an index of NHS numbers.
            "what": {"identifier": {"system": HUB_PERSON, "value": person_id}},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "1",
            },
        },
        {"what": {"reference": what}},
    ]
    return resource
