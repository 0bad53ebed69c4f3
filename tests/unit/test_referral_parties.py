"""A referral's person and referrer, read from the contained resources of its ServiceRequest
(services/domain/referral_parties.py), and taken as such at the gateway."""

from __future__ import annotations

from typing import Any

import orjson

from connectors.gateway.rules import Admitted, assess
from services.domain.referral_parties import (
    ReferralParties,
    parties_from_record,
    parties_of,
    parties_record,
)

CRN = {"system": "urn:concord:id:probation-crn", "value": "X123456"}
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "identifier": [CRN],
    "name": [{"family": "Smith", "given": ["Jo"]}],
    "birthDate": "1990-04-01",
    "address": [{"line": ["10 Acacia Avenue"], "postalCode": "SE11 5AB"}],
    "telecom": [{"system": "phone", "value": "07700 900001"}],
    "gender": "female",
}


def request(*contained: dict[str, Any], **elements: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "ref-1",
        "contained": list(contained),
        "status": "active",
        "intent": "order",
        "category": [
            {"coding": [{"system": "urn:concord:referral-category", "code": "crisis-support"}]}
        ],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "subject": {"reference": "#p1"},
        **elements,
    }


def test_the_persons_name_birth_date_and_address_are_kept_and_nothing_else() -> None:
    parties = parties_of(request(PATIENT))
    assert parties == ReferralParties(
        person={
            "name": [{"family": "Smith", "given": ["Jo"]}],
            "birthDate": "1990-04-01",
            "address": [{"line": ["10 Acacia Avenue"], "postalCode": "SE11 5AB"}],
        }
    ), "no identifiers (the person index gives those), no phone, no gender"


def test_a_patient_contained_beside_a_subject_named_by_identifier_is_read_too() -> None:
    parties = parties_of(request(PATIENT, subject={"identifier": CRN}))
    assert parties is not None
    assert parties.person["birthDate"] == "1990-04-01"


def test_a_practitioner_as_requester_is_the_referrer() -> None:
    officer = {
        "resourceType": "Practitioner",
        "id": "o1",
        "name": [{"text": "Sam Patel"}],
        "telecom": [{"system": "email", "value": "sam.patel@justice.gov.uk"}],
        "identifier": [{"system": "urn:example:staff", "value": "S-1"}],
    }
    parties = parties_of(
        request(officer, requester={"reference": "#o1"}, subject={"identifier": CRN})
    )
    assert parties == ReferralParties(
        requester=(
            {
                "resourceType": "Practitioner",
                "id": "requester",
                "name": [{"text": "Sam Patel"}],
                "telecom": [{"system": "email", "value": "sam.patel@justice.gov.uk"}],
            },
        )
    )


def test_a_role_keeps_its_team_by_name_not_by_where_it_points() -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "r1",
        "organization": {"reference": "#org", "display": "Lambeth North"},
        "telecom": [{"system": "phone", "value": "020 7946 0000"}],
        "specialty": [{"text": "Sex offender unit"}],
    }
    org = {"resourceType": "Organization", "id": "org", "name": "Lambeth North"}
    parties = parties_of(request(role, org, requester={"reference": "#r1"}))
    assert parties is not None
    assert parties.requester == (
        {
            "resourceType": "PractitionerRole",
            "id": "requester",
            "organization": {"display": "Lambeth North"},
            "telecom": [{"system": "phone", "value": "020 7946 0000"}],
        },
    )


def test_nothing_contained_or_nothing_usable_is_no_parties() -> None:
    assert parties_of(request(subject={"identifier": CRN})) is None
    bare_role = {"resourceType": "PractitionerRole", "id": "r1"}
    assert (
        parties_of(request(bare_role, requester={"reference": "#r1"}, subject={"identifier": CRN}))
        is None
    )
    assert parties_of(request(PATIENT, requester={"reference": "#missing"})) is not None


def test_parties_round_trip_as_plain_data() -> None:
    parties = parties_of(request(PATIENT))
    assert parties is not None
    assert parties_from_record(orjson.loads(orjson.dumps(parties_record(parties)))) == parties


def test_the_gateway_takes_a_probation_referral_with_its_contained_person_and_officer() -> None:
    role = {
        "resourceType": "PractitionerRole",
        "id": "r1",
        "telecom": [{"system": "phone", "value": "020 7946 0000"}],
    }
    resource = request(PATIENT, role, requester={"reference": "#r1"})
    verdict = assess(
        orjson.dumps(resource), "application/fhir+json", "ServiceRequest", "probation-london"
    )
    assert isinstance(verdict, Admitted), verdict
    [published] = verdict.accepted
    assert published.envelope.resource["contained"] == [PATIENT, role]
    assert [i.value for i in published.envelope.subject.identifiers] == ["X123456"]
