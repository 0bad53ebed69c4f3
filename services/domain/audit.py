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

# The individual users who sign in to the pages, by their user id in the hub's user directory.
STAFF_USER_SYSTEM: Final = "urn:concord:id:staff-user"
# The hub's event ids (the envelope's event_id), as an audit record names them.
EVENT_SYSTEM: Final = "urn:concord:event-id"
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
    user: str | None = None,
) -> dict[str, Any]:
    """The AuditEvent for one disclosure of `what` ("DetectedIssue/<id>") to `recipient` at `at`.

    With subtype "relationship": `recipient` became related to the person, on `basis`, by `what`.
    With `user`: the individual of the recipient who asked, signed in to the pages, is a second
    agent, the requestor.
    """
    code, display, action = _EVENT_TYPES[subtype]
    agent = {
        "type": {"coding": [{"system": ROLE_SYSTEM, "code": role}]},
        "who": {"identifier": {"system": PARTNER_SYSTEM, "value": recipient}},
        "requestor": False,
        "policy": [_policy_uri(basis)],
    }
    individual = (
        {
            "who": {"identifier": {"system": STAFF_USER_SYSTEM, "value": user}},
            "onBehalfOf": {"identifier": {"system": PARTNER_SYSTEM, "value": recipient}},
            "requestor": True,
        }
        if user
        else None
    )
    return audit_resource(
        audit_id(disclosure_id),
        event_type=(code, display, action),
        subtype=subtype,
        at=at,
        agent=agent,
        person_id=person_id,
        what=what,
        individual=individual,
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
    individual: dict[str, Any] | None = None,
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
    resource["agent"] = [agent, individual] if individual else [agent]
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


def replay_audit(
    *,
    operator: str,
    partner: str,
    dead_letter: str,
    event_ids: list[str],
    rejected: int,
    at: datetime,
) -> dict[str, Any]:
    """The AuditEvent of an operator replaying a corrected dead letter as the partner that sent it.

    It names no person (the input is checked again and finds its person only in the workers):
    the operator, the partner it was published as, the dead letter (`partition-offset`) and the
    events it became.
    """
    if at.utcoffset() is None:
        raise ValueError("at must be timezone-aware")
    return {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid5(AUDIT_NAMESPACE, f"replay|{dead_letter}|{fhir_instant(at)}")),
        "type": {
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110107",
            "display": "Import",
        },
        "subtype": [{"system": AUDIT_SUBTYPE_SYSTEM, "code": "dead-letter-replayed"}],
        "action": "C",
        "recorded": fhir_instant(at),
        "outcome": "0",
        "outcomeDesc": f"{len(event_ids)} event(s) accepted, {rejected} rejected again",
        "agent": [
            {
                "type": {"coding": [{"system": ROLE_SYSTEM, "code": "hub-operator"}]},
                "who": {"identifier": {"system": STAFF_USER_SYSTEM, "value": operator}},
                "requestor": True,
            },
            {
                "who": {"identifier": {"system": PARTNER_SYSTEM, "value": partner}},
                "requestor": False,
            },
        ],
        "source": {"observer": {"display": "concord hub"}},
        "entity": [
            {"what": {"reference": f"DeadLetter/{dead_letter}"}},
            *({"what": {"identifier": {"system": EVENT_SYSTEM, "value": e}}} for e in event_ids),
        ],
    }
