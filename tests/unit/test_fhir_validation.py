"""The hub's FHIR checks: the R4B models plus value sets, cardinalities, times, identifiers."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from schemas.fhir import InvalidResource, problems_in, subject_of, validate

EXAMPLES = Path(__file__).parents[1].parent / "schemas" / "examples"
OFFICIAL = Path(__file__).parents[1] / "fixtures" / "fhir-examples"


def example(event_type: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EXAMPLES / f"{event_type}.json").read_text())["resource"])


VALID = {
    "Appointment": "appointment.booking.updated",
    "ServiceRequest": "referral.request.updated",
    "Task": "referral.task.updated",
    "Patient": "identity.patient.updated",
    "Consent": "governance.consent.recorded",
    "DetectedIssue": "alert.issue.raised",
    "AuditEvent": "audit.disclosure.recorded",
    "MeasureReport": "stats.measure.reported",
}

# (resource type, how to break it, the path the error must name, words in the message)
INVALID = [
    ("Appointment", lambda r: r.update(status="bogus"), "Appointment.status", "not one of"),
    ("Appointment", lambda r: r.update(participant=[]), "Appointment.participant", "at least one"),
    (
        "Appointment",
        lambda r: r["participant"][0].pop("status"),
        "Appointment.participant[0].status",
        "field required",
    ),
    ("Appointment", lambda r: r.pop("end"), "Appointment.end", "both"),
    ("Appointment", lambda r: r.update(end=r["start"]), "Appointment.end", "later than start"),
    (
        "Appointment",
        lambda r: (r.pop("start"), r.pop("end")),
        "Appointment.start",
        "required when status",
    ),
    ("Appointment", lambda r: r.update(start="tomorrow"), "Appointment.start", ""),
    ("ServiceRequest", lambda r: r.update(intent="wish"), "ServiceRequest.intent", "not one of"),
    ("ServiceRequest", lambda r: r.pop("subject"), "ServiceRequest.subject", "field required"),
    ("Task", lambda r: r.update(status="done"), "Task.status", "not one of"),
    (
        "Patient",
        lambda r: r["identifier"][1].update(value="9434765918"),
        "Patient.identifier[1].value",
        "check digit",
    ),
    ("Patient", lambda r: r.update(gender="m"), "Patient.gender", "not one of"),
    ("Consent", lambda r: r.update(category=[]), "Consent.category", "at least one"),
    (
        "Consent",
        lambda r: r["provision"].update(type="maybe"),
        "Consent.provision.type",
        "not one of",
    ),
    (
        "DetectedIssue",
        lambda r: r.update(severity="urgent"),
        "DetectedIssue.severity",
        "not one of",
    ),
    ("AuditEvent", lambda r: r.update(agent=[]), "AuditEvent.agent", "at least one"),
    ("AuditEvent", lambda r: r.update(action="X"), "AuditEvent.action", "not one of"),
    ("MeasureReport", lambda r: r.update(type="everything"), "MeasureReport.type", "not one of"),
    (
        "MeasureReport",
        lambda r: r.update(unknownElement=1),
        "MeasureReport.unknownElement",
        "Extra inputs",
    ),
]


@pytest.mark.parametrize("resource_type", sorted(VALID))
def test_each_carried_resource_type_has_a_valid_example(resource_type: str) -> None:
    assert problems_in(example(VALID[resource_type])) == []


@pytest.mark.parametrize(("resource_type", "breakage", "path", "words"), INVALID)
def test_invalid_resource_names_the_element_and_problem(
    resource_type, breakage, path, words
) -> None:
    resource = example(VALID[resource_type])
    breakage(resource)
    problems = problems_in(resource)
    assert any(p.path == path and words in p.message for p in problems), problems


@pytest.mark.parametrize("name", ["appointment-example.json", "servicerequest-example3.json"])
def test_official_fhir_r4_examples_pass_validation(name: str) -> None:
    validate(json.loads((OFFICIAL / name).read_text()))


def test_untimed_appointment_is_fine_while_proposed() -> None:
    resource = example("appointment.booking.updated")
    del resource["start"], resource["end"]
    resource["status"] = "proposed"
    assert problems_in(resource) == []


def test_resource_type_not_carried_is_refused() -> None:
    assert "not carried" in str(problems_in({"resourceType": "Observation", "status": "final"})[0])


def test_validate_raises_with_every_problem() -> None:
    resource = example("appointment.booking.updated")
    resource.update(status="bogus", participant=[])
    with pytest.raises(InvalidResource) as raised:
        validate(resource)
    assert len(raised.value.problems) >= 2


def test_subject_of_appointment_is_the_participant_identifier() -> None:
    assert subject_of(example("appointment.booking.updated")) == (
        ("https://fhir.nhs.uk/Id/nhs-number", "9434765919"),
    )


def test_subject_of_patient_is_every_person_identifier() -> None:
    systems = [s for s, _ in subject_of(example("identity.patient.updated"))]
    assert systems == ["urn:concord:id:probation-crn", "https://fhir.nhs.uk/Id/nhs-number"]


def test_appointment_naming_two_people_is_refused() -> None:
    resource = example("appointment.booking.updated")
    other = {
        "actor": {"identifier": {"system": "urn:concord:id:probation-crn", "value": "Y654321"}},
        "status": "accepted",
    }
    resource["participant"].append(other)
    with pytest.raises(InvalidResource, match="more than one person"):
        subject_of(resource)


def test_reference_to_a_bundled_patient_resolves_to_its_identifiers() -> None:
    resource = example("appointment.booking.updated")
    resource["participant"][0]["actor"] = {"reference": "urn:uuid:p1"}
    patient = example("identity.patient.updated")
    assert len(subject_of(resource, {"urn:uuid:p1": patient})) == 2


PLACEHOLDER = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9999999999"}


def test_a_placeholder_nhs_number_is_left_out_of_a_patients_subject() -> None:
    """9999999999 passes the mod-11 check; it must never join the CRN to anyone."""
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:concord:id:probation-crn", "value": "X123456"},
            PLACEHOLDER,
        ],
    }
    assert problems_in(patient) == []
    assert subject_of(patient) == (("urn:concord:id:probation-crn", "X123456"),)


def test_a_resource_naming_its_person_by_a_placeholder_only_is_refused() -> None:
    resource = example("appointment.booking.updated")
    resource["participant"][0]["actor"] = {"identifier": PLACEHOLDER}
    with pytest.raises(InvalidResource, match="placeholder") as raised:
        subject_of(resource)
    assert raised.value.problems[0].path == "Appointment.participant.actor"
    assert "9999999999" not in str(raised.value)
