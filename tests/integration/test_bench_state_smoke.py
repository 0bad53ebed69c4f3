"""The state benchmark runs end to end in its quick mode, and every rebuilt table is whole.

The counts are correctness checks (a rebuilt calendars table must hold every seeded person);
its speed and memory figures are reported, never asserted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.state import COUNT_FIGURES, FIGURES
from tests.conftest import ROOT


def test_quick_state_benchmark_counts_every_person(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Exit 0, a table naming every figure, and every calendar count equal to the people seeded."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.state", "--quick", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].split("|")[0].strip() == "figure"
    values = {
        cells[0].strip(): cells[1].strip()
        for cells in (line.split("|") for line in lines)
        if len(cells) == 3
    }
    assert set(FIGURES) <= set(values)
    seeded = values["people seeded"]
    assert int(seeded.replace(",", "")) > 0
    for figure in COUNT_FIGURES:
        assert values[figure] == f"{seeded} of {seeded}", figure
