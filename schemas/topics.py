"""The topic catalogue: every Kafka topic the hub uses, declared once as data, with the workers'
tables (whose changelog topics the hub's processors keep) and the settings that size them.

Names carry a configurable prefix (CONCORD_TOPIC_PREFIX, default "concord.") so
that tests and parallel environments can share one cluster without meeting. The topics an
administrator must create are the catalogue's and the tables' changelogs (`plan()`); the
per-person topics have CONCORD_PARTITIONS partitions, every topic CONCORD_REPLICATION_FACTOR
replicas and min.insync.replicas one fewer (at least 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Topic:
    """One topic: its short name, key, layout and who writes and reads it."""

    short_name: str
    key: str
    layout: Literal["hub", "single"]  # hub: CONCORD_PARTITIONS partitions; single: one
    cleanup: Literal["delete", "compact"]
    retention_ms: int  # -1 keeps messages for ever
    produced_by: str
    consumed_by: str
    purpose: str
    changelog: bool = False  # a worker table's changelog, named by faust's rule

    @property
    def name(self) -> str:
        """The full topic name, with the environment's prefix (or app id, for a changelog)."""
        return self.name_in(topic_prefix(), app_id())

    def name_in(self, prefix: str, app: str) -> str:
        """The topic's name in the generation of topics under `prefix`, app id `app`."""
        # faust's rule for a table's changelog (faust/tables/base.py, _changelog_topic_name)
        return f"{app}-{self.short_name}-changelog" if self.changelog else prefix + self.short_name

    @property
    def partitions(self) -> int:
        """Partitions in this environment: CONCORD_PARTITIONS for per-person topics, else 1."""
        return self.partitions_in(hub_partitions())

    def partitions_in(self, hub: int) -> int:
        """Partitions when the per-person topics have `hub` partitions."""
        return hub if self.layout == "hub" else 1

    def configs(self, replicas: int | None = None) -> dict[str, str]:
        """Topic-level configs for creation, for `replicas` replicas (default: the setting)."""
        return {
            "cleanup.policy": self.cleanup,
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(min_insync_replicas(replicas or replication_factor())),
        }


class SettingError(ValueError):
    """A topic setting has a value the hub cannot use; the message names it and says why."""


def topic_prefix() -> str:
    """The prefix of every topic name in this environment."""
    return os.environ.get("CONCORD_TOPIC_PREFIX", "concord.")


def app_id() -> str:
    """The workers' faust application id: their consumer group and changelog topics' prefix."""
    return os.environ.get("CONCORD_APP_ID", f"{topic_prefix()}hub")


def _whole_number(name: str, default: int, *, low: int, high: int) -> int:
    text = os.environ.get(name, str(default)).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise SettingError(f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


def hub_partitions() -> int:
    """Partitions of the per-person topics (CONCORD_PARTITIONS, default 4): the most workers
    that share the reconciler's work. Changing it for a running hub needs
    `concord topics repartition` (the key-to-partition rule depends on it)."""
    return _whole_number("CONCORD_PARTITIONS", 4, low=1, high=1000)


def replication_factor() -> int:
    """Replicas of every topic and changelog (CONCORD_REPLICATION_FACTOR, default 1: one broker)."""
    return _whole_number("CONCORD_REPLICATION_FACTOR", 1, low=1, high=16)


def min_insync_replicas(replicas: int) -> int:
    """Replicas that must hold a write before it is acknowledged: all but one, so one broker
    may be down (or restarting) while writes go on, and an acknowledged write survives it."""
    return max(1, replicas - 1)


def workers_create_topics() -> bool:
    """Whether `concord worker` creates missing topics before it starts (CONCORD_CREATE_TOPICS,
    default false: a managed cluster's administrator creates them from `concord topics plan`)."""
    text = os.environ.get("CONCORD_CREATE_TOPICS", "false").strip().lower()
    if text not in {"true", "false", "1", "0", "yes", "no"}:
        raise SettingError(f"CONCORD_CREATE_TOPICS must be true or false, not {text!r}")
    return text in {"true", "1", "yes"}


INBOUND = Topic(
    "inbound",
    key="subject identifier token (system|value) as the source knows the person",
    layout="hub",
    cleanup="delete",
    retention_ms=14 * DAY_MS,
    produced_by="connectors (publish CLI, HTTP gateway, MLLP listener, partner feeds)",
    consumed_by="person index",
    purpose="validated envelopes from partners, one FHIR resource each",
)
PERSON_EVENTS = Topic(
    "person-events",
    key="hub person id",
    layout="hub",
    cleanup="delete",
    retention_ms=14 * DAY_MS,
    produced_by="person index",
    consumed_by="reconciler",
    purpose="envelopes re-keyed by hub person id; merge and transfer commands when people join, "
    "and each person's open identity conflicts",
)
LINKS = Topic(
    "links",
    key="first identifier token of the linking resource",
    layout="single",
    cleanup="delete",
    retention_ms=14 * DAY_MS,
    produced_by="person index (Patients, and events naming a person by several identifiers); "
    "`concord identity resolve`",
    consumed_by="identity linker (one partition: links are rare and need one global view)",
    purpose="resources that join identifiers, e.g. a probation Patient with CRN and NHS number, "
    "and the operator's decisions on identity conflicts",
)
ASSIGNMENTS = Topic(
    "assignments",
    key="identifier token (or referral token)",
    layout="hub",
    cleanup="compact",
    retention_ms=-1,
    produced_by="identity linker; reconciler (a referral's person, under the referral's token)",
    consumed_by="person index (co-partitioned with inbound, so each token is looked up locally)",
    purpose="which hub person id each linked identifier, and each referral, now belongs to",
)
IDENTITY_CONFLICTS = Topic(
    "identity-conflicts",
    key="conflict id",
    layout="single",
    cleanup="compact",
    retention_ms=-1,
    produced_by="identity linker",
    consumed_by="hub operators: `concord identity conflicts`",
    purpose="each identity conflict's latest state: identifiers involved, sources, when, status",
)
PARTNER_ACTIVITY = Topic(
    "partner-activity",
    key="partner id",
    layout="single",
    cleanup="compact",
    retention_ms=-1,
    produced_by="person index",
    consumed_by="every worker, read whole, for the breach check's feed freshness",
    purpose="when the hub last heard from each partner",
)
ALERTS = Topic(
    "alerts",
    key="recipient partner id",
    layout="hub",
    cleanup="delete",
    retention_ms=30 * DAY_MS,
    produced_by="reconciler, referrals, outbound delivery (failures: operator, referrer)",
    consumed_by="outbound delivery, officer views",
    purpose="minimised DetectedIssue alerts, one per recipient: clashes, explained absences",
)
OUTBOUND = Topic(
    "outbound",
    key="recipient partner id",
    layout="hub",
    cleanup="delete",
    retention_ms=14 * DAY_MS,
    produced_by="reconciler, referrals",
    consumed_by="outbound delivery connectors",
    purpose="minimised messages addressed to one partner each",
)
REFERRALS = Topic(
    "referrals",
    key="referral id (<referrer>/<ServiceRequest.id>)",
    layout="hub",
    cleanup="compact",
    retention_ms=-1,
    produced_by="reconciler (referral steps)",
    consumed_by="referral inboxes: the worker API and `concord referrals`; outbound delivery",
    purpose="each referral's latest state: who referred to whom, status, deadline, first appointment",
)
AUDIT = Topic(
    "audit",
    key="hub person id",
    layout="hub",
    cleanup="delete",
    retention_ms=-1,
    produced_by="every service that discloses to a partner",
    consumed_by="audit CLI, governance reporting",
    purpose="one FHIR AuditEvent per disclosure",
)
DEADLETTER = Topic(
    "deadletter",
    key="source partner id",
    layout="single",
    cleanup="delete",
    retention_ms=90 * DAY_MS,
    produced_by="every connector and service that rejects input",
    consumed_by="hub operators",
    purpose="rejected input, raw, with the reason it was rejected",
)

MEASURE_EVENTS = Topic(
    "measure-events",
    key="month and area (<YYYY-MM>|<area>)",
    layout="single",
    cleanup="delete",
    retention_ms=62 * DAY_MS,
    produced_by="reconciler and identity linker (what each change counts)",
    consumed_by="measures (one partition: the aggregate cells are one small table)",
    purpose="countable facts: a figure, its month, area, category and urgency, and a hash to "
    "count it once; no person, no identifier",
)
MEASURES = Topic(
    "measures",
    key="report id (<figure>-<YYYY-MM>-<area>)",
    layout="single",
    cleanup="compact",
    retention_ms=-1,
    produced_by="measures",
    consumed_by="commissioners: the worker API `GET /measures`, `concord measures`",
    purpose="each figure's latest FHIR MeasureReport per month and area, small numbers suppressed",
)

CATALOGUE: tuple[Topic, ...] = (
    INBOUND,
    PERSON_EVENTS,
    LINKS,
    ASSIGNMENTS,
    IDENTITY_CONFLICTS,
    PARTNER_ACTIVITY,
    ALERTS,
    OUTBOUND,
    REFERRALS,
    AUDIT,
    DEADLETTER,
    MEASURE_EVENTS,
    MEASURES,
)


@dataclass(frozen=True, slots=True)
class Table:
    """A worker table: kept in RocksDB on the worker holding each partition, and in a compacted
    changelog topic from which a worker rebuilds it. It has the partitions of the topic whose
    events write it, each key on the partition of the event that wrote it."""

    name: str
    key: str
    follows: Topic
    purpose: str

    @property
    def changelog(self) -> Topic:
        """The table's changelog topic."""
        return Topic(
            self.name,
            key=f"{self.key} (as a JSON string)",
            layout=self.follows.layout,
            cleanup="compact",
            retention_ms=-1,
            produced_by=f"workers (the {self.name} table)",
            consumed_by="workers, rebuilding the table after a restart or a rebalance",
            purpose=self.purpose,
            changelog=True,
        )


TOKEN_PERSON = Table("token-person", "identifier token", INBOUND, "linked identifier -> person")
# the linker's global view (one partition): token -> person, person -> its tokens; token -> the
# sources whose links named it; conflict id -> conflict; token -> its conflicts' ids
LINKED_PERSON_OF = Table("linked-person-of", "identifier token", LINKS, "token -> person")
LINKED_MEMBERS = Table("linked-members", "hub person id", LINKS, "person -> tokens")
LINKED_SOURCES = Table("linked-sources", "identifier token", LINKS, "token -> sources")
LINKED_CONFLICTS = Table("linked-conflicts", "conflict id", LINKS, "conflict id -> conflict")
LINKED_CONFLICT_IDS = Table("linked-conflict-ids", "identifier token", LINKS, "token -> conflicts")
CALENDARS = Table("calendars", "hub person id", PERSON_EVENTS, "person -> calendar")
# people with referrals awaiting acceptance -> the earliest deadline (ISO)
DEADLINES = Table("deadlines", "hub person id", PERSON_EVENTS, "person -> next deadline")
IDENTITY_FLAGS = Table("identity-flags", "hub person id", PERSON_EVENTS, "person -> conflicts")
# the commissioners' figures: aggregate cell (figure|month|area|category|urgency|reason) -> counts
# and days (services/domain/measures.py); no person, no identifier
MEASURE_CELLS = Table("measure-cells", "aggregate cell", MEASURE_EVENTS, "cell -> counts")

TABLES: tuple[Table, ...] = (
    TOKEN_PERSON,
    LINKED_PERSON_OF,
    LINKED_MEMBERS,
    LINKED_SOURCES,
    LINKED_CONFLICTS,
    LINKED_CONFLICT_IDS,
    CALENDARS,
    DEADLINES,
    IDENTITY_FLAGS,
    MEASURE_CELLS,
)


def plan() -> tuple[Topic, ...]:
    """Every topic the hub needs on the cluster: the catalogue's, then the tables' changelogs."""
    return CATALOGUE + tuple(table.changelog for table in TABLES)


def by_short_name(short_name: str) -> Topic:
    """The catalogue entry for a short name such as "inbound"."""
    for topic in CATALOGUE:
        if topic.short_name == short_name:
            return topic
    known = ", ".join(t.short_name for t in CATALOGUE)
    raise KeyError(f"no topic {short_name!r} in the catalogue (known: {known})")


def resolve_name(name: str) -> str:
    """Accept a short name ("alerts") or a full name and return the full topic name."""
    try:
        return by_short_name(name).name
    except KeyError:
        return name
