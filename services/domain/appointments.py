"""Map a FHIR R4 Appointment, already validated at the edge, to the compact Slot the calendar keeps.

Only what reconciliation needs is kept; the one sensitive field (service type) is held for
consent-based disclosure and never leaves the hub without it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from services.domain.calendar import AgencyKind, Slot
from services.domain.versions import instant, version_of


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
        start=instant("Appointment.start", resource.get("start")),
        end=instant("Appointment.end", resource.get("end")),
        location=_location(resource, source),
        version=version_of(resource, event_id, occurred_at),
        service_type=_service_type(resource),
        based_on=_based_on(resource),
    )
