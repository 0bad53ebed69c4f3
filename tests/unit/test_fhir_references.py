"""FHIR references as partners write them: each form names the right person, or is refused
naming the element and why (schemas.fhir.subject_of through connectors.publish.decide)."""

from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.fhir_input import read_file, read_text
from connectors.gateway.rules import Admitted, RefusedRequest, assess
from connectors.publish import Accepted, Rejected, decide
from schemas.fhir import InvalidResource, subject_of
from schemas.identifiers import NHS_NUMBER, local_system

PUBLIC = Path(__file__).parents[1] / "fixtures" / "public"
GP = "gp-Y01234"
NHS = "9434765919"


def people(decision: Any) -> list[tuple[str, str]]:
    assert isinstance(decision, Accepted), decision
    subject = decision.envelope.subject
    return [(i.system, i.value) for i in (subject.identifiers if subject else ())]


def decided(resource: dict[str, Any], partner: str = GP) -> Any:
    [record] = read_text(orjson.dumps(resource).decode(), "r.json")
    return decide(record, partner)


def refusal(resource: dict[str, Any], partner: str = GP) -> str:
    decision = decided(resource, partner)
    assert isinstance(decision, Rejected), decision
    return decision.reason()


def referral(subject: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "ref-1",
        "status": "active",
        "intent": "order",
        "subject": subject,
        **more,
    }


def local(partner: str, value: str) -> tuple[str, str]:
    return (local_system(partner), value)


# --- accepted: each form names the partner's person -------------------------------------------


@pytest.mark.parametrize(
    "name", ["fhir-json/appointment-example.json", "fhir-xml/appointment-example.xml"]
)
def test_a_literal_patient_reference_is_the_partners_own_patient(name: str) -> None:
    """Patient/example beside Practitioner/example and Location/1: only the Patient names the person."""
    [decision] = [decide(record, GP) for record in read_file(PUBLIC / name)]
    assert people(decision) == [local(GP, "example")]


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/123",
        "https://example.org/fhir/Patient/123",
        "http://gp.example.nhs.uk/Patient/123/_history/2",
    ],
)
def test_relative_absolute_and_versioned_references_name_the_local_patient(
    reference: str,
) -> None:
    assert people(decided(referral({"reference": reference}), "probation-london")) == [
        local("probation-london", "123")
    ]


def test_the_same_literal_from_two_partners_is_two_patients() -> None:
    resource = referral({"reference": "Patient/123"})
    assert subject_of(resource, partner="probation-london") != subject_of(resource, partner=GP)


def test_a_literal_reference_without_a_partner_names_nobody() -> None:
    with pytest.raises(InvalidResource, match="no reference names the person"):
        subject_of(referral({"reference": "Patient/123"}))


def test_a_contained_patient_is_named_by_its_identifiers_not_its_contained_id() -> None:
    """`#p1` means nothing outside its resource: two resources' p1 are not one person."""
    contained = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": NHS_NUMBER, "value": NHS}],
    }
    resource = referral({"reference": "#p1"}, contained=[contained])
    assert people(decided(resource, "probation-london")) == [(NHS_NUMBER, NHS)]


def test_a_contained_patient_with_the_partners_local_id_is_named_by_both() -> None:
    contained = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {"system": NHS_NUMBER, "value": NHS},
            {"system": local_system("probation-london"), "value": "case-7"},
        ],
    }
    resource = referral({"reference": "#p1"}, contained=[contained])
    assert people(decided(resource, "probation-london")) == [
        (NHS_NUMBER, NHS),
        local("probation-london", "case-7"),
    ]


def test_a_patient_links_its_id_with_its_nhs_number() -> None:
    [decision] = [
        decide(record, GP)
        for record in read_file(PUBLIC / "fhir-xml" / "UKCore-Patient-RichardSmith-Example.xml")
    ]
    assert people(decision) == [
        (NHS_NUMBER, "9912003888"),
        local(GP, "UKCore-Patient-RichardSmith-Example"),
    ]


def test_a_patient_with_no_identifier_the_hub_knows_is_named_by_its_id() -> None:
    [decision] = [decide(r, GP) for r in read_file(PUBLIC / "fhir-json" / "patient-example.json")]
    assert people(decision) == [local(GP, "example")]


def test_a_patient_naming_the_partners_local_id_keeps_it_and_not_its_resource_id() -> None:
    """One value per system per person: the partner has said which local id it uses."""
    patient = {
        "resourceType": "Patient",
        "id": "123",
        "identifier": [{"system": local_system(GP), "value": "M-55"}],
    }
    assert people(decided(patient)) == [local(GP, "M-55")]


def test_a_patient_id_that_cannot_be_a_local_id_is_left_out() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "-x",
        "identifier": [{"system": NHS_NUMBER, "value": NHS}],
    }
    assert people(decided(patient)) == [(NHS_NUMBER, NHS)]


def bundle(reference: str, patient_url: str) -> str:
    patient = {
        "resourceType": "Patient",
        "id": "123",
        "identifier": [{"system": NHS_NUMBER, "value": NHS}],
    }
    appointment = {
        "resourceType": "Appointment",
        "id": "a-1",
        "status": "booked",
        "start": "2026-12-10T09:00:00Z",
        "end": "2026-12-10T09:30:00Z",
        "participant": [{"actor": {"reference": reference}, "status": "accepted"}],
    }
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": patient_url, "resource": patient},
                {
                    "fullUrl": "urn:uuid:8c3a4e0e-0000-4000-8000-000000000002",
                    "resource": appointment,
                },
            ],
        }
    ).decode()


@pytest.mark.parametrize(
    ("reference", "patient_url"),
    [
        (
            "urn:uuid:8c3a4e0e-0000-4000-8000-000000000001",
            "urn:uuid:8c3a4e0e-0000-4000-8000-000000000001",
        ),
        ("Patient/123", "urn:uuid:8c3a4e0e-0000-4000-8000-000000000001"),
        (
            "https://gp.example.nhs.uk/fhir/Patient/123",
            "https://gp.example.nhs.uk/fhir/Patient/123",
        ),
    ],
)
def test_a_reference_the_bundle_resolves_names_the_person_as_the_patient_does(
    reference: str, patient_url: str
) -> None:
    patient, appointment = [
        decide(r, GP) for r in read_text(bundle(reference, patient_url), "b.json")
    ]
    assert people(appointment) == people(patient) == [(NHS_NUMBER, NHS), local(GP, "123")]


def test_the_booking_bundle_names_the_patient_by_urn_uuid() -> None:
    path = PUBLIC / "fhir-bundles" / "BaRS-booking-request.json"
    patients = [
        people(d)
        for d in (decide(r, GP) for r in read_file(path))
        if isinstance(d, Accepted) and d.envelope.resource["resourceType"] == "Patient"
    ]
    assert patients
    assert all((NHS_NUMBER, "9476719931") in p for p in patients)


# --- refused: unsafe forms, with the element and the reason ------------------------------------


def test_another_partners_local_id_in_a_contained_patient_is_refused() -> None:
    contained = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": local_system("mht-rv5"), "value": "M-1"}],
    }
    reason = refusal(referral({"reference": "#p1"}, contained=[contained]), "probation-london")
    assert reason.startswith(
        "ServiceRequest.subject: names the person by another partner's local id"
    )


@pytest.mark.parametrize("reference", ["Patient/", "Patient/a b", "Patient/" + "x" * 65])
def test_a_patient_reference_whose_id_is_no_fhir_id_is_refused(reference: str) -> None:
    reason = refusal(referral({"reference": reference}), "probation-london")
    assert reason.startswith("ServiceRequest.subject.reference: the Patient's id is not a FHIR id")


def test_a_fhir_id_that_cannot_be_a_local_id_is_refused() -> None:
    reason = refusal(referral({"reference": "Patient/-1"}), "probation-london")
    assert reason.startswith("ServiceRequest.subject.reference: local identifier value")


@pytest.mark.parametrize(
    ("subject", "contained"),
    [
        ({"reference": "Group/102"}, []),
        ({"reference": "https://example.org/fhir/Group/102"}, []),
        (
            {"reference": "#g1"},
            [{"resourceType": "Group", "id": "g1", "type": "person", "actual": True}],
        ),
        ({"type": "Group", "identifier": {"system": NHS_NUMBER, "value": NHS}}, []),
    ],
)
def test_a_subject_that_is_no_patient_is_refused_naming_the_element(
    subject: dict[str, Any], contained: list[Any]
) -> None:
    resource = referral(subject, **({"contained": contained} if contained else {}))
    reason = refusal(resource, "probation-london")
    assert reason.startswith("ServiceRequest.subject: refers to a Group, not a Patient")


def test_a_task_for_a_location_is_refused_at_task_for() -> None:
    task = {
        "resourceType": "Task",
        "id": "t-1",
        "status": "in-progress",
        "intent": "order",
        "focus": {"reference": "ServiceRequest/ref-1"},
        "for": {"reference": "Location/1"},
    }
    assert refusal(task, "mht-rv5").startswith("Task.for: refers to a Location, not a Patient")


def test_an_appointment_naming_only_practitioners_names_nobody() -> None:
    appointment = {
        "resourceType": "Appointment",
        "id": "a-1",
        "status": "booked",
        "start": "2026-12-10T09:00:00Z",
        "end": "2026-12-10T09:30:00Z",
        "participant": [{"actor": {"reference": "Practitioner/1"}, "status": "accepted"}],
    }
    assert refusal(appointment).startswith(
        "Appointment.participant.actor: no reference names the person"
    )


def test_a_urn_uuid_the_bundle_does_not_resolve_names_nobody() -> None:
    reason = refusal(referral({"reference": "urn:uuid:8c3a4e0e-0000-4000-8000-0000000000ff"}))
    assert reason.startswith("ServiceRequest.subject: no reference names the person")


def test_two_patients_by_two_forms_are_more_than_one_person() -> None:
    appointment = {
        "resourceType": "Appointment",
        "participant": [
            {"actor": {"reference": "Patient/1"}},
            {"actor": {"identifier": {"system": NHS_NUMBER, "value": NHS}}},
        ],
    }
    with pytest.raises(InvalidResource, match="more than one person"):
        subject_of(appointment, partner=GP)


# --- the gateway decides the same way ------------------------------------------------------------


def test_the_gateway_admits_a_literal_patient_reference() -> None:
    resource = orjson.loads((PUBLIC / "fhir-json" / "appointment-example.json").read_bytes())
    verdict = assess(orjson.dumps(resource), "application/fhir+json", "Appointment", GP)
    assert isinstance(verdict, Admitted)
    assert len(verdict.accepted) == 1


def test_the_gateway_refuses_a_group_subject_with_422_at_the_element() -> None:
    resource = referral({"reference": "Group/102"})
    verdict = assess(
        orjson.dumps(resource), "application/fhir+json", "ServiceRequest", "probation-london"
    )
    assert isinstance(verdict, RefusedRequest)
    assert verdict.status == 422
    [issue] = verdict.issues
    assert issue.expression == "ServiceRequest.subject"
    assert "refers to a Group, not a Patient" in issue.diagnostics


def test_an_identifier_beside_a_literal_names_the_person_alone() -> None:
    subject = {"reference": "Patient/123", "identifier": {"system": NHS_NUMBER, "value": NHS}}
    assert people(decided(referral(subject), "probation-london")) == [(NHS_NUMBER, NHS)]
