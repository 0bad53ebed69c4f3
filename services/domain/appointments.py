"""Map a FHIR R4 Appointment or Encounter, already validated at the edge, to the compact Slot the
calendar keeps.

Only what reconciliation needs is kept; the one sensitive field (service type) is held for
consent-based disclosure and never leaves the hub without it. An Encounter (a visit or a stay
that happened) becomes a Slot in the Appointment's vocabulary, so that reconciliation, alerts
and the breach check treat attendance the same whichever resource reported it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
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
        value = resource.get(element)
        # an Appointment's are lists; an Encounter's serviceType is one concept
        concepts = list(_dicts(value if isinstance(value, list) else [value]))
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


# Encounter.status -> the Appointment.status its Slot carries. Only a visit or stay the person
# is at (arrived, triaged, in progress) or was at (finished) is attendance; planned, on leave
# and unknown are no evidence, and cancelled or entered-in-error withdraw what an earlier
# version of the same Encounter gave.
ENCOUNTER_STATUSES: Mapping[str, str] = MappingProxyType(
    {
        "planned": "proposed",  # not yet happened: neither evidence nor a clash
        "arrived": "arrived",
        "triaged": "arrived",
        "in-progress": "arrived",
        "onleave": "pending",  # away from the ward: where the person is is not known
        "unknown": "pending",
        "finished": "fulfilled",
        "cancelled": "cancelled",
        "entered-in-error": "entered-in-error",
    }
)
PRESENT_ENCOUNTER_STATUSES = frozenset({"arrived", "triaged", "in-progress"})


def slot_from_encounter(
    resource: Mapping[str, Any],
    *,
    source: str,
    kind: AgencyKind,
    event_id: str,
    occurred_at: datetime,
) -> Slot:
    """The Slot for an Encounter published by partner `source` in event `event_id`.

    Its times are `period`. A visit or stay the person is still at with no `period.end` is
    evidence from its start on, with no end (Slot.end None), until a later version of the same
    Encounter ends it; a finished one with no end is evidence of its start alone. Attendance
    needs `period.start`. Versions order as an Appointment's; the id is kept apart from the
    partner's Appointment ids ("<partner>/Encounter/<id>").
    """
    fhir_id = resource.get("id")
    if not isinstance(fhir_id, str) or not fhir_id:
        raise ValueError("Encounter.id: field required to track the encounter across updates")
    status = resource.get("status")
    if not isinstance(status, str) or status not in ENCOUNTER_STATUSES:
        raise ValueError(f"Encounter.status: {status!r} is not an Encounter status")
    period = resource.get("period")
    period = period if isinstance(period, Mapping) else {}
    start = instant("Encounter.period.start", period.get("start"))
    end = instant("Encounter.period.end", period.get("end"))
    attended = status in PRESENT_ENCOUNTER_STATUSES or status == "finished"
    if attended and start is None:
        raise ValueError(
            f"Encounter.period.start: field required to place a {status} encounter in the calendar"
        )
    if start is not None and end is not None and end < start:
        raise ValueError("Encounter.period.end: must not be earlier than period.start")
    if status == "finished" and end is None:
        end = start
    return Slot(
        appointment_id=f"{source}/Encounter/{fhir_id}",
        partner=source,
        kind=kind,
        status=ENCOUNTER_STATUSES[status],
        start=start,
        end=end,
        location=_encounter_location(resource, source),
        version=version_of(resource, event_id, occurred_at),
        service_type=_service_type(resource),
    )


def _encounter_location(resource: Mapping[str, Any], source: str) -> str | None:
    for entry in _dicts(resource.get("location")):
        where = entry.get("location")
        reference = where.get("reference") if isinstance(where, Mapping) else None
        if isinstance(reference, str) and reference.startswith("Location/"):
            return f"{source}/{reference}"
    return None


# The readers of the resources that put a slot in a person's calendar, by resourceType.
SLOT_READERS: Mapping[str, Callable[..., Slot]] = MappingProxyType(
    {"Appointment": slot_from_appointment, "Encounter": slot_from_encounter}
)
