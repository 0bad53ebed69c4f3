"""HMPPS domain events in the probation feed: each event type mapped to the record the hub routes
(or passed by), SNS notifications unwrapped, and every shape of feed file read right."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.feeds.hmpps import map_hmpps_event, unwrap
from connectors.feeds.probation import records_from_probation_file, records_from_probation_text
from connectors.feeds.probation_api import NOT_CONFIGURED, DetailUnavailable, fetch_detail
from connectors.fhir_input import Record
from connectors.publish import Accepted, Ignored, Rejected, decide, rejection_letter
from services.domain.appointments import SLOT_READERS
from services.domain.reconciliation import overlaps
from tests.probation_api_stub import recorded_details

PUBLIC = Path(__file__).parents[1] / "fixtures" / "public" / "hmpps"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
CRN_A = {"system": "urn:concord:id:probation-crn", "value": "A000001"}
CRN_T = {"system": "urn:concord:id:probation-crn", "value": "T140223"}
DETAILS = {path: body for path, (_status, body) in recorded_details().items()}
ARRIVED = json.loads((PUBLIC / "approved-premises-person-arrived.json").read_text())


def recorded(url: str) -> Mapping[str, Any]:
    """The HMPPS detail recorded for a detailUrl's path (what the probation API answers)."""
    path = "/" + url.split("/", 3)[3]
    if path not in DETAILS:
        raise DetailUnavailable("the probation API has no detail at the event's detailUrl (404)")
    return DETAILS[path]


def no_api(url: str) -> Mapping[str, Any]:
    raise DetailUnavailable(NOT_CONFIGURED)


def sample(name: str, fetch: Any = recorded) -> list[Record]:
    text = (PUBLIC / name).read_text(encoding="utf-8")
    return list(records_from_probation_text(text, name, fetch))


def taken(name: str, fetch: Any = recorded) -> dict[str, Any]:
    [record] = sample(name, fetch)
    decision = decide(record, "probation-london", NOW)
    assert isinstance(decision, Accepted), decision
    return decision.envelope.resource


def event(**changes: Any) -> dict[str, Any]:
    return {**ARRIVED, **changes}


def problems_of(value: Any, fetch: Any = recorded) -> list[str]:
    return [str(p) for p in map_hmpps_event(value, fetch).problems]


# --- each event type -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "encounter_id", "what"),
    [
        (
            "approved-premises-person-arrived.json",
            "ap-arrived-364145f9-0af8-488e-9901-b4c46cd9ba37",
            "approved premises arrival",
        ),
        (
            "approved-premises-person-departed.json",
            "ap-departed-364145f9-0af8-488e-9901-b4c46cd9ba37",
            "approved premises departure",
        ),
        (
            "cas3-person-arrived.json",
            "cas3-arrived-68df9f6c-3fcb-4ec6-8fcf-96551cd9b080",
            "temporary accommodation arrival",
        ),
    ],
)
def test_arrivals_and_departures_are_encounters_at_the_moment_they_happened(
    name: str, encounter_id: str, what: str
) -> None:
    resource = taken(name)
    assert resource["resourceType"] == "Encounter"
    assert resource["id"] == encounter_id
    assert resource["status"] == "finished"
    assert resource["class"]["code"] == "FLD"
    assert resource["type"] == [{"text": what}]
    assert resource["subject"] == {"identifier": CRN_A}
    assert resource["period"] == {"start": "2022-12-04T10:42:43Z", "end": "2022-12-04T10:42:43Z"}
    assert resource["meta"] == {"lastUpdated": "2022-12-04T10:42:43Z"}


def test_an_arrival_is_a_moment_of_presence_that_overlaps_nothing_later() -> None:
    """A stay under way with no end would clash with every later appointment: an arrival is a moment."""
    slot = SLOT_READERS["Encounter"](
        taken("approved-premises-person-arrived.json"),
        source="probation-london",
        kind="probation",
        event_id="",
        occurred_at=NOW,
    )
    assert slot.status == "fulfilled"
    assert slot.start == slot.end == datetime(2022, 12, 4, 10, 42, 43, tzinfo=UTC)
    next_day = datetime(2022, 12, 5, 10, tzinfo=UTC)
    gp = replace(
        slot,
        appointment_id="gp-Y01234/1",
        partner="gp-Y01234",
        kind="gp",
        status="booked",
        start=next_day,
        end=next_day + timedelta(hours=1),
    )
    assert not overlaps(slot, gp)


def test_a_remote_check_in_is_a_virtual_encounter_at_occurred_at() -> None:
    resource = taken("esupervision-check-in-received.json")
    assert resource["resourceType"] == "Encounter"
    assert resource["id"] == "checkin-2-20250826T083000"
    assert resource["class"]["code"] == "VR"
    assert resource["period"]["start"] == "2025-08-26T08:30:00Z", "09:30+01:00 in UTC"
    assert resource["subject"] == {"identifier": CRN_A}


def test_a_non_arrival_is_a_missed_appointment_on_the_expected_day() -> None:
    resource = taken("approved-premises-person-not-arrived.json")
    assert resource["resourceType"] == "Appointment"
    assert resource["status"] == "noshow"
    assert (resource["start"], resource["end"]) == ("2022-11-29T00:00:00Z", "2022-11-30T00:00:00Z")
    assert resource["participant"][0]["actor"]["identifier"] == CRN_A


def test_a_non_arrival_on_a_summer_day_starts_at_london_midnight() -> None:
    summer = {
        "eventDetails": {**DETAILS_NOT_ARRIVED["eventDetails"], "expectedArrivalOn": "2026-07-14"}
    }
    not_arrived = event(eventType="approved-premises.person.not-arrived")
    [resource] = map_hmpps_event(not_arrived, lambda _url: summer).resources
    assert (resource["start"], resource["end"]) == ("2026-07-13T23:00:00Z", "2026-07-14T23:00:00Z")


DETAILS_NOT_ARRIVED = DETAILS[
    "/approved-premises-api/events/person-not-arrived/364145f9-0af8-488e-9901-b4c46cd9ba37"
]


@pytest.mark.parametrize(
    ("name", "status", "start", "end", "appointment_id"),
    [
        (
            "interventions-session-feedback-compliant.sns.json",
            "fulfilled",
            "2023-02-15T09:00:00Z",
            "2023-02-15T09:30:00Z",
            "contact-1824573422",
        ),
        (
            "interventions-session-feedback-non-compliant.sns.json",
            "fulfilled",
            "2023-02-14T15:00:00Z",
            "2023-02-14T15:30:00Z",
            "contact-1824573421",
        ),
        (
            "interventions-session-feedback-not-attended.sns.json",
            "noshow",
            "2023-04-17T08:34:00Z",
            "2023-04-17T08:49:00Z",
            "contact-3",
        ),
    ],
)
def test_session_feedback_is_the_sessions_appointment_with_its_attendance(
    name: str, status: str, start: str, end: str, appointment_id: str
) -> None:
    resource = taken(name)
    assert resource["resourceType"] == "Appointment"
    assert resource["id"] == appointment_id, (
        "the Delius appointment: a contact, as the case feed names it"
    )
    assert resource["status"] == status
    assert (resource["start"], resource["end"]) == (start, end)
    assert resource["participant"][0]["actor"]["identifier"] == CRN_T
    assert resource["basedOn"][0]["reference"].startswith("ServiceRequest/")


@pytest.mark.parametrize(
    ("attended", "status"), [("yes", "fulfilled"), ("late", "fulfilled"), ("no", "noshow")]
)
def test_each_attendance_answer_gives_its_status(attended: str, status: str) -> None:
    detail = {
        "appointmentTime": "2026-12-03T10:00:00Z",
        "durationInMinutes": 60,
        "sessionFeedback": {"attendance": {"attended": attended}},
    }
    [record] = sample("interventions-session-feedback-compliant.sns.json", lambda _url: detail)
    assert record.resource is not None
    assert record.resource["status"] == status


@pytest.mark.parametrize(
    ("detail", "problem"),
    [
        (
            {"appointmentTime": "2026-12-03T10:00:00Z", "durationInMinutes": 60},
            "detail.appointmentFeedback: no attendance feedback",
        ),
        (
            {
                "appointmentTime": "2026-12-03T10:00:00Z",
                "durationInMinutes": 0,
                "sessionFeedback": {"attendance": {"attended": "yes"}},
            },
            "detail.durationInMinutes: a whole number of minutes above 0",
        ),
        (
            {"durationInMinutes": 30, "sessionFeedback": {"attendance": {"attended": "yes"}}},
            "detail.appointmentTime: field required",
        ),
        (
            {
                "appointmentTime": "2026-12-03T10:00:00Z",
                "durationInMinutes": 30,
                "sessionFeedback": {"attendance": {"attended": "maybe"}},
            },
            "detail.sessionFeedback.attendance.attended: 'maybe' is not one of: yes, late, no",
        ),
    ],
)
def test_a_session_detail_without_what_the_appointment_needs_is_refused(
    detail: dict[str, Any], problem: str
) -> None:
    [record] = sample("interventions-session-feedback-compliant.sns.json", lambda _url: detail)
    assert record.resource is None
    assert any(str(p).startswith(problem) for p in record.problems), record.problems


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("interventions-referral-withdrawn.sns.json", "withdrawn"),
        ("interventions-referral-prematurely-ended.sns.json", "ended early"),
    ],
)
def test_an_ended_referral_is_cancelled_by_the_referrer_through_its_task(
    name: str, reason: str
) -> None:
    resource = taken(name)
    assert resource["resourceType"] == "Task"
    assert resource["status"] == "cancelled"
    assert resource["statusReason"] == {"text": reason}
    assert resource["focus"] == {"reference": "ServiceRequest/f56c5f7c-632f-4cad-a1b3-693541cb5f22"}
    assert resource["for"] == {"identifier": CRN_T}


def test_an_ended_referral_in_a_state_the_referrer_cannot_set_is_refused() -> None:
    completed = event(
        eventType="intervention.referral.ended",
        additionalInformation={"referralId": "f56c5f7c", "deliveryState": "COMPLETED"},
    )
    assert problems_of(completed) == [
        "additionalInformation.deliveryState: 'COMPLETED' is not one of: CANCELLED, PREMATURELY_ENDED"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "approved-premises-booking-made.json",
        "approved-premises-booking-changed.json",
        "approved-premises-booking-cancelled.json",
        "approved-premises-application-submitted.json",
        "cas3-booking-confirmed.json",
        "cas3-referral-submitted.json",
        "probation-appointment-sms-sent.json",
        "probation-case-engagement-created.json",
    ],
)
def test_other_event_types_are_passed_by_with_a_warning(name: str) -> None:
    [record] = sample(name, no_api)
    decision = decide(record, "probation-london", NOW)
    assert isinstance(decision, Ignored)
    kind = json.loads((PUBLIC / name).read_text())["eventType"]
    assert decision.warning().startswith(f"{name}: ignored: {kind} is not routed by the hub: ")
    assert "A000001" not in decision.warning()
    assert "X012771" not in decision.warning()


def test_an_event_type_nobody_listed_is_passed_by_not_refused() -> None:
    mapped = map_hmpps_event(event(eventType="prison.person.transferred"), no_api)
    assert (
        mapped.ignored
        == "prison.person.transferred is not routed by the hub: not an event type the hub takes"
    )


# --- the person ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifiers", "problem"),
    [
        (
            [{"type": "NOMS", "value": "A1234BC"}],
            "personReference.identifiers: no CRN: name the person by one CRN",
        ),
        (
            [{"type": "CRN", "value": "A000001"}, {"type": "CRN", "value": "A000002"}],
            "personReference.identifiers: more than one CRN: name the person by one CRN",
        ),
        (
            [{"type": "CRN", "value": "12345"}],
            "personReference.identifiers[CRN]: probation CRN must be",
        ),
    ],
)
def test_the_person_is_named_by_one_crn(identifiers: list[Any], problem: str) -> None:
    found = problems_of(event(personReference={"identifiers": identifiers}))
    assert len(found) == 1
    assert found[0].startswith(problem)
    assert "A1234BC" not in found[0], "identifiers are not repeated"
    assert "12345" not in found[0]


def test_a_noms_number_beside_the_crn_is_not_carried() -> None:
    both = event(
        personReference={
            "identifiers": [
                {"type": "CRN", "value": "A000001"},
                {"type": "NOMS", "value": "A1234BC"},
            ]
        }
    )
    [resource] = map_hmpps_event(both, no_api).resources
    assert "A1234BC" not in json.dumps(resource)


def test_a_detail_naming_another_person_is_refused_and_nobody_is_joined() -> None:
    other = {
        "eventDetails": {
            **DETAILS_NOT_ARRIVED["eventDetails"],
            "personReference": {"crn": "B000002"},
        }
    }
    not_arrived = event(eventType="approved-premises.person.not-arrived")
    assert problems_of(not_arrived, lambda _url: other) == [
        "detail.eventDetails.personReference.crn: names another person than the event"
    ]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"occurredAt": None}, "occurredAt: field required"),
        ({"occurredAt": "yesterday"}, "occurredAt: not an ISO 8601 date-time: 'yesterday'"),
        ({"additionalInformation": {}}, "additionalInformation.applicationId: field required"),
        ({"eventType": ""}, "eventType: field required"),
    ],
)
def test_an_event_missing_what_its_record_needs_is_refused_naming_the_element(
    changes: dict[str, Any], problem: str
) -> None:
    assert problems_of(event(**changes)) == [problem]


# --- the detail fetch --------------------------------------------------------------------------


def test_an_event_needing_its_detail_is_refused_when_no_probation_api_is_configured() -> None:
    [record] = sample("interventions-session-feedback-compliant.sns.json", fetch_detail)
    assert [str(p) for p in record.problems] == [f"detailUrl: detail not fetched: {NOT_CONFIGURED}"]
    decision = decide(record, "probation-london", NOW)
    assert isinstance(decision, Rejected)
    letter = rejection_letter(decision, "probation-london")
    assert "the probation API is not configured" in letter.reason
    assert "T140223" not in letter.reason
    assert json.loads(json.loads(letter.raw)["Message"])["eventType"].startswith("intervention.")


def test_an_event_whose_detail_cannot_be_fetched_is_refused_saying_what_failed() -> None:
    def failing(_url: str) -> Mapping[str, Any]:
        raise DetailUnavailable("the probation API answered 503 for the event's detail")

    [record] = sample("approved-premises-person-not-arrived.json", failing)
    assert [str(p) for p in record.problems] == [
        "detailUrl: detail not fetched: the probation API answered 503 for the event's detail"
    ]


def test_events_built_from_the_event_alone_fetch_nothing() -> None:
    def unreachable(_url: str) -> Mapping[str, Any]:
        raise AssertionError("no detail should be fetched")

    for name in (
        "approved-premises-person-arrived.json",
        "interventions-referral-withdrawn.sns.json",
    ):
        [record] = sample(name, unreachable)
        assert record.ok


# --- SNS notifications -------------------------------------------------------------------------


def sns(message: Any, **changes: Any) -> dict[str, Any]:
    text = message if isinstance(message, str) else json.dumps(message)
    return {
        "Type": "Notification",
        "Message": text,
        "MessageAttributes": {"eventType": {"Type": "String", "Value": ARRIVED["eventType"]}},
    } | changes


def test_an_sns_notification_is_unwrapped_to_its_event() -> None:
    inner, problems = unwrap(sns(ARRIVED))
    assert problems == []
    assert inner == ARRIVED
    [resource] = map_hmpps_event(sns(ARRIVED), no_api).resources
    assert resource["id"] == "ap-arrived-364145f9-0af8-488e-9901-b4c46cd9ba37"


@pytest.mark.parametrize(
    ("notification", "problem"),
    [
        (sns("{not json"), "Message: not valid JSON"),
        (sns("[1, 2]"), "Message: expected a JSON object"),
        ({"Type": "Notification"}, "Message: field required"),
        (
            sns(ARRIVED, Type="SubscriptionConfirmation"),
            "Type: 'SubscriptionConfirmation' is not an SNS Notification",
        ),
        (
            sns(
                ARRIVED,
                MessageAttributes={"eventType": {"Value": "approved-premises.booking.made"}},
            ),
            "MessageAttributes.eventType: differs from the eventType of the Message",
        ),
    ],
)
def test_a_notification_that_carries_no_readable_event_is_refused(
    notification: dict[str, Any], problem: str
) -> None:
    found = problems_of(notification)
    assert len(found) == 1
    assert found[0].startswith(problem), found


# --- the shapes of a feed file -------------------------------------------------------------------


def test_a_pretty_printed_event_is_one_record_named_by_the_file() -> None:
    records = sample("approved-premises-person-arrived.json")
    assert [(r.origin, r.ok) for r in records] == [("approved-premises-person-arrived.json", True)]
    assert json.loads(records[0].raw) == ARRIVED, "the whole document is kept for the dead letter"


def test_a_json_array_of_events_is_one_record_per_event() -> None:
    text = json.dumps([ARRIVED, event(eventType="approved-premises.booking.made")], indent=2)
    first, second = records_from_probation_text(text, "events.json", no_api)
    assert (first.origin, first.ok) == ("events.json#[0]", True)
    assert (second.origin, second.ignored_because is not None) == ("events.json#[1]", True)


def test_ndjson_of_hmpps_events_and_the_hubs_own_events_is_one_record_per_line() -> None:
    own = {
        "event_type": "appointment.created",
        "crn": "X123456",
        "appointment_id": "pa-1",
        "start": "2026-12-03T10:00:00Z",
        "end": "2026-12-03T11:00:00Z",
    }
    text = "\n".join([json.dumps(ARRIVED), "", json.dumps(sns(ARRIVED)), json.dumps(own)])
    records = list(records_from_probation_text(text, "mixed.ndjson", no_api))
    assert [(r.origin, r.ok) for r in records] == [
        ("mixed.ndjson:1", True),
        ("mixed.ndjson:3", True),
        ("mixed.ndjson:4", True),
    ]
    assert [r.resource["resourceType"] for r in records if r.resource] == [
        "Encounter",
        "Encounter",
        "Appointment",
    ]


def test_a_broken_pretty_printed_document_is_refused_once_saying_which_shapes_are_expected() -> (
    None
):
    text = json.dumps(ARRIVED, indent=2).replace('"version": 1,', '"version": 1')
    [record] = records_from_probation_text(text, "broken.json", no_api)
    assert record.origin == "broken.json"
    [problem] = record.problems
    assert str(problem).startswith("(file): not valid JSON")
    assert str(problem).endswith(
        "(expected one JSON event, a JSON array of events, or NDJSON: one event a line)"
    )


def test_an_empty_file_holds_no_events(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("\n\n", encoding="utf-8")
    assert list(records_from_probation_file(path, no_api)) == []
