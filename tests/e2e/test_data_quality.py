"""Contradictions end to end, through a real worker on the real broker: the partner that sent them
gets an `appointment.booking.flagged` message, and the calendar keeps the defensible state."""

from __future__ import annotations

from typing import Any

from schemas.envelope import content_event_id
from schemas.topics import DEADLETTER, OUTBOUND
from tests.e2e.conftest import Worker, appointment, patient
from tests.e2e.test_reconciliation import PERSON_CRN, PERSON_NHS, ask, breach_check
from tests.e2e.test_referrals import messages

AT_TEN = ("2026-12-10T10:00:00Z", "2026-12-10T10:30:00Z")


def event_of(partner: str, resource: dict[str, Any]) -> str:
    """The event id the hub gave a partner's resource (content-derived)."""
    return str(content_event_id(partner, resource))


def flagged_event(flag: dict[str, Any]) -> str:
    """The event id a `*.flagged` message names (its OperationOutcome's flagged-event extension)."""
    [value] = [
        e["valueIdentifier"]["value"]
        for e in flag["resource"]["extension"]
        if e["url"] == "urn:concord:extension:flagged-event"
    ]
    return str(value)


def rules(flag: dict[str, Any]) -> list[tuple[str, str]]:
    """Each issue's rule and severity."""
    return [
        (issue["details"]["coding"][0]["code"], issue["severity"])
        for issue in flag["resource"]["issue"]
    ]


def test_a_partner_is_told_of_its_contradictions_and_the_cancellation_stands(
    worker: Worker, publish
) -> None:
    """The GP cancels the visit that would explain a missed probation appointment, then reports
    it attended: the cancellation stands (no explanation), and the GP is told; each partner is
    told of outcomes it never booked."""
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    missed = appointment("prob-dq", "noshow", *AT_TEN, PERSON_CRN)
    publish("probation-london", missed)
    publish("gp-Y01234", appointment("gp-dq-1", "booked", *AT_TEN, PERSON_NHS))
    breach_check(worker, "prob-dq", expect="possible-conflict")  # one person, the visit booked
    publish("gp-Y01234", appointment("gp-dq-1", "cancelled", *AT_TEN, PERSON_NHS, version=2))
    breach_check(worker, "prob-dq", expect="no-known-conflict")

    attended = appointment("gp-dq-1", "fulfilled", *AT_TEN, PERSON_NHS, version=3)
    never_booked = appointment(
        "gp-dq-2", "fulfilled", "2026-12-11T09:00:00Z", "2026-12-11T09:30:00Z", PERSON_NHS
    )
    publish("gp-Y01234", attended)
    publish("gp-Y01234", never_booked)

    found = messages(OUTBOUND.name, 3, event_type="appointment.booking.flagged")
    told = {(flag["to"], flagged_event(flag)): rules(flag) for flag in found}
    assert told == {
        ("probation-london", event_of("probation-london", missed)): [
            ("update-without-booking", "warning")
        ],
        ("gp-Y01234", event_of("gp-Y01234", attended)): [("outcome-after-cancellation", "error")],
        ("gp-Y01234", event_of("gp-Y01234", never_booked)): [("update-without-booking", "warning")],
    }
    assert all(flag["subject"] is None for flag in found), "no person is named"
    [kept] = [f for f in found if flagged_event(f) == event_of("gp-Y01234", attended)]
    assert kept["resource"]["extension"][0]["valueReference"] == {
        "reference": "Appointment/gp-dq-1"
    }
    # Flagged after the step that kept the cancellation: the visit explains nothing.
    status, answer = worker.get(ask(PERSON_CRN, "prob-dq"))
    assert (status, answer["verdict"]) == (200, "no-known-conflict")

    # The visit report not applied is kept for the operator; nothing was refused.
    [letter] = messages(DEADLETTER.name, 1, origin="data-quality")
    assert letter["event_id"] == event_of("gp-Y01234", attended)
    assert messages(OUTBOUND.name, 1, timeout_s=2, event_type="appointment.booking.refused") == []
