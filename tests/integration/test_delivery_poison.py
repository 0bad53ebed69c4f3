"""Poison on the topics the deliverer reads: each record is dead-lettered with its reason and the
partner's lane carries on, so the good messages after it are delivered, in order.

One deliverer run serves every case: poison of each kind on `alerts` and `outbound` (keyed by a
partner, so it sits in that partner's lane ahead of good messages) and on the compacted
`referrals` topic it follows whole, then good messages; each case checks its dead letter.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from connectors.delivery.rules import Endpoint
from connectors.kafka_io import new_producer, read_topic
from schemas import topics
from schemas.codec import decode_dead_letter, encode, letter_text
from schemas.envelope import DeadLetter
from tests.integration.test_delivery import delivering, envelope, publish, wait_until, webhook

PARTNER = "gp-Y01234"
GOOD = 2  # good messages per topic, after the poison

# kind -> (key, value, what the dead letter's reason says)
POISON: dict[str, tuple[bytes | None, bytes | None, str]] = {
    "tombstone": (PARTNER.encode(), None, "tombstone"),
    "not-json": (PARTNER.encode(), b"this is not JSON", "Invalid JSON"),
    "not-utf8": (PARTNER.encode(), b"\xff\xfe{\x00\x9c", "Invalid JSON"),
    "subject-a-string": (
        PARTNER.encode(),
        orjson.dumps({"event_id": str(uuid.UUID(int=7)), "subject": "X123456"}),
        "not a valid Envelope",
    ),
    "oversize": (PARTNER.encode(), b"{" + b"x" * 1_000_000, "Invalid JSON"),
    # a valid message, for a partner no key names
    "no-key": (None, encode(envelope(1, PARTNER, topics.ALERTS)), "no endpoint is configured"),
    "key-not-utf8": (b"\xff\xfe", encode(envelope(2, PARTNER, topics.ALERTS)), "no endpoint"),
}


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str) -> Iterator[tuple[list[DeadLetter], dict[str, list[str]], Any]]:
    """The dead letters, the event ids published and delivered per topic, after one run."""
    from deploy.topics import create_topics, delete_topics_with_prefix

    prefix = f"test-{uuid.uuid4().hex[:10]}."
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONCORD_TOPIC_PREFIX", prefix)
        create_topics()
        producer = new_producer()
        sent = [
            producer.send(topic.name, key=key, value=value)
            for topic in (topics.ALERTS, topics.OUTBOUND)
            for key, value, _ in POISON.values()
        ]
        sent += [
            producer.send(topics.REFERRALS.name, key=b"k", value=b"this is not JSON"),
            producer.send(topics.REFERRALS.name, key=b"\xff", value=None),
        ]
        for future in sent:
            future.get(timeout=30)
        producer.close()
        published = {
            topic.short_name: publish(topic, PARTNER, GOOD)
            for topic in (topics.ALERTS, topics.OUTBOUND)
        }

        async def scenario() -> list[str]:
            async with (
                webhook(lambda n: 200) as (partner, url),
                delivering([Endpoint(PARTNER, "json", url=url)]),
            ):
                await wait_until(lambda: len(partner.accepted) >= 2 * GOOD, "the good messages")
            return partner.event_ids()

        delivered = asyncio.run(scenario())
        letters = [
            decode_dead_letter(v) for _, v in read_topic(topics.DEADLETTER.name, idle_timeout_s=1.0)
        ]
        try:
            yield letters, published, delivered
        finally:
            delete_topics_with_prefix(prefix, bootstrap=kafka_bootstrap)


@pytest.mark.parametrize("kind", POISON)
def test_poison_for_delivery_is_dead_lettered_with_the_reason(
    run: tuple[list[DeadLetter], dict[str, list[str]], list[str]], kind: str
) -> None:
    letters, _, _ = run
    key, value, reason = POISON[kind]
    lane = (key or b"").decode("utf-8", errors="replace")
    mine = [d for d in letters if d.origin == f"delivery:{lane}" and d.raw == letter_text(value)]
    # each kind was put on both topics (a dead letter does not say which); each has its letter
    assert len([d for d in mine if reason in d.reason]) == 2, [d.reason for d in mine]


def test_the_good_messages_after_the_poison_are_delivered_in_order(
    run: tuple[list[DeadLetter], dict[str, list[str]], list[str]],
) -> None:
    _, published, delivered = run
    for event_ids in published.values():
        assert [e for e in delivered if e in event_ids] == event_ids
