"""Running a benchmark in its quick mode, for the bench smoke tests (speed is never asserted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def run_quick(module: str, results: Path) -> subprocess.CompletedProcess[str]:
    """`python -m <module> --quick` with its JSON and logs in `results`; it must exit 0."""
    # Its own process group: if it overruns, its workers go with it rather than linger.
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--quick", "--results", str(results)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"{module} --quick overran 300 s:\n{stderr[-3000:]}") from None
    assert process.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def printed_table(stdout: str) -> dict[str, str]:
    """Figure -> value, from the figure | value | baseline table the benchmark printed first."""
    lines = stdout.splitlines()
    assert lines[0].split("|")[0].strip() == "figure"
    return {
        cells[0].strip(): cells[1].strip()
        for cells in (line.split("|") for line in lines)
        if len(cells) == 3
    }
