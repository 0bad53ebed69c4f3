"""The batch unit of work of the stream agents: outputs sent straight to the producer, and table
writes held until Kafka has confirmed the batch's outputs, then its changelog records; only then
do they reach the local store.

So the state never runs ahead of what Kafka holds. A worker killed before Kafka confirmed an
output has stored nothing of the change that raised it, and the replayed event raises it again
(same deterministic id); killed after, the change is on its changelog, recovered before the event
is replayed, and the replay is a duplicate with no second effect. Offsets are committed only
after the batch settles.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextvars import ContextVar
from typing import Any, NamedTuple

import faust
from faust.types import TP

from schemas import topics
from services.observe.metrics import observe_output
from services.stream.app import app
from services.stream.crash_points import crash_point
from services.stream.faust_private import handling
from services.stream.outbox import Out


class Change(NamedTuple):
    """A table write: to the table's changelog topic, then its local store."""

    table: Any
    key: str
    value: bytes | None  # None: the key was deleted
    partition: int
    event: Any  # the event whose handling wrote it: the store writes the event's partition


class Batch(list[Awaitable[Any]]):
    """One batch: the delivery futures of its outputs (the list), and its table writes by key."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: dict[tuple[str, str], Change] = {}
        self.alerts = 0  # outputs on the alerts topic (where the recovery tests crash)

    async def settle(self) -> None:
        """Wait for Kafka to have every output, then every changelog record; then store."""
        await asyncio.gather(*self)
        crash_point("outputs-confirmed", self.alerts > 0 and bool(self.changes))
        changes = list(self.changes.values())
        sends = [await _to_changelog(change) for change in changes]
        confirmed = await asyncio.gather(*sends)
        crash_point("changelog-confirmed", self.alerts > 0 and bool(changes))
        for change, metadata in zip(changes, confirmed, strict=True):
            _store(change, metadata.offset)
        self.forget()

    def forget(self) -> None:
        """Drop the batch's writes from the pending ones (a later batch's write stays)."""
        for key, change in self.changes.items():
            if _PENDING.get(key) is change:
                del _PENDING[key]


# Table writes not yet in their store, by (table name, key): what reads see first.
_PENDING: dict[tuple[str, str], Change] = {}
_CURRENT: ContextVar[Batch | None] = ContextVar("concord_batch", default=None)
# The person index and the reconciler both write person records: one batch of them at a time,
# so a batch never settles a record another batch's unconfirmed outputs depend on.
PERSON_RECORDS = asyncio.Lock()


@contextlib.asynccontextmanager
async def unit_of_work(lock: asyncio.Lock | None = None) -> AsyncIterator[Batch]:
    """A batch to handle events in; it settles on leaving. A batch that fails stores nothing."""
    async with lock or contextlib.nullcontext():
        batch = Batch()
        token = _CURRENT.set(batch)
        try:
            yield batch
            await batch.settle()
        except BaseException:
            batch.forget()
            raise
        finally:
            _CURRENT.reset(token)


async def emit(outs: Iterable[Out], sent: list[Awaitable[Any]] | None = None) -> None:
    """Hand each output to the producer, in order; its delivery futures go to `sent`.

    Straight to the producer: faust's Topic.send adds a promise, a callback and sensor
    calls per message, which cost more than the message at full speed.
    """
    producer = app.producer
    for out in outs:
        observe_output(out.topic.name, out.value, faust.current_event())
        delivery = await producer.send(
            out.topic.name,
            out.key,
            out.value,
            partition=out.partition,
            timestamp=None,
            headers=None,
        )
        if sent is not None:
            sent.append(delivery)
        if isinstance(sent, Batch) and out.topic is topics.ALERTS:
            sent.alerts += 1


def read(table: Any, key: str) -> bytes | None:
    """One entry of a table as the batches have written it, or None: a pending write, else a
    single store lookup (`table.get` makes two)."""
    change = _PENDING.get((table.name, key))
    if change is not None:
        return change.value
    value: bytes | None = table.data.get(key)
    return value


def entries(table: Any) -> list[tuple[str, bytes]]:
    """Every entry of a table as the batches have written it."""
    held = dict(table.data.items())
    for (name, key), change in _PENDING.items():
        if name != table.name:
            continue
        if change.value is None:
            held.pop(key, None)
        else:
            held[key] = change.value
    return list(held.items())


def put(table: Any, key: str, value: bytes | None) -> None:
    """Write (or, with None, delete) one entry of a table in the current batch.

    Reads see it at once; the changelog and the store get it when the batch settles, the last
    write of each key only. `table[key] = value` would write the store now and queue the
    changelog record in faust's producer buffer, drained one message at a time.
    """
    event, batch = faust.current_event(), _CURRENT.get()
    if event is None or batch is None:
        raise RuntimeError("a table is written only while a batch's event is handled")
    if value is None and read(table, key) is None:
        return
    change = Change(table, key, value, event.message.partition, event)
    _PENDING[(table.name, key)] = batch.changes[(table.name, key)] = change


async def _to_changelog(change: Change) -> Awaitable[Any]:
    changelog = change.table.changelog_topic
    # Serialised as faust serialises its own changelog records, so recovery reads them.
    key, _ = changelog.prepare_key(change.key, change.table.key_serializer)
    value = None
    if change.value is not None:
        value, _ = changelog.prepare_value(change.value, change.table.value_serializer)
    topic = changelog.get_topic_name()
    delivery: Awaitable[Any] = await app.producer.send(
        topic, key, value, change.partition, None, None
    )
    return delivery


def _store(change: Change, offset: int) -> None:
    table = change.table
    with handling(change.event):
        if change.value is None:
            if change.key in table.data:
                del table.data[change.key]
        else:
            table.data[change.key] = change.value
        # RocksDB keeps the last changelog offset it holds, so recovery resumes after it.
        tp = TP(table.changelog_topic.get_topic_name(), change.partition)
        table.data.set_persisted_offset(tp, offset)
