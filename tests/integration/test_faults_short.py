"""The fault suite's short version (bench/faults.py) on the test broker: the deliverer is killed
mid-stream and started again; nothing Kafka acknowledged is lost and every alert owed reaches
the partner.

`make faults` runs every scenario on a three-broker cluster; this keeps one of them in CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import faults
from bench.reconciler import free_port

pytestmark = pytest.mark.kafka


def test_deliverer_killed_mid_stream_loses_no_event_and_no_alert(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("CONCORD_TOPIC_PREFIX", "restored-after-the-test.")
    short = [
        "--no-cluster",
        "--only",
        "deliverer-kill",
        "--seconds",
        "20",
        "--fault-at",
        "8",
        "--settle",
        "60",
    ]
    args = faults.parse_args([*short, "--stub-port", str(free_port()), "--results", str(tmp_path)])
    [row] = faults.run_suite(args)
    assert row["scenario"] == "deliverer-kill"
    assert row["sent"] == 200
    assert row["acked"] == row["sent"]
    assert row["events lost"] == 0
    assert row["alerts expected"] == 200  # a clash alert to each booker of 100 pairs
    assert row["alerts lost"] == 0
    assert row["delivered"] == row["alerts expected"]
