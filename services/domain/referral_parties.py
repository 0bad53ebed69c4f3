"""Who a referral is about and who made it, as the service it is sent to is told.

A service cannot register a referral naming the person by the hub's id alone, nor call the
officer who made it. Probation sends the person's name, date of birth and address as it holds
them, and the referring officer's name, team and phone or secure email, as resources contained
in its ServiceRequest (a Patient as `subject`, a PractitionerRole and its Practitioner as
`requester`); the hub keeps those elements with the referral and gives them, on the referral's
lawful basis (direct care), to the receiving service alone, as contained resources of the
ServiceRequest it delivers (services/domain/referral_messages.py `referral_for_service`):
`subject` → `#patient`, `requester` → `#requester`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# What of each is kept: nothing clinical, nothing about offences, no identifiers (the person's
# come from the person index: services/domain/disclosure.py identifiers_known_to).
PERSON_ELEMENTS = ("name", "birthDate", "address")
ROLE_ELEMENTS = ("code", "organization", "telecom")
PRACTITIONER_ELEMENTS = ("name", "telecom")
# A reference to an organisation is kept by what it says, not where it points.
_REFERENCE_ELEMENTS = ("identifier", "display")


@dataclass(frozen=True, slots=True)
class ReferralParties:
    """The person as the referrer holds them, and the referrer's contact: FHIR elements.

    `person` holds a Patient's name, birthDate and address; `requester` a PractitionerRole
    (id "requester") and its Practitioner (id "practitioner"), or a Practitioner alone (id
    "requester"); either may be empty.
    """

    person: Mapping[str, Any] = field(default_factory=dict)
    requester: tuple[Mapping[str, Any], ...] = ()


def _contained(resource: Mapping[str, Any], reference: Any) -> Mapping[str, Any] | None:
    """The contained resource a local reference (`#id`) names, if the resource holds it."""
    literal = reference.get("reference") if isinstance(reference, Mapping) else None
    if not isinstance(literal, str) or not literal.startswith("#"):
        return None
    for contained in resource.get("contained") or ():
        if isinstance(contained, Mapping) and contained.get("id") == literal[1:]:
            return contained
    return None


def _kept(resource: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: resource[name] for name in names if resource.get(name)}


def _person(service_request: Mapping[str, Any]) -> dict[str, Any]:
    """The Patient `subject` references, else the one Patient contained beside it."""
    patient = _contained(service_request, service_request.get("subject"))
    if patient is None:
        patients = [
            c
            for c in service_request.get("contained") or ()
            if isinstance(c, Mapping) and c.get("resourceType") == "Patient"
        ]
        patient = patients[0] if len(patients) == 1 else None
    if patient is None or patient.get("resourceType") != "Patient":
        return {}
    return _kept(patient, PERSON_ELEMENTS)


def _requester(service_request: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    found = _contained(service_request, service_request.get("requester"))
    if found is None:
        return ()
    if found.get("resourceType") == "Practitioner":
        practitioner = _kept(found, PRACTITIONER_ELEMENTS)
        return ({"resourceType": "Practitioner", "id": "requester", **practitioner},)
    if found.get("resourceType") != "PractitionerRole":
        return ()
    role: dict[str, Any] = {"resourceType": "PractitionerRole", "id": "requester"}
    named = _contained(service_request, found.get("practitioner"))
    practitioner = _kept(named, PRACTITIONER_ELEMENTS) if named else {}
    if practitioner:
        role["practitioner"] = {"reference": "#practitioner"}
    role |= _kept(found, ROLE_ELEMENTS)
    if isinstance(role.get("organization"), Mapping):
        role["organization"] = _kept(role["organization"], _REFERENCE_ELEMENTS)
    if len(role) == 2 and not practitioner:
        return ()
    if not practitioner:
        return (role,)
    return (role, {"resourceType": "Practitioner", "id": "practitioner", **practitioner})


def parties_of(service_request: Mapping[str, Any]) -> ReferralParties | None:
    """The person and referrer a ServiceRequest's contained resources describe; None if neither."""
    parties = ReferralParties(_person(service_request), _requester(service_request))
    return parties if parties.person or parties.requester else None


def parties_record(parties: ReferralParties) -> dict[str, Any]:
    """The parties as plain JSON data, to store with the referral."""
    return {"person": dict(parties.person), "requester": [dict(r) for r in parties.requester]}


def parties_from_record(record: Mapping[str, Any]) -> ReferralParties:
    """The parties `parties_record` stored; ValueError if it is not that shape."""
    person, requester = record.get("person"), record.get("requester")
    if not isinstance(person, dict) or not isinstance(requester, list):
        raise ValueError("stored referral parties are not a person and a requester list")
    if not all(isinstance(r, dict) and isinstance(r.get("resourceType"), str) for r in requester):
        raise ValueError("stored referral requester is not a list of resources")
    return ReferralParties(person, tuple(requester))
