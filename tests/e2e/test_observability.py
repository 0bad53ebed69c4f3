"""A worker's metrics move as it works, it answers /livez, and every line it logs (faust's,
mode's and the Kafka clients' included) is one JSON object."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Worker, alerts, patient
from tests.e2e.test_reconciliation import GP_BOOKED, PERSON_CRN, PERSON_NHS, REHAB_BOOKED


@pytest.fixture
def talkative_worker(topics: str, tmp_path: Path) -> Iterator[Worker]:
    """A worker whose libraries log their info lines too, so there are plenty to check."""
    running = Worker(tmp_path, CONCORD_LIBRARY_LOG_LEVEL="info")
    running.start()
    yield running
    running.stop()


def scrape(worker: Worker) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The worker's /metrics: each series name's (labels, value) samples."""
    with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for each in family.samples:
            found.setdefault(each.name, []).append((each.labels, float(each.value)))
    return found


def test_worker_metrics_move_with_its_work_and_every_log_line_is_json(
    talkative_worker: Worker, publish
) -> None:
    worker = talkative_worker
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("gp-Y01234", GP_BOOKED)
    publish("vol-recovery", REHAB_BOOKED)
    assert len(alerts(2)) >= 2

    deadline = time.monotonic() + 30
    metrics = scrape(worker)
    while not metrics.get("concord_alerts_raised_total") and time.monotonic() < deadline:
        time.sleep(0.3)
        metrics = scrape(worker)
    raised = {labels["kind"]: value for labels, value in metrics["concord_alerts_raised_total"]}
    assert raised.get("alert.clash.raised", 0) >= 2
    [(_, latencies)] = metrics["concord_alert_latency_seconds_count"]
    assert latencies >= 2
    lagging = {labels["topic"] for labels, _ in metrics.get("concord_consumer_lag", [])}
    assert any(topic.endswith("inbound") for topic in lagging), lagging
    ages = {labels["partner"] for labels, _ in metrics.get("concord_partner_feed_age_seconds", [])}
    assert {"gp-Y01234", "vol-recovery"} <= ages
    with urllib.request.urlopen(worker.url + "/livez", timeout=10) as response:
        assert json.loads(response.read()) == {"live": True}

    worker.stop()
    parsed, not_json = [], []
    for line in worker.log.read_text().splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            not_json.append(line)
    assert not_json == []
    loggers = {str(entry.get("logger", "")).split(".")[0] for entry in parsed}
    assert {"faust", "aiokafka"} <= loggers, "the libraries' lines were logged too"
