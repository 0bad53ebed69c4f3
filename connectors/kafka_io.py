"""kafka-python adapters for connectors and tools: a durable producer and a topic reader.

Every Kafka client is made by `new_producer`, `new_consumer` or `new_admin`, which connect as
the CONCORD_KAFKA_* settings say (TLS, SASL: services.runtime.kafka_client_config).

Every send waits for `acks=all` before the caller may acknowledge its partner:
nothing is reported accepted that Kafka has not stored.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import BaseModel

from deploy.topics import TopicSetupError, partition_counts
from schemas import topics
from schemas.codec import encode
from schemas.envelope import DeadLetter, Envelope
from schemas.keys import home_partition
from services.runtime import bootstrap_servers, config, kafka_client_config, person_key

log = structlog.get_logger(__name__)


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge a message within the delivery timeout."""


class MissingTopicError(DeliveryError):
    """The topic a message is for does not exist on the cluster: nothing was sent."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"topic {topic} does not exist on the cluster: run `concord topics create` (or have "
            "the cluster's administrator create what `concord topics plan` lists)"
        )
        self.topic = topic


def new_producer(**overrides: Any) -> KafkaProducer:
    """A producer tuned for durability first: acks=all, idempotent, ordered per key."""
    options: dict[str, Any] = kafka_client_config() | {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": config().producer_linger_ms,
        "batch_size": 256 * 1024,
        "max_request_size": 1024 * 1024,
        "request_timeout_ms": 30_000,
        "delivery_timeout_ms": 120_000,
        "client_id": "concord-connector",
        # A topic is created only by `concord topics create`, with its partitions and configs:
        # never by a publish that comes first (on a broker that would, a one-partition inbound).
        "allow_auto_create_topics": False,
    }
    options.update(overrides)
    return KafkaProducer(**options)


def new_consumer(*subscribed: str, **overrides: Any) -> KafkaConsumer:
    """A consumer of the `subscribed` topics (none: assign partitions), connected as configured."""
    return KafkaConsumer(*subscribed, **(kafka_client_config() | overrides))


def new_admin(**overrides: Any) -> KafkaAdminClient:
    """An admin client, connected as configured."""
    return KafkaAdminClient(**(kafka_client_config() | {"client_id": "concord-admin"} | overrides))


class Publisher:
    """Sends envelopes to the inbound topic and rejects to the dead-letter topic."""

    def __init__(self, producer: KafkaProducer | None = None) -> None:
        self._producer = producer or new_producer()
        self._pending: list[Future[Any]] = []
        self._present: set[str] = set()  # topics seen to exist, checked once each

    def send(self, topic: str, key: bytes, message: BaseModel) -> Future[Any]:
        """Queue one message; its future resolves once Kafka has acknowledged it."""
        return self.send_encoded(topic, key, encode(message))

    def send_encoded(self, topic: str, key: bytes, value: bytes) -> Future[Any]:
        """Queue a message the codec (schemas/codec.py) has already encoded, sending its bytes as
        they are: the gateway and `concord publish` encode each envelope once, then send it.

        MissingTopicError, with nothing sent, when the topic does not exist: the producer would wait
        for it until its max_block_ms and then say only that metadata did not come."""
        self._require(topic)
        # Inbound events go to their person's partition, so the hub handles them in one hop.
        partition = home_partition(key, person_key()) if topic == topics.INBOUND.name else None
        future: Future[Any] = self._producer.send(topic, key=key, value=value, partition=partition)
        self._pending.append(future)
        return future

    def _require(self, topic: str) -> None:
        if topic in self._present:
            return
        try:
            exists = topic in partition_counts([topic])
        except TopicSetupError as exc:
            raise DeliveryError(str(exc)) from exc
        if not exists:
            log.error("kafka.topic_missing", topic=topic, fix="concord topics create")
            raise MissingTopicError(topic)
        self._present.add(topic)

    def send_envelope(self, envelope: Envelope, topic: str | None = None) -> Future[Any]:
        """Queue an envelope, keyed by its subject, on the inbound topic (or another)."""
        return self.send(topic or topics.INBOUND.name, envelope.key(), envelope)

    def send_dead_letter(self, letter: DeadLetter) -> Future[Any]:
        """Queue rejected input, keyed by the source partner, on the dead-letter topic."""
        return self.send(topics.DEADLETTER.name, letter.source.encode(), letter)

    def confirm(self, timeout_s: float = 60.0) -> None:
        """Flush and wait for every queued message, `timeout_s` in all; raise DeliveryError if any
        failed or is still unacknowledged then. Either way the queue is empty afterwards, so a
        later confirm answers for later messages only."""
        deadline = time.monotonic() + timeout_s
        pending, self._pending = self._pending, []
        # A flush that times out raises: each message's own answer is read below instead.
        with contextlib.suppress(KafkaError):
            self._producer.flush(timeout=timeout_s)
        failures = 0
        for future in pending:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))  # type: ignore[attr-defined]  # kafka-python's FutureRecordMetadata
            except KafkaError:
                failures += 1
        if failures:
            raise DeliveryError(f"Kafka did not acknowledge {failures} message(s)")

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.close()


def read_topic(
    topic: str, *, max_messages: int | None = None, idle_timeout_s: float = 5.0
) -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) of every message on a topic from the beginning, until idle or max."""
    consumer = new_consumer(
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=int(idle_timeout_s * 1000),
    )
    try:
        partitions = _partitions(consumer, topic, idle_timeout_s)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        for count, message in enumerate(consumer, start=1):
            yield message.key, message.value
            if max_messages is not None and count >= max_messages:
                return
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer, topic: str, wait_s: float) -> list[TopicPartition]:
    deadline = time.monotonic() + max(wait_s, 1.0)
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap_servers()}")
        time.sleep(0.2)
