"""The composition root: the faust app, its topics and its tables, declared once.

Topics carry raw bytes; the codec in schemas/ owns the wire format, so faust
Records and pydantic never mix. Requests about a table's key are routed to the worker
holding it by the rule that placed the key (schemas/keys.py); the web server
serves the hub's own pages only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

import aiokafka
import faust
from faust.app.router import Router
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.utils.functional import consecutive_numbers
from faust.web.drivers import aiohttp as faust_aiohttp
from yarl import URL

from schemas import topics
from schemas.keys import person_partition, token_home
from schemas.topics import Topic
from services.runtime import person_key, settings

SETTINGS = settings()

# How long a fetch waits on the broker for data to arrive. faust-streaming hard-codes 1,500 ms
# in its aiokafka driver, with no setting, and an event waits that long at each hop between
# agents when traffic is light (alert latency p99 at 500 events/s: 1.7 s with it, 68 ms at 100).
FETCH_MAX_WAIT_MS = int(os.environ.get("CONCORD_FETCH_MAX_WAIT_MS", "100"))


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read once, when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for `tp`: one past the run of handled offsets from the last commit.

        faust-streaming 0.15.3's own (transport/consumer.py, Consumer._new_offset) folds the
        offsets it believes were skipped (`_gap`) into the acked list without dropping those
        already acked, and a repeated offset ends the first run of consecutive offsets after two.
        After a rebalance they repeat: recovery resumes the stream partitions before it seeks them
        to their committed offsets (tables/recovery.py, on_recovery_completed), records fetched
        meanwhile are handled and acked, the seek puts the read offset back, and the next record
        looks as if it skipped them. Each commit (every 2.8 s) then advanced the partition by one
        offset until past the repeats: the committed offsets of a drain crept for a minute or more.
        """
        acked = self._acked[tp]
        if not acked:
            return None
        top = max(acked)
        gap = self._gap[tp]
        if gap:
            # Only below the highest ack: the agents ack in offset order, so an offset under it
            # was handled or never delivered, while one above may still be on its way.
            for interval in gap.overlap(0, top):
                acked.extend(range(interval.begin, min(interval.end, top)))
            gap.chop(0, top)
        acked[:] = sorted(set(acked))
        committed = self._committed_offset[tp]
        if committed and acked[0] - committed > 1:
            return None  # as faust: an offset before the first ack is not handled yet
        run = next(consecutive_numbers(acked))
        del acked[: len(run)]
        self._acked_index[tp].difference_update(run)
        return int(run[-1]) + 1


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class PersonRouter(Router):
    """faust's request router, finding a key's worker by the rule that placed the key.

    faust's own hashes the key as the table's changelog serialises it: as JSON, so a person id
    `p-1` is hashed as `"p-1"`, quotes and all, while the hub's events (and the table entries
    they write) sit on the partition of the bare id; and an identifier's person is kept on its
    provisional person's partition, not on its own hash. faust's routing would send a request
    to a worker that does not hold the person, which answers "no such person" (with two
    workers, standby copies of the other's partitions hide this once they have caught up).
    """

    def key_store(self, table_name: str, key: Any) -> URL:
        """The URL of the worker that holds `key` of the table; KeyError while none does."""
        partition_of = PARTITION_RULES.get(table_name)
        if partition_of is None:
            return super().key_store(table_name, key)
        partition = partition_of(str(key))
        for url, held in self.table_metadata(table_name).items():
            if any(partition in partitions for partitions in held.values()):
                return URL(url)
        raise KeyError(f"no worker holds partition {partition} of {table_name}")


class HubWeb(faust_aiohttp.Web):
    """faust's aiohttp web server with none of faust's own pages, only the hub's.

    faust serves `/table/<name>/<key>/` (any table entry: whole calendars, identifiers), `/router`
    (every worker's address and partitions), and statistics, to anyone who can reach the port.
    Request routing between workers needs none of them: a worker passes a request to another
    over HTTP, at the same port, with the partner's credentials.
    """

    default_blueprints = ()
    production_blueprints = ()
    debug_blueprints = ()
    optional_blueprints = ()


class HubApp(faust.App):
    """faust's App, on a Kafka transport whose consumer waits FETCH_MAX_WAIT_MS per fetch,
    serving only the hub's web pages."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_web(self) -> Any:
        return HubWeb(self)


app = HubApp(
    SETTINGS.app_id,
    broker=SETTINGS.broker,
    store=SETTINGS.store,
    datadir=str(SETTINGS.data_dir),
    web_host=SETTINGS.web_host,
    web_port=SETTINGS.web_port,
    web_bind=SETTINGS.web_host,
    canonical_url=SETTINGS.web_url,
    topic_partitions=topics.PERSON_EVENTS.partitions,
    key_serializer="raw",
    value_serializer="raw",
    producer_acks=-1,
    # Agents send a batch's outputs together and wait for all of them before taking the next
    # batch, so records batch anyway while a request is in flight; a longer linger only adds
    # to every batch's cycle (the drain rate is the same at 1 ms as at 5).
    producer_linger=float(os.environ.get("CONCORD_WORKER_LINGER_MS", "1")) / 1000.0,
    consumer_auto_offset_reset="earliest",
    # Standby replicas keep a copy of other workers' table partitions, for a quick takeover.
    table_standby_replicas=SETTINGS.standby_replicas,
    topic_allow_declare=True,
    web_in_thread=False,
    Router=PersonRouter,
)


def _topic(*catalogue: Topic) -> Any:
    return app.topic(
        *(t.name for t in catalogue),
        key_type=bytes,
        value_type=bytes,
        partitions=catalogue[0].partitions,
        internal=False,
    )


inbound_and_assignments = _topic(topics.INBOUND, topics.ASSIGNMENTS)
links = _topic(topics.LINKS)
person_events = _topic(topics.PERSON_EVENTS)
alerts = _topic(topics.ALERTS)
partner_activity = _topic(topics.PARTNER_ACTIVITY)
deadletter = _topic(topics.DEADLETTER)
TOPICS: dict[str, Any] = {
    topics.LINKS.name: links,
    topics.PERSON_EVENTS.name: person_events,
    topics.ALERTS.name: alerts,
    topics.AUDIT.name: _topic(topics.AUDIT),
    topics.OUTBOUND.name: _topic(topics.OUTBOUND),
    topics.REFERRALS.name: _topic(topics.REFERRALS),
    topics.PARTNER_ACTIVITY.name: partner_activity,
    topics.DEADLETTER.name: deadletter,
    topics.ASSIGNMENTS.name: _topic(topics.ASSIGNMENTS),
    topics.IDENTITY_CONFLICTS.name: _topic(topics.IDENTITY_CONFLICTS),
}


# Each table partition is its own RocksDB database. faust's defaults (64 MiB write buffers,
# three of them, and a 2 GiB block cache each) let a worker's memory grow with its state:
# 464 MiB for 250,000 people. Bounded per database, the files and the OS cache hold the rest.
MIB = 1024 * 1024
ROCKSDB_OPTIONS = {
    "write_buffer_size": SETTINGS.rocksdb_write_buffer_mb * MIB,
    "max_write_buffer_number": 2,
    "block_cache_size": SETTINGS.rocksdb_cache_mb * MIB,
    "block_cache_compressed_size": SETTINGS.rocksdb_cache_mb * MIB,
}


def _table(name: str, partitions: int, help_text: str) -> Any:
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        key_type=str,
        value_type=bytes,
        help=help_text,
        options=ROCKSDB_OPTIONS,
    )


# token -> person id, for identifiers the linker has joined (co-partitioned with inbound)
token_person = _table("token-person", topics.INBOUND.partitions, "linked identifier -> person")
# the linker's global view (one partition): token -> person, person -> its tokens
linked_person_of = _table("linked-person-of", topics.LINKS.partitions, "token -> person")
linked_members = _table("linked-members", topics.LINKS.partitions, "person -> tokens")
# token -> the sources whose links named it; conflict id -> conflict; token -> its conflicts' ids
linked_sources = _table("linked-sources", topics.LINKS.partitions, "token -> sources")
linked_conflicts = _table("linked-conflicts", topics.LINKS.partitions, "conflict id -> conflict")
linked_conflict_ids = _table("linked-conflict-ids", topics.LINKS.partitions, "token -> conflicts")
# person id -> encoded calendar (services/stream/state.py)
calendars = _table("calendars", topics.PERSON_EVENTS.partitions, "person -> calendar")
# person id -> earliest referral deadline (ISO), for people with referrals awaiting acceptance
deadlines = _table("deadlines", topics.PERSON_EVENTS.partitions, "person -> next deadline")
# person id -> the identity conflicts the person is under (set by the linker's commands)
identity_flags = _table("identity-flags", topics.PERSON_EVENTS.partitions, "person -> conflicts")

# Where each routed table keeps a key: the partition its events were written to.
PARTITION_RULES: dict[str, Callable[[str], int]] = {
    calendars.name: person_partition,
    # an identifier's assignment goes to its provisional person's partition
    token_person.name: partial(token_home, key=person_key()),
}
