"""The publish benchmark runs end to end in its quick mode; its figures are not checked."""

from __future__ import annotations

import json
from pathlib import Path

from bench.publish import FIGURES
from tests.integration.bench_quick import printed_table, run_quick


def test_quick_publish_benchmark_prints_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Exit 0, a table naming every figure, and the JSON written; speed is never asserted."""
    result = run_quick("bench.publish", tmp_path)
    assert set(FIGURES) <= set(printed_table(result.stdout))
    [written] = tmp_path.glob("publish-*.json")
    assert json.loads(written.read_text())["figures"]["records"] == 3_000
    assert "deleted 2 topics" in result.stderr
