"""The publish benchmark runs end to end in its quick mode; its figures are not checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.publish import FIGURES
from tests.conftest import ROOT


def test_quick_publish_benchmark_prints_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Exit 0, a table naming every figure, and the JSON written; speed is never asserted."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.publish", "--quick", "--results", str(tmp_path)],
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
    [written] = tmp_path.glob("publish-*.json")
    assert json.loads(written.read_text())["figures"]["records"] == 3_000
    assert "deleted 2 topics" in result.stderr
