"""The README's run command: the demo feed through a real worker to the breach check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from tests.e2e.conftest import ROOT, free_port


def test_demo_shows_the_clash_the_explained_absence_and_the_breach_check(
    kafka_bootstrap: str,
) -> None:
    env = {
        **os.environ,
        "CONCORD_TOPIC_PREFIX": f"test-demo-{uuid.uuid4().hex[:8]}.",
        "CONCORD_WEB_PORT": str(free_port()),
        "CONCORD_GATEWAY_PORT": str(free_port()),
        "CONCORD_STORE": "memory://",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.ops.demo", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    from deploy.topics import delete_topics_with_prefix

    delete_topics_with_prefix(env["CONCORD_TOPIC_PREFIX"])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "to probation-london  Explained absence" in out
    assert "[gateway]" in out, "the GP and the MHT publish over HTTP, through the gateway"
    assert "to gp-Y01234         Appointment clash: your appointment 10:00–10:30" in out
    check = json.loads(out[out.index("{") : out.index("\n}") + 2])
    assert check["verdict"] == "explained", "the officer's own missed supervision appointment"
    assert check["appointment_id"] == "probation-london/sup-2207"
    assert [e["organisation_type"] for e in check["evidence"]] == ["health-service"]
    assert "mht" not in json.dumps(check), "no word of the mental health trust to probation"
    assert "its missed session rec-5531 (HTTP 200): explained" in out
    for clinical in ("Psychiatry", "Medication review", "Substance misuse"):
        assert clinical not in out
    # A month across three areas: real figures, some suppressed, and Wandsworth's unmet need.
    figures = out[out.index("The commissioner's figures for 2026-11") :]
    made = next(line for line in figures.splitlines() if "referrals-made" in line)
    assert "Lambeth=" in made
    assert "Southwark=" in made
    assert "Wandsworth=" in made
    assert "*" in figures, "some cells are suppressed"
    unmet = next(line for line in figures.splitlines() if "referrals-unrouted" in line)
    assert "Lambeth=0" in unmet
    assert "Southwark=0" in unmet
    assert "Wandsworth=0" not in unmet
