"""Map a FHIR R4 Appointment, already validated at the edge, to the compact Slot the calendar keeps.

Only what reconciliation needs is kept; the one sensitive field (service type) is held for
consent-based disclosure and never leaves the hub without it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from services.domain.calendar import AgencyKind, Slot, Version


def _instant(path: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{path}: must be a FHIR instant string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{path}: {value!r} is not a FHIR instant") from None
    if parsed.utcoffset() is None:
        raise ValueError(f"{path}: {value!r} has no timezone")
    return parsed.astimezone(UTC)


def _dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    # Tolerates absent or oddly shaped optional elements: they simply contribute nothing.
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _location(resource: Mapping[str, Any], source: str) -> str | None:
    for participant in _dicts(resource.get("participant")):
        actor = participant.get("actor")
        reference = actor.get("reference") if isinstance(actor, Mapping) else None
        if isinstance(reference, str) and reference.startswith("Location/"):
            # Scoped by partner: two agencies' "Location/1" are different places.
            return f"{source}/{reference}"
    return None


def _service_type(resource: Mapping[str, Any]) -> str | None:
    for element in ("specialty", "serviceType"):
        concepts = list(_dicts(resource.get(element)))
        displays = [c.get("display") for concept in concepts for c in _dicts(concept.get("coding"))]
        texts = [concept.get("text") for concept in concepts]
        for candidate in (*displays, *texts):
            if isinstance(candidate, str) and candidate:
                return candidate
    return None


def _based_on(resource: Mapping[str, Any]) -> str | None:
    for reference in _dicts(resource.get("basedOn")):
        if isinstance(reference.get("reference"), str):
            return str(reference["reference"])
    return None


def _version_number(version_id: Any) -> int:
    # Non-numeric version ids (ETags, hashes) carry no order; lastUpdated then decides.
    # More than 18 digits would not fit the 64-bit integer the calendars table stores.
    if isinstance(version_id, str) and version_id.isascii() and version_id.isdigit():
        return int(version_id) if len(version_id) <= 18 else 0
    return 0


def _version(resource: Mapping[str, Any], event_id: str, occurred_at: datetime) -> Version:
    meta = resource.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    number = _version_number(meta.get("versionId"))
    updated = _instant("Appointment.meta.lastUpdated", meta.get("lastUpdated"))
    if updated is None and occurred_at.utcoffset() is not None:
        updated = occurred_at.astimezone(UTC)
    # A naive occurred_at is left for Slot to reject, rather than guessed at.
    return Version(number, updated or occurred_at, event_id)


def slot_from_appointment(
    resource: Mapping[str, Any],
    *,
    source: str,
    kind: AgencyKind,
    event_id: str,
    occurred_at: datetime,
) -> Slot:
    """The Slot for an Appointment published by partner `source` in event `event_id`."""
    fhir_id = resource.get("id")
    if not isinstance(fhir_id, str) or not fhir_id:
        raise ValueError("Appointment.id: field required to track the appointment across updates")
    status = resource.get("status")
    if not isinstance(status, str):
        raise ValueError("Appointment.status: field required")
    return Slot(
        appointment_id=f"{source}/{fhir_id}",
        partner=source,
        kind=kind,
        status=status,
        start=_instant("Appointment.start", resource.get("start")),
        end=_instant("Appointment.end", resource.get("end")),
        location=_location(resource, source),
        version=_version(resource, event_id, occurred_at),
        service_type=_service_type(resource),
        based_on=_based_on(resource),
    )
