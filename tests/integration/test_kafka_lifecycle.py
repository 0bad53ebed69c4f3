"""A real second broker on free ports: start, idempotent start, stop, idempotent stop.

Jars are shared with the normal cache (fetched once); the data dir, pid and log are per port
and removed afterwards.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator

import pytest

from deploy.kafka import local

pytestmark = pytest.mark.kafka


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    port = free_port()
    monkeypatch.setenv("CONCORD_KAFKA_PORT", str(port))
    monkeypatch.setenv("CONCORD_KAFKA_CONTROLLER_PORT", str(free_port()))
    yield port
    local.stop(timeout_s=10.0)
    files = local._files(port)
    shutil.rmtree(files.data, ignore_errors=True)
    for path in (files.props, files.pid, files.log, files.lock):
        path.unlink(missing_ok=True)


def test_start_status_stop_cycle(broker_port: int) -> None:
    began = time.monotonic()
    bootstrap = local.start(timeout_s=60.0)
    assert bootstrap == f"127.0.0.1:{broker_port}"

    running = local.status()
    assert running["running"] is True
    assert running["external"] is False
    assert isinstance(running["pid"], int)

    assert local.start() == bootstrap  # already up: returns at once, same process
    assert local.status()["pid"] == running["pid"]

    assert local.stop() is True
    assert local.status() == {**running, "running": False, "pid": None}
    assert local.stop() is False
    assert time.monotonic() - began < 60.0


def test_broker_dying_at_startup_points_at_its_log(
    broker_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_HEAP", "lots")  # the JVM refuses this and exits at once
    with pytest.raises(local.KafkaSetupError, match="exited while starting") as caught:
        local.start(timeout_s=30.0)
    message = str(caught.value)
    assert str(local._files(broker_port).log) in message
    assert "Invalid maximum heap size" in message
    assert local.status()["running"] is False
