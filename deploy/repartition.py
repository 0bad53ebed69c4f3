"""`concord topics repartition`: move a stopped hub to another partition count.

Kafka can add partitions to a topic but not move its records, and the hub puts each record on
the partition its key gives under the count (schemas/keys.py, `placed_partition`): after adding
partitions, a person's next event would go where their calendar is not. So the hub moves to a
new generation of topics instead: every topic and table changelog is copied, in order, onto
the same topic under a new prefix with the new count, each record re-placed by the rule. A
consumer group's place is carried over: the records it had handled are copied first, its
committed offsets on the new topics are set just past them, then the rest follow; so what was
pending stays pending and nothing handled is handled again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from deploy.topics import (
    PlannedTopic,
    TopicSetupError,
    check_topics,
    client_config,
    create_topics,
    partition_counts,
    planned,
)
from schemas import topics
from schemas.keys import PersonKey, placed_partition
from services.runtime import person_key

# A consumer group with members is running: its offsets would move under the copy.
IDLE_GROUP_STATES = {"Empty", "Dead"}
# Empty polls in a row before a partition that stops short of its end is given up on.
IDLE_POLLS = 30


class RepartitionError(RuntimeError):
    """The move cannot be made; the message says why and what to do, in one sentence."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Copy:
    """One topic's move: its old and new names and partitions, and what reads it by group."""

    old: PlannedTopic
    new: PlannedTopic
    changelog: bool
    group: str | None  # the one consumer group with committed offsets on it, if any


@dataclass(slots=True)
class Moved:
    """What the move did, for the operator."""

    to: int
    prefix: str
    app: str
    records: dict[str, int] = field(default_factory=dict)  # new topic -> records copied
    groups: dict[str, str] = field(default_factory=dict)  # old group -> new group

    def summary(self) -> list[str]:
        """One line per topic and group, then what to start the workers with."""
        lines = [f"{name}: {count} record(s)" for name, count in self.records.items()]
        lines += [f"consumer group {old} -> {new}" for old, new in self.groups.items()]
        lines.append(
            f"moved to {self.to} partitions: start the workers and deliverers with "
            f"CONCORD_TOPIC_PREFIX={self.prefix} CONCORD_PARTITIONS={self.to}"
            + (
                f" CONCORD_APP_ID={self.app}"
                if self.app != f"{self.prefix}hub"
                else " (and CONCORD_APP_ID unset)"
            )
            + ", each on an empty CONCORD_DATA_DIR"
        )
        return lines


def repartition(
    *, to: int, into_prefix: str, into_app: str | None = None, wait_s: float = 30.0
) -> Moved:
    """Copy the current generation of topics (CONCORD_TOPIC_PREFIX, CONCORD_APP_ID,
    CONCORD_PARTITIONS) into a new one under `into_prefix` with `to` partitions per person-keyed
    topic. Every worker and deliverer must be stopped; the old topics are left as they were."""
    prefix, app = topics.topic_prefix(), topics.app_id()
    new_app = into_app or f"{into_prefix}hub"
    if to < 1:
        raise RepartitionError(f"--to must be at least 1, not {to}")
    if not into_prefix or into_prefix == prefix or new_app == app:
        raise RepartitionError(
            f"the new generation needs its own prefix and app id, not {into_prefix!r} and {new_app!r}"
        )
    old = planned()
    new = planned(partitions=to, prefix=into_prefix, app=new_app)
    try:
        check_topics(old, wait_s)
    except TopicSetupError as exc:
        raise RepartitionError(f"the hub's topics are not as expected: {exc}", 3) from exc
    existing = partition_counts([t.name for t in new], wait_s)
    if existing:
        raise RepartitionError(
            f"topic {min(existing)} of the new generation exists already: choose another "
            "--into-prefix, or delete the new generation's topics first"
        )
    admin = KafkaAdminClient(**client_config(), client_id="concord-repartition")
    try:
        groups = _idle_groups(admin, prefix, app)
        reading = _committed(admin, groups)
        copies = [
            Copy(o, n, topic.changelog, _reader(o.name, reading))
            for topic, o, n in zip(topics.plan(), old, new, strict=True)
        ]
        renamed = {g: _renamed(g, prefix, app, into_prefix, new_app) for g in groups}
        moved = Moved(to, into_prefix, new_app, groups={g: renamed[g] for g in groups})
        create_topics(plan=new, wait_s=wait_s)
        _move(copies, _Plan(reading, renamed), admin, moved)
    finally:
        admin.close()
    return moved


def _idle_groups(admin: KafkaAdminClient, prefix: str, app: str) -> list[str]:
    """The hub's consumer groups (the workers' and the deliverers'), each checked to be idle."""
    ours = [
        g for g in admin.list_groups() if g["group_id"].startswith(prefix) or g["group_id"] == app
    ]
    for group in ours:
        if group["group_state"] not in IDLE_GROUP_STATES:
            raise RepartitionError(
                f"consumer group {group['group_id']} is {group['group_state']}, not stopped: "
                "stop every worker and deliverer first"
            )
    return sorted(g["group_id"] for g in ours)


def _committed(admin: KafkaAdminClient, groups: list[str]) -> dict[str, dict[TopicPartition, int]]:
    """Each group's committed offsets, by topic partition."""
    found = admin.list_group_offsets(groups) if groups else {}
    return {
        group: {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        for group, offsets in found.items()
    }


def _reader(topic: str, reading: dict[str, dict[TopicPartition, int]]) -> str | None:
    """The one group with committed offsets on `topic`; a second cannot be carried over."""
    readers = sorted(
        g for g, offsets in reading.items() if any(tp.topic == topic for tp in offsets)
    )
    if len(readers) > 1:
        raise RepartitionError(
            f"consumer groups {' and '.join(readers)} both read {topic}, and only one group's "
            "place on a topic can be carried over: delete the group no process uses any more"
        )
    return readers[0] if readers else None


def _renamed(group: str, prefix: str, app: str, into_prefix: str, into_app: str) -> str:
    """The group's name in the new generation: the app id's, or the prefix swapped."""
    return into_app if group == app else into_prefix + group.removeprefix(prefix)


def _move(copies: list[Copy], plan: _Plan, admin: KafkaAdminClient, moved: Moved) -> None:
    """Copy what each group handled, set the groups' offsets on the new topics, copy the rest."""
    producer = KafkaProducer(
        **client_config(),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        client_id="concord-repartition",
    )
    consumer = KafkaConsumer(
        **client_config(),
        group_id=None,
        enable_auto_commit=False,
        client_id="concord-repartition",
        isolation_level="read_committed",  # never a record of an aborted transaction
    )
    copier = _Copier(consumer, producer, person_key())
    try:
        spans = {copy.new.name: _spans(consumer, copy, plan.reading) for copy in copies}
        for copy in copies:
            first, split, _ = spans[copy.new.name]
            moved.records[copy.new.name] = copier.copy(copy, first, split)
        producer.flush()
        _carry_offsets(copies, plan.renamed, admin, consumer)
        for copy in copies:
            _, split, last = spans[copy.new.name]
            moved.records[copy.new.name] += copier.copy(copy, split, last)
        producer.flush()
    finally:
        consumer.close()
        producer.close()


Offsets = dict[TopicPartition, int]


@dataclass(frozen=True, slots=True)
class _Plan:
    reading: dict[str, Offsets]  # each group's committed offsets
    renamed: dict[str, str]  # each group's name in the new generation


def _spans(
    consumer: KafkaConsumer, copy: Copy, reading: dict[str, Offsets]
) -> tuple[Offsets, Offsets, Offsets]:
    """Per old partition: its first offset, where its group's handled records end (its end when
    no group reads it), and its end."""
    parts = [TopicPartition(copy.old.name, p) for p in range(copy.old.partitions)]
    first, last = consumer.beginning_offsets(parts), consumer.end_offsets(parts)
    if copy.group is None:
        return first, dict(last), last
    handled = reading[copy.group]
    split = {tp: min(max(handled.get(tp, first[tp]), first[tp]), last[tp]) for tp in parts}
    return first, split, last


def _carry_offsets(
    copies: list[Copy],
    renamed: dict[str, str],
    admin: KafkaAdminClient,
    consumer: KafkaConsumer,
) -> None:
    """Commit, for each group's new name, the new topics' ends: just past what it had handled."""
    by_group: dict[str, dict[TopicPartition, OffsetAndMetadata]] = defaultdict(dict)
    for copy in copies:
        if copy.group is None:
            continue
        parts = [TopicPartition(copy.new.name, p) for p in range(copy.new.partitions)]
        for tp, end in consumer.end_offsets(parts).items():
            by_group[renamed[copy.group]][tp] = OffsetAndMetadata(end, "", -1)
    for group, offsets in by_group.items():
        admin.alter_group_offsets(group, offsets)


@dataclass(frozen=True, slots=True)
class _Copier:
    consumer: KafkaConsumer
    producer: KafkaProducer
    key: PersonKey

    def copy(self, copy: Copy, start: Offsets, stop: Offsets) -> int:
        """Copy records [start, stop) of each old partition onto the new topic, re-placed."""
        count = 0
        for tp, offset in start.items():
            for record in _records(self.consumer, tp, offset, stop[tp]):
                self.producer.send(
                    copy.new.name,
                    key=record.key,
                    value=record.value,
                    partition=_placed(record.key, copy, self.key, record.partition),
                    timestamp_ms=record.timestamp,
                    headers=list(record.headers or []),
                )
                count += 1
        return count


def _records(consumer: KafkaConsumer, tp: TopicPartition, start: int, stop: int) -> Iterator[Any]:
    """The records of one partition from `start` to before `stop` (a compacted topic has gaps)."""
    if start >= stop:
        return
    consumer.assign([tp])
    consumer.seek(tp, start)
    idle = 0
    while consumer.position(tp) < stop:
        batch = consumer.poll(timeout_ms=1000, max_records=2000).get(tp, [])
        idle = 0 if batch else idle + 1
        if idle > IDLE_POLLS:
            raise RepartitionError(
                f"{tp.topic} partition {tp.partition} could not be read past offset "
                f"{consumer.position(tp)} (its end is {stop}); nothing was started on the new "
                "topics: delete them and run the command again",
                3,
            )
        for record in batch:
            if record.offset >= stop:
                return
            yield record


def _placed(record_key: bytes | None, copy: Copy, key: PersonKey, old_partition: int) -> int:
    """The record's partition on the new topic, by the hub's rule for its key."""
    if copy.new.partitions == 1:
        return 0
    if record_key is None:
        return old_partition % copy.new.partitions
    # A table's changelog holds its keys as JSON strings; the rule places the bare key.
    bare = json.loads(record_key).encode() if copy.changelog else record_key
    return placed_partition(bare, key, copy.new.partitions)
