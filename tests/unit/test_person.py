"""What a person's record decides on each message (services/domain/person.py `decide`), as
decisions, before anything is encoded: alerts, referral steps, refusals, hand-overs."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.fhir import problems_in
from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PROBATION_CRN
from services.domain.calendar import Calendar
from services.domain.decisions import (
    Assigned,
    CheckDeadlines,
    Decision,
    Disclose,
    Forward,
    InboxEntryChanged,
    Merge,
    PersonMessage,
    RelationshipBegun,
    Rules,
    Transfer,
    UpdateRefused,
)
from services.domain.person import decide
from services.domain.referral_steps import next_deadline
from services.runtime import ROOT, partner_directory, service_directory

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RULES = Rules(
    directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
    now=NOW,
    services=service_directory(ROOT / "deploy" / "services.yaml"),
)
PERSON = "p-1"
CRN = (PROBATION_CRN, "X123456")
NHS = (NHS_NUMBER, "9434765919")


def event(source: str, resource: dict[str, Any], who: tuple[str, str]) -> dict[str, Any]:
    """A partner's event as the reconciler reads it, resolved to the person."""
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/{resource}"))
    return {
        "event_id": event_id,
        "event_type": "x.y.updated",
        "source": source,
        "subject": {"identifiers": [{"system": who[0], "value": who[1]}], "person_id": PERSON},
        "occurred_at": "2026-12-01T08:00:00Z",
        "recorded_at": "2026-12-01T08:00:00Z",
        "correlation_id": event_id,
        "resource": resource,
    }


def appointment(
    source: str, fhir_id: str, status: str, start: str, end: str, **more: Any
) -> dict[str, Any]:
    resource = {
        "resourceType": "Appointment",
        "id": fhir_id,
        "meta": {"versionId": str(more.pop("version", 1))},
        "status": status,
        "start": f"2026-12-03T{start}:00Z",
        "end": f"2026-12-03T{end}:00Z",
        **more,
    }
    return event(source, resource, CRN if source.startswith("probation") else NHS)


def replace_times(message: dict[str, Any], start: str, end: str) -> dict[str, Any]:
    """An appointment event with other times (a new event id: other content)."""
    resource = {**message["resource"], "start": start, "end": end}
    who = CRN if message["source"].startswith("probation") else NHS
    return event(message["source"], resource, who)


def referral(**changes: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "ServiceRequest",
        "id": "ref-9",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "category": [
            {
                "coding": [
                    {"system": "urn:concord:referral-category", "code": "mental-health-assessment"}
                ]
            }
        ],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "authoredOn": "2026-11-30T09:00:00Z",
    } | changes
    return event("probation-london", resource, CRN)


def task(source: str, status: str, referral_id: str = "ref-9") -> dict[str, Any]:
    resource = {
        "resourceType": "Task",
        "id": f"t-{status}",
        "status": status,
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral_id}"},
        "for": {"identifier": {"system": HUB_PERSON, "value": PERSON}},
    }
    return event(source, resource, (HUB_PERSON, PERSON))


def play(
    *messages: PersonMessage, record: Calendar | None = None
) -> tuple[Calendar, list[Decision]]:
    """The record after the messages, and what the last one decided."""
    record = record or Calendar(PERSON)
    decisions: list[Decision] = []
    for message in messages:
        record, decisions = decide(record, message, RULES)
    return record, decisions


def kinds(decisions: list[Decision]) -> list[tuple[str, str]]:
    """Each decision's kind and whom it is for (or what it is about)."""
    named = []
    for d in decisions:
        if isinstance(d, Disclose):
            named.append((d.event_type, d.recipient))
        elif isinstance(d, RelationshipBegun):
            named.append(("relationship", d.partner))
        elif isinstance(d, InboxEntryChanged):
            named.append(("inbox", d.referral.status))
        elif isinstance(d, UpdateRefused):
            named.append(("refused", d.refusal.code))
        elif isinstance(d, Assigned):
            named.append(("filed", d.token))
        else:
            named.append((type(d).__name__, ""))
    return named


# --- appointments ------------------------------------------------------------------------------


def test_a_clash_is_disclosed_to_each_booker_with_one_event_each_caused_by_the_change() -> None:
    gp = appointment("gp-Y01234", "g", "booked", "10:00", "10:30")
    vol = appointment("vol-recovery", "v", "booked", "10:15", "11:00")
    _, decisions = play(gp, vol)
    assert kinds(decisions) == [
        ("alert.clash.raised", "gp-Y01234"),
        ("alert.clash.raised", "vol-recovery"),
    ]
    first, second = decisions
    assert isinstance(first, Disclose)
    assert isinstance(second, Disclose)
    assert first.cause == second.cause == uuid.UUID(vol["event_id"])
    assert first.event_id != second.event_id, "one event per recipient"
    assert first.what == second.what, "the DetectedIssue they share"
    assert first.event_id == uuid.uuid5(uuid.UUID(first.what.partition("/")[2]), "gp-Y01234")


def test_a_probation_event_under_the_crn_begins_its_relationship_once() -> None:
    first = appointment("probation-london", "p", "booked", "09:00", "09:30")
    record, decisions = play(first)
    assert kinds(decisions) == [("relationship", "probation-london")]
    moved = appointment("probation-london", "p", "booked", "09:00", "09:45", version=2)
    _, again = play(moved, record=record)
    assert again == []


def test_an_older_version_is_refused_and_the_record_is_the_same_object() -> None:
    newer = appointment("gp-Y01234", "g", "booked", "11:00", "11:30", version=2)
    older = appointment("gp-Y01234", "g", "booked", "10:00", "10:30", version=1)
    record, _ = play(newer)
    after, decisions = decide(record, older, RULES)
    assert after is record
    [refused] = decisions
    assert isinstance(refused, UpdateRefused)
    assert (refused.refusal.code, refused.origin, refused.message) == (
        "conflict",
        "reconciler",
        older,
    )


def test_the_same_event_again_changes_nothing_and_decides_nothing() -> None:
    gp = appointment("gp-Y01234", "g", "booked", "10:00", "10:30")
    record, _ = play(gp)
    assert decide(record, gp, RULES) == (record, [])


# --- encounters --------------------------------------------------------------------------------


def encounter(status: str, period: dict[str, str], version: int = 1) -> dict[str, Any]:
    """The trust's inpatient stay, as an Encounter naming the person by NHS number."""
    resource = {
        "resourceType": "Encounter",
        "id": "stay-1",
        "meta": {"versionId": str(version)},
        "status": status,
        "class": {"code": "IMP"},
        "period": period,
    }
    return event("mht-rv5", resource, NHS)


# The probation expectation for a day (no time given): the whole of 3 December.
EXPECTED_ON_THE_DAY = replace_times(
    appointment("probation-london", "p", "noshow", "00:00", "00:00"),
    "2026-12-03T00:00:00Z",
    "2026-12-04T00:00:00Z",
)


def test_a_multi_day_stay_explains_a_missed_day_of_probation() -> None:
    stay = encounter("finished", {"start": "2026-12-02T14:00:00Z", "end": "2026-12-05T11:00:00Z"})
    _, decisions = play(EXPECTED_ON_THE_DAY, stay)
    assert kinds(decisions) == [("alert.absence.explained", "probation-london")]
    [told] = decisions
    assert isinstance(told, Disclose)
    assert told.resource["detail"].endswith(
        "overlaps a health service appointment that was attended (fulfilled)."
    )
    evidence = told.resource["contained"][1]
    assert (evidence["status"], evidence["start"], evidence["end"]) == (
        "fulfilled",
        "2026-12-02T14:00:00Z",
        "2026-12-05T11:00:00Z",
    )
    # minimised as an appointment: no class, no period, no sign it was a stay
    assert evidence["resourceType"] == "Appointment"
    assert "Encounter" not in str(told.resource)
    assert "IMP" not in str(told.resource)


def test_a_stay_under_way_explains_until_a_cancellation_withdraws_it() -> None:
    under_way = encounter("in-progress", {"start": "2026-12-01T14:00:00Z"})
    record, decisions = play(EXPECTED_ON_THE_DAY, under_way)
    assert ("alert.absence.explained", "probation-london") in kinds(decisions)
    [told] = [d for d in decisions if isinstance(d, Disclose)]
    assert "still under way" not in told.resource["detail"]  # the evidence's times stay out
    assert "start" not in told.resource["contained"][1]  # an open stay has no Appointment times
    cancelled = encounter("cancelled", {"start": "2026-12-01T14:00:00Z"}, version=2)
    record, decisions = decide(record, cancelled, RULES)
    assert kinds(decisions) == [("alert.absence.withdrawn", "probation-london")]
    _, refused = decide(record, under_way, RULES)
    assert kinds(refused) == [("refused", "conflict")]
    [stale] = refused
    assert isinstance(stale, UpdateRefused)
    assert stale.refusal.reason.startswith("Encounter.meta: ")


def test_a_stay_that_ended_before_the_day_explains_nothing() -> None:
    ended = encounter("finished", {"start": "2026-12-01T14:00:00Z", "end": "2026-12-02T23:00:00Z"})
    _, decisions = play(EXPECTED_ON_THE_DAY, ended)
    assert all(kind != "alert.absence.explained" for kind, _ in kinds(decisions))


def test_a_planned_stay_explains_nothing_and_clashes_with_nothing() -> None:
    booked = replace_times(
        appointment("probation-london", "b", "booked", "00:00", "00:00"),
        "2026-12-03T10:00:00Z",
        "2026-12-03T11:00:00Z",
    )
    planned = encounter("planned", {"start": "2026-12-02T14:00:00Z", "end": "2026-12-05T11:00:00Z"})
    _, decisions = play(EXPECTED_ON_THE_DAY, booked, planned)
    assert [k for k in kinds(decisions) if k[0].startswith("alert.")] == []


# --- referrals ---------------------------------------------------------------------------------


def test_a_routed_referral_is_delivered_the_referrer_told_and_the_service_related() -> None:
    record, decisions = play(referral())
    assert kinds(decisions) == [
        ("filed", "urn:concord:referral|probation-london/ref-9"),
        ("filed", "urn:concord:referral|mht-rv5/ref-9"),
        ("referral.request.delivered", "mht-rv5"),
        ("inbox", "requested"),
        ("referral.task.updated", "probation-london"),
        ("referral.task.updated", "mht-rv5"),
        ("inbox", "requested"),
        ("relationship", "mht-rv5"),
        ("relationship", "probation-london"),
    ]
    delivered = decisions[2]
    assert isinstance(delivered, Disclose)
    # Nothing but the CRN known: the service is told the person by the hub's id alone.
    hub = {"system": HUB_PERSON, "value": PERSON}
    assert delivered.resource["subject"] == {"reference": "#patient", "identifier": hub}
    assert delivered.resource["contained"] == [
        {"resourceType": "Patient", "id": "patient", "identifier": [hub]}
    ]
    assert delivered.basis == "role-default"
    assert next_deadline(record) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


PERSON_DETAILS = {
    "resourceType": "Patient",
    "id": "p",
    "identifier": [
        {"system": PROBATION_CRN, "value": "X123456"},
        {"system": NHS_NUMBER, "value": "9434765919"},
    ],
    "name": [{"family": "Smith", "given": ["Jo"]}],
    "birthDate": "1990-04-01",
    "address": [{"line": ["1 High Street"], "city": "London", "postalCode": "SE11 5AB"}],
    "gender": "female",
    "telecom": [{"system": "phone", "value": "07700 900001"}],
}
OFFICER = {
    "resourceType": "PractitionerRole",
    "id": "r",
    "practitioner": {"reference": "#o"},
    "organization": {"reference": "#team", "display": "Lambeth North probation team"},
    "telecom": [{"system": "phone", "value": "020 7946 0000"}],
}
OFFICER_NAME = {
    "resourceType": "Practitioner",
    "id": "o",
    "name": [{"text": "Sam Patel"}],
    "telecom": [{"system": "email", "value": "sam.patel@justice.gov.uk"}],
    "qualification": [{"code": {"text": "PQiP"}}],
}


def detailed_referral(category: str = "mental-health-assessment") -> dict[str, Any]:
    """A referral naming the person by a contained Patient and the officer by its role."""
    return referral(
        contained=[PERSON_DETAILS, OFFICER, OFFICER_NAME],
        subject={"reference": "#p"},
        requester={"reference": "#r"},
        category=[{"coding": [{"system": "urn:concord:referral-category", "code": category}]}],
    )


def linked(message: dict[str, Any]) -> dict[str, Any]:
    """The event as the linker forwards it: named by the CRN and the NHS number it joined."""
    subject = {
        **message["subject"],
        "identifiers": [{"system": system, "value": value} for system, value in (CRN, NHS)],
    }
    return {**message, "subject": subject}


def test_a_health_service_is_sent_the_nhs_number_the_details_and_the_referrers_contact() -> None:
    _, decisions = play(linked(detailed_referral()))
    [delivered] = [
        d
        for d in decisions
        if isinstance(d, Disclose)
        and d.recipient == "mht-rv5"
        and d.event_type == "referral.request.delivered"
    ]
    resource = delivered.resource
    patient, role, officer = resource["contained"]
    assert resource["subject"] == {
        "reference": "#patient",
        "identifier": {"system": NHS_NUMBER, "value": "9434765919"},
    }
    assert patient == {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [
            {"system": NHS_NUMBER, "value": "9434765919"},
            {"system": HUB_PERSON, "value": PERSON},
        ],
        "name": [{"family": "Smith", "given": ["Jo"]}],
        "birthDate": "1990-04-01",
        "address": [{"line": ["1 High Street"], "city": "London", "postalCode": "SE11 5AB"}],
    }, "no CRN, and nothing probation holds beyond name, date of birth and address"
    assert resource["requester"] == {"reference": "#requester"}
    assert role == {
        "resourceType": "PractitionerRole",
        "id": "requester",
        "practitioner": {"reference": "#practitioner"},
        "organization": {"display": "Lambeth North probation team"},
        "telecom": [{"system": "phone", "value": "020 7946 0000"}],
    }
    assert officer == {
        "resourceType": "Practitioner",
        "id": "practitioner",
        "name": [{"text": "Sam Patel"}],
        "telecom": [{"system": "email", "value": "sam.patel@justice.gov.uk"}],
    }
    assert delivered.basis == "direct-care"
    assert "X123456" not in str(resource)
    assert problems_in(resource) == []


def test_an_alert_about_a_referral_names_the_person_as_the_referrer_knows_them() -> None:
    unrouted = referral(locationCode=[{"coding": [{"system": "urn:concord:area", "code": "W1"}]}])
    _, decisions = play(unrouted)
    [alert] = [d for d in decisions if isinstance(d, Disclose)]
    assert alert.event_type == "referral.routing.failed"
    crn = {"system": PROBATION_CRN, "value": "X123456"}
    assert alert.resource["patient"] == {"reference": "#patient", "identifier": crn}
    assert alert.resource["contained"][0]["identifier"] == [
        crn,
        {"system": HUB_PERSON, "value": PERSON},
    ]
    assert problems_in(alert.resource) == []


def test_a_voluntary_service_is_sent_the_details_but_not_the_nhs_number() -> None:
    _, decisions = play(linked(detailed_referral("housing-support")))
    told = [d for d in decisions if isinstance(d, Disclose) and d.recipient == "vol-housing"]
    [delivered] = [d for d in told if d.event_type == "referral.request.delivered"]
    patient = delivered.resource["contained"][0]
    assert patient["identifier"] == [{"system": HUB_PERSON, "value": PERSON}]
    assert patient["name"] == [{"family": "Smith", "given": ["Jo"]}]
    assert all("9434765919" not in str(d.resource) for d in told), "nor in the referral's Task"
    assert delivered.basis == "direct-care"


def test_the_referrer_is_sent_nothing_of_the_details_in_its_task() -> None:
    _, decisions = play(linked(detailed_referral()))
    to_officer = [
        d for d in decisions if isinstance(d, Disclose) and d.recipient == "probation-london"
    ]
    assert to_officer
    for told in to_officer:
        text = str(told.resource)
        for detail in ("Smith", "1990-04-01", "SE11 5AB", "020 7946 0000"):
            assert detail not in text


def test_the_details_are_kept_with_the_referral() -> None:
    record, _ = play(linked(detailed_referral()))
    [kept] = record.referrals.values()
    assert kept.parties is not None
    assert kept.parties.person["birthDate"] == "1990-04-01"
    assert "Smith" not in repr(kept), "a referral's repr (in a traceback) names no one"


def test_a_referral_with_content_and_no_consent_is_held_and_only_the_referrer_told() -> None:
    record, decisions = play(referral(reasonCode=[{"text": "low mood"}]))
    assert kinds(decisions) == [
        ("filed", "urn:concord:referral|probation-london/ref-9"),
        ("referral.routing.held", "probation-london"),
        ("inbox", "held"),
        ("relationship", "probation-london"),
    ]
    assert next_deadline(record) is None


def test_a_routed_referral_delivered_again_has_no_second_effect_and_a_change_is_refused() -> None:
    sent = referral()
    record, _ = play(sent)
    assert decide(record, sent, RULES) == (record, [])
    changed = referral(priority="urgent")
    after, decisions = decide(record, changed, RULES)
    assert after is record
    assert kinds(decisions) == [("refused", "business-rule")]
    assert isinstance(decisions[0], UpdateRefused)
    assert decisions[0].origin == "referral-lifecycle"


def test_only_probation_refers() -> None:
    from_trust = {**referral(), "source": "mht-rv5"}
    _, decisions = play(from_trust)
    assert kinds(decisions) == [("refused", "business-rule")]


def test_a_task_is_matched_to_a_referral_its_sender_is_party_to() -> None:
    record, _ = play(referral())
    _, accepted = decide(record, task("mht-rv5", "accepted"), RULES)
    assert kinds(accepted) == [("referral.task.updated", "probation-london"), ("inbox", "accepted")]
    _, stranger = decide(record, task("vol-recovery", "accepted"), RULES)
    assert kinds(stranger) == [("refused", "not-found")]
    _, unknown = decide(record, task("mht-rv5", "accepted", "ref-0"), RULES)
    assert kinds(unknown) == [("refused", "not-found")]
    _, illegal = decide(record, task("mht-rv5", "completed"), RULES)
    assert kinds(illegal) == [("refused", "business-rule")]


def test_the_services_appointment_based_on_the_referral_is_its_first_appointment() -> None:
    based_on = [{"reference": "ServiceRequest/ref-9"}]
    record, _ = play(referral())
    booked = appointment("mht-rv5", "m", "booked", "14:00", "15:00", basedOn=based_on)
    linked, decisions = decide(record, booked, RULES)
    assert kinds(decisions) == [
        ("referral.task.updated", "probation-london"),
        ("inbox", "requested"),
    ]
    task_sent = decisions[0]
    assert isinstance(task_sent, Disclose)
    assert task_sent.resource["businessStatus"] == {"text": "first appointment booked"}
    again = appointment("mht-rv5", "m2", "booked", "16:00", "17:00", basedOn=based_on)
    assert decide(linked, again, RULES)[1] == [], "only the first"
    by_another = appointment("gp-Y01234", "g", "booked", "16:00", "17:00", basedOn=based_on)
    assert decide(record, by_another, RULES)[1] == [], "only the receiving service's"


def test_an_overdue_referral_is_escalated_once_to_referrer_and_service() -> None:
    record, _ = play(referral())
    deadline = next_deadline(record)
    assert deadline is not None
    assert decide(record, CheckDeadlines(PERSON, deadline - timedelta(minutes=1)), RULES) == (
        record,
        [],
    )
    escalated, decisions = decide(record, CheckDeadlines(PERSON, deadline), RULES)
    assert kinds(decisions) == [
        ("referral.deadline.missed", "probation-london"),
        ("inbox", "requested"),
        ("referral.deadline.missed", "mht-rv5"),
        ("inbox", "requested"),
    ]
    assert all(d.cause is None for d in decisions if isinstance(d, Disclose))
    assert next_deadline(escalated) is None
    assert decide(escalated, CheckDeadlines(PERSON, deadline), RULES) == (escalated, [])


# --- one referral, one Task ----------------------------------------------------------------------


def own_task(status: str, **more: Any) -> dict[str, Any]:
    """The service's own Task about the referral, naming it by basedOn and the person by no one,
    as the reconciler reads it once the person index found it by its referral."""
    resource = {
        "resourceType": "Task",
        "id": f"mht-own-{status}",
        "status": status,
        "intent": "order",
        "basedOn": [{"reference": "ServiceRequest/ref-9"}],
        **more,
    }
    message = event("mht-rv5", resource, CRN)
    return {**message, "subject": {"identifiers": [], "person_id": PERSON}}


def sent(decisions: list[Decision], event_type: str) -> list[Disclose]:
    return [d for d in decisions if isinstance(d, Disclose) and d.event_type == event_type]


def test_the_referrer_and_the_service_get_the_same_task_naming_the_person() -> None:
    _, decisions = play(referral())
    to_referrer, to_service = sent(decisions, "referral.task.updated")
    assert (to_referrer.recipient, to_service.recipient) == ("probation-london", "mht-rv5")
    assert to_referrer.resource == to_service.resource
    assert to_service.resource["for"] == {"identifier": {"system": HUB_PERSON, "value": PERSON}}
    assert to_service.resource["focus"] == {"reference": "ServiceRequest/ref-9"}
    assert to_service.what == f"Task/{to_service.resource['id']}"


def test_a_services_task_naming_no_person_updates_the_one_task() -> None:
    record, delivered = play(referral())
    shared = sent(delivered, "referral.task.updated")[0].resource
    record, received = decide(record, own_task("received"), RULES)
    [task] = [d.resource for d in sent(received, "referral.task.updated")]
    assert (task["id"], task["status"]) == (shared["id"], "received")
    # The Task the hub delivered, sent back as received: the same referral.
    _, accepted = decide(record, event("mht-rv5", {**shared, "status": "accepted"}, CRN), RULES)
    [task] = [d.resource for d in sent(accepted, "referral.task.updated")]
    assert (task["id"], task["status"]) == (shared["id"], "accepted")
    assert task["meta"]["lastUpdated"] == task["lastModified"]


# --- a referral its referrer ends ----------------------------------------------------------------

BASED_ON = [{"reference": "ServiceRequest/ref-9"}]


def booked_for_the_referral(status: str = "booked") -> Calendar:
    """The record once the service accepted the referral and booked its first appointment."""
    booked = appointment("mht-rv5", "m-1", status, "14:00", "15:00", basedOn=BASED_ON)
    record, _ = play(referral(), task("mht-rv5", "accepted"), booked)
    assert record.referrals["probation-london/ref-9"].first_appointment == "mht-rv5/m-1"
    return record


def flags(decisions: list[Decision]) -> list[Disclose]:
    return sent(decisions, "referral.appointment.flagged")


def test_probation_withdrawing_a_referral_flags_the_booked_appointment_to_the_service() -> None:
    record = booked_for_the_referral()
    ended, decisions = decide(record, referral(status="revoked"), RULES)
    assert ended.referrals["probation-london/ref-9"].status == "cancelled"
    assert [
        (d.recipient, d.resource["status"]) for d in sent(decisions, "referral.task.updated")
    ] == [
        ("probation-london", "cancelled"),
        ("mht-rv5", "cancelled"),
    ]
    [flag] = flags(decisions)
    assert flag.recipient == "mht-rv5"
    assert flag.resource["resourceType"] == "DetectedIssue"
    assert flag.resource["code"]["coding"][0]["code"] == "referral-ended"
    assert flag.resource["implicated"] == [
        {"reference": "ServiceRequest/ref-9"},
        {"reference": "Appointment/m-1"},
    ]
    assert flag.resource["detail"].startswith("The referrer withdrew it: referral ref-9 has ended.")
    assert "The hub has not cancelled it" in flag.resource["detail"]
    # Ended once: the same ending again, or another way of ending it, tells no one anything.
    assert decide(ended, referral(status="revoked"), RULES) == (ended, [])
    assert decide(ended, task("probation-london", "cancelled"), RULES)[1] == []


def test_each_way_probation_ends_a_referral_flags_the_booking_once() -> None:
    record = booked_for_the_referral()
    for ending, words in (
        (referral(status="completed"), "The referrer closed it"),
        (referral(status="entered-in-error"), "The referrer withdrew it as entered in error"),
        (task("probation-london", "cancelled"), "The referrer cancelled it"),
    ):
        _, decisions = decide(record, ending, RULES)
        [flag] = flags(decisions)
        assert flag.resource["detail"].startswith(words)
        assert flag.event_id == flags(decide(record, ending, RULES)[1])[0].event_id


def test_no_flag_when_the_service_ends_it_or_nothing_booked_is_still_to_come() -> None:
    record = booked_for_the_referral()
    _, by_service = decide(record, task("mht-rv5", "cancelled"), RULES)
    assert [d.recipient for d in sent(by_service, "referral.task.updated")] == ["probation-london"]
    assert flags(by_service) == []
    unbooked, _ = play(referral(), task("mht-rv5", "accepted"))
    _, nothing_booked = decide(unbooked, referral(status="revoked"), RULES)
    assert len(sent(nothing_booked, "referral.task.updated")) == 2
    assert flags(nothing_booked) == []
    cancelled = appointment(
        "mht-rv5", "m-1", "cancelled", "14:00", "15:00", basedOn=BASED_ON, version=2
    )
    called_off, _ = decide(record, cancelled, RULES)
    assert flags(decide(called_off, referral(status="revoked"), RULES)[1]) == []
    afterwards = replace(RULES, now=datetime(2026, 12, 3, 16, 0, tzinfo=UTC))
    assert flags(decide(record, referral(status="revoked"), afterwards)[1]) == []


def test_ending_a_referral_the_hub_never_held_is_refused_and_routes_nothing() -> None:
    record, decisions = play(referral(status="revoked"))
    assert record.referrals == {}
    assert sent(decisions, "referral.request.delivered") == []
    [refused] = [d for d in decisions if isinstance(d, UpdateRefused)]
    assert refused.refusal.code == "not-found"
    assert refused.refusal.reason == (
        "ServiceRequest.status: revoked, but the hub holds no referral 'ref-9' from "
        "probation-london to end"
    )


# --- a person found to be another --------------------------------------------------------------


def test_a_merge_hands_the_record_over_and_leaves_it_naming_the_survivor() -> None:
    record, _ = play(appointment("gp-Y01234", "g", "booked", "10:00", "10:30"))
    moved, decisions = decide(record, Merge(PERSON, "p-0"), RULES)
    assert moved == Calendar(PERSON, merged_into="p-0")
    assert decisions == [Transfer(PERSON, "p-0", record)]


def test_the_survivor_takes_over_and_the_clash_across_the_two_records_is_raised() -> None:
    theirs, _ = play(appointment("vol-recovery", "v", "booked", "10:15", "11:00"))
    mine, _ = play(
        appointment("gp-Y01234", "g", "booked", "10:00", "10:30"), record=Calendar("p-0")
    )
    merged, decisions = decide(mine, Transfer(PERSON, "p-0", theirs), RULES)
    assert merged.person_id == "p-0"
    assert set(merged.slots) == {"gp-Y01234/g", "vol-recovery/v"}
    assert kinds(decisions) == [
        ("alert.clash.raised", "gp-Y01234"),
        ("alert.clash.raised", "vol-recovery"),
    ]
    assert all(
        d.cause is None and d.person_id == "p-0" for d in decisions if isinstance(d, Disclose)
    )


def test_whatever_arrives_for_a_merged_person_goes_on_to_the_survivor() -> None:
    moved = Calendar(PERSON, merged_into="p-0")
    gp = appointment("gp-Y01234", "g", "booked", "10:00", "10:30")
    assert decide(moved, gp, RULES) == (moved, [Forward("p-0", gp)])
    check = CheckDeadlines(PERSON, NOW)
    assert decide(moved, check, RULES) == (moved, [replace(check, person_id="p-0")])
    transfer = Transfer("p-9", PERSON, Calendar("p-9"))
    assert decide(moved, transfer, RULES) == (moved, [replace(transfer, survivor="p-0")])
    assert decide(moved, Merge(PERSON, "p-0"), RULES) == (moved, []), "already handed over"
    assert decide(moved, Merge(PERSON, "p-00"), RULES) == (moved, [Merge("p-0", "p-00")])
