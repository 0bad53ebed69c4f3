"""Right answers with several workers: each answers for every person, whichever holds them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bench.population import crn_for, nhs_number_for
from connectors.fhir_input import read_text
from connectors.kafka_io import Publisher
from connectors.publish import publish_records
from tests.e2e.conftest import CRN, NHS, Worker, appointment, patient

PEOPLE = 24
WORKERS = 3


@pytest.fixture
def workers(topics: str, tmp_path: Path) -> Iterator[list[Worker]]:
    """Three workers on this test's topics, all ready. No standby copies of other workers'
    partitions: a worker answers from its own partitions, or asks the one that holds them."""
    running = [Worker(tmp_path, CONCORD_STANDBY_REPLICAS="0") for _ in range(WORKERS)]
    try:
        for worker in running:
            worker.start()
        deadline = time.monotonic() + 90
        while not all(w.get("/ready")[0] == 200 for w in running):
            assert time.monotonic() < deadline, "the workers did not all become ready"
            time.sleep(0.5)
        yield running
    finally:
        for worker in running:
            worker.stop()


def scenario() -> list[tuple[str, dict]]:
    """Each person's case (CRN and NHS number), a missed probation appointment, and for every
    other person a trust appointment attended at that time."""
    events = []
    for n in range(PEOPLE):
        crn, nhs = (CRN, crn_for(n)), (NHS, nhs_number_for(n))
        events.append(("probation-london", patient(crn, nhs)))
        events.append(
            (
                "probation-london",
                appointment(
                    f"p-{n}", "noshow", "2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z", crn
                ),
            )
        )
        if n % 2 == 0:
            events.append(
                (
                    "mht-rv5",
                    appointment(
                        f"m-{n}", "fulfilled", "2026-12-03T10:15:00Z", "2026-12-03T10:45:00Z", nhs
                    ),
                )
            )
    return events


def answer(worker: Worker, n: int, timeout_s: float = 60.0) -> tuple[int, dict]:
    """The worker's breach check for person n's missed appointment, once it has the whole story."""
    expected = "explained" if n % 2 == 0 else "no-known-conflict"
    query = urlencode({"identifier": f"{CRN}|{crn_for(n)}", "appointment": f"p-{n}"})
    deadline = time.monotonic() + timeout_s
    status, body = 0, {}
    while time.monotonic() < deadline:
        status, body = worker.get(f"/breach-check?{query}")
        if status == 200 and body["verdict"] == expected:
            break
        time.sleep(0.3)
    return status, body


def test_every_worker_answers_for_every_person(workers: list[Worker]) -> None:
    publisher = Publisher()
    try:
        for partner, resource in scenario():
            summary = publish_records(read_text(json.dumps(resource), "t.json"), partner, publisher)
            assert summary.accepted == 1, summary.errors
    finally:
        publisher.close()

    wrong = []
    for worker in workers:
        for n in range(PEOPLE):
            status, body = answer(worker, n)
            expected = "explained" if n % 2 == 0 else "no-known-conflict"
            if status != 200 or body.get("verdict") != expected:
                wrong.append(f"worker {worker.port}, person {n}: {status} {body}")
            elif n % 2 == 0:
                assert [e["status"] for e in body["evidence"]] == ["fulfilled"]
    assert wrong == []
