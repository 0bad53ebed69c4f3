"""The referral inbox pages: a partner's referrals, one referral's page, and the recipient's
accept / reject with a reason / book the first appointment.

An action is published as the FHIR Task or Appointment the partner's own system would send, as
that partner, through the same edge checks (connectors/publish.py); the hub then treats it as any
partner's event. What a page shows comes from the workers' inbox, as the partner may see it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web

from connectors.fhir_input import read_text
from connectors.kafka_io import Publisher
from connectors.publish import PublishSummary, publish_records
from schemas.identifiers import HUB_PERSON, IdentifierError, PersonIdentifier, parse_token
from services.domain.instants import fhir_instant

log = structlog.get_logger(__name__)
LOCAL = ZoneInfo("Europe/London")
# The app's one publisher, connected when first needed.
CONNECT: web.AppKey[Callable[[], Publisher]] = web.AppKey("connect_publisher")
STATUS_LABELS = {
    "requested": "Requested",
    "received": "Received",
    "accepted": "Accepted",
    "rejected": "Rejected",
    "in-progress": "In progress",
    "completed": "Completed",
    "cancelled": "Cancelled",
    "held": "Held: no consent",
    "no-service": "No service",
    "incomplete": "Incomplete",
}
# Where a referral may go from here, as its recipient (referrals.py's Task lifecycle).
OPEN = frozenset({"requested", "received"})


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _texts(concepts: Any) -> list[str]:
    """The readable text of FHIR CodeableConcepts (their text, else their codings' displays)."""
    found = []
    for concept in _list(concepts):
        if not isinstance(concept, dict):
            continue
        if concept.get("text"):
            found.append(str(concept["text"]))
            continue
        codings = _list(concept.get("coding"))
        found += [str(c["display"]) for c in codings if isinstance(c, dict) and c.get("display")]
    return found


def referral_content(delivered: dict[str, Any] | None) -> dict[str, list[str]]:
    """The referral's reason and notes as they reached this service: what the disclosure policy
    (and the person's consent) let through, nothing more. Empty lists when nothing was shared."""
    if delivered is None:
        return {"reasons": [], "notes": []}
    notes = _list(delivered.get("note"))
    return {
        "reasons": _texts(delivered.get("reasonCode")),
        "notes": [str(n["text"]) for n in notes if isinstance(n, dict) and n.get("text")],
    }


def task(entry: dict[str, Any], status: str, now: datetime, reason: str | None) -> dict[str, Any]:
    """The recipient's Task update of a referral, as a partner system sends it."""
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": f"pages-{uuid.uuid4()}",
        "meta": {"lastUpdated": fhir_instant(now)},
        "status": status,
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{entry['id']}"},
        "for": {"identifier": {"system": HUB_PERSON, "value": entry["person_id"]}},
        "lastModified": fhir_instant(now),
    }
    if reason:
        resource["statusReason"] = {"text": reason}
    return resource


def person_named(form: Any, system: str) -> PersonIdentifier | dict[str, str]:
    """The person as the booking service knows them (an Appointment may not name the hub's person
    id, only a referral's Task may); or the error by field."""
    value = str(form.get("person", "")).replace(" ", "").strip()
    try:
        return parse_token(f"{system}|{value}")
    except IdentifierError as exc:
        return {"person": f"Enter the person's identifier as your service records it: {exc}"}


def first_appointment(
    entry: dict[str, Any],
    person: PersonIdentifier,
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, Any]:
    """The first appointment booked for a referral (based on it), as a partner system sends it."""
    return {
        "resourceType": "Appointment",
        "id": f"pages-{uuid.uuid4()}",
        "meta": {"versionId": "1", "lastUpdated": fhir_instant(now)},
        "status": "booked",
        "start": fhir_instant(start),
        "end": fhir_instant(end),
        "basedOn": [{"reference": f"ServiceRequest/{entry['id']}"}],
        "participant": [
            {
                "actor": {"identifier": {"system": person.system, "value": person.value}},
                "status": "accepted",
            }
        ],
    }


def booking_times(form: Any) -> tuple[datetime, datetime] | dict[str, str]:
    """(start, end) in UTC from the booking form's local date and times; or the errors by field."""
    errors: dict[str, str] = {}
    try:
        day = date.fromisoformat(str(form.get("date", "")).strip())
    except ValueError:
        errors["date"] = "Enter the date as year-month-day, for example 2026-12-10"
    times = {}
    for field in ("start", "end"):
        try:
            times[field] = time.fromisoformat(str(form.get(field, "")).strip())
        except ValueError:
            errors[field] = f"Enter the {field} time as hours and minutes, for example 10:30"
    if errors:
        return errors
    start = datetime.combine(day, times["start"], LOCAL).astimezone(UTC)
    end = datetime.combine(day, times["end"], LOCAL).astimezone(UTC)
    if end <= start:
        return {"end": "The end time must be after the start time"}
    return start, end


async def publish_as(
    request: web.Request, partner: str, user: str, resource: dict[str, Any]
) -> PublishSummary:
    """Publish one resource as the user's partner, through the edge checks; returns once Kafka
    has it (or it was refused, with a dead letter, as for the partner's own system)."""
    publisher = await asyncio.to_thread(request.app[CONNECT])
    origin = f"pages:{resource['resourceType']}"
    summary = await asyncio.to_thread(
        publish_records, read_text(json.dumps(resource), origin), partner, publisher, workers=1
    )
    log.info(
        "pages.published",
        user=user,
        partner=partner,
        resource_type=resource["resourceType"],
        accepted=summary.accepted,
        event_ids=[str(e) for e in summary.event_ids],
    )
    return summary
