"""Metrics, liveness and readiness of the gateway, the MLLP listener and the deliverer on the real
broker, readiness false when Kafka cannot be reached, and a delivery given up reaching the
operator webhook."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.delivery.rules import Endpoint
from connectors.delivery.service import serve as serve_deliverer
from connectors.gateway.app import GatewayConfig, build_app
from connectors.hl7v2.framing import FrameDecoder, decode_text, frame
from connectors.hl7v2.listener import listener_producer
from connectors.hl7v2.listener import serve as serve_mllp
from schemas import topics as catalogue
from services.observe import health, operator
from services.observe.metrics import REGISTRY
from tests.e2e.conftest import free_port
from tests.integration.test_delivery import FAST, publish, wait_until, webhook
from tests.integration.test_gateway import APPOINTMENT, GP, Client, Served
from tests.integration.test_mllp import PARTNER, fixture_text

CLOSED = "127.0.0.1:1"  # nothing listens there


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(scrape: str, name: str, **labels: str) -> float:
    """The value of one series in a scrape (0 when absent)."""
    for family in text_string_to_metric_families(scrape):
        for each in family.samples:
            if each.name == name and all(each.labels.get(k) == v for k, v in labels.items()):
                return float(each.value)
    return 0.0


@pytest.fixture(autouse=True)
def probe_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readiness asks Kafka at every probe, so a test sees a change at once."""
    monkeypatch.setattr(health, "KAFKA_PROBE_EVERY_S", 0.0)


def test_gateway_counts_what_it_accepts_and_refuses_and_is_ready_only_with_kafka(
    topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Served(build_app(GatewayConfig())) as served:
        base = f"http://127.0.0.1:{served.port}"
        before = get(base + "/metrics")[1]
        assert Client(served.port).post("/fhir/Appointment", APPOINTMENT).status == 202
        assert Client(served.port).post("/fhir/Appointment", b"{").status == 400
        status, after = get(base + "/metrics")
        assert status == 200
        for name, labels, moved in (
            ("concord_events_accepted_total", {"partner": GP, "format": "fhir-json"}, 1),
            ("concord_events_refused_total", {"partner": GP, "format": "fhir-json"}, 1),
            ("concord_dead_letters_total", {"stage": "gateway", "reason": "http-400"}, 1),
        ):
            assert sample(after, name, **labels) - sample(before, name, **labels) == moved, name
        assert get(base + "/livez") == (200, json.dumps({"live": True}))
        assert json.loads(get(base + "/ready")[1]) == {"ready": True, "failing": []}

        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", CLOSED)
        status, body = get(base + "/ready")
        assert (status, json.loads(body)) == (503, {"ready": False, "failing": ["kafka"]})
        assert get(base + "/livez")[0] == 200, "alive all the same"


async def http_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def wait_for_status(url: str, status: int, timeout_s: float = 30.0) -> str:
    """Poll `url` until it answers `status` (bounded); the body it answered."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            answered, body = await http_get(url)
            if answered == status:
                return body
        except aiohttp.ClientConnectionError:
            pass
        assert loop.time() < deadline, f"{url} did not answer {status}"
        await asyncio.sleep(0.1)


@asynccontextmanager
async def running(job: asyncio.Task[None]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


def test_mllp_listener_serves_metrics_and_health_on_its_http_port(
    topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_port, mllp_port = free_port(), free_port()
    monkeypatch.setenv("CONCORD_MLLP_HTTP_PORT", str(http_port))
    base = f"http://127.0.0.1:{http_port}"
    producer = listener_producer()

    async def scenario() -> None:
        task = asyncio.create_task(serve_mllp("127.0.0.1", mllp_port, lambda _: PARTNER, producer))
        async with running(task):
            await wait_for_status(base + "/ready", 200)
            reader, writer = await asyncio.open_connection("127.0.0.1", mllp_port)
            writer.write(frame(fixture_text("siu-s12.hl7")))
            await writer.drain()
            decoder = FrameDecoder()
            acks: list[str] = []
            while not acks:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=30)
                assert chunk, "the listener closed the connection without an ACK"
                acks = [decode_text(f.data) for f in decoder.feed(chunk)]
            writer.close()
            assert "MSA|AA" in acks[0]
            scrape = (await http_get(base + "/metrics"))[1]
            accepted = sample(
                scrape, "concord_events_accepted_total", partner=PARTNER, format="hl7v2"
            )
            assert accepted >= 1
            assert (await http_get(base + "/livez"))[0] == 200
            monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", CLOSED)
            assert json.loads(await wait_for_status(base + "/ready", 503))["failing"] == ["kafka"]

    try:
        asyncio.run(scenario())
    finally:
        producer.close()


def test_deliverer_is_ready_once_assigned_and_tells_the_operator_webhook_when_it_gives_up(
    topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_port = free_port()
    monkeypatch.setenv("CONCORD_DELIVERY_HTTP_PORT", str(http_port))
    base = f"http://127.0.0.1:{http_port}"
    [_event_id] = publish(catalogue.ALERTS, GP, 1)
    # The counters are the process's: earlier tests in this run may have moved them already.
    refused = ("concord_delivery_attempts_total", {"partner": GP, "outcome": "refused"})
    given_up = ("concord_deliveries_total", {"partner": GP, "outcome": "dead-lettered"})
    before = {
        name: REGISTRY.get_sample_value(name, labels) or 0.0 for name, labels in (refused, given_up)
    }

    async def scenario() -> list[dict[str, object]]:
        async with webhook(lambda n: 400) as (_partner, url), webhook(lambda n: 204) as (ops, hook):
            alerts = operator.OperatorAlerts(hook, backoff_s=0.01)
            monkeypatch.setattr(operator, "_ALERTS", alerts)
            endpoints = {GP: Endpoint(GP, "fhir", url=url)}
            task = asyncio.create_task(serve_deliverer(endpoints, FAST, {}))
            async with running(task):
                assert json.loads(await wait_for_status(base + "/ready", 200))["ready"] is True
                await wait_until(lambda: ops.requests >= 1, "the operator webhook to be told")
                scrape = (await http_get(base + "/metrics"))[1]
                for name, labels in (refused, given_up):
                    assert sample(scrape, name, **labels) - before[name] == 1, name
                assert (await http_get(base + "/livez"))[0] == 200
                monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", CLOSED)
                failing = json.loads(await wait_for_status(base + "/ready", 503))["failing"]
                assert failing == ["kafka"]
            return ops.accepted

    [told] = asyncio.run(scenario())
    assert told["kind"] == "delivery-gave-up"
    assert told["partner"] == GP
    assert told["counts"] == {"messages": 1}
    assert set(told) == {"kind", "partner", "counts", "at"}, "no person, identifier or event id"
