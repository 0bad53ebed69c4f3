"""Outbound delivery against the real broker and real partner endpoints on 127.0.0.1 sockets.

Each test runs the deliverer in its own event loop beside fake partners (aiohttp servers, an
MLLP listener), with backoff shortened to milliseconds so retries take no real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from kafka.partitioner.default import murmur2
from structlog.testing import capture_logs

from connectors.delivery.formats import message_bundle
from connectors.delivery.rules import DeliverySettings, Endpoint
from connectors.delivery.service import Deliverer
from connectors.hl7v2.framing import FrameDecoder, Oversized, frame
from connectors.hl7v2.from_fhir import hl7_message
from connectors.kafka_io import Publisher, read_topic
from schemas import topics as catalogue
from schemas.codec import decode, decode_dead_letter
from schemas.envelope import Envelope, Subject
from schemas.topics import Topic

FAST = DeliverySettings(
    max_attempts=60,
    backoff_base_s=0.02,
    backoff_cap_s=0.2,
    timeout_s=2.0,
    max_backlog=1000,
    commit_interval_s=0.1,
)
WAIT_S = 20.0  # upper bound of every wait; they normally end in well under a second


# --- messages -----------------------------------------------------------------------------


def envelope(number: int, partner: str, topic: Topic) -> Envelope:
    """A numbered message for `partner`: an alert on ALERTS, a referral on OUTBOUND."""
    now = datetime.now(UTC)
    subject = {"identifier": {"system": "urn:concord:id:person", "value": "p-00112233445566778899"}}
    if topic is catalogue.ALERTS:
        event_type = "alert.clash.raised"
        resource: dict[str, Any] = {
            "resourceType": "DetectedIssue",
            "id": f"alert-{number}",
            "status": "final",
            "code": {"coding": [{"system": "urn:concord:alert", "code": "appointment-clash"}]},
            "patient": subject,
            "detail": f"message {number}",
        }
    else:
        event_type = "referral.request.delivered"
        resource = {
            "resourceType": "ServiceRequest",
            "id": f"ref-{number}",
            "status": "active",
            "intent": "order",
            "subject": subject,
        }
    event_id = uuid.uuid4()
    return Envelope(
        event_id=event_id,
        event_type=event_type,
        source="concord-hub",
        subject=Subject(person_id="p-00112233445566778899"),
        occurred_at=now,
        recorded_at=now,
        correlation_id=event_id,
        resource=resource,
    )


def publish(topic: Topic, partner: str, count: int, start: int = 0) -> list[str]:
    """Put `count` numbered messages for `partner` on `topic`; their event ids, in order."""
    publisher = Publisher()
    try:
        sent = [envelope(n, partner, topic) for n in range(start, start + count)]
        for message in sent:
            publisher.send(topic.name, partner.encode(), message)
        publisher.confirm()
    finally:
        publisher.close()
    return [str(message.event_id) for message in sent]


# --- fake partners ------------------------------------------------------------------------


@dataclass
class Webhook:
    """A partner's HTTP endpoint; `answer(n)` is the status of its n-th request (from 1)."""

    answer: Callable[[int], int]
    requests: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)  # bodies answered 2xx
    headers: list[Mapping[str, str]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    delay_s: float = 0.0  # how long the partner takes to answer
    url: str = ""  # where it listens

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.answer(self.requests)
        if 200 <= status < 300:
            self.accepted.append(orjson.loads(await request.read()))
            self.headers.append(dict(request.headers))
            self.content_types.append(request.content_type)
        return web.Response(status=status, text="partner says: not now" if status >= 300 else "")

    def event_ids(self) -> list[str]:
        """Event ids of accepted bodies, whether envelopes or message Bundles."""
        return [body.get("event_id") or body["id"] for body in self.accepted]


@contextlib.asynccontextmanager
async def webhook(
    answer: Callable[[int], int], delay_s: float = 0.0
) -> AsyncIterator[tuple[Webhook, str]]:
    partner = Webhook(answer, delay_s=delay_s)
    app = web.Application()
    app.router.add_post("/hook", partner.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    partner.url = f"http://127.0.0.1:{server.port}/hook"
    try:
        yield partner, partner.url
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def delivering(
    endpoints: list[Endpoint], settings: DeliverySettings = FAST
) -> AsyncIterator[None]:
    """A deliverer running beside the test; stopped, and its offsets committed, on exit."""
    stop = asyncio.Event()
    task = asyncio.create_task(Deliverer({e.partner: e for e in endpoints}, settings).run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> float:
    """Poll until `condition` holds; seconds taken. Fails the test after `timeout_s`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not condition():
        if loop.time() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)
    return loop.time() - started


Logs = list[MutableMapping[str, Any]]  # what structlog's capture_logs collects


def attempts(logs: Sequence[MutableMapping[str, Any]], status: str | None = None) -> Logs:
    return [
        line
        for line in logs
        if line["event"] == "delivery.attempt" and (status is None or line["status"] == status)
    ]


# --- tests --------------------------------------------------------------------------------


def test_partner_down_for_five_tries_then_back_gets_every_message_once_in_order(
    topics: str,
) -> None:
    """Twenty messages; the first five requests fail with 503; a small backlog forces pausing."""
    sent = publish(catalogue.OUTBOUND, "gp-Y01234", 20)
    settings = DeliverySettings(
        max_attempts=60, backoff_base_s=0.02, backoff_cap_s=0.2, max_backlog=4
    )

    async def scenario() -> tuple[Webhook, Logs]:
        with capture_logs() as logs:
            async with (
                webhook(lambda n: 503 if n <= 5 else 200) as (partner, url),
                delivering([Endpoint("gp-Y01234", "json", url=url)], settings),
            ):
                await wait_until(lambda: len(partner.accepted) >= 20, "20 deliveries")
            return partner, logs

    partner, logs = asyncio.run(scenario())

    assert partner.event_ids() == sent
    assert partner.requests == 25
    retried = attempts(logs, "retry")
    assert [(line["attempt"], line["detail"]) for line in retried] == [
        (n, "HTTP 503") for n in range(1, 6)
    ]
    assert {line["event_id"] for line in retried} == {sent[0]}
    assert any(line["event"] == "delivery.paused" for line in logs)


def test_a_partner_that_is_down_does_not_delay_another(topics: str) -> None:
    """A's messages come first in the same partition; B still gets all of its own at once."""
    down, up = "gp-A99999", "vol-recovery"
    same = {(murmur2(p.encode()) & 0x7FFFFFFF) % catalogue.OUTBOUND.partitions for p in (down, up)}
    assert len(same) == 1  # one OUTBOUND partition: only the per-partner queues keep them apart
    publish(catalogue.OUTBOUND, down, 5)
    sent_to_up = publish(catalogue.OUTBOUND, up, 10)

    async def scenario() -> tuple[Webhook, Webhook, float]:
        async with (
            webhook(lambda n: 503) as (a, a_url),
            webhook(lambda n: 200) as (b, b_url),
            delivering([Endpoint(down, "json", url=a_url), Endpoint(up, "json", url=b_url)]),
        ):
            taken = await wait_until(lambda: len(b.accepted) >= 10, "B's 10 deliveries")
            await wait_until(lambda: a.requests >= 3, "A to be retried")
        return a, b, taken

    a, b, taken = asyncio.run(scenario())

    assert b.event_ids() == sent_to_up
    assert a.accepted == []
    assert taken < 10.0  # bounded by group join; nothing waits for A's retries


def test_permanent_refusal_is_dead_lettered_with_the_reason_and_the_operator_alerted(
    topics: str,
) -> None:
    [event_id] = publish(catalogue.ALERTS, "gp-Y01234", 1)

    async def scenario() -> tuple[Webhook, Logs]:
        with capture_logs() as logs:
            async with (
                webhook(lambda n: 400) as (partner, url),
                delivering([Endpoint("gp-Y01234", "fhir", url=url)]),
            ):
                await wait_until(
                    lambda: any(line["event"] == "delivery.operator_alert" for line in logs),
                    "the operator alert to come back round",
                )
            return partner, logs

    partner, logs = asyncio.run(scenario())

    assert partner.requests == 1  # a 400 is not retried
    [letter] = [
        decode_dead_letter(v) for _k, v in read_topic(catalogue.DEADLETTER.name, idle_timeout_s=1.0)
    ]
    assert letter.origin == "delivery:gp-Y01234"
    assert str(letter.event_id) == event_id
    assert letter.reason.startswith("refused: HTTP 400")
    assert "partner says: not now" in letter.reason
    assert decode(letter.raw.encode()).event_id == uuid.UUID(event_id)
    operator = [
        decode(v)
        for k, v in read_topic(catalogue.ALERTS.name, idle_timeout_s=1.0)
        if k == b"hub-operator"
    ]
    [alert] = operator
    assert alert.resource["code"]["coding"][0]["code"] == "delivery-failed"
    assert alert.resource["detail"] == (
        f"delivery to gp-Y01234 of event {event_id} failed: refused: HTTP 400"
    )
    assert "patient" not in alert.resource
    logged = [line for line in logs if line["event"] == "delivery.operator_alert"]
    assert [line["event_id"] for line in logged] == [str(alert.event_id)]
    # The operator alert was logged, not delivered: the only attempt is the refused one.
    assert [line["status"] for line in attempts(logs)] == ["refused"]


def test_retries_run_out_and_a_partner_without_endpoint_are_dead_lettered(topics: str) -> None:
    [exhausted] = publish(catalogue.OUTBOUND, "gp-Y01234", 1)
    [nowhere] = publish(catalogue.OUTBOUND, "vol-housing", 1)
    settings = DeliverySettings(max_attempts=3, backoff_base_s=0.02, backoff_cap_s=0.05)

    async def scenario() -> tuple[Webhook, Logs]:
        with capture_logs() as logs:
            async with (
                webhook(lambda n: 503) as (partner, url),
                delivering([Endpoint("gp-Y01234", "json", url=url)], settings),
            ):
                await wait_until(
                    lambda: sum(line["event"] == "delivery.operator_alert" for line in logs) >= 2,
                    "both operator alerts",
                )
            return partner, logs

    partner, logs = asyncio.run(scenario())

    assert partner.requests == 3
    assert [line["status"] for line in attempts(logs)] == ["retry", "retry", "gave-up"]
    letters = {
        str(letter.event_id): letter
        for letter in (
            decode_dead_letter(v)
            for _k, v in read_topic(catalogue.DEADLETTER.name, idle_timeout_s=1.0)
        )
    }
    assert letters[exhausted].reason.startswith("gave up after 3 attempts: HTTP 503")
    assert letters[nowhere].reason == "no endpoint is configured for this partner"
    assert letters[nowhere].origin == "delivery:vol-housing"


def test_fhir_partner_gets_a_message_bundle_and_json_partner_the_envelope(topics: str) -> None:
    [alert_id] = publish(catalogue.ALERTS, "gp-Y01234", 1)
    [referral_id] = publish(catalogue.OUTBOUND, "probation-london", 1)
    [bars_id] = publish(catalogue.OUTBOUND, "vol-recovery", 1, start=7)

    async def scenario() -> tuple[Webhook, Webhook, Webhook]:
        async with (
            webhook(lambda n: 200) as (fhir, fhir_url),
            webhook(lambda n: 202) as (plain, plain_url),
            webhook(lambda n: 200) as (service, service_url),
            delivering(
                [
                    Endpoint("gp-Y01234", "fhir", url=fhir_url),
                    Endpoint("probation-london", "json", url=plain_url),
                    Endpoint("vol-recovery", "fhir", url=service_url),
                ]
            ),
        ):
            await wait_until(
                lambda: bool(fhir.accepted and plain.accepted and service.accepted),
                "all three deliveries",
            )
        return fhir, plain, service

    fhir, plain, service = asyncio.run(scenario())

    [bundle] = fhir.accepted
    assert fhir.content_types == ["application/fhir+json"]
    assert fhir.headers[0]["Idempotency-Key"] == alert_id
    assert (bundle["resourceType"], bundle["type"], bundle["id"]) == ("Bundle", "message", alert_id)
    header, focus = (entry["resource"] for entry in bundle["entry"])
    assert header["eventCoding"]["code"] == "alert.clash.raised"
    assert header["focus"][0]["reference"] == bundle["entry"][1]["fullUrl"]
    assert (focus["resourceType"], focus["id"], focus["detail"]) == (
        "DetectedIssue",
        "alert-0",
        "message 0",
    )

    # The referral reaches the service as a BaRS referral request: exactly what the builder
    # makes of the record on the topic.
    [referral] = service.accepted
    [record] = [
        decode(v)
        for k, v in read_topic(catalogue.OUTBOUND.name, idle_timeout_s=1.0)
        if k == b"vol-recovery"
    ]
    assert referral == message_bundle(record, "vol-recovery", service.url)
    assert referral["id"] == bars_id
    header, request, task = (entry["resource"] for entry in referral["entry"])
    assert header["eventCoding"] == {
        "system": "https://fhir.nhs.uk/CodeSystem/message-events-bars",
        "code": "servicerequest-request",
    }
    assert header["destination"][0]["receiver"]["identifier"]["value"] == "vol-recovery"
    assert header["focus"] == [{"reference": referral["entry"][1]["fullUrl"]}]
    assert (request["resourceType"], request["id"]) == ("ServiceRequest", "ref-7")
    assert request["subject"]["identifier"]["value"] == "p-00112233445566778899"
    assert (task["resourceType"], task["id"], task["status"]) == (
        "Task",
        "referral-ref-7",
        "requested",
    )
    assert task["focus"]["reference"] == referral["entry"][1]["fullUrl"]

    [body] = plain.accepted
    assert plain.content_types == ["application/json"]
    assert plain.headers[0]["Idempotency-Key"] == referral_id
    received = decode(orjson.dumps(body))
    assert str(received.event_id) == referral_id
    assert received.event_type == "referral.request.delivered"
    assert received.resource["resourceType"] == "ServiceRequest"


@dataclass
class MllpPartner:
    """A partner's MLLP listener that answers the n-th message as its script says.

    A script entry is "silent", "late" (AA naming the control id of the message before the
    previous one), or an ACK code for the message itself.
    """

    script: list[str]
    controls: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for item in decoder.feed(data):
                assert not isinstance(item, Oversized)
                self._answer(item.data.decode(), writer)
            await writer.drain()
        writer.close()

    def _answer(self, message: str, writer: asyncio.StreamWriter) -> None:
        control = message.split("\r", maxsplit=1)[0].split("|")[9]
        self.controls.append(control)
        self.messages.append(message)
        step = (
            self.script[len(self.controls) - 1] if len(self.controls) <= len(self.script) else "AA"
        )
        if step == "silent":
            return
        answered, code = (self.controls[-3], "AA") if step == "late" else (control, step)
        ack = f"MSH|^~\\&|MHT|RV5|CONCORD|CONCORD-HUB|20261201093000||ACK^R01|ack-{len(self.controls)}|P|2.5.1\rMSA|{code}|{answered}\r"
        writer.write(frame(ack))


def test_hl7_partner_late_ack_never_acknowledges_a_later_message(topics: str) -> None:
    """E1: attempt 1 unanswered, attempt 2 AA. E2: attempt 1 answered only by E1's late ACK
    (wrong MSA-2) so it must time out; attempt 2 AA. E3: AE, then AA."""
    sent = publish(catalogue.ALERTS, "mht-rv5", 3)
    partner = MllpPartner(["silent", "AA", "late", "AA", "AE", "AA"])
    settings = DeliverySettings(backoff_base_s=0.02, backoff_cap_s=0.1, timeout_s=0.5)

    async def scenario() -> Logs:
        server = await asyncio.start_server(partner.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with capture_logs() as logs:
                async with delivering(
                    [Endpoint("mht-rv5", "hl7", host="127.0.0.1", port=port)], settings
                ):
                    await wait_until(lambda: len(attempts(logs, "delivered")) >= 3, "3 deliveries")
                return logs
        finally:
            server.close()

    logs = asyncio.run(scenario())

    # Every attempt carries the event id as MSH-10: a partner drops a repeat by it.
    assert partner.controls == [sent[0], sent[0], sent[1], sent[1], sent[2], sent[2]]
    delivered = attempts(logs, "delivered")
    assert [(line["event_id"], line["attempt"]) for line in delivered] == [
        (sent[0], 2),
        (sent[1], 2),
        (sent[2], 2),
    ]
    assert [line["detail"] for line in attempts(logs, "retry")] == [
        "no ACK within 0.5s",
        "no ACK within 0.5s",
        "ACK AE",
    ]
    assert any(line["event"] == "delivery.ack_stale" for line in logs)
    # An alert is a text document: MDM^T02, its OBX-5 the alert's detail.
    first = partner.messages[0].split("\r")
    assert first[0].split("|")[8] == "MDM^T02^MDM_T02"
    assert next(s for s in first if s.startswith("OBX|1|")).split("|")[5] == "message 0"
    assert next(s for s in first if s.startswith("TXA|")).split("|")[12] == f"{sent[0]}^CONCORD"


def test_hl7_partner_gets_a_referral_as_ref_i12(topics: str) -> None:
    """The referral arrives as the trust's own referral message, acknowledged as any other."""
    [sent] = publish(catalogue.OUTBOUND, "mht-rv5", 1, start=4)
    partner = MllpPartner(["AA"])

    async def scenario() -> Logs:
        server = await asyncio.start_server(partner.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with capture_logs() as logs:
                async with delivering([Endpoint("mht-rv5", "hl7", host="127.0.0.1", port=port)]):
                    await wait_until(lambda: bool(attempts(logs, "delivered")), "the delivery")
                return logs
        finally:
            server.close()

    logs = asyncio.run(scenario())

    assert [line["event_id"] for line in attempts(logs, "delivered")] == [sent]
    [message] = partner.messages
    fields = {line.split("|")[0]: line.split("|") for line in message.split("\r") if line}
    assert list(fields) == ["MSH", "RF1", "PRD", "PID"]
    assert fields["MSH"][8] == "REF^I12^REF_I12"
    assert fields["MSH"][9] == sent
    assert fields["RF1"][1].startswith("P^"), "pending: the trust has yet to answer"
    assert fields["RF1"][6] == "ref-4"
    assert fields["PRD"][1] == "RP^Referring Provider^HL70286"
    assert fields["PID"][3] == "p-00112233445566778899^^^&urn:concord:id:person&URI"
    # Byte for byte what the builder makes of the record on the topic, but MSH-7 (sent at).
    [record] = [decode(v) for _k, v in read_topic(catalogue.OUTBOUND.name, idle_timeout_s=1.0)]
    expected = hl7_message(record, "mht-rv5", fields["MSH"][9], datetime.now(UTC))
    assert message.split("\r")[1:] == expected.split("\r")[1:]


def test_restart_mid_way_loses_nothing_and_keeps_each_partners_order(topics: str) -> None:
    """The first deliverer is stopped after a few deliveries; the second finishes the job."""
    sent = {
        "probation-london": publish(catalogue.OUTBOUND, "probation-london", 15),
        "vol-housing": publish(catalogue.ALERTS, "vol-housing", 15),
    }

    async def scenario() -> dict[str, list[str]]:
        async with (
            # Partners that take a moment to answer, so the stop lands mid-way.
            webhook(lambda n: 200, delay_s=0.03) as (probation, probation_url),
            webhook(lambda n: 200, delay_s=0.03) as (housing, housing_url),
        ):
            endpoints = [
                Endpoint("probation-london", "json", url=probation_url),
                Endpoint("vol-housing", "json", url=housing_url),
            ]
            async with delivering(endpoints):
                await wait_until(lambda: len(probation.accepted) >= 5, "a first few deliveries")
            first_run = len(probation.accepted) + len(housing.accepted)
            assert first_run < 30, "the first deliverer should have been stopped mid-way"
            async with delivering(endpoints):
                await wait_until(
                    lambda: (
                        set(probation.event_ids()) >= set(sent["probation-london"])
                        and set(housing.event_ids()) >= set(sent["vol-housing"])
                    ),
                    "every message after the restart",
                )
            return {"probation-london": probation.event_ids(), "vol-housing": housing.event_ids()}

    received = asyncio.run(scenario())

    for partner, ids in received.items():
        positions = [sent[partner].index(event_id) for event_id in ids]
        assert_in_order_with_replays(positions, len(sent[partner]))
        # What was delivered was committed: at most the attempt cut short by the stop repeats.
        assert len(ids) - len(set(ids)) <= 1, positions


def assert_in_order_with_replays(positions: list[int], count: int) -> None:
    """Delivered in order, each message at least once: runs of consecutive positions, where a
    restart may go back to replay what was not yet committed but never skips ahead."""
    assert positions[0] == 0
    highest = 0
    for previous, current in itertools.pairwise(positions):
        assert current == previous + 1 or current <= previous, f"{previous} then {current}"
        assert current <= highest + 1, f"skipped ahead to {current}"
        highest = max(highest, current)
    assert set(positions) == set(range(count))
