"""The operator's pages: dead letters (filtered, paged, with the raw input; correct and replay one),
the identity-conflict queue, and each partner's feed freshness and delivery failures.

The pages follow the hub's own topics for these (dead letters, identity conflicts, partner
activity), as `concord tail` and `concord identity conflicts` read them; operators are the hub's
staff, and nothing here is a disclosure to a partner. A replay goes through the partner's edge
checks again (connectors/publish.py) and the workers' consent check, and is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.kafka_io import Publisher
from connectors.publish import PublishSummary, publish_records, reader_for
from schemas import topics
from schemas.codec import (
    CodecError,
    decode,
    decode_dead_letter,
    decode_internal,
    encode_hub_envelope,
)
from schemas.envelope import DeadLetter
from schemas.internal import IdentityConflictRecord, PartnerActivity
from schemas.topics import Topic
from services.domain.audit import replay_audit
from services.runtime import aiokafka_client_config

log = structlog.get_logger(__name__)
PAGE_SIZE = 20
# The dead letters an operator can page through: the newest this many.
KEPT = 50_000
FORMATS = ("fhir-json", "fhir-xml", "hl7v2", "csv", "delivery", "other")
# How a corrected input is read again: the file suffix reader_for takes each format by.
REPLAYABLE = {"fhir-json": ".json", "fhir-xml": ".xml", "hl7v2": ".hl7", "csv": ".csv"}


def input_format(letter: DeadLetter) -> str:
    """The format a dead letter's input was in, from where it came and how it starts."""
    raw, origin = letter.raw.lstrip(), letter.origin.lower()
    if origin.startswith("delivery:"):
        return "delivery"
    if raw.startswith("MSH") or origin.endswith(".hl7") or "mllp" in origin:
        return "hl7v2"
    if origin.endswith(".csv") or "csv" in origin:
        return "csv"
    if raw.startswith("<"):
        return "fhir-xml"
    if raw.startswith(("{", "[")):
        return "fhir-json"
    return "other"


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter, named by where it is on the topic (`partition-offset`)."""

    ref: str
    letter: DeadLetter
    format: str


@dataclass(frozen=True, slots=True)
class Filters:
    """What the operator asked to see; empty fields do not filter."""

    partner: str = ""
    reason: str = ""
    format: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_query(cls, query: Any) -> tuple[Filters, dict[str, str]]:
        """The filters in a query string, and an error per field that cannot be read."""
        errors: dict[str, str] = {}
        times: dict[str, datetime | None] = {}
        for field in ("since", "until"):
            text = str(query.get(field, "")).strip()
            try:
                when = datetime.fromisoformat(text) if text else None
            except ValueError:
                errors[field] = "Enter a date and time like 2026-12-03T09:00"
                when = None
            times[field] = when.replace(tzinfo=UTC) if when and when.tzinfo is None else when
        wanted = str(query.get("format", ""))
        if wanted and wanted not in FORMATS:
            errors["format"] = "Choose a format from the list"
        return cls(
            partner=str(query.get("partner", "")).strip(),
            reason=str(query.get("reason", "")).strip(),
            format=wanted if wanted in FORMATS else "",
            since=times["since"],
            until=times["until"],
        ), errors


def selected(letters: Iterable[Letter], filters: Filters) -> list[Letter]:
    """The dead letters matching every filter given, newest first."""
    found = [
        item
        for item in letters
        if (not filters.partner or item.letter.source == filters.partner)
        and (not filters.reason or filters.reason.lower() in item.letter.reason.lower())
        and (not filters.format or item.format == filters.format)
        and (filters.since is None or item.letter.received_at >= filters.since)
        and (filters.until is None or item.letter.received_at <= filters.until)
    ]
    return sorted(found, key=lambda i: (i.letter.received_at, i.ref), reverse=True)


def page_of(items: list[Letter], page: int) -> tuple[list[Letter], int]:
    """One page of `items` (1-based, clamped) and the number of pages."""
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page = min(max(1, page), pages)
    return items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE], pages


class HubState:
    """What the operator pages show, kept current from the hub's topics."""

    def __init__(self) -> None:
        # (recipient, hub person id, referrer's ServiceRequest id) -> the referral as delivered to
        # that recipient: already through the disclosure policy (the referral rule, and consent)
        self.delivered: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.letters: dict[str, Letter] = {}
        self.conflicts: dict[str, dict[str, Any]] = {}
        self.last_heard: dict[str, datetime] = {}

    def dead_letter(self, partition: int, offset: int, value: bytes | None) -> None:
        letter = decode_dead_letter(value or b"")
        ref = f"{partition}-{offset}"
        self.letters[ref] = Letter(ref, letter, input_format(letter))
        if len(self.letters) > KEPT:  # the oldest go first: insertion order is arrival order
            del self.letters[next(iter(self.letters))]

    def outbound(self, key: bytes | None, value: bytes | None) -> None:
        envelope = decode(value or b"")
        if envelope.event_type != DELIVERED or key is None or envelope.subject is None:
            return
        resource = envelope.resource
        person = envelope.subject.person_id or ""
        self.delivered[(key.decode(), person, str(resource.get("id", "")))] = resource
        if len(self.delivered) > KEPT:
            del self.delivered[next(iter(self.delivered))]

    def conflict(self, partition: int, offset: int, value: bytes | None) -> None:
        record = decode_internal(value, IdentityConflictRecord).model_dump()
        self.conflicts[record["conflict_id"]] = record

    def heard(self, partition: int, offset: int, value: bytes | None) -> None:
        record = decode_internal(value, PartnerActivity)
        try:
            heard = datetime.fromisoformat(record.last_heard.replace("Z", "+00:00"))
        except ValueError:
            return
        previous = self.last_heard.get(record.partner)
        if previous is None or heard > previous:
            self.last_heard[record.partner] = heard

    def open_conflicts(self) -> list[dict[str, Any]]:
        found = [c for c in self.conflicts.values() if c.get("status") == "open"]
        return sorted(found, key=lambda c: (c.get("raised_at") or "", c["conflict_id"]))

    def per_partner(
        self, partners: Iterable[str], waiting: dict[str, int] | None = None
    ) -> list[dict[str, Any]]:
        """Each partner's feed freshness, dead letters, messages waiting for delivery, and
        deliveries that failed for good."""
        rows = []
        for partner in sorted(partners):
            mine = [i for i in self.letters.values() if i.letter.source == partner]
            rows.append(
                {
                    "partner": partner,
                    "last_heard": self.last_heard.get(partner),
                    "dead_letters": sum(1 for i in mine if i.format != "delivery"),
                    "waiting": (waiting or {}).get(partner, 0),
                    "delivery_failures": sum(
                        1
                        for i in self.letters.values()
                        if i.format == "delivery" and i.letter.origin == f"delivery:{partner}"
                    ),
                }
            )
        return rows


Apply = Callable[[int, int, bytes | None], None]
DELIVERED = "referral.request.delivered"


async def follow(topic: Topic, apply: Any, *, keyed: bool = False) -> None:
    """Read a topic from its beginning and keep up with it, passing each record to `apply`:
    (partition, offset, value), or (key, value) when `keyed`."""
    consumer = AIOKafkaConsumer(**aiokafka_client_config(), enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    try:
                        if keyed:
                            apply(message.key, message.value)
                        else:
                            apply(message.partition, message.offset, message.value)
                    except Exception as exc:  # the one catch of this follower: pass it by
                        # A view only: the workers and the deliverer, which act on these
                        # records, dead-letter what they cannot take; a dead letter from here
                        # could feed this very follower of the dead-letter topic.
                        reason = str(exc) if isinstance(exc, CodecError) else type(exc).__name__
                        log.warning("pages.follow_skipped", topic=topic.name, reason=reason)
    finally:
        await consumer.stop()


async def follow_hub(state: HubState) -> None:
    """Keep `state` current from the dead-letter, identity-conflict and partner-activity topics."""
    followers = [
        asyncio.create_task(follow(topics.DEADLETTER, state.dead_letter)),
        asyncio.create_task(follow(topics.IDENTITY_CONFLICTS, state.conflict)),
        asyncio.create_task(follow(topics.PARTNER_ACTIVITY, state.heard)),
        asyncio.create_task(follow(topics.OUTBOUND, state.outbound, keyed=True)),
    ]
    try:
        await asyncio.gather(*followers)
    finally:
        for task in followers:
            task.cancel()
        for task in followers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# At most this many waiting messages are counted per partition; beyond it the page says "at least".
BACKLOG_SCAN = 10_000


async def delivery_backlog(group: str) -> tuple[dict[str, int], bool]:
    """How many alerts and outbound messages wait for delivery, per recipient partner (the key of
    both topics): those after the delivery group's committed offsets (all of them before the
    group first commits). The flag is True when a partition held more than BACKLOG_SCAN."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**aiokafka_client_config())
    consumer = AIOKafkaConsumer(**aiokafka_client_config(), enable_auto_commit=False, group_id=None)
    await admin.start()
    await consumer.start()
    waiting: dict[str, int] = {}
    capped = False
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [
            TopicPartition(topic.name, p)
            for topic in (topics.ALERTS, topics.OUTBOUND)
            for p in range(topic.partitions)
        ]
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for partition in partitions:
            done = committed.get(partition)
            start = max(done.offset if done and done.offset >= 0 else 0, starts[partition])
            end = min(ends[partition], start + BACKLOG_SCAN)
            capped = capped or ends[partition] - start > BACKLOG_SCAN
            if end <= start:
                continue
            consumer.seek(partition, start)
            while (await consumer.position(partition)) < end:
                batch = await consumer.getmany(partition, timeout_ms=1000)
                for message in batch.get(partition, []):
                    if message.offset < end and message.key:
                        partner = message.key.decode(errors="replace")
                        waiting[partner] = waiting.get(partner, 0) + 1
                if not batch:
                    break
    finally:
        await consumer.stop()
        await admin.close()
    return waiting, capped


def replay(
    item: Letter, corrected: str, operator: str, publisher: Publisher, at: datetime
) -> PublishSummary:
    """Publish the corrected input as the partner that sent it, through the partner's edge checks
    (a record refused again goes back to the dead letters with its reason), then audit the replay."""
    suffix = REPLAYABLE[item.format]
    with tempfile.TemporaryDirectory(prefix="concord-replay-") as folder:
        path = Path(folder) / f"replay-{item.ref}{suffix}"
        path.write_text(corrected, encoding="utf-8")
        summary = publish_records(
            reader_for(path, item.letter.source), item.letter.source, publisher, workers=1
        )
    audit = replay_audit(
        operator=operator,
        partner=item.letter.source,
        dead_letter=item.ref,
        event_ids=[str(e) for e in summary.event_ids],
        rejected=summary.rejected,
        at=at,
    )
    record = encode_hub_envelope(
        uuid.UUID(audit["id"]),
        "audit.replay.recorded",
        person_id=None,
        resource=audit,
        now=at,
        correlation_id=uuid.UUID(audit["id"]),
    )
    publisher.send_encoded(topics.AUDIT.name, item.letter.source.encode(), record)
    publisher.confirm()
    log.info(
        "pages.replayed",
        operator=operator,
        partner=item.letter.source,
        dead_letter=item.ref,
        accepted=summary.accepted,
        rejected=summary.rejected,
    )
    return summary
