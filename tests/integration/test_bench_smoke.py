"""The reconciler benchmark runs end to end in its quick mode; its figures are not checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.reconciler import FIGURES
from tests.conftest import ROOT


def test_quick_benchmark_prints_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Exit 0 and a table naming every figure; speed is reported, never asserted."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.reconciler", "--quick", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].split("|")[0].strip() == "figure"
    printed = {line.split("|")[0].strip() for line in lines if "|" in line}
    assert set(FIGURES) <= printed
