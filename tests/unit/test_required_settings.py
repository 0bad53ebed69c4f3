"""The hub refuses to start on demo defaults: no partner directory or person key, no start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime import MissingConfiguration, settings

ROOT = Path(__file__).parents[2]
REQUIRED = ("CONCORD_PARTNERS", "CONCORD_PERSON_KEY")


@pytest.mark.parametrize("unset", REQUIRED)
def test_settings_name_what_to_set(unset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(unset)
    with pytest.raises(MissingConfiguration, match=unset):
        settings()


def concord_without_settings(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `concord ARGS` with neither required setting in its environment."""
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [sys.executable, "-m", "services.ops.cli", *args],
        # Kafka is never reached; a secret is given so that only the settings are missing.
        env={**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "CONCORD_PARTNER_SECRET": "x"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ("worker",),
        ("gateway",),
        ("mllp", "--as", "mht-rv5"),
        ("publish", "--as", "gp-Y01234", "tests/fixtures/gp/appointment-booked.json"),
        ("pages",),
    ],
    ids=lambda c: c[0],
)
def test_every_hub_process_refuses_to_start_without_them(command: tuple[str, ...]) -> None:
    done = concord_without_settings(*command)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()  # one sentence, no traceback
    assert line.startswith(f"concord {command[0]}: set CONCORD_PARTNERS")
    assert "CONCORD_PERSON_KEY" in line
    assert "make run" in line
