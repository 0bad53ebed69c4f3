"""The gateway under abuse, over real HTTP: rates per source address and per partner answered
429 with Retry-After, refused sign-ins stopped early, stalled bodies answered 408, idle
connections closed and connections over the cap refused."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from connectors.abuse import EdgeLimits
from connectors.gateway.app import GatewayConfig, build_app
from connectors.gateway.guards import GuardSettings, serve
from tests.integration.test_gateway import APPOINTMENT, GP, SECRETS, Client, Served, basic


def gateway(**guards: object) -> Served:
    return Served(build_app(GatewayConfig(guards=GuardSettings(**guards))))  # type: ignore[arg-type]


def test_wrong_secrets_from_one_address_are_429_after_the_limit(topics: str) -> None:
    with gateway(limits=EdgeLimits(sign_in_check_rate="2/minute")) as served:
        client = Client(served.port)
        statuses = [client.post("/fhir/Appointment", APPOINTMENT, secret="wrong") for _ in range(3)]
        refused = statuses[-1]
        good = client.post("/fhir/Appointment", APPOINTMENT)
    assert [r.status for r in statuses] == [401, 401, 429]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.issues[0]["code"] == "throttled"
    assert good.status == 429, "that address must wait, whoever it claims to be"


def test_a_partner_over_its_rate_is_429_with_retry_after(topics: str) -> None:
    with gateway(limits=EdgeLimits(partner_rate="2/minute")) as served:
        client = Client(served.port)
        replies = [client.post("/fhir/Appointment", APPOINTMENT) for _ in range(3)]
    assert [r.status for r in replies] == [202, 202, 429]
    assert int(replies[2].headers["Retry-After"]) >= 1
    assert "too many requests from partner gp-Y01234" in replies[2].diagnostics()


def test_one_address_over_its_rate_is_429_before_signing_in(topics: str) -> None:
    with gateway(limits=EdgeLimits(source_rate="1/minute")) as served:
        client = Client(served.port)
        first = client.post("/fhir/Appointment", APPOINTMENT)
        second = client.post("/fhir/Appointment", APPOINTMENT, partner=None)
    assert (first.status, second.status) == (202, 429)


def test_a_body_that_stops_arriving_is_408(topics: str) -> None:
    with gateway(read_timeout_s=0.5) as served:
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=20)
        connection.putrequest("POST", "/fhir/Appointment")
        for name, value in {
            "Content-Type": "application/fhir+json",
            "Content-Length": str(len(APPOINTMENT)),
            "Authorization": basic(GP, SECRETS[GP]),
        }.items():
            connection.putheader(name, value)
        connection.endheaders(APPOINTMENT[:20])  # and nothing more
        response = connection.getresponse()
        status = response.status
        connection.close()
    assert status == 408


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served_by_serve(settings: GuardSettings) -> Iterator[int]:
    """The gateway as `concord gateway` serves it (guards.serve), on a loop in a thread."""
    port, loop = _free_port(), asyncio.new_event_loop()
    app = build_app(GatewayConfig(guards=settings))
    task = loop.create_task(serve(app, "127.0.0.1", port, settings))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for _ in range(100):  # bounded wait for the port to open
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                threading.Event().wait(0.05)
        yield port
    finally:
        loop.call_soon_threadsafe(task.cancel)
        threading.Event().wait(0.5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_connection_sending_nothing_or_half_a_header_is_closed(topics: str) -> None:
    with served_by_serve(GuardSettings(idle_timeout_s=0.5)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            assert closed_by_server(silent)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"POST /fhir/Appointment HTTP/1.1\r\nHost: x\r\n")
            assert closed_by_server(slow)


def test_connections_over_the_cap_are_closed_at_once(topics: str) -> None:
    request = b"GET /metadata HTTP/1.1\r\nHost: x\r\n\r\n"
    with (
        served_by_serve(GuardSettings(max_connections=1)) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as first,
    ):
        first.sendall(request)
        assert first.recv(12) == b"HTTP/1.1 200", "the first is served and kept open"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
            assert closed_by_server(second)


@pytest.fixture(autouse=True)
def _fresh_proofs() -> None:
    """Each test proves its secret afresh (the proven-secret memory is per process)."""
    from services.domain import signin

    signin._proven.clear()
