"""A running hub moved from 2 to 4 partitions with `concord topics repartition`: the people it
held, their linked identifiers and an event still waiting on inbound all reach a worker on the
new topics, which answers and alerts as before."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from deploy.topics import create_topics, delete_topics_with_prefix, list_topics, partition_counts
from schemas import topics
from schemas.identifiers import nhs_number_is_valid
from schemas.keys import person_partition
from services.runtime import bootstrap_servers
from tests.conftest import run_concord
from tests.e2e.conftest import CRN, NHS, Worker, alerts, appointment, patient
from tests.e2e.test_reconciliation import breach_check

PEOPLE = 8


def nhs_number(i: int) -> str:
    """A valid NHS number, different for each i."""
    bases = range(400_000_000 + 100 * i, 400_000_100 + 100 * i)
    return next(c for b in bases for d in range(10) if nhs_number_is_valid(c := f"{b}{d}"))


def crn(i: int) -> tuple[str, str]:
    return (CRN, f"R{300000 + i}")


def gp_booked(i: int) -> dict:
    """Person i's GP appointment, booked by NHS number (linked to the CRN by probation)."""
    day = f"2026-12-{1 + i:02d}"
    nhs = (NHS, nhs_number(i))
    return appointment(f"gp-{i}", "booked", f"{day}T10:00:00Z", f"{day}T10:30:00Z", nhs)


def rehab_booked(i: int) -> dict:
    """Person i's addiction-service appointment, by CRN, overlapping the GP's."""
    day = f"2026-12-{1 + i:02d}"
    return appointment(f"rec-{i}", "booked", f"{day}T10:15:00Z", f"{day}T11:00:00Z", crn(i))


@pytest.fixture
def two_partitions(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A hub's topics with 2 partitions per person-keyed topic; its new generation's prefix."""
    old, new = (f"test-{uuid.uuid4().hex[:10]}." for _ in range(2))
    monkeypatch.setenv("CONCORD_TOPIC_PREFIX", old)
    monkeypatch.setenv("CONCORD_PARTITIONS", "2")
    monkeypatch.delenv("CONCORD_APP_ID", raising=False)
    create_topics()
    yield new
    for prefix in (old, new):
        delete_topics_with_prefix(prefix, bootstrap=kafka_bootstrap)


def test_a_hub_moved_to_more_partitions_keeps_its_people_and_pending_events(
    two_partitions: str, tmp_path: Path, publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_prefix = two_partitions
    before = Worker(tmp_path)
    before.start()
    for i in range(PEOPLE):
        publish("probation-london", patient(crn(i), (NHS, nhs_number(i))))
        publish("gp-Y01234", gp_booked(i))
    wait_for_calendars(before, PEOPLE)
    before.stop()  # whatever it had not handled yet is carried over as pending
    # Sent while no worker runs: pending on the 2-partition inbound topic when the hub moves.
    publish("vol-recovery", rehab_booked(0))

    moved = run_concord("topics", "repartition", "--to", "4", "--into-prefix", new_prefix)
    assert moved.returncode == 0, moved.stderr
    assert f"CONCORD_TOPIC_PREFIX={new_prefix} CONCORD_PARTITIONS=4" in moved.stdout

    monkeypatch.setenv("CONCORD_TOPIC_PREFIX", new_prefix)
    monkeypatch.setenv("CONCORD_PARTITIONS", "4")
    counts = partition_counts([t.name for t in topics.plan()])
    assert counts[topics.INBOUND.name] == 4
    assert counts[topics.CALENDARS.changelog.name] == 4
    assert counts[topics.LINKS.name] == 1
    # Every calendar sits where the rule for 4 partitions looks for its person.
    placed = _changelog_placement(topics.CALENDARS.changelog.name, 4)
    assert len(placed) >= PEOPLE
    assert all(partition == person_partition(person, 4) for person, partition in placed)

    after = Worker(tmp_path)  # a fresh store: the calendars come from the new changelogs
    after.start()
    wait_for_calendars(after, PEOPLE)
    # A worker starts on topics it may not create, and creates none of its own.
    assert {n for n in list_topics() if n.startswith(new_prefix)} == {t.name for t in topics.plan()}
    for i in range(1, PEOPLE):
        publish("vol-recovery", rehab_booked(i))
    # Each new event by CRN meets the GP's appointment by NHS number: the links survived.
    raised = clash_alerts(2 * PEOPLE)
    assert len({a["event_id"] for a in raised}) == len(raised), "no alert repeated"
    assert Counter((a["event_type"], a["recipient"]) for a in raised) == {
        ("alert.clash.raised", "gp-Y01234"): PEOPLE,
        ("alert.clash.raised", "vol-recovery"): PEOPLE,
    }
    publish("gp-Y01234", {**gp_booked(3), "status": "fulfilled", "meta": {"versionId": "2"}})
    publish(
        "probation-london",
        appointment("prob-3", "noshow", "2026-12-04T10:00:00Z", "2026-12-04T10:45:00Z", crn(3)),
    )
    answer = breach_check(after, "prob-3", crn(3), expect="explained")
    assert answer["evidence"][0]["status"] == "fulfilled"
    after.stop()


def clash_alerts(expected: int, timeout_s: float = 60.0) -> list[dict]:
    """The clash alerts on the alerts topic, once there are `expected` of them (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [a for a in alerts(0) if a["event_type"].startswith("alert.clash")]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def wait_for_calendars(worker: Worker, people: int, timeout_s: float = 60.0) -> None:
    """Wait until the worker holds `people` calendars (bounded)."""
    deadline = time.monotonic() + timeout_s
    while worker.get("/stats")[1].get("calendars") != people:
        assert time.monotonic() < deadline, worker.get("/stats")
        time.sleep(0.5)


def _changelog_placement(topic: str, partitions: int) -> list[tuple[str, int]]:
    """(key, partition) of every record of a table's changelog."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers(), group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        found: list[tuple[str, int]] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                found += [(json.loads(r.key), tp.partition) for r in records]
        return found
    finally:
        consumer.close()
