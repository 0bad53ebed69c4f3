"""The probation case-management feed: every event type mapped to FHIR, and bad events named by line and field."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.feeds.probation import (
    map_event,
    records_from_probation_file,
    records_from_probation_text,
)
from connectors.fhir_input import Record, read_text
from connectors.publish import Accepted, decide
from schemas.fhir import CARRIED, problems_in, subject_of
from schemas.identifiers import PersonIdentifier
from services.domain.appointments import slot_from_appointment

FEED = Path(__file__).parents[1] / "fixtures" / "probation" / "case-feed.ndjson"
CRN = {"system": "urn:concord:id:probation-crn", "value": "X123456"}
NHS = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}
APPOINTMENT = {
    "event_type": "appointment.created",
    "crn": "X123456",
    "appointment_id": "pa-1",
    "start": "2026-12-03T10:00:00Z",
    "end": "2026-12-03T11:00:00Z",
}
REFERRAL = {
    "event_type": "referral.created",
    "crn": "X123456",
    "referral_id": "ref-1",
    "category": "crisis-support",
    "urgency": "urgent",
    "area": "E09000022",
}


def mapped(event: dict[str, Any]) -> list[dict[str, Any]]:
    resources, problems = map_event(event)
    assert problems == [], problems
    for resource in resources:
        assert problems_in(resource) == [], resource
    return resources


def problems(event: Any) -> list[str]:
    resources, found = map_event(event)
    assert resources == []
    return [str(problem) for problem in found]


def feed(*events: dict[str, Any] | str) -> list[Record]:
    lines = [e if isinstance(e, str) else json.dumps(e) for e in events]
    return list(records_from_probation_text("\n".join(lines) + "\n", "feed.ndjson"))


def fixture_records() -> list[Record]:
    return list(records_from_probation_file(FEED))


def test_appointment_created_is_a_booked_appointment_naming_the_person_by_crn() -> None:
    [appointment] = mapped({**APPOINTMENT, "location": "Camberwell Probation Office"})
    assert appointment == {
        "resourceType": "Appointment",
        "id": "pa-1",
        "status": "booked",
        "start": "2026-12-03T10:00:00Z",
        "end": "2026-12-03T11:00:00Z",
        "participant": [
            {"actor": {"identifier": CRN}, "status": "accepted"},
            {
                "actor": {
                    "reference": "Location/camberwell-probation-office",
                    "display": "Camberwell Probation Office",
                },
                "status": "accepted",
            },
        ],
    }


def test_rescheduled_appointment_carries_new_times_and_its_version() -> None:
    event = {
        **APPOINTMENT,
        "event_type": "appointment.rescheduled",
        "start": "2026-12-04T14:00:00+00:00",
        "end": "2026-12-04T15:00:00+00:00",
        "version": 2,
        "updated_at": "2026-11-25T16:30:00Z",
    }
    [appointment] = mapped(event)
    assert appointment["status"] == "booked"
    assert (appointment["start"], appointment["end"]) == (
        "2026-12-04T14:00:00Z",
        "2026-12-04T15:00:00Z",
    )
    assert appointment["meta"] == {"versionId": "2", "lastUpdated": "2026-11-25T16:30:00Z"}


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("attended", "fulfilled"),
        ("failed-to-attend", "noshow"),
        ("acceptable-absence", "cancelled"),
    ],
)
def test_appointment_outcome_sets_the_status(outcome: str, status: str) -> None:
    [appointment] = mapped({**APPOINTMENT, "event_type": "appointment.outcome", "outcome": outcome})
    assert appointment["status"] == status


def test_acceptable_absence_is_cancelled_with_the_reason() -> None:
    event = {**APPOINTMENT, "event_type": "appointment.outcome", "outcome": "acceptable-absence"}
    [appointment] = mapped(event)
    assert appointment["cancelationReason"] == {"text": "acceptable absence"}


def test_contact_is_an_appointment_whose_id_is_kept_apart_from_appointment_ids() -> None:
    event = {**APPOINTMENT, "event_type": "contact.created", "contact_id": "88001"}
    del event["appointment_id"]
    [contact] = mapped(event)
    assert contact["id"] == "contact-88001"
    assert contact["status"] == "booked"
    [recorded] = mapped({**event, "outcome": "failed-to-attend"})
    assert recorded["status"] == "noshow"


def test_appointment_for_a_referral_is_based_on_it() -> None:
    [appointment] = mapped({**APPOINTMENT, "referral_id": "ref-1"})
    assert appointment["basedOn"] == [{"reference": "ServiceRequest/ref-1"}]


def test_referral_created_is_a_routable_service_request() -> None:
    event = {
        **REFERRAL,
        "reason": "Thoughts of self-harm",
        "preferred_organisation": "mht-rv5",
        "updated_at": "2026-12-01T09:00:00Z",
        "version": "1",
    }
    [request] = mapped(event)
    assert request == {
        "resourceType": "ServiceRequest",
        "id": "ref-1",
        "meta": {"versionId": "1", "lastUpdated": "2026-12-01T09:00:00Z"},
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "category": [
            {
                "coding": [
                    {
                        "system": "urn:concord:referral-category",
                        "code": "crisis-support",
                        "display": "Crisis support",
                    }
                ]
            }
        ],
        "subject": {"identifier": CRN},
        "authoredOn": "2026-12-01T09:00:00Z",
        "reasonCode": [{"text": "Thoughts of self-harm"}],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "performer": [{"identifier": {"system": "urn:concord:partner", "value": "mht-rv5"}}],
    }


@pytest.mark.parametrize(
    ("area", "code"), [("E09000022", "E09000022"), ("se11", "SE11"), ("SE11 5AB", "SE11")]
)
def test_referral_area_is_a_local_authority_or_postcode_district(area: str, code: str) -> None:
    [request] = mapped({**REFERRAL, "area": area})
    assert request["locationCode"][0]["coding"][0]["code"] == code


WHO = {
    "given_name": "Jo Ann",
    "family_name": "Smith",
    "birth_date": "1990-04-01",
    "address_line_1": "Flat 2",
    "address_line_2": "10 Acacia Avenue",
    "town": "London",
    "postcode": "se115ab",
}
OFFICER = {
    "officer_name": "Sam Patel",
    "officer_team": "Lambeth North",
    "officer_phone": "020 7946 0000",
    "officer_email": "sam.patel@justice.gov.uk",
}


def test_a_referral_carries_the_person_and_the_officer_as_contained_resources() -> None:
    """The person's details as a contained Patient (`subject`), the officer as a PractitionerRole
    (`requester`) with its Practitioner: the shape a FHIR partner sends them in too."""
    patient, request = mapped({**REFERRAL, "nhs_number": "9434765919", **WHO, **OFFICER})
    assert patient["id"] == "case-X123456", "the link Patient still comes first"
    assert request["subject"] == {"reference": "#patient"}
    assert request["requester"] == {"reference": "#requester"}
    assert request["contained"] == [
        {
            "resourceType": "Patient",
            "id": "patient",
            "identifier": [CRN, NHS],
            "name": [{"use": "official", "family": "Smith", "given": ["Jo", "Ann"]}],
            "birthDate": "1990-04-01",
            "address": [
                {
                    "use": "home",
                    "line": ["Flat 2", "10 Acacia Avenue"],
                    "city": "London",
                    "postalCode": "SE11 5AB",
                }
            ],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "requester",
            "practitioner": {"reference": "#officer", "display": "Sam Patel"},
            "organization": {"display": "Lambeth North"},
            "telecom": [
                {"system": "phone", "value": "020 7946 0000", "use": "work"},
                {"system": "email", "value": "sam.patel@justice.gov.uk", "use": "work"},
            ],
        },
        {"resourceType": "Practitioner", "id": "officer", "name": [{"text": "Sam Patel"}]},
    ]
    assert subject_of(request, partner="probation-london") == (
        PersonIdentifier(*CRN.values()),
        PersonIdentifier(*NHS.values()),
    ), "the hub reads the person from the contained Patient"


def test_a_referral_with_only_the_officers_contact_still_names_the_person_by_crn() -> None:
    [request] = mapped({**REFERRAL, "officer_phone": "+44 20 7946 0000"})
    assert request["subject"] == {"identifier": CRN}
    assert request["contained"] == [
        {
            "resourceType": "PractitionerRole",
            "id": "requester",
            "telecom": [{"system": "phone", "value": "+44 20 7946 0000", "use": "work"}],
        }
    ]


def test_a_referral_without_details_is_as_before() -> None:
    [request] = mapped(REFERRAL)
    assert "contained" not in request
    assert "requester" not in request


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"birth_date": "01/04/1990"}, "birth_date: must be a date written YYYY-MM-DD"),
        ({"birth_date": "1890-04-01"}, "birth_date: must be a date written YYYY-MM-DD, from 1900"),
        ({"postcode": "SE11"}, "postcode: must be a full UK postcode"),
        ({"officer_phone": "ring the office"}, "officer_phone: must be a telephone number"),
        ({"officer_email": "sam.patel"}, "officer_email: must be an email address"),
        ({"given_name": 7}, "given_name: must be a string"),
        ({"officer_name": "Sam", "start": "x"}, "start: not a field of referral.created events"),
    ],
)
def test_a_bad_detail_is_named_without_repeating_it(change: dict[str, Any], expected: str) -> None:
    found = problems({**REFERRAL, **WHO, **change})
    assert any(p.startswith(expected) for p in found), found
    text = " ".join(found)
    for given in ("01/04/1990", "1890", "ring the office", "sam.patel"):
        assert given not in text


def test_crn_and_nhs_number_give_a_link_patient_before_the_event() -> None:
    patient, appointment = mapped({**APPOINTMENT, "nhs_number": "943 476 5919"})
    assert patient == {"resourceType": "Patient", "id": "case-X123456", "identifier": [CRN, NHS]}
    assert appointment["participant"][0]["actor"] == {"identifier": CRN}


def test_a_file_links_each_crn_and_nhs_number_once() -> None:
    records = feed(
        {**APPOINTMENT, "nhs_number": "9434765919"},
        {**REFERRAL, "nhs_number": "9434765919"},
    )
    kinds = [(r.origin, r.resource["resourceType"]) for r in records if r.resource]
    assert kinds == [
        ("feed.ndjson:1", "Patient"),
        ("feed.ndjson:1", "Appointment"),
        ("feed.ndjson:2", "ServiceRequest"),
    ]


def test_time_without_offset_is_london_summer_time() -> None:
    event = {**APPOINTMENT, "start": "2026-07-14T09:30", "end": "2026-07-14T10:30:00"}
    [appointment] = mapped(event)
    assert (appointment["start"], appointment["end"]) == (
        "2026-07-14T08:30:00Z",
        "2026-07-14T09:30:00Z",
    )


def test_time_without_offset_in_winter_is_utc() -> None:
    [appointment] = mapped({**APPOINTMENT, "start": "2026-12-03T10:00", "end": "2026-12-03T11:00"})
    assert appointment["start"] == "2026-12-03T10:00:00Z"


def test_time_with_offset_is_converted_to_utc() -> None:
    event = {**APPOINTMENT, "start": "2026-07-14T09:30+01:00", "end": "2026-07-14T10:30+01:00"}
    [appointment] = mapped(event)
    assert appointment["start"] == "2026-07-14T08:30:00Z"


def test_bad_line_is_named_by_line_and_field_and_the_good_lines_still_map() -> None:
    records = feed(APPOINTMENT, "", {**APPOINTMENT, "start": "3rd December"}, REFERRAL)
    assert [r.origin for r in records] == ["feed.ndjson:1", "feed.ndjson:3", "feed.ndjson:4"]
    good, bad, referral = records
    assert good.ok
    assert referral.ok
    assert [f"{bad.origin}: {p}" for p in bad.problems] == [
        "feed.ndjson:3: start: not an ISO 8601 date-time: '3rd December'"
    ]
    assert json.loads(bad.raw)["start"] == "3rd December", (
        "the raw line is kept for the dead letter"
    )


def test_line_that_is_not_json_is_reported() -> None:
    good = json.dumps(APPOINTMENT)
    first, bad, last = feed(f"{good}\n{{not json\n{good}")
    assert first.ok
    assert last.ok
    assert bad.origin == "feed.ndjson:2"
    assert str(bad.problems[0]).startswith("(line): not valid JSON")


def test_text_that_is_no_json_shape_is_refused_once_saying_what_was_expected() -> None:
    [record] = feed("{not json\n  also not json\n}")
    assert record.origin == "feed.ndjson"
    assert str(record.problems[0]).startswith("(file): not valid JSON")
    assert "expected one JSON event, a JSON array of events, or NDJSON" in str(record.problems[0])


def test_every_problem_of_an_event_is_reported_together() -> None:
    event = {"event_type": "appointment.created", "crn": "X12", "start": "2026-12-03"}
    assert problems(event) == [
        "crn: probation CRN must be a letter followed by six digits",
        "appointment_id: field required",
        "start: not an ISO 8601 date-time: '2026-12-03'",
        "end: field required",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"event_type": "appointment.cancelled"}, "event_type: 'appointment.cancelled' is not one"),
        ({"event_type": None}, "event_type: field required"),
        ({"crn": None}, "crn: field required"),
        ({"crn": 123456}, "crn: must be a string"),
        ({"end": "2026-12-03T09:00:00Z"}, "end: must be later than start"),
        ({"stat": "x"}, "stat: not a field of appointment.created events"),
        ({"outcome": "attended"}, "outcome: not a field of appointment.created events"),
        ({"version": "v2"}, "version: 'v2' is not a whole number"),
        ({"updated_at": "yesterday"}, "updated_at: not an ISO 8601 date-time"),
        ({"appointment_id": "pa 1"}, "appointment_id: 'pa 1' is not a valid id"),
        ({"start": "2026-03-29T01:30", "end": "2026-03-29T03:00"}, "start: 01:30 does not exist"),
    ],
)
def test_bad_appointment_field_is_named(change: dict[str, Any], expected: str) -> None:
    event = {k: v for k, v in {**APPOINTMENT, **change}.items() if v is not None}
    assert any(p.startswith(expected) for p in problems(event)), problems(event)


def test_outcome_event_needs_a_known_outcome() -> None:
    event = {**APPOINTMENT, "event_type": "appointment.outcome"}
    assert problems(event) == ["outcome: field required"]
    assert problems({**event, "outcome": "late"}) == [
        "outcome: 'late' is not one of: attended, failed-to-attend, acceptable-absence"
    ]


def test_invalid_nhs_number_rejects_the_event_without_repeating_it() -> None:
    [message] = problems({**APPOINTMENT, "nhs_number": "9434765918"})
    assert message.startswith("nhs_number: NHS number is not ten digits")
    assert "9434765918" not in message


def test_a_placeholder_nhs_number_links_nothing_and_the_crn_names_the_person() -> None:
    """Case records hold 9999999999 when the NHS number is not known: it must join no one."""
    [appointment] = mapped({**APPOINTMENT, "nhs_number": "9999999999"})
    assert appointment["participant"][0]["actor"] == {"identifier": CRN}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"category": "dentistry"},
            "category: 'dentistry' is not one of: mental-health-assessment",
        ),
        ({"urgency": "asap"}, "urgency: 'asap' is not one of: routine, urgent"),
        ({"area": "Flat 2, 10 Acacia Avenue"}, "area: must be a local authority code"),
        ({"area": None}, "area: field required"),
        ({"preferred_organisation": "The GP"}, "preferred_organisation: 'The GP' is not a partner"),
        ({"start": "2026-12-03T10:00:00Z"}, "start: not a field of referral.created events"),
    ],
)
def test_bad_referral_field_is_named(change: dict[str, Any], expected: str) -> None:
    event = {k: v for k, v in {**REFERRAL, **change}.items() if v is not None}
    found = problems(event)
    assert any(p.startswith(expected) for p in found), found
    assert "Acacia" not in " ".join(found), "an address is not repeated in errors"


def test_event_that_is_not_an_object_is_reported() -> None:
    assert problems(["appointment.created"]) == ["(event): expected a JSON object"]


def test_json_array_feed_names_events_by_index() -> None:
    text = json.dumps([APPOINTMENT, {**APPOINTMENT, "crn": ""}])
    good, bad = records_from_probation_text(text, "feed.json")
    assert good.origin == "feed.json#[0]"
    assert good.ok
    assert [f"{bad.origin}: {p}" for p in bad.problems] == ["feed.json#[1]: crn: field required"]


def test_fixture_covers_every_event_type_and_one_bad_line() -> None:
    records = fixture_records()
    event_types = {json.loads(r.raw)["event_type"] for r in records}
    assert event_types == {
        "appointment.created",
        "appointment.rescheduled",
        "appointment.outcome",
        "contact.created",
        "referral.created",
    }
    by_line = [(r.origin.split(":")[-1], (r.resource or {}).get("resourceType")) for r in records]
    assert by_line == [
        ("1", "Patient"),
        ("1", "Appointment"),
        ("2", "Appointment"),
        ("3", "Appointment"),
        ("4", None),
        ("5", "Patient"),
        ("5", "Appointment"),
        ("6", "Appointment"),
        ("7", "Appointment"),
        ("8", "Appointment"),
        ("9", "ServiceRequest"),
        ("10", "ServiceRequest"),
    ]
    statuses = [r.resource.get("status") for r in records if r.resource]
    assert statuses == [
        None,
        "booked",
        "booked",
        "fulfilled",
        None,
        "booked",
        "noshow",
        "booked",
        "cancelled",
        "active",
        "active",
    ]


def test_every_fixture_resource_is_accepted_by_the_publish_path() -> None:
    good = [r for r in fixture_records() if r.resource is not None]
    for record in good:
        decision = decide(record, "probation-london", now=datetime(2026, 12, 1, tzinfo=UTC))
        assert isinstance(decision, Accepted), decision


def test_mapped_appointment_gives_the_reconciler_its_place_and_version() -> None:
    outcome = next(r.resource for r in fixture_records() if r.origin.endswith(":3"))
    assert outcome is not None
    slot = slot_from_appointment(
        outcome,
        source="probation-london",
        kind="probation",
        event_id="e-1",
        occurred_at=datetime(2026, 12, 4, tzinfo=UTC),
    )
    assert slot.location == "probation-london/Location/camberwell-probation-office"
    assert slot.version.number == 3
    assert slot.start == datetime(2026, 12, 4, 14, tzinfo=UTC)


def test_mapped_resources_round_trip_through_json_and_the_fhir_models() -> None:
    resources = [r.resource for r in fixture_records() if r.resource is not None]
    ndjson = "\n".join(orjson.dumps(resource).decode() for resource in resources)
    assert [r.resource for r in read_text(ndjson, "out.ndjson")] == resources
    for resource in resources:
        module = importlib.import_module(
            f"fhir.resources.R4B.{CARRIED[resource['resourceType']][0]}"
        )
        model = getattr(module, resource["resourceType"]).model_validate(resource)
        assert orjson.loads(model.model_dump_json()) == resource


def test_file_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "feed.ndjson"
    path.write_bytes(b'{"crn": "\xff"}\n')
    [record] = records_from_probation_file(path)
    assert record.origin == "feed.ndjson"
    assert str(record.problems[0]).startswith("(file): not UTF-8 text")
