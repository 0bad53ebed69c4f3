"""The state benchmark runs end to end in its quick mode, and every rebuilt table is whole.

The counts are correctness checks (a rebuilt calendars table must hold every seeded person);
its speed and memory figures are reported, never asserted.
"""

from __future__ import annotations

from pathlib import Path

from bench.state import COUNT_FIGURES, FIGURES
from tests.integration.bench_quick import printed_table, run_quick


def test_quick_state_benchmark_counts_every_person(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Exit 0, a table naming every figure, and every calendar count equal to the people seeded."""
    values = printed_table(run_quick("bench.state", tmp_path).stdout)
    assert set(FIGURES) <= set(values)
    seeded = values["people seeded"]
    assert int(seeded.replace(",", "")) > 0
    for figure in COUNT_FIGURES:
        assert values[figure] == f"{seeded} of {seeded}", figure
