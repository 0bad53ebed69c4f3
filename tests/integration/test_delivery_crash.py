"""The deliverer killed (SIGKILL) mid-batch and started again: the partner receives every message,
and whatever it receives twice carries the same idempotency key both times.

The real `concord deliver` process, the real broker, and a partner webhook in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from schemas import topics as catalogue
from tests.integration.test_delivery import publish

ROOT = Path(__file__).parents[2]
PARTNER = "probation-london"
MESSAGES = 600


class Partner(ThreadingHTTPServer):
    """A webhook that takes a few milliseconds per message and keeps each request's key."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.keys: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def received(self) -> list[str]:
        with self.lock:
            return list(self.keys)


class _Hook(BaseHTTPRequestHandler):
    server: Partner

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(0.003)
        with self.server.lock:
            self.server.keys.append(self.headers["Idempotency-Key"])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test counts requests itself."""


@pytest.fixture
def partner() -> Iterator[Partner]:
    server = Partner()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def deliverer(endpoints: Path, journal: Path, log: Path) -> subprocess.Popen[bytes]:
    """A `concord deliver` process keeping its delivered keys in `journal`."""
    env = {**os.environ, "CONCORD_DELIVERY_JOURNAL": str(journal), "CONCORD_LOG_FORMAT": "json"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "connectors.delivery.service", "--endpoints", str(endpoints)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def until(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_deliverer_killed_mid_batch_sends_everything_and_repeats_only_under_the_same_key(
    topics: str, tmp_path: Path, partner: Partner
) -> None:
    sent = publish(catalogue.ALERTS, PARTNER, MESSAGES)
    endpoints = tmp_path / "endpoints.yaml"
    endpoints.write_text(
        yaml.safe_dump({"endpoints": [{"partner": PARTNER, "format": "json", "url": partner.url}]})
    )
    journal, log = tmp_path / "delivered.journal", tmp_path / "deliver.log"

    first = deliverer(endpoints, journal, log)
    try:
        until(lambda: len(partner.received()) >= MESSAGES // 3, "a third of the messages")
    finally:
        first.kill()  # SIGKILL: no commit, no clean close
        first.wait()
    killed_at = len(partner.received())
    assert killed_at < MESSAGES, "the deliverer was killed before the end of the batch"

    second = deliverer(endpoints, journal, log)
    try:
        until(lambda: set(partner.received()) >= set(sent), "every message after the restart")
        time.sleep(2)  # a late repeat would show by now
    finally:
        second.terminate()
        second.wait(timeout=60)

    keys = partner.received()
    assert set(keys) == set(sent), "each message under its own event id, and nothing else"
    repeats = sum(n - 1 for n in Counter(keys).values())
    # One partner, one message at a time: only the one in flight when killed can be unknown.
    assert repeats <= 1, f"{repeats} messages sent again after the restart"
