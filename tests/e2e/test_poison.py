"""Poison records on every topic a worker reads: each is dead-lettered with its reason, and the
worker carries on with the next record, stays ready, and reads its compacted topics whole at
start however bad a record on them is.

One worker serves every case of the module (starting one takes most of a test's time). Each
case puts its poison on every partition of the topic, then a good record whose effect must
follow, so the good record always comes after the poison in its partition.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from connectors.kafka_io import Publisher, new_producer
from schemas import topics
from schemas.codec import (
    DEAD_LETTER_RAW_CHARS,
    decode_dead_letter,
    encode,
    letter_text,
    peek,
    resolved,
)
from schemas.envelope import wrap
from schemas.identifiers import PersonIdentifier
from schemas.keys import person_partition
from services.runtime import bootstrap_servers
from services.stream.activity import activity_record
from tests.e2e.conftest import CRN, NHS, Worker, appointment, patient
from tests.fuzz.corpus import ROOT

EXAMPLE = orjson.loads((ROOT / "schemas/examples/appointment.booking.updated.json").read_bytes())
INTERNAL = ROOT / "schemas" / "examples" / "internal-messages"
WAIT_S = 30.0

# What each worker consumer calls itself in a dead letter's origin.
STAGE = {
    "inbound": "person-index",
    "assignments": "person-index",
    "links": "linker",
    "person-events": "reconciler",
    "measure-events": "measures",
}


def shaped(**changes: Any) -> bytes:
    """The example appointment envelope with some fields changed: valid JSON, maybe not valid."""
    return orjson.dumps({**EXAMPLE, **changes})


# kind -> (key, value, what the dead letter's reason says). A key of None is no key.
COMMON: dict[str, tuple[bytes | None, bytes | None, str]] = {
    "tombstone": (b"k", None, "tombstone"),
    "not-json": (b"k", b"this is not JSON", "not JSON"),
    "not-utf8": (b"k", b"\xff\xfe{\x00\x9c", "not JSON"),
    "json-array": (b"k", b"[1, 2]", "not a JSON object"),
    "oversize": (b"k", b"{" + b"x" * 1_000_000, "not JSON"),
}
CASES: dict[str, dict[str, tuple[bytes | None, bytes | None, str]]] = {
    "inbound": {
        **COMMON,
        "subject-a-string": (b"k", shaped(subject="X123456"), "subject is not an object"),
        "unknown-event-type": (
            b"k",
            shaped(event_type="appointment.booking.exploded"),
            "event_type is not appointment.booking.updated",
        ),
        "unknown-resource": (
            b"k",
            shaped(resource={"resourceType": "Basic"}),
            "resource.resourceType is not one partners send",
        ),
    },
    "assignments": {
        "tombstone-not-a-token": (b"k", None, "not an assignment"),
        "not-utf8-person": (b"urn:concord:id:probation-crn|X999999", b"\xff\xfe", "not an assignment"),
    },
    "links": {
        **COMMON,
        "subject-a-string": (b"k", shaped(subject="X123456"), "subject is not an object"),
        "command-of-wrong-shape": (b"k", b'{"command": "resolve-conflict"}', "ResolveConflictCommand"),
    },
    "person-events": {
        **COMMON,
        "no-key": (None, shaped(subject={"identifiers": [], "person_id": "p-1"}), "person id as its key"),
        "subject-a-string": (b"p-1", shaped(subject="X123456"), "subject is not an object"),
        "unknown-command": (b"p-1", b'{"command": "explode"}', "unknown command"),
        "not-a-person-command": (b"p-1", b'{"command": "merge", "absorbed": 1}', "MergeCommand"),
    },
    "measure-events": {
        # A fact is validated by its model, whose parser names these its own way. Fewer kinds:
        # each waits for a report the agent publishes a second after the fact, and the codec
        # path of the others is the one every topic takes (tests/fuzz/test_worker_records.py).
        "tombstone": COMMON["tombstone"],
        "not-json": (b"k", b"this is not JSON", "Invalid JSON"),
        "oversize": (b"k", b"{" + b"x" * 1_000_000, "Invalid JSON"),
        "wrong-shape": (b"k", b'{"counted_id": 1}', "MeasureFact"),
        "unknown-figure": (
            b"k",
            orjson.dumps({**orjson.loads((INTERNAL / "measurefact.json").read_bytes()), "figure": "x"}),
            "not one of the figures",
        ),
    },
}  # fmt: skip
# The compacted topics every worker reads whole at start: poisoned before the worker starts.
FOLLOWED: dict[str, dict[str, tuple[bytes | None, bytes | None, str]]] = {
    name: {
        "not-json": (b"k", b"this is not JSON", "Invalid JSON"),
        "not-utf8": (b"k", b"\xff\xfe{\x00\x9c", "Invalid JSON"),
        "wrong-shape": (b"k", b'{"partner": ["gp-Y01234"]}', "not a valid"),
        "tombstone-key-not-utf8": (b"\xff\xfe", None, "UnicodeDecodeError"),
    }
    for name in ("partner-activity", "referrals", "measures")
}


def topic_named(short: str) -> topics.Topic:
    [topic] = [t for t in topics.CATALOGUE if t.short_name == short]
    return topic


class Tail:
    """Every record on some topics, read from the beginning by a background thread."""

    def __init__(self, names: list[str]) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers(),
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=100,
        )
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in self._consumer.partitions_for_topic(name) or ()
        ]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for batch in self._consumer.poll(timeout_ms=100).values():
                self.records.extend((r.topic, r.key, r.value) for r in batch)

    def on(self, topic: topics.Topic) -> list[tuple[bytes | None, bytes | None]]:
        return [(k, v) for t, k, v in list(self.records) if t == topic.name]

    def wait(self, what: str, found: Callable[[], Any]) -> Any:
        """`found()` once it is truthy; fails the test after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            result = found()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def poison(producer: Any, topic: topics.Topic, key: bytes | None, value: bytes | None) -> None:
    """The record on every partition of the topic."""
    sent = [
        producer.send(topic.name, key=key, value=value, partition=partition)
        for partition in range(topic.partitions)
    ]
    for future in sent:
        future.get(timeout=WAIT_S)


@dataclass
class Hub:
    worker: Worker
    tail: Tail
    producer: Any

    def poison(self, topic: topics.Topic, key: bytes | None, value: bytes | None) -> None:
        poison(self.producer, topic, key, value)

    def letters(self, origin: str, raw: bytes | None) -> list[Any]:
        """The dead letters from `origin` of a record whose value was `raw`."""
        letters = [decode_dead_letter(v) for _, v in self.tail.on(topics.DEADLETTER)]
        return [d for d in letters if d.origin == origin and d.raw == letter_text(raw)]


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One worker for the module, on fresh topics whose followed topics hold poison already."""
    from deploy.topics import create_topics, delete_topics_with_prefix

    prefix = f"test-{uuid.uuid4().hex[:10]}."
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CONCORD_TOPIC_PREFIX", prefix)
        create_topics()
        producer = new_producer()
        for short, cases in FOLLOWED.items():
            for key, value, _ in cases.values():
                poison(producer, topic_named(short), key, value)
        watched = (topics.DEADLETTER, topics.ALERTS, topics.ASSIGNMENTS, topics.MEASURES)
        hub = Hub(
            Worker(tmp_path_factory.mktemp("poison")), Tail([t.name for t in watched]), producer
        )
        hub.worker.start()  # ready only once it has read the followed topics' poison
        try:
            yield hub
        finally:
            hub.worker.stop()
            hub.tail.close()
            producer.close()
            delete_topics_with_prefix(prefix, bootstrap=kafka_bootstrap)


# --- the good record after the poison, per topic: sent, and its effect awaited ---------------


def nhs_number(n: int) -> str:
    """A valid NHS number (mod-11 check digit) made from n."""
    while True:
        digits = f"{943_476_000 + n:09d}"
        check = 11 - sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return digits + str(check % 11)
        n += 1


def clashing(tag: str, crn: str) -> list[tuple[str, dict[str, Any]]]:
    """A probation and an addiction-service appointment of one person (by CRN), clashing."""
    person = (CRN, crn)
    return [
        ("probation-london", appointment(f"prob-{tag}-", "booked", "2026-12-09T09:00:00Z", "2026-12-09T10:00:00Z", person)),
        ("vol-recovery", appointment(f"rec-{tag}-", "booked", "2026-12-09T09:30:00Z", "2026-12-09T10:30:00Z", person)),
    ]  # fmt: skip


def alerts_naming(hub: Hub, tag: str) -> int:
    """Alerts naming either appointment: each booker is told of the clash in its own words."""
    return sum(1 for _, v in hub.tail.on(topics.ALERTS) if v and f"-{tag}-".encode() in v)


def envelope_of(partner: str, resource: dict[str, Any], crn: str) -> bytes:
    event_type = "appointment.booking.updated"
    subject = (PersonIdentifier(CRN, crn),)
    return encode(wrap(resource, event_type=event_type, source=partner, subject=subject))


def good_inbound(hub: Hub, n: int) -> None:
    publisher = Publisher()
    tag, crn = f"in{n}", f"X{700000 + n}"
    for partner, resource in clashing(tag, crn):
        key = f"{CRN}|{crn}".encode()
        publisher.send_encoded(topics.INBOUND.name, key, envelope_of(partner, resource, crn))
    publisher.confirm()
    publisher.close()
    hub.tail.wait("both clash alerts", lambda: alerts_naming(hub, tag) >= 2)


def good_link(hub: Hub, n: int) -> None:
    """A Patient joining an NHS number and a CRN: the linker assigns both to one person."""
    nhs, crn = nhs_number(n), f"X{800000 + n}"
    publisher = Publisher()
    resource = patient((NHS, nhs), (CRN, crn))
    subject = (PersonIdentifier(NHS, nhs), PersonIdentifier(CRN, crn))
    record = wrap(
        resource, event_type="identity.patient.updated", source="probation-london", subject=subject
    )
    publisher.send_envelope(record)
    publisher.confirm()
    publisher.close()
    hub.tail.wait(
        "the link's assignments",
        lambda: any(k and crn.encode() in k for k, _ in hub.tail.on(topics.ASSIGNMENTS)),
    )


def good_person_event(hub: Hub, n: int) -> None:
    """The clashing pair resolved to a person, straight onto person-events for the reconciler."""
    tag, crn, person = f"pe{n}", f"X{900000 + n}", f"p-{uuid.uuid4().hex[:20]}"
    for partner, resource in clashing(tag, crn):
        value = orjson.dumps(resolved(peek(envelope_of(partner, resource, crn)), person))
        hub.producer.send(
            topics.PERSON_EVENTS.name,
            key=person.encode(),
            value=value,
            partition=person_partition(person),
        )
    hub.producer.flush()
    hub.tail.wait("both clash alerts", lambda: alerts_naming(hub, tag) >= 2)


def good_fact(hub: Hub, n: int) -> None:
    fact = orjson.loads((INTERNAL / "measurefact.json").read_bytes())
    fact["counted_id"] = uuid.uuid4().hex
    before = len(hub.tail.on(topics.MEASURES))
    hub.producer.send(topics.MEASURE_EVENTS.name, key=b"fact", value=orjson.dumps(fact))
    hub.producer.flush()
    hub.tail.wait("the month's reports", lambda: len(hub.tail.on(topics.MEASURES)) > before)


GOOD: dict[str, Callable[[Hub, int], None]] = {
    "inbound": good_inbound,
    "assignments": good_inbound,  # the same agent takes both topics
    "links": good_link,
    "person-events": good_person_event,
    "measure-events": good_fact,
}
AGENT_CASES = [(topic, kind) for topic, cases in CASES.items() for kind in cases]


@pytest.mark.parametrize(("short", "kind"), AGENT_CASES, ids=[f"{t}-{k}" for t, k in AGENT_CASES])
def test_an_agent_dead_letters_poison_and_handles_the_next_record(
    hub: Hub, short: str, kind: str
) -> None:
    key, value, reason = CASES[short][kind]
    topic = topic_named(short)
    hub.poison(topic, key, value)
    GOOD[short](hub, AGENT_CASES.index((short, kind)))

    def named() -> list[Any]:
        return [d for d in hub.letters(STAGE[short], value) if reason in d.reason]

    letters = hub.tail.wait(
        f"a dead letter per partition saying {reason!r}",
        lambda: len(named()) == topic.partitions and named(),
    )
    assert all(len(d.raw) <= DEAD_LETTER_RAW_CHARS + 100 for d in letters)
    status, body = hub.worker.get("/ready", as_partner=None)
    assert (status, body) == (200, {"ready": True})


FOLLOWER_CASES = [(topic, kind) for topic, cases in FOLLOWED.items() for kind in cases]


@pytest.mark.parametrize(
    ("short", "kind"), FOLLOWER_CASES, ids=[f"{t}-{k}" for t, k in FOLLOWER_CASES]
)
def test_a_record_a_worker_reads_whole_at_start_is_dead_lettered_and_the_worker_starts(
    hub: Hub, short: str, kind: str
) -> None:
    """The fixture's worker started with these on its compacted topics, and became ready."""
    _, value, reason = FOLLOWED[short][kind]
    origin = f"follow:{topic_named(short).name}"
    letters = hub.tail.wait(f"{kind} dead-lettered", lambda: hub.letters(origin, value))
    assert len([d for d in letters if reason in d.reason]) == topic_named(short).partitions, [
        d.reason for d in letters
    ]


def test_followers_read_on_after_poison_and_a_tombstone_forgets_its_key(hub: Hub) -> None:
    """A partner heard from after the poison is counted; its tombstone forgets it again."""
    partner = f"vol-poison{uuid.uuid4().hex[:6]}"

    def heard() -> int:
        status, body = hub.worker.get("/stats")
        assert status == 200
        return int(body["partners_heard"])

    before = heard()
    hub.producer.send(
        topics.PARTNER_ACTIVITY.name,
        key=partner.encode(),
        value=activity_record(partner, datetime.now(UTC).isoformat()),
    )
    hub.producer.flush()
    hub.tail.wait("the partner to be heard", lambda: heard() == before + 1)
    hub.producer.send(topics.PARTNER_ACTIVITY.name, key=partner.encode(), value=None)
    hub.producer.flush()
    hub.tail.wait("the partner to be forgotten", lambda: heard() == before)


def test_a_referral_entry_after_the_poison_reaches_the_inbox(hub: Hub) -> None:
    entry = orjson.loads((INTERNAL / "referralinboxentry.json").read_bytes())
    entry.update(referral_id=f"probation-london/ref-{uuid.uuid4().hex[:8]}")
    entry["id"] = entry["referral_id"].split("/")[1]
    hub.producer.send(
        topics.REFERRALS.name, key=entry["referral_id"].encode(), value=orjson.dumps(entry)
    )
    hub.producer.flush()

    def listed() -> bool:
        status, body = hub.worker.get("/referrals")
        return status == 200 and entry["id"] in {r["id"] for r in body["referrals"]}

    hub.tail.wait("the referral in the referrer's inbox", listed)
