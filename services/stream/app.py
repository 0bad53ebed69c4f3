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

from faust.app.router import Router
from yarl import URL

from schemas import topics
from schemas.keys import person_partition, token_home
from schemas.topics import Topic
from services.runtime import person_key, settings
from services.stream.faust_private import HubApp

SETTINGS = settings()


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
    # Changelogs and faust's own topics replicated as the catalogue's (a cluster's min.insync 2).
    topic_replication_factor=int(os.environ.get("CONCORD_REPLICATION_FACTOR", "1")),
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
measure_events = _topic(topics.MEASURE_EVENTS)
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
    topics.MEASURE_EVENTS.name: measure_events,
    topics.MEASURES.name: _topic(topics.MEASURES),
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
# the commissioners' figures: aggregate cell (figure|month|area|category|urgency|reason) -> counts
# and days (services/domain/measures.py); no person, no identifier
measure_cells = _table("measure-cells", topics.MEASURE_EVENTS.partitions, "cell -> counts")

# Where each routed table keeps a key: the partition its events were written to.
PARTITION_RULES: dict[str, Callable[[str], int]] = {
    calendars.name: person_partition,
    # an identifier's assignment goes to its provisional person's partition
    token_person.name: partial(token_home, key=person_key()),
}
