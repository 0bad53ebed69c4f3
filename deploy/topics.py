"""The hub's topics on the cluster: what an administrator must create (`plan`), creating them
(`create_topics`, running it again changes nothing), and the check a worker makes at start.

The list is `schemas.topics.plan()`: the catalogue's topics and the workers' table changelogs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from schemas import topics
from schemas.topics import (
    Topic,
    hub_partitions,
    replication_factor,
    topic_prefix,
)
from services.runtime import bootstrap_servers, kafka_client_config

__all__ = [
    "PlannedTopic",
    "TopicSetupError",
    "check_topics",
    "client_config",
    "create_topics",
    "delete_topics_with_prefix",
    "list_topics",
    "planned",
    "replication_factor",
    "strimzi_manifest",
]

# The Strimzi cluster the KafkaTopic resources belong to (deploy/k8s/base).
STRIMZI_CLUSTER = "concord"
STRIMZI_FILE = "deploy/k8s/base/kafka-topics.yaml"
FIX = (
    "run `concord topics create`, or have the cluster's administrator create what "
    "`concord topics plan` lists"
)


class TopicSetupError(RuntimeError):
    """The topics could not be created or are not as the hub needs; the message says why in one
    sentence."""


@dataclass(frozen=True, slots=True)
class PlannedTopic:
    """One topic as it must exist on the cluster."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]
    purpose: str

    def as_dict(self) -> dict[str, Any]:
        """The topic as JSON."""
        return {
            "name": self.name,
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "configs": dict(self.configs),
            "purpose": self.purpose,
        }


def planned(
    catalogue: Iterable[Topic] | None = None,
    *,
    partitions: int | None = None,
    replicas: int | None = None,
    prefix: str | None = None,
    app: str | None = None,
) -> list[PlannedTopic]:
    """Every topic of `catalogue` (default: the whole plan) as it must exist: by the settings,
    or for another partition count, replication factor, prefix or app id."""
    hub = partitions or hub_partitions()
    rf = replicas or replication_factor()
    prefix = topic_prefix() if prefix is None else prefix
    app = app or (topics.app_id() if prefix == topic_prefix() else f"{prefix}hub")
    return [
        PlannedTopic(
            name=topic.name_in(prefix, app),
            partitions=topic.partitions_in(hub),
            replication_factor=rf,
            configs=topic.configs(rf),
            purpose=topic.purpose,
        )
        for topic in (topics.plan() if catalogue is None else catalogue)
    ]


def client_config(bootstrap: str | None = None) -> dict[str, Any]:
    """kafka-python keyword arguments reaching the cluster (the broker address and security)."""
    return kafka_client_config() | {"bootstrap_servers": bootstrap or bootstrap_servers()}


def _admin(wait_s: float, bootstrap: str | None = None) -> KafkaAdminClient:
    servers = bootstrap or bootstrap_servers()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return KafkaAdminClient(**client_config(servers), client_id="concord-admin")
        except KafkaTimeoutError as exc:
            if time.monotonic() > deadline:
                raise TopicSetupError(
                    f"no Kafka broker answers at {servers}: run `concord kafka start` "
                    "or set KAFKA_BOOTSTRAP_SERVERS"
                ) from exc
            time.sleep(0.5)


def create_topics(
    catalogue: Iterable[Topic] | None = None,
    wait_s: float = 30.0,
    *,
    plan: list[PlannedTopic] | None = None,
) -> list[str]:
    """Create every missing topic of the plan (default: all of it, by the settings); returns
    the names created (empty when all existed). An existing topic is left as it is."""
    wanted = plan if plan is not None else planned(catalogue)
    admin = _admin(wait_s)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if not missing:
            return []
        new = [
            NewTopic(t.name, t.partitions, t.replication_factor, topic_configs=dict(t.configs))
            for t in missing
        ]
        try:
            # Returned only once the cluster's metadata shows them: a worker may check them next.
            admin.create_topics(new, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            # Another process made one between our listing and creating: the rest one by one.
            return [t.name for t in new if _create_one(admin, t)]
        except KafkaError as exc:
            raise TopicSetupError(f"cannot create the hub's topics: {exc}") from exc
        return [t.name for t in missing]
    finally:
        admin.close()


def _create_one(admin: KafkaAdminClient, topic: NewTopic) -> bool:
    try:
        admin.create_topics([topic], wait_for_metadata=True)
    except TopicAlreadyExistsError:
        return False
    except KafkaError as exc:
        raise TopicSetupError(f"cannot create topic {topic.name}: {exc}") from exc
    return True


def partition_counts(names: Iterable[str], wait_s: float = 10.0) -> dict[str, int]:
    """The partition count of each named topic that exists on the cluster (absent ones left out)."""
    admin = _admin(wait_s)
    try:
        described = admin.describe_topics(list(names))
    finally:
        admin.close()
    return {t["name"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


def check_topics(plan: list[PlannedTopic] | None = None, wait_s: float = 30.0) -> None:
    """TopicSetupError unless every planned topic exists with its partition count: a worker on
    a missing topic would wait for it, and on another count would find people where the
    key-to-partition rule (schemas/keys.py) does not put them."""
    wanted = plan if plan is not None else planned()
    found = partition_counts([t.name for t in wanted], wait_s)
    wrong = [t for t in wanted if found.get(t.name) != t.partitions]
    if not wrong:
        return
    first, more = wrong[0], len(wrong) - 1
    also = f" (and {more} more topic{'s' if more > 1 else ''})" if more else ""
    if first.name not in found:
        raise TopicSetupError(
            f"topic {first.name} does not exist{also}, and the hub wants it with "
            f"{first.partitions} partition{'s' if first.partitions > 1 else ''}: {FIX}"
        )
    raise TopicSetupError(
        f"topic {first.name} has {found[first.name]} partition(s){also}, but the hub wants "
        f"{first.partitions} (CONCORD_PARTITIONS is {hub_partitions()}): set CONCORD_PARTITIONS "
        f"to {found[first.name]}, or move the hub with `concord topics repartition` "
        "(docs/operations-partitions.md)"
    )


def list_topics(wait_s: float = 10.0) -> list[str]:
    """Names of the topics on the cluster."""
    admin = _admin(wait_s)
    try:
        return sorted(admin.list_topics())
    finally:
        admin.close()


def table(plan: list[PlannedTopic]) -> str:
    """The plan as a plain-text table: name, partitions, replicas, configs."""
    rows = [("topic", "partitions", "replicas", "configs")] + [
        (
            t.name,
            str(t.partitions),
            str(t.replication_factor),
            ",".join(f"{k}={v}" for k, v in t.configs.items()),
        )
        for t in plan
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]])
        for row in rows
    )


def _resource_name(topic: str) -> str:
    """A Kubernetes name for a topic: lower case, with anything but letters, digits, '-' and
    '.' as '-' (the topic's own name goes in spec.topicName)."""
    name = "".join(c if c.isalnum() or c in "-." else "-" for c in topic.lower())
    return name.strip("-.")


def strimzi_manifest(plan: list[PlannedTopic], command: str) -> str:
    """Strimzi KafkaTopic resources for the plan, one YAML document each, for the topic operator
    of the Strimzi cluster STRIMZI_CLUSTER; `command` is how the file was made."""
    documents = [
        {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": {
                "name": _resource_name(t.name),
                "labels": {"strimzi.io/cluster": STRIMZI_CLUSTER},
            },
            "spec": {
                "topicName": t.name,
                "partitions": t.partitions,
                "replicas": t.replication_factor,
                "config": dict(t.configs),
            },
        }
        for t in plan
    ]
    header = (
        f"# Generated by `{command}`; do not edit.\n"
        f"# Every topic the hub needs (schemas/topics.py), for the Strimzi topic operator.\n"
    )
    body = yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)
    return header + body


def delete_topics_with_prefix(
    prefix: str, wait_s: float = 10.0, bootstrap: str | None = None
) -> list[str]:
    """Delete every topic whose name starts with `prefix` (tests and benchmarks clean up so)."""
    if not prefix or prefix == "concord.":
        raise ValueError("refusing to delete the hub's own topics")
    admin = _admin(wait_s, bootstrap)
    try:
        doomed = [name for name in admin.list_topics() if name.startswith(prefix)]
        if doomed:
            admin.delete_topics(doomed)
        return doomed
    finally:
        admin.close()
