"""Outbound delivery (`concord deliver`): alerts and outbound messages to each partner's endpoint,
in order per partner, authenticated as the endpoints file says, retried with backoff,
dead-lettered when refused (and the referrer told, for a referral), committed only once done.

One consumer reads both topics; each recipient partner has its own queue and task, so a partner
that is down holds up only its own messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import ssl
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TextIO

import aiohttp
import orjson
import structlog
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from connectors.delivery.credentials import (
    NONE,
    Credentials,
    auth_headers,
    resolve_credentials,
)
from connectors.delivery.formats import message_bundle
from connectors.delivery.rules import (
    OPERATOR,
    AttemptVerdict,
    DeliveredKeys,
    DeliverySettings,
    Endpoint,
    EndpointConfigError,
    PartitionOffsets,
    ReferralParties,
    ReferralSent,
    backoff_delay,
    delivery_key,
    http_verdict,
    journal_keys,
    load_endpoints,
    notice_audit,
    operator_alert,
    referral_sent,
    referrer_notice,
    referrer_to_tell,
    retry_after,
    settings_from_env,
    undeliverable_letter,
)
from connectors.delivery.watch import OperatorWatch, gave_up_class, observe_delivery
from connectors.hl7v2.ack import AckError, parse_ack, read_ack
from connectors.hl7v2.framing import MAX_FRAME_BYTES, Frame, FrameDecoder, Oversized, frame
from connectors.hl7v2.from_fhir import control_id, hl7_message
from schemas import topics
from schemas.codec import CodecError, decode, decode_internal, encode, peek, record_value
from schemas.envelope import Envelope
from schemas.internal import ReferralInboxEntry
from schemas.topics import topic_prefix
from services.observe.health import (
    DELIVERY_HTTP,
    Check,
    KafkaProbe,
    http_address,
    serve_health,
)
from services.observe.metrics import (
    allow_partner_labels,
    count_attempt,
    count_given_up,
    partner_label,
)
from services.observe.operator import operator_alerts
from services.runtime import aiokafka_client_config, config

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 2, 3
REFUSAL_EXCERPT = 500  # characters of a partner's refusal kept in the dead letter (never logged)
READ_CHUNK = 64 * 1024
FETCH_WAIT_MS = 200
FETCH_MAX_RECORDS = 500
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The time requests are signed with."""
    return datetime.now(UTC)


def group_id() -> str:
    """The consumer group: one per environment, shared by every `concord deliver` process."""
    return f"{topic_prefix()}delivery"


def journal_path(env: Mapping[str, str]) -> Path | None:
    """Where the delivered keys are kept (`CONCORD_DELIVERY_JOURNAL`; empty: nowhere)."""
    cache = config().cache_dir
    path = env.get("CONCORD_DELIVERY_JOURNAL", str(cache / "delivery" / f"{group_id()}.journal"))
    return Path(path) if path else None


class Journal:
    """The keys of the messages this process delivered, appended to a local file as each is
    confirmed, so that after a crash a repeat of one is not sent again.

    One line a key, written through to the operating system at once: a process killed after the
    partner's confirmation and before the line is written sends that one message again, with the
    same idempotency key. Rewritten with only the kept keys on opening, and when it reaches twice
    their number.
    """

    def __init__(self, path: Path | None, limit: int) -> None:
        self._path = path
        self._keys = DeliveredKeys(limit)
        self._file: TextIO | None = None
        self._lines = 0

    def open(self) -> None:
        """Read the keys kept before, then keep appending."""
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        text = self._path.read_text(encoding="utf-8") if self._path.exists() else ""
        self._keys = DeliveredKeys(self._keys.limit, journal_keys(text))
        self._rewrite()
        log.info("delivery.journal_opened", keys=len(self._keys))

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        """Keep the key of a message the partner confirmed."""
        if not self._keys.add(key) or self._file is None:
            return
        self._file.write(key + "\n")
        self._file.flush()
        self._lines += 1
        if self._lines >= 2 * self._keys.limit:
            self._rewrite()

    def _rewrite(self) -> None:
        if self._path is None:
            return
        self.close()
        fresh = self._path.with_suffix(".new")
        fresh.write_text("".join(key + "\n" for key in self._keys), encoding="utf-8")
        fresh.replace(self._path)  # whole or not at all, even when killed meanwhile
        self._file = self._path.open("a", encoding="utf-8")
        self._lines = len(self._keys)

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One attempt's result: the verdict, a short loggable detail, and what the partner said."""

    verdict: AttemptVerdict
    detail: str  # "HTTP 503", "timeout after 10s", "ACK AE": safe to log
    said: str = ""  # the partner's response text: kept in a dead letter, never logged
    wait_s: float | None = None  # the partner's Retry-After


@dataclass(frozen=True, slots=True)
class Item:
    """One fetched message waiting in its partner's queue."""

    offset: int
    value: bytes | None  # None: a tombstone, which the lane dead-letters
    offsets: PartitionOffsets


class Transport(Protocol):
    """Sends one message to one partner and says how it went."""

    async def send(self, envelope: Envelope, raw: bytes, attempt: int) -> AttemptResult:
        """Make one delivery attempt."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def unbuildable(endpoint: Endpoint, exc: Exception) -> AttemptResult:
    """A message the hub cannot put in the partner's format: retrying would fail the same way."""
    return AttemptResult(
        "refused", f"cannot build the {endpoint.format} message: {type(exc).__name__}"
    )


class HttpTransport:
    """POSTs to a webhook: a FHIR message Bundle (fhir) or the envelope itself (json)."""

    def __init__(
        self,
        endpoint: Endpoint,
        url: str,
        session: aiohttp.ClientSession,
        timeout_s: float,
        *,
        credentials: Credentials = NONE,
        clock: Clock = utc_now,
    ) -> None:
        self._endpoint, self._url, self._session = endpoint, url, session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._timeout_s = timeout_s
        self._credentials, self._clock = credentials, clock
        # True: aiohttp's default verification; a context: the endpoint's CA and client cert.
        self._ssl: ssl.SSLContext | bool = credentials.ssl or True

    def _body(self, envelope: Envelope, raw: bytes) -> tuple[bytes, str]:
        if self._endpoint.format == "fhir":
            bundle = message_bundle(envelope, self._endpoint.partner, self._url)
            return orjson.dumps(bundle), "application/fhir+json"
        return raw, "application/json"

    async def send(self, envelope: Envelope, raw: bytes, attempt: int) -> AttemptResult:
        """POST once, signed now; the event id goes in Idempotency-Key (and webhook-id) so the
        partner can drop a repeat."""
        try:
            body, content_type = self._body(envelope, raw)
        except Exception as exc:
            return unbuildable(self._endpoint, exc)
        event_id = str(envelope.event_id)
        headers = {
            "Content-Type": content_type,
            "Idempotency-Key": event_id,
            "X-Concord-Event-Type": envelope.event_type,
            "X-Concord-Attempt": str(attempt),
            **auth_headers(self._credentials, event_id, body, self._clock()),
        }
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                ssl=self._ssl,
            ) as response:
                said = ""
                if not 200 <= response.status < 300:
                    text = await response.content.read(REFUSAL_EXCERPT * 4)
                    said = text.decode("utf-8", errors="replace")[:REFUSAL_EXCERPT]
                return AttemptResult(
                    http_verdict(response.status),
                    f"HTTP {response.status}",
                    said,
                    retry_after(response.headers.get("Retry-After")),
                )
        except TimeoutError:
            return AttemptResult("retry", f"timeout after {self._timeout_s:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            # The exception text can quote the URL; its type says enough for a log line.
            return AttemptResult("retry", type(exc).__name__)

    async def close(self) -> None:
        """The session is shared and closed by the deliverer."""


class MllpTransport:
    """Sends HL7 v2 over one persistent MLLP connection and waits for the matching ACK.

    The connection is kept across a timeout, so an ACK that arrives late is read off it: one
    for an earlier message is discarded, one for this message's earlier attempt answers this
    message (every attempt carries the event id as MSH-10). ACK frames
    are read with the listener's decoder and size limit, so a partner cannot fill the memory.
    With a TLS context the connection is TLS, the partner's certificate checked against its CA
    and host name.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        host: str,
        port: int,
        timeout_s: float,
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._endpoint, self._host, self._port, self._timeout_s = endpoint, host, port, timeout_s
        self._tls = tls
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._max_frame_bytes = max_frame_bytes
        self._decoder = FrameDecoder(max_frame_bytes)
        self._frames: deque[Frame | Oversized] = deque()  # read, not yet looked at

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if (
            self._reader is None
            or self._writer is None
            or self._writer.is_closing()
            or self._reader.at_eof()  # the partner hung up after its last ACK
        ):
            self._reader, self._writer = await asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._tls,
                server_hostname=self._host if self._tls is not None else None,
            )
            self._decoder = FrameDecoder(self._max_frame_bytes)
            self._frames.clear()
        return self._reader, self._writer

    async def send(self, envelope: Envelope, raw: bytes, attempt: int) -> AttemptResult:
        """Send once, the event id as control id; only an ACK naming it decides the outcome."""
        control = control_id(str(envelope.event_id))
        try:
            message = hl7_message(envelope, self._endpoint.partner, control, datetime.now(UTC))
        except Exception as exc:
            return unbuildable(self._endpoint, exc)
        connected = False
        try:
            async with asyncio.timeout(self._timeout_s):
                reader, writer = await self._connect()
                connected = True
                writer.write(frame(message))
                await writer.drain()
                return await self._await_ack(reader, control, envelope)
        except TimeoutError:
            if not connected:
                return AttemptResult("retry", f"no connection within {self._timeout_s:g}s")
            # Keep the connection: the partner may only be slow, and its late ACK must be
            # read off this connection rather than mistaken for a later message's.
            return AttemptResult("retry", f"no ACK within {self._timeout_s:g}s")
        except (OSError, EOFError) as exc:
            await self.close()
            return AttemptResult("retry", type(exc).__name__)

    async def _await_ack(
        self, reader: asyncio.StreamReader, control: str, envelope: Envelope
    ) -> AttemptResult:
        while True:
            while self._frames:
                item = self._frames.popleft()
                if isinstance(item, Oversized):
                    # Unread, it may have been this attempt's ACK: send again (the partner
                    # drops a repeat by its event id).
                    limit = self._max_frame_bytes
                    return AttemptResult(
                        "retry", f"ACK of {item.size} bytes over the {limit}-byte limit"
                    )
                outcome = self._ack_result(item.data, control, envelope)
                if outcome is not None:
                    return outcome
            chunk = await reader.read(READ_CHUNK)
            if not chunk:
                raise EOFError("connection closed by the partner")
            self._frames.extend(self._decoder.feed(chunk))

    def _ack_result(self, data: bytes, control: str, envelope: Envelope) -> AttemptResult | None:
        try:
            ack = parse_ack(data)
        except AckError as exc:
            log.warning(
                "delivery.ack_unreadable",
                partner=self._endpoint.partner,
                event_id=str(envelope.event_id),
                problem=str(exc),
            )
            return None
        verdict = read_ack(ack, control)
        if verdict == "not-ours":
            log.info(
                "delivery.ack_stale",
                partner=self._endpoint.partner,
                event_id=str(envelope.event_id),
                ack=ack.code,
            )
            return None
        return AttemptResult(verdict, f"ACK {ack.code}", ack.text)

    async def close(self) -> None:
        """Close the connection; the next attempt opens a new one."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Lane:
    """One recipient partner's queue and the task delivering it, one message at a time."""

    def __init__(self, partner: str, deliverer: Deliverer) -> None:
        self.partner = partner
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self._deliverer = deliverer
        self._transport: Transport | None = None
        self.task = asyncio.create_task(self._run(), name=f"delivery:{partner}")

    async def _run(self) -> None:
        try:
            while True:
                item = await self.queue.get()
                if item.offsets.revoked:
                    continue  # another consumer now owns the partition and will deliver it
                await self._handle_until_done(item.value)
                item.offsets.finished(item.offset)
        finally:
            if self._transport is not None:
                await self._transport.close()

    async def _handle_until_done(self, raw: bytes | None) -> None:
        """Handle one message; a fault of the hub's own (Kafka, the network) is tried again, and
        a message that cannot be handled at all is dead-lettered, so the lane carries on."""
        failures = 0
        while True:
            try:
                await self._handle(raw)
                return
            except (KafkaError, OSError) as exc:
                # Dropping the message would lose it and skipping it would break the order:
                # wait and try again, while the log tells the operator.
                failures += 1
                log.error("delivery.lane_failed", partner=self.partner, error=type(exc).__name__)
                await asyncio.sleep(backoff_delay(failures, self._deliverer.settings))
            except Exception as exc:  # the lane's one broadest catch: this message is poison
                # Trying it again would fail the same way and hold up every later message to
                # this partner for good; the dead letter keeps it for the operator instead.
                reason = f"cannot be handled: {type(exc).__name__}"
                await self._deliverer.give_up(raw, self.partner, None, reason, reason)
                return

    async def _handle(self, raw: bytes | None) -> None:
        try:
            value = record_value(raw)  # a tombstone is refused by name
            envelope = decode(value)  # parsed and validated once; the wire formats read the model
        except CodecError as exc:
            # The codec's message names the field at fault: kept in the dead letter only.
            await self._deliverer.give_up(raw, self.partner, None, "not a valid envelope", str(exc))
            return
        endpoint = self._deliverer.endpoints.get(self.partner)
        if endpoint is None:
            reason = "no endpoint is configured for this partner"
            await self._deliverer.give_up(raw, self.partner, envelope, reason, reason)
            return
        key = delivery_key(self.partner, str(envelope.event_id))
        journal = self._deliverer.journal
        if key in journal:
            # Delivered before a restart, and fetched again from past the committed offset.
            log.info(
                "delivery.repeat_dropped", partner=self.partner, event_id=str(envelope.event_id)
            )
            return
        if await self._deliver(endpoint, envelope, value):
            journal.add(key)

    async def _deliver(self, endpoint: Endpoint, envelope: Envelope, raw: bytes) -> bool:
        """Deliver with retries; True once the partner confirmed it, False when given up."""
        settings = self._deliverer.settings
        transport = self._transport or self._deliverer.transport_for(endpoint)
        self._transport = transport
        for attempt in range(1, settings.max_attempts + 1):
            outcome = await transport.send(envelope, raw, attempt)
            count_attempt(self.partner, outcome.verdict)
            last = attempt == settings.max_attempts
            wait = None if outcome.verdict != "retry" or last else self._wait(attempt, outcome)
            log.info(
                "delivery.attempt",
                partner=self.partner,
                event_id=str(envelope.event_id),
                event_type=envelope.event_type,
                attempt=attempt,
                status="gave-up"
                if outcome.verdict == "retry" and wait is None
                else outcome.verdict,
                detail=outcome.detail,
                retry_in_s=None if wait is None else round(wait, 3),
            )
            if outcome.verdict == "delivered":
                return True
            if outcome.verdict == "refused" or wait is None:
                reason = (
                    f"refused: {outcome.detail}"
                    if outcome.verdict == "refused"
                    else f"gave up after {attempt} attempts: {outcome.detail}"
                )
                said = f"{reason}; partner said: {outcome.said}" if outcome.said else reason
                await self._deliverer.give_up(raw, self.partner, envelope, reason, said)
                return False
            await asyncio.sleep(wait)
        return False  # not reached: the last attempt either delivers or gives up

    def _wait(self, attempt: int, outcome: AttemptResult) -> float:
        settings = self._deliverer.settings
        delay = backoff_delay(attempt, settings, secrets.randbelow(1000) / 1000)
        if outcome.wait_s is not None:
            delay = max(delay, min(outcome.wait_s, settings.backoff_cap_s))
        return delay


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types
    def __init__(self, deliverer: Deliverer) -> None:
        self._deliverer = deliverer

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._deliverer.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._deliverer.assign(set(assigned))


class ReferralIndex:
    """Who referred each referral to whom, followed from the compacted referrals topic from its
    beginning (no consumer group: every delivery process keeps the whole index), so that the
    referrer can be told when its referral cannot be delivered. One small record per referral.
    """

    def __init__(self) -> None:
        self._parties: dict[str, ReferralParties] = {}  # by referral id
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._positions: dict[TopicPartition, int] = {}  # the next offset to read
        self._progress = asyncio.Condition()

    async def start(self) -> None:
        """Follow every partition of the referrals topic from its beginning."""
        consumer = AIOKafkaConsumer(
            topics.REFERRALS.name,
            **aiokafka_client_config(),
            group_id=None,  # without a group the consumer takes every partition, from nothing
            client_id="concord-delivery-referrals",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer), name="delivery:referrals")

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batch = await consumer.getmany(
                    timeout_ms=FETCH_WAIT_MS, max_records=FETCH_MAX_RECORDS
                )
            except KafkaError as exc:
                # Referrers go untold while this lasts (the operator is alerted regardless).
                log.warning("delivery.referrals_unread", error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            for records in batch.values():
                for record in records:
                    self._apply(record.key, record.value)
            async with self._progress:
                for partition in consumer.assignment():
                    self._positions[partition] = await consumer.position(partition)
                self._progress.notify_all()

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        referral_id = key.decode("utf-8", errors="replace") if key else ""
        if value is None:
            self._parties.pop(referral_id, None)  # a tombstone: the referral was forgotten
            return
        try:
            entry = decode_internal(value, ReferralInboxEntry)
        except Exception as exc:  # this follower's one broadest catch
            # Every worker follows this topic too and dead-letters such a record (services/web/
            # views.py); here it is passed by, with a log line (a codec error quotes no value).
            problem = str(exc) if isinstance(exc, CodecError) else type(exc).__name__
            log.warning("delivery.referral_unreadable", problem=problem)
            return
        self._parties[entry.referral_id] = ReferralParties(
            entry.id, entry.person_id, entry.referrer, entry.recipient
        )

    async def referrer(self, sent: ReferralSent, wait_s: float) -> str | None:
        """The referrer to tell about `sent`, once the index has read what was on the topic
        now (the entry is written beside the referral itself), waiting at most `wait_s`."""
        consumer = self._consumer
        if consumer is None:
            return None
        with contextlib.suppress(TimeoutError, KafkaError):
            async with asyncio.timeout(wait_s):
                ends = await consumer.end_offsets(list(consumer.assignment()))
                async with self._progress:
                    await self._progress.wait_for(
                        lambda: all(self._positions.get(p, -1) >= end for p, end in ends.items())
                    )
        return referrer_to_tell(sent, self._parties.values())

    async def stop(self) -> None:
        """Stop following the topic."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()


class Deliverer:
    """Reads ALERTS and OUTBOUND, feeds each partner's lane, and commits what is done."""

    def __init__(
        self,
        endpoints: Mapping[str, Endpoint],
        settings: DeliverySettings,
        credentials: Mapping[str, Credentials] | None = None,
        clock: Clock = utc_now,
        journal: Path | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.settings = settings
        self.journal = Journal(journal, settings.journal_keys)
        self._credentials = credentials or {}
        self._clock = clock
        self._referrals = ReferralIndex()
        self._lanes: dict[str, Lane] = {}
        self._offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._paused: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._session: aiohttp.ClientSession | None = None
        self.assigned = False  # a rebalance has given this deliverer its partitions

    def transport_for(self, endpoint: Endpoint) -> Transport:
        """A new transport for one partner's lane."""
        timeout_s = self.settings.timeout_s
        credentials = self._credentials.get(endpoint.partner, NONE)
        if endpoint.tls is not None and credentials.ssl is None:
            # Never fall back to a plain connection where the endpoints file asks for TLS.
            raise RuntimeError(f"endpoint of {endpoint.partner} has no TLS context resolved")
        if endpoint.host is not None and endpoint.port is not None:
            return MllpTransport(
                endpoint, endpoint.host, endpoint.port, timeout_s, tls=credentials.ssl
            )
        if endpoint.url is None or self._session is None:
            raise RuntimeError(f"endpoint of {endpoint.partner} has no address, or not running")
        return HttpTransport(
            endpoint,
            endpoint.url,
            self._session,
            timeout_s,
            credentials=credentials,
            clock=self._clock,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then commit what is done and close everything."""
        self._session = aiohttp.ClientSession()
        self._producer = AIOKafkaProducer(
            **aiokafka_client_config(),
            acks="all",
            enable_idempotence=True,
            client_id="concord-delivery",
        )
        self._consumer = AIOKafkaConsumer(
            **aiokafka_client_config(),
            group_id=group_id(),
            client_id="concord-delivery",
            enable_auto_commit=False,
            # A new group starts from the beginning: nothing sent before the first start is lost.
            auto_offset_reset="earliest",
        )
        try:
            self.journal.open()
            await self._producer.start()
            await self._referrals.start()
            await self._consumer.start()
            self._consumer.subscribe(
                [topics.ALERTS.name, topics.OUTBOUND.name], listener=_Rebalance(self)
            )
            log.info("delivery.started", group=group_id(), endpoints=len(self.endpoints))
            await self._loop(self._consumer, stop)
        finally:
            await self._shutdown()

    async def _loop(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        next_commit = asyncio.get_running_loop().time()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=FETCH_MAX_RECORDS)
            for partition, records in batch.items():
                for record in records:
                    self._route(partition, record.offset, record.key, record.value)
            self._apply_backpressure(consumer)
            observe_delivery(consumer, self._offsets, self._lanes)
            now = asyncio.get_running_loop().time()
            if now >= next_commit:
                await self._commit(self._offsets)
                next_commit = now + self.settings.commit_interval_s

    def _route(
        self, partition: TopicPartition, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        offsets = self._offsets.setdefault(partition, PartitionOffsets())
        partner = key.decode("utf-8", errors="replace") if key else ""
        if partner == OPERATOR:
            # Operator alerts are for people watching the hub; sending them on could loop.
            self._log_operator_alert(value)
            offsets.fetched(offset)
            offsets.finished(offset)
            return
        offsets.fetched(offset)
        self._lane(partner).queue.put_nowait(Item(offset, value, offsets))

    def _lane(self, partner: str) -> Lane:
        lane = self._lanes.get(partner)
        if lane is None:
            lane = self._lanes[partner] = Lane(partner, self)
        return lane

    def _log_operator_alert(self, value: bytes | None) -> None:
        try:
            envelope = peek(value)
        except CodecError:
            envelope = {}
        log.warning(
            "delivery.operator_alert",
            event_id=envelope.get("event_id"),
            event_type=envelope.get("event_type"),
        )

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        """Pause a partition whose undelivered backlog is full; resume it once half has gone."""
        limit = self.settings.max_backlog
        for partition, offsets in self._offsets.items():
            backlog = offsets.backlog()
            if partition in self._paused and backlog <= limit // 2:
                consumer.resume(partition)
                self._paused.discard(partition)
                log.info("delivery.resumed", topic=partition.topic, partition=partition.partition)
            elif partition not in self._paused and backlog >= limit:
                consumer.pause(partition)
                self._paused.add(partition)
                log.info(
                    "delivery.paused",
                    topic=partition.topic,
                    partition=partition.partition,
                    backlog=backlog,
                )

    async def _commit(self, offsets: Mapping[TopicPartition, PartitionOffsets]) -> None:
        due = {p: o.committable() for p, o in offsets.items()}
        commits = {p: n for p, n in due.items() if n is not None}
        if not commits or self._consumer is None:
            return
        try:
            await self._consumer.commit(commits)
        except KafkaError as exc:
            # Uncommitted work is delivered again after a restart: a duplicate, never a loss.
            log.warning("delivery.commit_failed", error=type(exc).__name__)
            return
        for partition, offset in commits.items():
            offsets[partition].committed = offset

    async def revoke(self, partitions: set[TopicPartition]) -> None:
        """Partitions are moving to another consumer: commit what is done, drop what is queued."""
        leaving = {p: self._offsets[p] for p in partitions if p in self._offsets}
        await self._commit(leaving)
        for partition, offsets in leaving.items():
            offsets.revoked = True
            del self._offsets[partition]
            self._paused.discard(partition)

    def assign(self, partitions: set[TopicPartition]) -> None:
        """Partitions now ours: track them from the committed offset the consumer resumes at."""
        for partition in partitions:
            self._offsets.setdefault(partition, PartitionOffsets())
        self.assigned = True
        log.info("delivery.assigned", partitions=len(partitions))

    async def give_up(
        self,
        raw: bytes | None,
        partner: str,
        envelope: Envelope | None,
        reason: str,
        full_reason: str,
    ) -> None:
        """Dead-letter the message and alert the operator, and for a referral to a service tell
        the referrer (with the audit record of that); returns once Kafka has them all."""
        now = datetime.now(UTC)
        event_id = str(envelope.event_id) if envelope else None
        source = envelope.source if envelope else partner or "unknown"
        letter = undeliverable_letter(
            raw, reason=full_reason, partner=partner, source=source, event_id=event_id, now=now
        )
        alert = operator_alert(partner=partner, event_id=event_id, reason=reason, now=now)
        messages = [
            (topics.DEADLETTER.name, source, encode(letter)),
            (topics.ALERTS.name, OPERATOR, encode(alert)),
        ]
        sent = referral_sent(envelope, partner) if envelope is not None else None
        told = None
        if sent is not None and event_id is not None:
            told = await self._referrer_notice(sent, event_id, reason, now)
        if told is not None:
            referrer, notice = told
            audit = notice_audit(notice, referrer=referrer, now=now)
            messages += [
                (topics.ALERTS.name, referrer, encode(notice)),
                (topics.AUDIT.name, audit.key().decode(), encode(audit)),
            ]
        attempt = 0
        while True:
            attempt += 1
            try:
                for topic, key, value in messages:
                    await self._send(topic, key.encode(), value)
                break
            except KafkaError as exc:
                # The offset stays uncommitted until both are stored, so keep trying.
                log.warning(
                    "delivery.dead_letter_failed", partner=partner, error=type(exc).__name__
                )
                await asyncio.sleep(backoff_delay(attempt, self.settings))
        log.warning("delivery.dead_lettered", partner=partner, event_id=event_id, reason=reason)
        count_given_up(partner, gave_up_class(reason))
        operator_alerts().raise_alert("delivery-gave-up", partner_label(partner), {"messages": 1})
        if told is not None:
            log.info(
                "delivery.referrer_told",
                partner=partner,
                referrer=told[0],
                event_id=event_id,
                notice_id=str(told[1].event_id),
                person_id=told[1].key().decode(),
            )

    async def _referrer_notice(
        self, sent: ReferralSent, event_id: str, reason: str, now: datetime
    ) -> tuple[str, Envelope] | None:
        """The referrer of a referral that cannot be delivered, and the notice for it; None
        when the referrer cannot be named."""
        referrer = await self._referrals.referrer(sent, self.settings.timeout_s)
        if referrer is None:
            log.warning("delivery.referrer_unknown", partner=sent.recipient, event_id=event_id)
            return None
        notice = referrer_notice(sent, referrer=referrer, event_id=event_id, reason=reason, now=now)
        return referrer, notice

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        if self._producer is None:
            raise RuntimeError("the deliverer is not running")
        await self._producer.send_and_wait(topic, value=value, key=key)

    async def _shutdown(self) -> None:
        lanes = [lane.task for lane in self._lanes.values()]
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        with contextlib.suppress(KafkaError):
            await self._commit(self._offsets)
        if self._consumer is not None:
            await self._consumer.stop()
        await self._referrals.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._session is not None:
            await self._session.close()
        self.journal.close()
        log.info("delivery.stopped")


def read_endpoints(path: Path) -> dict[str, Endpoint]:
    """The endpoints file, parsed and validated (not its secrets and certificates:
    resolve_credentials reads those); EndpointConfigError naming the file and entry."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EndpointConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EndpointConfigError(f"{path}: not valid YAML: {exc}") from exc
    return load_endpoints(document, str(path))


async def serve(
    endpoints: Mapping[str, Endpoint],
    settings: DeliverySettings,
    credentials: Mapping[str, Credentials],
) -> None:
    """Run one deliverer until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    journal = journal_path(os.environ)
    deliverer = Deliverer(endpoints, settings, credentials, journal=journal)
    allow_partner_labels(endpoints)  # a stray key on a topic is labelled "unknown"

    async def assigned() -> bool:
        return deliverer.assigned

    ready: dict[str, Check] = {"kafka": KafkaProbe(), "assigned": assigned}
    health = await serve_health(*http_address(*DELIVERY_HTTP), ready)
    watch = asyncio.create_task(OperatorWatch.from_env(operator_alerts()).run())
    try:
        await deliverer.run(stop)
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        await health.cleanup()


def main(argv: list[str] | None = None) -> int:
    """`concord deliver [--endpoints FILE] [--check]`: deliver until interrupted."""
    parser = argparse.ArgumentParser(
        prog="concord deliver",
        description="Deliver alerts and outbound messages to partner endpoints.",
    )
    parser.add_argument(
        "--endpoints", help="endpoints file (CONCORD_ENDPOINTS, deploy/endpoints.yaml)"
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the endpoints and settings, then exit"
    )
    args = parser.parse_args(argv)
    path = Path(args.endpoints or config().endpoints)
    try:
        endpoints = read_endpoints(path)
        credentials = resolve_credentials(endpoints, path.parent, os.environ)
        settings = settings_from_env(os.environ)
        http_address(*DELIVERY_HTTP)  # a malformed port is refused before anything starts
    except ValueError as exc:
        print(f"concord deliver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        for endpoint in endpoints.values():
            print(
                f"{endpoint.partner}: {endpoint.format} {endpoint.describe()} "
                f"{endpoint.describe_auth()}"
            )
        return EXIT_OK
    from deploy.topics import TopicSetupError, check_topics, create_topics, planned
    from schemas.topics import CATALOGUE, workers_create_topics
    from services.runtime import configure_logging as configure

    configure()

    try:
        # As a worker: creates topics only when told to, and refuses to start on missing ones.
        if workers_create_topics():
            create_topics()
        check_topics(planned(CATALOGUE))
    except TopicSetupError as exc:
        print(f"concord deliver: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        asyncio.run(serve(endpoints, settings, credentials))
    except KafkaError as exc:
        print(f"concord deliver: Kafka unavailable: {type(exc).__name__}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
