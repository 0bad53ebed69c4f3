"""The batch unit of work of the stream agents: outputs and table writes sent straight to the
producer, and the delivery futures gathered, so a batch's offsets are committed only once Kafka
has everything it produced.

Alerts reach the producer before the table write that records them, so a crash repeats an
alert (same deterministic id) rather than losing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from functools import partial
from typing import Any, NamedTuple

import faust
from faust.types import TP

from services.observe.metrics import observe_output
from services.stream.app import app
from services.stream.outbox import Out


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


class Change(NamedTuple):
    """A table write to record on the table's changelog topic."""

    table: Any
    key: str
    value: bytes | None  # None: the key was deleted
    partition: int


def read(table: Any, key: str) -> bytes | None:
    """One entry of a table, or None: a single store lookup (`table.get` makes two)."""
    value: bytes | None = table.data.get(key)
    return value


def put(table: Any, key: str, value: bytes | None) -> Change | None:
    """Write (or, with None, delete) one entry of a table now; the changelog record to send.

    `table[key] = value` would queue its changelog record in faust's producer buffer, which
    a background task drains one message at a time and which halts every stream once 100
    wait there: at full speed that cost more than the event. The store is written here and
    the same record goes to the same partition through `record`, straight to the producer.
    """
    event = faust.current_event()
    if event is None:
        raise RuntimeError("a table is written only while an event is handled")
    if value is None:
        if key not in table.data:
            return None
        del table.data[key]
    else:
        table.data[key] = value
    return Change(table, key, value, event.message.partition)


async def record(changes: Iterable[Change | None], sent: list[Awaitable[Any]]) -> None:
    """Send table changes to their changelog topics; note each one's offset when Kafka has it."""
    producer = app.producer
    for change in changes:
        if change is None:
            continue
        table, changelog = change.table, change.table.changelog_topic
        topic = changelog.get_topic_name()
        # Serialised as faust serialises its own changelog records, so recovery reads them.
        key, _ = changelog.prepare_key(change.key, table.key_serializer)
        value = None
        if change.value is not None:
            value, _ = changelog.prepare_value(change.value, table.value_serializer)
        delivery = asyncio.ensure_future(  # the Future it is, typed as an Awaitable
            await producer.send(topic, key, value, change.partition, None, None)
        )
        # RocksDB keeps the last changelog offset it holds, so recovery resumes after it.
        delivery.add_done_callback(partial(_persisted, table, TP(topic, change.partition)))
        sent.append(delivery)


def _persisted(table: Any, tp: TP, delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled() and delivery.exception() is None:
        table.data.set_persisted_offset(tp, delivery.result().offset)
