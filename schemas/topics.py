"""The topic catalogue: every Kafka topic the hub uses, declared once as data.

Names carry a configurable prefix (CONCORD_TOPIC_PREFIX, default "concord.") so
that tests and parallel environments can share one cluster without meeting.
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
    partitions: int
    cleanup: Literal["delete", "compact"]
    retention_ms: int  # -1 keeps messages for ever
    produced_by: str
    consumed_by: str
    purpose: str

    @property
    def name(self) -> str:
        """The full topic name, with the environment's prefix."""
        return topic_prefix() + self.short_name

    def configs(self) -> dict[str, str]:
        """Topic-level configs for creation."""
        return {"cleanup.policy": self.cleanup, "retention.ms": str(self.retention_ms)}


def topic_prefix() -> str:
    """The prefix of every topic name in this environment."""
    return os.environ.get("CONCORD_TOPIC_PREFIX", "concord.")


INBOUND = Topic(
    "inbound",
    key="subject identifier token (system|value) as the source knows the person",
    partitions=4,
    cleanup="delete",
    retention_ms=14 * DAY_MS,
    produced_by="connectors (publish CLI, HTTP gateway, MLLP listener, partner feeds)",
    consumed_by="person index",
    purpose="validated envelopes from partners, one FHIR resource each",
)
PERSON_EVENTS = Topic(
    "person-events",
    key="hub person id",
    partitions=4,
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
    partitions=1,
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
    partitions=4,
    cleanup="compact",
    retention_ms=-1,
    produced_by="identity linker; reconciler (a referral's person, under the referral's token)",
    consumed_by="person index (co-partitioned with inbound, so each token is looked up locally)",
    purpose="which hub person id each linked identifier, and each referral, now belongs to",
)
IDENTITY_CONFLICTS = Topic(
    "identity-conflicts",
    key="conflict id",
    partitions=1,
    cleanup="compact",
    retention_ms=-1,
    produced_by="identity linker",
    consumed_by="hub operators: `concord identity conflicts`",
    purpose="each identity conflict's latest state: identifiers involved, sources, when, status",
)
PARTNER_ACTIVITY = Topic(
    "partner-activity",
    key="partner id",
    partitions=1,
    cleanup="compact",
    retention_ms=-1,
    produced_by="person index",
    consumed_by="every worker, read whole, for the breach check's feed freshness",
    purpose="when the hub last heard from each partner",
)
ALERTS = Topic(
    "alerts",
    key="recipient partner id",
    partitions=4,
    cleanup="delete",
    retention_ms=30 * DAY_MS,
    produced_by="reconciler, referrals, outbound delivery (failures: operator, referrer)",
    consumed_by="outbound delivery, officer views",
    purpose="minimised DetectedIssue alerts, one per recipient: clashes, explained absences",
)
OUTBOUND = Topic(
    "outbound",
    key="recipient partner id",
    partitions=4,
    cleanup="delete",
    retention_ms=14 * DAY_MS,
    produced_by="reconciler, referrals",
    consumed_by="outbound delivery connectors",
    purpose="minimised messages addressed to one partner each",
)
REFERRALS = Topic(
    "referrals",
    key="referral id (<referrer>/<ServiceRequest.id>)",
    partitions=4,
    cleanup="compact",
    retention_ms=-1,
    produced_by="reconciler (referral steps)",
    consumed_by="referral inboxes: the worker API and `concord referrals`; outbound delivery",
    purpose="each referral's latest state: who referred to whom, status, deadline, first appointment",
)
AUDIT = Topic(
    "audit",
    key="hub person id",
    partitions=4,
    cleanup="delete",
    retention_ms=-1,
    produced_by="every service that discloses to a partner",
    consumed_by="audit CLI, governance reporting",
    purpose="one FHIR AuditEvent per disclosure",
)
DEADLETTER = Topic(
    "deadletter",
    key="source partner id",
    partitions=1,
    cleanup="delete",
    retention_ms=90 * DAY_MS,
    produced_by="every connector and service that rejects input",
    consumed_by="hub operators",
    purpose="rejected input, raw, with the reason it was rejected",
)

MEASURE_EVENTS = Topic(
    "measure-events",
    key="month and area (<YYYY-MM>|<area>)",
    partitions=1,
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
    partitions=1,
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
