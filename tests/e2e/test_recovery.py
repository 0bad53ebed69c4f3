"""A worker killed between deciding a change and storing it: after a restart every alert of the
change arrives, under the id it was first given, and no alert is made up anew.

The worker keeps its RocksDB store across the restart, as a deployed one does: a store ahead of
what Kafka holds would make the replayed event look already applied, and its alerts be lost.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from services.stream.crash_points import KILLED
from tests.e2e.conftest import CRN, Worker, alerts, appointment

PERSON = (CRN, "X424242")


def clash() -> list[tuple[str, dict]]:
    """A probation appointment, then an addiction-service one clashing with it."""
    return [
        (
            "probation-london",
            appointment("prob-1", "booked", "2026-12-03T09:00:00Z", "2026-12-03T10:00:00Z", PERSON),
        ),
        (
            "vol-recovery",
            appointment("rec-1", "booked", "2026-12-03T09:30:00Z", "2026-12-03T10:30:00Z", PERSON),
        ),
    ]


def exited(worker: Worker, timeout_s: float = 60.0) -> int | None:
    """The worker's exit status once it has exited (bounded wait), else None."""
    assert worker.process is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = worker.process.poll()
        if status is not None:
            return status
        time.sleep(0.2)
    return None


# The crash point, and how many copies of each alert may then be on the topic: killed after the
# changelog, exactly one; killed once the outputs were handed to the producer (which may already
# have sent them) or after Kafka confirmed them, the replay sends them again under the same ids
# (the deliverer drops the repeat). Never none, never a new id.
@pytest.mark.parametrize(
    ("point", "copies"),
    [("state-written", 2), ("outputs-confirmed", 2), ("changelog-confirmed", 1)],
)
def test_worker_killed_mid_batch_loses_no_alert_and_makes_none_anew(
    topics: str, tmp_path: Path, publish, point: str, copies: int
) -> None:
    worker = Worker(tmp_path, CONCORD_STORE="rocksdb://", CONCORD_TEST_CRASH_AT=point)
    worker.start()
    for partner, resource in clash():
        publish(partner, resource)
    assert exited(worker) == KILLED, f"the worker did not reach crash point {point}"

    del worker.env["CONCORD_TEST_CRASH_AT"]
    worker.start()  # same store, same group: the restarted worker replays the batch
    try:
        assert len(raised(alerts(2, timeout_s=120))) >= 2, "the clash was not alerted"
        time.sleep(3)  # a late repeat would show by now
        found = raised(alerts(2))
    finally:
        worker.stop()
    ids = Counter(a["event_id"] for a in found)
    assert sorted({a["recipient"] for a in found}) == ["probation-london", "vol-recovery"]
    assert len(ids) == 2, f"one alert to each booker, under one id each: {ids}"
    assert max(ids.values()) <= copies, f"repeated more than the window allows: {ids}"


def raised(found: list[dict]) -> list[dict]:
    """The clash alerts raised among alert envelopes."""
    return [a for a in found if a["event_type"] == "alert.clash.raised"]
