"""What the hub tells a partner whose input it accepted and then could not act on.

The answer is a FHIR OperationOutcome, the resource FHIR has for "this is why your request
failed" and the one the gateway already answers refusals with, so a partner reads the same shape
whether the hub refused at once or later. It names the sender's own resource as they sent it
(`Task/mht-task-1`), the refused event id and the reason: no person, no other identifier, no
clinical text. One rule decides it for every refusal after acceptance.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from schemas.identifiers import PARTNER_ID
from schemas.vocabulary import EVENT_ID_SYSTEM, HUB_SOURCE, REFUSED_EVENT, REFUSED_RESOURCE

REFUSAL_NAMESPACE: Final = uuid.UUID("3f2a9c1e-7b54-5d08-a6e1-0c9d8b7f4e25")
_EVENT_TYPE = re.compile(r"^([a-z]+\.[a-z][a-z-]*)\.[a-z][a-z-]*$")

# FHIR issue types (http://hl7.org/fhir/issue-type) a refusal after acceptance uses.
IssueType = Literal["invalid", "processing", "not-found", "conflict", "business-rule"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the hub will not act on an input it accepted: the sentence for the sender, its issue type."""

    reason: str
    code: IssueType = "processing"


@dataclass(frozen=True, slots=True)
class Sender:
    """Whom to tell, about which of their inputs: read from the refused message itself."""

    partner: str
    event_id: str
    event_type: str  # the refused event's
    resource_type: str | None
    resource_id: str | None  # the sender's own id for the resource, as they sent it
    correlation_id: str | None


def _text(message: Mapping[str, Any], name: str) -> str | None:
    value = message.get(name)
    return value if isinstance(value, str) and value else None


def _uuid(value: str | None) -> str | None:
    try:
        return str(uuid.UUID(value)) if value else None
    except ValueError:
        return None


def sender_of(message: Mapping[str, Any]) -> Sender | None:
    """Who sent a message the hub refuses, read leniently (it may be malformed); None when the
    sender cannot be told: no partner source, event id or event type of their own."""
    partner, event_id = _text(message, "source"), _uuid(_text(message, "event_id"))
    event_type = _text(message, "event_type")
    if (
        partner is None
        or partner == HUB_SOURCE
        or not PARTNER_ID.match(partner)
        or event_id is None
        or event_type is None
        or not _EVENT_TYPE.match(event_type)
    ):
        return None
    resource = message.get("resource")
    resource = resource if isinstance(resource, Mapping) else {}
    return Sender(
        partner=partner,
        event_id=event_id,
        event_type=event_type,
        resource_type=_text(resource, "resourceType"),
        resource_id=_text(resource, "id"),
        correlation_id=_uuid(_text(message, "correlation_id")),
    )


def answer_event_type(event_type: str, answer: str) -> str:
    """`<domain>.<entity>.<answer>` for the hub's answer to a `<domain>.<entity>.<past-tense>`
    event; ValueError for another shape."""
    found = _EVENT_TYPE.match(event_type)
    if found is None:
        raise ValueError(f"{event_type!r} is not <domain>.<entity>.<past-tense>")
    return f"{found.group(1)}.{answer}"


def refused_event_type(event_type: str) -> str:
    """`<domain>.<entity>.refused` for a refused `<domain>.<entity>.<past-tense>` event."""
    return answer_event_type(event_type, "refused")


def refusal_id(sender: Sender) -> uuid.UUID:
    """A deterministic id: an event refused again on reprocessing is a recognisable duplicate."""
    return uuid.uuid5(REFUSAL_NAMESPACE, f"{sender.partner}\n{sender.event_id}")


def resource_reference(sender: Sender) -> dict[str, str]:
    """The sender's own resource as they sent it (`Task/mht-task-1`), else its type."""
    if sender.resource_type and sender.resource_id:
        return {"reference": f"{sender.resource_type}/{sender.resource_id}"}
    return {"type": sender.resource_type or "Resource"}


def refusal_outcome(sender: Sender, refusal: Refusal) -> dict[str, Any]:
    """The OperationOutcome telling `sender` that the hub refused their event, and why."""
    return {
        "resourceType": "OperationOutcome",
        "id": str(refusal_id(sender)),
        "extension": [
            {"url": REFUSED_RESOURCE, "valueReference": resource_reference(sender)},
            {
                "url": REFUSED_EVENT,
                "valueIdentifier": {"system": EVENT_ID_SYSTEM, "value": sender.event_id},
            },
        ],
        "issue": [{"severity": "error", "code": refusal.code, "diagnostics": refusal.reason}],
    }
