"""Running a benchmark in its quick mode, for the bench smoke tests (speed is never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run_quick(module: str, results: Path) -> subprocess.CompletedProcess[str]:
    """`python -m <module> --quick` with its JSON and logs in `results`; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def printed_table(stdout: str) -> dict[str, str]:
    """Figure -> value, from the figure | value | baseline table the benchmark printed first."""
    lines = stdout.splitlines()
    assert lines[0].split("|")[0].strip() == "figure"
    return {
        cells[0].strip(): cells[1].strip()
        for cells in (line.split("|") for line in lines)
        if len(cells) == 3
    }
