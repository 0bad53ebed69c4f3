"""Referrals end to end: routed, received, accepted, booked, refused, held, escalated once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.kafka_io import read_topic
from schemas.envelope import content_event_id
from schemas.topics import ALERTS, DEADLETTER, OUTBOUND
from tests.conftest import run_concord
from tests.e2e.conftest import CRN, DEMO_SECRETS, NHS, Worker, appointment, hub_person_of, patient
from tests.e2e.test_reconciliation import breach_check

PERSON_CRN = (CRN, "X123456")
PERSON_NHS = (NHS, "9434765919")


def referral(
    referral_id: str,
    *,
    category: str = "mental-health-assessment",
    area: str = "E09000022",
    priority: str = "routine",
    authored: datetime | None = None,
) -> dict[str, Any]:
    """A probation ServiceRequest: category, urgency, the person's area; no clinical content."""
    return {
        "resourceType": "ServiceRequest",
        "id": referral_id,
        "status": "active",
        "intent": "order",
        "priority": priority,
        "category": [{"coding": [{"system": "urn:concord:referral-category", "code": category}]}],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": area}]}],
        "subject": {"identifier": {"system": CRN, "value": "X123456"}},
        "authoredOn": (authored or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
    }


def task(delivered: dict[str, Any], status: str, reason: str | None = None) -> dict[str, Any]:
    """The receiving service's update of the referral's Task: the Task the hub delivered with the
    referral, same id, its status changed (`for`, the hub's person id, echoed as received)."""
    resource = {**delivered, "status": status}
    resource.pop("meta", None)
    if reason:
        resource["statusReason"] = {"text": reason}
    return resource


def messages(
    topic: str, expected: int, timeout_s: float = 30.0, **match: str
) -> list[dict[str, Any]]:
    """Envelopes (with their Kafka key as `to`) matching `match`, once `expected` arrived; bounded."""
    deadline = time.monotonic() + timeout_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [
            {**json.loads(v), "to": k.decode() if k else None}
            for k, v in read_topic(topic, idle_timeout_s=1.0)
        ]
        found = [m for m in found if all(m.get(f) == want for f, want in match.items())]
        if len(found) >= expected:
            return found
        time.sleep(0.3)
    return found


def delivered_person(timeout_s: float = 30.0) -> str:
    [delivery] = messages(OUTBOUND.name, 1, timeout_s, event_type="referral.request.delivered")
    assert delivery["to"] == "mht-rv5"
    return hub_person_of(delivery["resource"])


def delivered_task(expected: int = 1, timeout_s: float = 30.0) -> dict[str, Any]:
    """The referral's Task as the service last received it (with the referral, or updated)."""
    found = messages(
        OUTBOUND.name, expected, timeout_s, to="mht-rv5", event_type="referral.task.updated"
    )
    assert len(found) >= expected
    return found[-1]["resource"]


def officer_tasks(expected: int) -> list[dict[str, Any]]:
    return [
        m["resource"]
        for m in messages(
            OUTBOUND.name, expected, to="probation-london", event_type="referral.task.updated"
        )
    ]


def test_referral_is_routed_accepted_and_booked_and_the_officer_sees_it(
    worker: Worker, publish
) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("probation-london", referral("ref-1"))
    person = delivered_person()
    [requested] = officer_tasks(1)
    assert requested["status"] == "requested"
    # One referral, one Task: the service receives the very Task the officer follows.
    delivered = delivered_task()
    assert delivered == requested
    assert delivered["for"]["identifier"]["value"] == person

    publish("mht-rv5", task(delivered, "accepted"))
    accepted = officer_tasks(2)[-1]
    assert (accepted["id"], accepted["status"]) == (requested["id"], "accepted")

    booked = appointment(
        "mht-7", "booked", "2026-12-10T10:00:00Z", "2026-12-10T11:00:00Z", PERSON_NHS
    )
    booked["basedOn"] = [{"reference": "ServiceRequest/ref-1"}]
    publish("mht-rv5", booked)
    latest = officer_tasks(3)[-1]
    assert latest["businessStatus"] == {"text": "first appointment booked"}
    assert latest["status"] == "accepted"
    # The booked appointment is in the person's calendar: the officer's appointment at the same
    # time may conflict with it.
    missed = appointment(
        "prob-7", "noshow", "2026-12-10T10:30:00Z", "2026-12-10T11:00:00Z", PERSON_CRN
    )
    publish("probation-london", missed)
    assert breach_check(worker, "prob-7", expect="possible-conflict")["evidence"]

    env = {"CONCORD_PARTNER_SECRET": DEMO_SECRETS["probation-london"]}
    inbox = run_concord("referrals", "--for", "probation-london", "--json", env=env)
    assert inbox.returncode == 0, inbox.stderr
    [entry] = [json.loads(line) for line in inbox.stdout.splitlines()]
    assert (entry["status"], entry["recipient"], entry["first_appointment"]) == (
        "accepted",
        "mht-rv5",
        "mht-rv5/mht-7",
    )
    status, answer = worker.get("/referrals?status=accepted", "mht-rv5")
    assert status == 200
    assert [r["id"] for r in answer["referrals"]] == ["ref-1"]


def test_no_service_for_the_area_tells_the_officer(worker: Worker, publish) -> None:
    publish("probation-london", referral("ref-2", area="W1"))
    [alert] = messages(ALERTS.name, 1, event_type="referral.routing.failed")
    assert alert["to"] == "probation-london"
    assert "no service offers mental-health-assessment in area W1" in alert["resource"]["detail"]
    assert messages(OUTBOUND.name, 1, timeout_s=2, event_type="referral.request.delivered") == []


def test_rejection_reason_reaches_the_officer(worker: Worker, publish) -> None:
    publish("probation-london", referral("ref-3"))
    publish("mht-rv5", task(delivered_task(), "rejected", reason="already under our care"))
    rejected = [t for t in officer_tasks(2) if t["status"] == "rejected"]
    assert rejected[0]["statusReason"] == {"text": "already under our care"}


def test_illegal_transition_is_refused_with_a_clear_error_to_the_sender(
    worker: Worker, publish
) -> None:
    publish("probation-london", referral("ref-4"))
    update = task(delivered_task(), "completed")  # accepted was skipped: not allowed
    publish("mht-rv5", update)
    [refusal] = messages(OUTBOUND.name, 1, event_type="referral.task.refused")
    assert refusal["to"] == "mht-rv5"
    [issue] = refusal["resource"]["issue"]
    assert issue["diagnostics"] == "referral ref-4 is requested; it cannot become completed"
    assert refused_event(refusal) == str(content_event_id("mht-rv5", update))
    [letter] = messages(DEADLETTER.name, 1)
    assert letter["origin"] == "referral-lifecycle"


def refused_event(refusal: dict[str, Any]) -> str:
    """The event id a `*.refused` message names (its OperationOutcome's refused-event extension)."""
    [value] = [
        e["valueIdentifier"]["value"]
        for e in refusal["resource"]["extension"]
        if e["url"] == "urn:concord:extension:refused-event"
    ]
    return str(value)


def test_task_for_a_referral_the_hub_does_not_hold_is_refused_to_its_sender(
    worker: Worker, publish
) -> None:
    """Accepted at the edge (it is a well-formed update), refused by the worker, told to the sender."""
    update = {
        "resourceType": "Task",
        "id": "mht-task-1",
        "status": "accepted",
        "intent": "order",
        "focus": {"reference": "ServiceRequest/ref-nobody-sent"},
        "for": {
            "identifier": {"system": "urn:concord:id:person", "value": "p-0123456789abcdef0123"}
        },
    }
    publish("mht-rv5", update)

    [refusal] = messages(OUTBOUND.name, 1, event_type="referral.task.refused")
    assert refusal["to"] == "mht-rv5"
    assert refusal["subject"] is None, "the refusal names no person"
    assert refused_event(refusal) == str(content_event_id("mht-rv5", update))
    refused = refusal["resource"]["extension"][0]["valueReference"]
    assert refused == {"reference": f"Task/{update['id']}"}
    [issue] = refusal["resource"]["issue"]
    assert issue["code"] == "not-found"
    assert "no referral 'ref-nobody-sent'" in issue["diagnostics"]
    [letter] = messages(DEADLETTER.name, 1)
    assert (letter["source"], letter["event_id"]) == ("mht-rv5", refused_event(refusal))


def test_urgent_referral_not_accepted_by_its_deadline_is_escalated_exactly_once(
    worker: Worker, publish
) -> None:
    three_days_ago = datetime.now(UTC) - timedelta(days=6)
    publish("probation-london", referral("ref-5", priority="urgent", authored=three_days_ago))
    delivered_person()
    escalations = messages(ALERTS.name, 2, event_type="referral.deadline.missed")
    assert sorted(e["to"] for e in escalations) == ["mht-rv5", "probation-london"]
    time.sleep(3)  # several escalation checks (every second) pass: none may escalate again
    assert len(messages(ALERTS.name, 3, timeout_s=2, event_type="referral.deadline.missed")) == 2


def test_a_services_own_task_naming_no_person_is_matched_by_its_referral(
    worker: Worker, publish
) -> None:
    """The service need not copy the hub's person id: a Task naming the referral (focus or
    basedOn) and no person, or the person by the service's own id, reaches the referral's person
    through the referral, and updates the one Task the officer follows."""
    publish("probation-london", referral("ref-6"))
    shared = delivered_task()
    own_task = {
        "resourceType": "Task",
        "id": "mht-own-6",
        "status": "received",
        "intent": "order",
        "basedOn": [{"reference": "ServiceRequest/ref-6"}],
    }
    publish("mht-rv5", own_task)
    received = officer_tasks(2)[-1]
    assert (received["id"], received["status"]) == (shared["id"], "received")

    by_own_id = {**own_task, "status": "accepted", "for": {"reference": "Patient/mrn-66"}}
    publish("mht-rv5", by_own_id)
    accepted = officer_tasks(3)[-1]
    assert (accepted["id"], accepted["status"]) == (shared["id"], "accepted")
    assert accepted["for"] == shared["for"], "the referral's person, not one the Task named"

    unknown = {**own_task, "id": "mht-own-x", "basedOn": [{"reference": "ServiceRequest/ref-x"}]}
    publish("mht-rv5", unknown)
    [refusal] = messages(OUTBOUND.name, 1, event_type="referral.task.refused")
    assert refusal["to"] == "mht-rv5"
    [issue] = refusal["resource"]["issue"]
    assert issue["code"] == "not-found"
    assert (
        "no referral ServiceRequest/ref-x sent by or delivered to mht-rv5" in issue["diagnostics"]
    )
    assert refused_event(refusal) == str(content_event_id("mht-rv5", unknown))
    [letter] = messages(DEADLETTER.name, 1)
    assert letter["origin"] == "person-index"


def test_probation_ending_a_referral_flags_the_booked_appointment_and_cancels_nothing(
    worker: Worker, publish
) -> None:
    """Probation withdraws a referral whose first appointment the service booked: the service
    sees the cancelled Task and one flag naming its appointment; the hub cancels nothing."""
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("probation-london", referral("ref-7"))
    publish("mht-rv5", task(delivered_task(), "accepted"))
    officer_tasks(2)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=7)
    booked = appointment(
        "mht-8",
        "booked",
        start.isoformat().replace("+00:00", "Z"),
        (start + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        PERSON_NHS,
    )
    booked["basedOn"] = [{"reference": "ServiceRequest/ref-7"}]
    publish("mht-rv5", booked)
    assert officer_tasks(3)[-1]["businessStatus"] == {"text": "first appointment booked"}

    publish("probation-london", {**referral("ref-7"), "status": "revoked"})
    [flag] = messages(ALERTS.name, 1, event_type="referral.appointment.flagged")
    assert flag["to"] == "mht-rv5"
    assert flag["resource"]["resourceType"] == "DetectedIssue"
    assert {"reference": "Appointment/mht-8"} in flag["resource"]["implicated"]
    assert "may no longer be needed" in flag["resource"]["detail"]
    cancelled = delivered_task(2)
    assert cancelled["status"] == "cancelled"
    assert officer_tasks(4)[-1]["id"] == cancelled["id"]

    # Refer and Monitor's "referral ended" (a cancelled Task from probation) after the withdrawal:
    # the referral has ended once, so the service is flagged once.
    ended = {
        "resourceType": "Task",
        "id": "ended-ref-7",
        "status": "cancelled",
        "statusReason": {"text": "withdrawn"},
        "intent": "order",
        "focus": {"reference": "ServiceRequest/ref-7"},
        "for": {"identifier": {"system": CRN, "value": "X123456"}},
    }
    publish("probation-london", ended)
    flags = messages(ALERTS.name, 2, timeout_s=3, event_type="referral.appointment.flagged")
    assert len(flags) == 1
    sent = messages(OUTBOUND.name, 1, timeout_s=1, to="mht-rv5")
    assert {m["resource"]["resourceType"] for m in sent} == {"ServiceRequest", "Task"}, (
        "nothing the hub sends the service cancels its appointment"
    )
