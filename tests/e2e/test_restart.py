"""A worker restarted mid-stream rebuilds every calendar from its changelog and loses no alert."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.e2e.conftest import CRN, Worker, alerts, appointment

PEOPLE = 40


def clashing_pair(i: int) -> list[tuple[str, dict]]:
    """A probation and an addiction-service appointment for person i, clashing."""
    person = (CRN, f"X{100000 + i}")
    day = f"2026-12-{1 + i % 28:02d}"
    return [
        (
            "probation-london",
            appointment(f"prob-{i}", "booked", f"{day}T09:00:00Z", f"{day}T10:00:00Z", person),
        ),
        (
            "vol-recovery",
            appointment(f"rec-{i}", "booked", f"{day}T09:30:00Z", f"{day}T10:30:00Z", person),
        ),
    ]


def test_restart_rebuilds_calendars_and_no_alert_is_lost_or_repeated(
    topics: str, tmp_path: Path, publish
) -> None:
    first = Worker(tmp_path)
    first.start()
    for i in range(PEOPLE // 2):
        for partner, resource in clashing_pair(i):
            publish(partner, resource)
    assert len(alerts(PEOPLE)) >= PEOPLE  # half the people, two recipients each
    first.stop()

    # In-memory store: the new worker can only know the calendars from the changelog.
    second = Worker(tmp_path)
    second.start()
    for i in range(PEOPLE // 2, PEOPLE):
        for partner, resource in clashing_pair(i):
            publish(partner, resource)
    found = alerts(PEOPLE * 2)
    ids = Counter(a["event_id"] for a in found)
    assert len(ids) == PEOPLE * 2, "every clash alerted to both bookers"
    assert max(ids.values()) == 1, "no alert repeated"
    status, stats = second.get("/stats")
    assert status == 200
    assert stats["calendars"] == PEOPLE

    # An update after the restart still sees the rebuilt calendar: cancelling resolves the clash.
    cancelled = {
        **clashing_pair(0)[1][1],
        "status": "cancelled",
        "meta": {"versionId": "2", "lastUpdated": "2026-12-02T08:00:00Z"},
    }
    publish("vol-recovery", cancelled)
    resolved = [a for a in alerts(PEOPLE * 2 + 2) if a["event_type"] == "alert.clash.resolved"]
    assert len(resolved) == 2
    second.stop()
