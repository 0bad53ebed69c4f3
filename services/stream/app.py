"""The composition root: the faust app, its topics and its tables, declared once.

Topics carry raw bytes; the codec in schemas/ owns the wire format, so faust
Records and pydantic never mix. Requests about a table's key are routed to the worker
holding it by the rule that placed the key (schemas/keys.py); the web server
serves the hub's own pages only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from faust.app.router import Router
from yarl import URL

from schemas import topics
from schemas.keys import person_partition, token_home
from schemas.topics import Topic
from services.runtime import config, person_key, settings
from services.stream.faust_private import HubApp
from services.stream.kafka_auth import broker_credentials

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
    broker_credentials=broker_credentials(),
    env={},  # faust's own variable names (WEB_PORT, BROKER, ...) never override the hub's
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
    producer_linger=config().worker_linger_ms / 1000.0,
    consumer_auto_offset_reset="earliest",
    # A worker killed without leaving the group holds its partitions until its session expires
    # (faust's default: 60 s); a short session lets a survivor take over within 15 s. Dynamic
    # membership, not static (group_instance_id): a static member's partitions wait for its
    # session to expire even when it stops cleanly, and a dead one's wait as long either way.
    broker_session_timeout=config().session_timeout_s,
    broker_heartbeat_interval=config().heartbeat_interval_s,
    # How long a live worker may take to rejoin a rebalance (faust first waits for its agents
    # to finish what they hold): not how long a dead one is waited for, so left long.
    broker_rebalance_timeout=config().rebalance_timeout_s,
    # Standby replicas keep a copy of other workers' table partitions, for a quick takeover.
    table_standby_replicas=SETTINGS.standby_replicas,
    # Workers create no topics: `concord topics create` (or the cluster's administrator, from
    # `concord topics plan`) does, changelogs included, and the worker checks them at start.
    topic_allow_declare=False,
    topic_replication_factor=topics.replication_factor(),
    topic_disable_leader=True,  # no timer runs on the leader only: no leader topic to create
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


def _table(table: topics.Table) -> Any:
    return app.Table(
        table.name,
        default=None,
        partitions=table.follows.partitions,
        key_type=str,
        value_type=bytes,
        help=table.purpose,
        options=ROCKSDB_OPTIONS,
        extra_topic_configs=table.changelog.configs(),
    )


# Declared in schemas/topics.py (TABLES), from which `concord topics plan` lists their changelogs.
token_person = _table(topics.TOKEN_PERSON)  # co-partitioned with inbound
linked_person_of = _table(topics.LINKED_PERSON_OF)  # the linker's global view (one partition)
linked_members = _table(topics.LINKED_MEMBERS)
linked_sources = _table(topics.LINKED_SOURCES)
linked_conflicts = _table(topics.LINKED_CONFLICTS)
linked_conflict_ids = _table(topics.LINKED_CONFLICT_IDS)
calendars = _table(topics.CALENDARS)  # person id -> encoded calendar (services/stream/state.py)
deadlines = _table(topics.DEADLINES)
identity_flags = _table(topics.IDENTITY_FLAGS)
measure_cells = _table(topics.MEASURE_CELLS)

# Where each routed table keeps a key: the partition its events were written to.
PARTITION_RULES: dict[str, Callable[[str], int]] = {
    calendars.name: person_partition,
    # an identifier's assignment goes to its provisional person's partition
    token_person.name: partial(token_home, key=person_key()),
}
