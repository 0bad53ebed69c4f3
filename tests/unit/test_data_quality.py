"""Contradictions in what one partner says of its own appointments (services/domain/data_quality.py):
each rule, the state the calendar keeps, and the data-quality message its sender is told."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.delivery.formats import message_bundle
from connectors.hl7v2.from_fhir import hl7_message
from schemas import topics
from schemas.codec import decode, decode_dead_letter
from schemas.fhir import problems_in
from services.domain.calendar import Calendar, Slot, Version
from services.domain.data_quality import (
    appointment_id_reused,
    contradictions,
    double_bookings,
    flagged_event_type,
    outcome_after_cancellation,
    update_without_booking,
)
from services.domain.decisions import DataQualityFlagged, Decision, Disclose, UpdateRefused
from services.domain.person import decide
from services.stream.outbox import render
from tests.unit.test_contract import EXAMPLES
from tests.unit.test_person import NHS, PERSON, RULES, appointment, encounter, kinds, play

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
T = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def gp(fhir_id: str, status: str, start: str = "10:00", end: str = "10:30", **more: Any) -> Any:
    """The GP's appointment event, as the reconciler reads it."""
    message = appointment("gp-Y01234", fhir_id, status, start, end, **more)
    return {**message, "event_type": "appointment.booking.updated"}


def flags(decisions: list[Decision]) -> list[DataQualityFlagged]:
    return [d for d in decisions if isinstance(d, DataQualityFlagged)]


def rules_fired(decisions: list[Decision]) -> list[tuple[str, bool]]:
    return [(i.rule, i.applied) for flag in flags(decisions) for i in flag.issues]


def slot(fhir_id: str, status: str, number: int = 1, start: int = 0, minutes: int = 30) -> Slot:
    """A GP appointment starting `start` minutes after 10:00 on 3 December."""
    begins = T + timedelta(minutes=start)
    return Slot(
        appointment_id=f"gp-Y01234/{fhir_id}",
        partner="gp-Y01234",
        kind="gp",
        status=status,
        start=begins,
        end=begins + timedelta(minutes=minutes),
        location=None,
        version=Version(number, T - timedelta(days=2, minutes=number), f"{fhir_id}/{number}"),
    )


def holding(*slots: Slot) -> Calendar:
    return Calendar(PERSON, {s.appointment_id: s for s in slots})


# --- 1. an outcome for an appointment its partner cancelled --------------------------------------


@pytest.mark.parametrize("outcome", ["noshow", "fulfilled", "arrived", "checked-in"])
def test_an_outcome_for_a_cancelled_appointment_keeps_the_cancellation(outcome: str) -> None:
    record, _ = play(gp("g", "booked"), gp("g", "cancelled", version=2))
    after, decisions = decide(record, gp("g", outcome, version=3), RULES)

    assert after is record, "the cancellation stands"
    assert after.slots["gp-Y01234/g"].status == "cancelled"
    [flag] = decisions
    assert isinstance(flag, DataQualityFlagged)
    assert rules_fired(decisions) == [("outcome-after-cancellation", False)]
    assert flag.issues[0].detail.startswith(f"Appointment.status: {outcome} for an appointment")


def test_a_later_booking_reinstates_a_cancelled_appointment_and_its_outcome_then_applies() -> None:
    record, _ = play(gp("g", "booked"), gp("g", "cancelled", version=2))
    record, reinstated = decide(record, gp("g", "booked", version=3), RULES)
    record, missed = decide(record, gp("g", "noshow", version=4), RULES)

    assert flags(reinstated) == flags(missed) == []
    assert record.slots["gp-Y01234/g"].status == "noshow"


def test_an_outcome_older_than_the_cancellation_is_refused_as_stale_not_flagged_again() -> None:
    record, _ = play(gp("g", "booked"), gp("g", "cancelled", version=3))
    after, decisions = decide(record, gp("g", "noshow", version=2), RULES)
    assert after is record
    assert kinds(decisions) == [("refused", "conflict")], "one report, the stale refusal"


def test_a_missed_probation_appointment_it_had_cancelled_raises_no_explained_absence() -> None:
    """The safety case: a cancelled appointment cannot be missed, so it is never evidence."""
    probation = [
        appointment("probation-london", "p", "booked", "10:00", "11:00"),
        appointment("probation-london", "p", "cancelled", "10:00", "11:00", version=2),
    ]
    attended = appointment("gp-Y01234", "g", "fulfilled", "10:00", "10:30")
    record, _ = play(*probation, attended)
    missed = appointment("probation-london", "p", "noshow", "10:00", "11:00", version=3)
    _, decisions = decide(record, missed, RULES)
    assert not [d for d in decisions if isinstance(d, Disclose)]
    assert rules_fired(decisions) == [("outcome-after-cancellation", False)]


def test_the_rule_leaves_a_cancellation_after_an_outcome_alone() -> None:
    """A partner may withdraw an outcome by cancelling: that is a later version, applied."""
    attended = slot("g", "fulfilled", number=1)
    assert outcome_after_cancellation(holding(attended), slot("g", "cancelled", number=2)) is None


# --- 2. an update for an appointment never booked ------------------------------------------------


def test_an_outcome_for_an_appointment_never_booked_is_created_and_the_partner_told() -> None:
    record, decisions = play(gp("g", "noshow"))
    assert record.slots["gp-Y01234/g"].status == "noshow", "created from the update"
    assert rules_fired(decisions) == [("update-without-booking", True)]
    [issue] = flags(decisions)[0].issues
    assert issue.detail.startswith("Appointment: created from an update (status noshow, version 1")
    assert issue.detail.endswith("the booking was never received")


def test_a_later_version_of_an_appointment_never_booked_is_created_and_the_partner_told() -> None:
    record, decisions = play(gp("g", "booked", version=3))
    assert "gp-Y01234/g" in record.slots
    [issue] = flags(decisions)[0].issues
    assert "(a booking, version 3 of" in issue.detail


@pytest.mark.parametrize("status", ["proposed", "pending", "booked", "waitlist"])
def test_a_first_booking_is_no_contradiction(status: str) -> None:
    _, decisions = play(gp("g", status))
    assert flags(decisions) == []


def test_an_encounter_reports_what_happened_and_is_never_flagged() -> None:
    stay = encounter("finished", {"start": "2026-12-02T14:00:00Z", "end": "2026-12-05T11:00:00Z"})
    record, decisions = play(stay)
    assert record.slots, "applied"
    assert flags(decisions) == []


def test_an_update_to_a_held_appointment_is_no_contradiction() -> None:
    held = slot("g", "booked")
    assert update_without_booking(holding(held), slot("g", "noshow", number=2)) is None


# --- 3. the same version of an appointment with other content ------------------------------------


def test_the_same_version_with_other_content_keeps_the_first_whichever_arrives_first() -> None:
    at_ten, at_eleven = gp("g", "booked"), gp("g", "booked", "11:00", "11:30")
    for first, second in ((at_ten, at_eleven), (at_eleven, at_ten)):
        record, _ = play(first)
        after, decisions = decide(record, second, RULES)
        assert after is record, "the first received stands"
        assert rules_fired(decisions) == [("appointment-id-reused", False)]
        assert not [d for d in decisions if isinstance(d, UpdateRefused)], "flagged, not refused"
        [issue] = flags(decisions)[0].issues
        assert "was already received with another start, end" in issue.detail


def test_the_same_version_with_the_same_content_is_no_contradiction() -> None:
    """Another event id for what the calendar keeps unchanged (a comment edited, say)."""
    plain, noted = gp("g", "booked"), gp("g", "booked", comment="bring a letter")
    for first, second in ((plain, noted), (noted, plain)):
        record, _ = play(first)
        _, decisions = decide(record, second, RULES)
        assert flags(decisions) == []


def test_the_same_event_again_is_no_contradiction() -> None:
    held = slot("g", "booked")
    assert appointment_id_reused(holding(held), held) is None
    assert contradictions(holding(held), held) == ()


# --- 4. one partner booking the person twice at once ---------------------------------------------


def test_two_overlapping_bookings_of_one_partner_both_stand_and_the_partner_is_told() -> None:
    record, decisions = play(
        gp("g1", "booked", "10:00", "10:30"), gp("g2", "booked", "10:15", "10:45")
    )
    assert set(record.slots) == {"gp-Y01234/g1", "gp-Y01234/g2"}
    assert rules_fired(decisions) == [("double-booking", True)]
    [issue] = flags(decisions)[0].issues
    assert issue.detail == (
        "Appointment.start: overlaps your appointment Appointment/g1 for the same person; "
        "both are kept"
    )
    assert not [d for d in decisions if isinstance(d, Disclose)], "no clash within one partner"


def test_a_double_booking_is_told_once_when_it_begins() -> None:
    record, _ = play(gp("g1", "booked", "10:00", "10:30"), gp("g2", "booked", "11:00", "11:30"))
    record, moved = decide(record, gp("g2", "booked", "10:15", "10:45", version=2), RULES)
    _, arrived = decide(record, gp("g2", "arrived", "10:15", "10:45", version=3), RULES)
    assert rules_fired(moved) == [("double-booking", True)]
    assert flags(arrived) == [], "the same double booking, already told"


@pytest.mark.parametrize(
    ("first_status", "start", "end"),
    [("cancelled", "10:00", "10:30"), ("noshow", "10:00", "10:30"), ("booked", "10:30", "11:00")],
    ids=["cancelled", "missed", "back-to-back"],
)
def test_no_double_booking_without_two_standing_appointments_at_once(
    first_status: str, start: str, end: str
) -> None:
    record, _ = play(gp("g1", "booked"), gp("g1", first_status, version=2))
    _, decisions = decide(record, gp("g2", "booked", start, end), RULES)
    assert flags(decisions) == []


def test_overlaps_across_partners_stay_clashes_and_are_no_double_booking() -> None:
    _, decisions = play(
        gp("g", "booked", "10:00", "10:30"),
        appointment("vol-recovery", "v", "booked", "10:15", "11:00"),
    )
    assert flags(decisions) == []
    assert kinds(decisions) == [
        ("alert.clash.raised", "gp-Y01234"),
        ("alert.clash.raised", "vol-recovery"),
    ]


def test_a_booking_without_an_end_double_books_only_at_its_start() -> None:
    held = holding(slot("g1", "booked"))
    assert double_bookings(held, replace(slot("g2", "booked", start=15), end=None))
    assert double_bookings(held, replace(slot("g2", "booked", start=40), end=None)) == ()


# --- the message to the sender -------------------------------------------------------------------


def test_the_sender_is_told_with_its_own_resource_and_event_and_nothing_of_the_person() -> None:
    record, _ = play(gp("g", "booked"), gp("g", "cancelled", version=2))
    missed = gp("g", "noshow", version=3)
    _, decisions = decide(record, missed, RULES)

    letter, told = render(decisions, NOW)
    assert (letter.topic, letter.key) == (topics.DEADLETTER, b"gp-Y01234")
    kept = decode_dead_letter(letter.value)
    assert (kept.origin, kept.event_id) == ("data-quality", uuid.UUID(missed["event_id"]))
    assert (told.topic, told.key) == (topics.OUTBOUND, b"gp-Y01234")
    sent = decode(told.value)
    assert sent.event_type == "appointment.booking.flagged"
    assert (sent.source, sent.subject) == ("concord-hub", None)
    assert problems_in(sent.resource) == []
    assert sent.resource["extension"] == [
        {
            "url": "urn:concord:extension:flagged-resource",
            "valueReference": {"reference": "Appointment/g"},
        },
        {
            "url": "urn:concord:extension:flagged-event",
            "valueIdentifier": {"system": "urn:concord:event-id", "value": missed["event_id"]},
        },
    ]
    [issue] = sent.resource["issue"]
    assert (issue["severity"], issue["code"], issue["expression"]) == (
        "error",
        "business-rule",
        ["Appointment.status"],
    )
    assert issue["details"] == {
        "coding": [{"system": "urn:concord:data-quality", "code": "outcome-after-cancellation"}]
    }
    assert NHS[1] not in told.value.decode()
    assert PERSON not in told.value.decode()


def test_an_applied_update_is_a_warning_and_not_dead_lettered() -> None:
    _, decisions = play(gp("g", "noshow"))
    [told] = render(flags(decisions), NOW)
    [issue] = decode(told.value).resource["issue"]
    assert (told.topic, issue["severity"], issue["code"]) == (
        topics.OUTBOUND,
        "warning",
        "not-found",
    )


def test_flagging_the_same_event_again_gives_the_same_message_id() -> None:
    _, decisions = play(gp("g", "noshow"))
    [first] = render(flags(decisions), NOW)
    [again] = render(flags(decisions), datetime(2026, 12, 2, tzinfo=UTC))
    assert decode(first.value).event_id == decode(again.value).event_id


def test_a_flag_travels_in_every_delivery_format() -> None:
    _, decisions = play(gp("g1", "booked"), gp("g2", "arrived", "10:15", "10:45", version=2))
    [told] = render(flags(decisions), NOW)
    sent = decode(told.value)
    bundle = message_bundle(sent, "gp-Y01234", "https://gp.example/fhir")
    assert bundle["entry"][1]["resource"] == sent.resource
    hl7 = hl7_message(sent, "gp-Y01234", "1", NOW)
    assert "appointment.booking.flagged" in hl7
    assert "update-without-booking" in hl7
    assert "double-booking" in hl7
    [obr] = [segment for segment in hl7.split("\r") if segment.startswith("OBR|")]
    reference = sent.resource["extension"][0]["valueReference"]["reference"]
    assert obr.split("|")[2] == reference, "OBR-2 names the partner's own appointment"


def test_the_flagged_example_is_what_the_hub_renders() -> None:
    [example] = [p for p in EXAMPLES if p.stem == "appointment.booking.flagged"]
    documented = decode(example.read_bytes()).resource
    assert [i["details"]["coding"][0]["code"] for i in documented["issue"]] == [
        "update-without-booking",
        "double-booking",
    ]
    assert flagged_event_type("appointment.booking.updated") == "appointment.booking.flagged"
    with pytest.raises(ValueError, match="domain"):
        flagged_event_type("flagged")
