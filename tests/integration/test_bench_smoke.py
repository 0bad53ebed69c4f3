"""The reconciler benchmark runs end to end in its quick mode; its figures are not checked."""

from __future__ import annotations

from pathlib import Path

from bench.reconciler import FIGURES
from tests.integration.bench_quick import printed_table, run_quick


def test_quick_benchmark_prints_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Exit 0 and a table naming every figure; speed is reported, never asserted."""
    result = run_quick("bench.reconciler", tmp_path)
    assert set(FIGURES) <= set(printed_table(result.stdout))
