"""What the deliverer tells operators besides delivering: its backlog and consumer lag as
metrics, each partner feed's age, and operator alerts (services/observe/operator.py) for a new
identity conflict and for a partner silent longer than its `silent_after` in the partner
directory. A delivery given up is alerted where it happens (service.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas import topics
from schemas.codec import CodecError, decode_internal
from schemas.internal import IdentityConflictRecord, PartnerActivity
from schemas.topics import topic_prefix
from services.domain.feed_silence import silences
from services.domain.partners import PartnerDirectory
from services.observe.metrics import (
    allow_partner_labels,
    set_backlog,
    set_consumer_lag,
    set_expected_intervals,
    set_feed_ages,
)
from services.observe.operator import OperatorAlerts
from services.runtime import aiokafka_client_config, partner_directory

log = structlog.get_logger(__name__)

SILENCE_CHECK_ENV = "CONCORD_SILENCE_CHECK_SECONDS"
RESTART_AFTER_S = 5.0


def observe_delivery(
    consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, Any], lanes: Mapping[str, Any]
) -> None:
    """Set the backlog per partner (messages queued in its lane) and the lag of each partition
    this deliverer holds: the high watermark of its last fetch minus one past the last offset
    fetched (or the committed offset)."""
    set_backlog({partner: lane.queue.qsize() for partner, lane in lanes.items()})
    lags: dict[tuple[str, int], int] = {}
    for partition, state in offsets.items():
        highwater = consumer.highwater(partition)
        position = state.next_offset if state.next_offset is not None else state.committed
        if highwater is not None and position is not None:
            lags[(partition.topic, partition.partition)] = highwater - position
    set_consumer_lag(lags)


def gave_up_class(reason: str) -> str:
    """A delivery give-up's reason as a metric label: refused, gave-up, invalid or no-endpoint."""
    for prefix, label in (
        ("refused", "refused"),
        ("gave up", "gave-up"),
        ("not a valid", "invalid"),
        ("no endpoint", "no-endpoint"),
    ):
        if reason.startswith(prefix):
            return label
    return "other"


def expected_intervals(directory: PartnerDirectory) -> dict[str, timedelta]:
    """Each partner's `silent_after`, for those the directory gives one."""
    return {p.id: p.silent_after for p in directory.partners.values() if p.silent_after}


def conflict_counts(record: IdentityConflictRecord) -> dict[str, int]:
    """What an identity-conflict alert says about the conflict: how many, never which."""
    return {
        "identifiers": len(record.identifiers),
        "people": len(record.people),
        "sources": len(record.sources),
    }


class OperatorWatch:
    """Follows the identity-conflicts topic (in a consumer group of its own, from the latest
    record for a new group, so each conflict is told once) and the partner-activity topic (whole),
    and raises operator alerts."""

    def __init__(
        self,
        alerts: OperatorAlerts,
        expected: Mapping[str, timedelta],
        check_every_s: float = 60.0,
    ) -> None:
        self._alerts = alerts
        self._expected = dict(expected)
        self._check_every_s = check_every_s
        self.last_heard: dict[str, datetime] = {}
        self._told_silent: frozenset[str] = frozenset()
        self._told_conflicts: set[str] = set()
        self._since = datetime.now(UTC)

    @classmethod
    def from_env(cls, alerts: OperatorAlerts) -> OperatorWatch:
        """The watch over the partners of CONCORD_PARTNERS (none: no silence check), checking
        every CONCORD_SILENCE_CHECK_SECONDS (60)."""
        path = os.environ.get("CONCORD_PARTNERS")
        directory = partner_directory(Path(path)) if path else PartnerDirectory()
        allow_partner_labels(directory.partners)
        expected = expected_intervals(directory)
        return cls(alerts, expected, float(os.environ.get(SILENCE_CHECK_ENV, "60")))

    def conflict(self, value: bytes | None) -> None:
        """An identity-conflict record: alert when it is open and not told yet."""
        record = decode_internal(value, IdentityConflictRecord)
        if record.status != "open" or record.conflict_id in self._told_conflicts:
            return
        self._told_conflicts.add(record.conflict_id)
        self._alerts.raise_alert("identity-conflict", record.claim.source, conflict_counts(record))

    def heard(self, value: bytes | None) -> None:
        """A partner-activity record: when the partner was last heard from."""
        record = decode_internal(value, PartnerActivity)
        try:
            heard = datetime.fromisoformat(record.last_heard.replace("Z", "+00:00"))
        except ValueError as exc:
            raise CodecError("partner-activity: last_heard is not a date-time") from exc
        if heard.tzinfo is None:
            raise CodecError("partner-activity: last_heard has no UTC offset")
        previous = self.last_heard.get(record.partner)
        if previous is None or heard > previous:
            self.last_heard[record.partner] = heard

    def check(self, now: datetime) -> None:
        """Update the feed ages and alert partners newly silent for longer than expected."""
        set_feed_ages(self.last_heard, now)
        set_expected_intervals(self._expected)
        new, self._told_silent = silences(
            self._expected, self.last_heard, self._since, now, self._told_silent
        )
        for silence in new:
            counts = {
                "quiet_for_s": int(silence.quiet_for.total_seconds()),
                "expected_s": int(silence.expected.total_seconds()),
            }
            self._alerts.raise_alert("partner-silent", silence.partner, counts)

    async def run(self) -> None:
        """Follow both topics and check for silences until cancelled; started again a while
        after Kafka fails it."""
        while True:
            try:
                await self._follow()
            except KafkaError as exc:
                log.error("operator_watch.failed", error=type(exc).__name__)
                await asyncio.sleep(RESTART_AFTER_S)

    async def _follow(self) -> None:
        conflicts = AIOKafkaConsumer(
            topics.IDENTITY_CONFLICTS.name,
            **aiokafka_client_config(),
            group_id=f"{topic_prefix()}operator-watch",
            client_id="concord-operator-watch",
            auto_offset_reset="latest",
        )
        activity = AIOKafkaConsumer(
            **aiokafka_client_config(),
            group_id=None,
            client_id="concord-operator-watch",
            enable_auto_commit=False,
        )
        await conflicts.start()
        await activity.start()
        try:
            partitions = [
                TopicPartition(topics.PARTNER_ACTIVITY.name, p)
                for p in range(topics.PARTNER_ACTIVITY.partitions)
            ]
            activity.assign(partitions)
            await activity.seek_to_beginning(*partitions)
            next_check = 0.0
            loop = asyncio.get_running_loop()
            while True:
                for consumer, apply in ((conflicts, self.conflict), (activity, self.heard)):
                    batch = await consumer.getmany(timeout_ms=250)
                    for records in batch.values():
                        for record in records:
                            self._apply(apply, record.topic, record.value)
                if loop.time() >= next_check:
                    self.check(datetime.now(UTC))
                    next_check = loop.time() + self._check_every_s
        finally:
            await conflicts.stop()
            await activity.stop()

    @staticmethod
    def _apply(apply: Any, topic: str, value: bytes | None) -> None:
        try:
            apply(value)
        except CodecError as exc:  # not a record the hub wrote: pass it by
            log.warning("operator_watch.skipped", topic=topic, reason=str(exc))
