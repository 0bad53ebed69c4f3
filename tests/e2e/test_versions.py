"""Versions end to end, through the HTTP gateway to a real worker: a moved-back appointment wins,
a stale version is refused, at the gateway while it remembers and by the worker after a restart."""

from __future__ import annotations

import json
from typing import Any

from connectors.gateway.app import GatewayConfig, build_app
from schemas.topics import OUTBOUND
from tests.e2e.conftest import NHS, Worker, alerts, appointment
from tests.e2e.test_referrals import messages, refused_event
from tests.integration.test_gateway import Client, Served

PERSON = (NHS, "9434765919")


def gp_appointment(start: str, meta: dict[str, str] | None = None) -> bytes:
    """The GP's appointment gp-77 at `start` (30 minutes), with the partner's meta if any."""
    resource = appointment(
        "gp-77", "booked", f"2026-12-10T{start}:00Z", f"2026-12-10T{start[:2]}:30:00Z", PERSON
    )
    resource.pop("meta")
    if meta:
        resource["meta"] = meta
    return json.dumps(resource).encode()


def clash_alerts(expected: int) -> list[dict[str, Any]]:
    found = [a for a in alerts(expected) if a["event_type"].startswith("alert.clash.")]
    assert len(found) >= expected, found
    return found


def test_appointment_moved_back_to_its_earlier_time_ends_at_that_time(
    worker: Worker, publish
) -> None:
    """10:00, 14:00, then 10:00 again (no meta): the clash is raised, resolved and raised anew."""
    probation = appointment(
        "prob-1", "booked", "2026-12-10T10:00:00Z", "2026-12-10T10:30:00Z", PERSON
    )
    publish("probation-london", probation)
    with Served(build_app(GatewayConfig())) as served:
        gateway = Client(served.port)
        assert gateway.post("/fhir/Appointment", gp_appointment("10:00")).status == 202
        clash_alerts(2)
        assert gateway.post("/fhir/Appointment", gp_appointment("14:00")).status == 202
        clash_alerts(4)
        back = gateway.post("/fhir/Appointment", gp_appointment("10:00"))

    assert back.status == 202
    assert "Idempotent-Replayed" not in back.headers
    found = clash_alerts(6)
    to_gp = [a for a in found if a["recipient"] == "gp-Y01234"]
    assert [a["event_type"] for a in to_gp] == [
        "alert.clash.raised",
        "alert.clash.resolved",
        "alert.clash.raised",
    ]
    # Raised anew, not the first alert again: a partner that drops repeats by id still hears it.
    assert to_gp[2]["event_id"] != to_gp[0]["event_id"]
    contained = to_gp[2]["resource"]["contained"]
    starts = {c["start"] for c in contained if c["resourceType"] == "Appointment"}
    assert starts == {"2026-12-10T10:00:00Z"}, "the calendar ends with both at 10:00"


def test_stale_version_is_refused_by_the_gateway_and_after_its_restart_by_the_worker(
    worker: Worker,
) -> None:
    first = gp_appointment("10:00", {"versionId": "1"})
    second = gp_appointment("11:00", {"versionId": "2"})
    with Served(build_app(GatewayConfig())) as served:
        gateway = Client(served.port)
        published = gateway.post("/fhir/Appointment", first)
        assert published.status == 202
        assert gateway.post("/fhir/Appointment", second).status == 202
        replay = gateway.post("/fhir/Appointment", first)
        assert replay.status == 409, replay.body
        assert (
            messages(OUTBOUND.name, 1, timeout_s=2, event_type="appointment.booking.refused") == []
        )

    # A new gateway process remembers nothing: the replayed capture is published ...
    with Served(build_app(GatewayConfig())) as restarted:
        assert Client(restarted.port).post("/fhir/Appointment", first).status == 202

    # ... and the worker, which keeps the version it holds, refuses it to its sender.
    [refusal] = messages(OUTBOUND.name, 1, event_type="appointment.booking.refused")
    assert refusal["to"] == "gp-Y01234"
    assert refused_event(refusal) == published.body["event_ids"][0]
    assert refusal["resource"]["extension"][0]["valueReference"] == {
        "reference": "Appointment/gp-77"
    }
    [issue] = refusal["resource"]["issue"]
    assert issue["code"] == "conflict"
    assert issue["diagnostics"].startswith("Appointment.meta: version 1 of")
    assert "older than version 2 of" in issue["diagnostics"]
