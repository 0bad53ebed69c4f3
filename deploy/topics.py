"""Create the catalogue's topics on the cluster; running it again changes nothing."""

from __future__ import annotations

import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from schemas.topics import CATALOGUE, Topic
from services.runtime import bootstrap_servers, config, kafka_client_config


class TopicSetupError(RuntimeError):
    """The topics could not be created; the message says why in one sentence."""


def _admin(wait_s: float, bootstrap: str | None = None) -> KafkaAdminClient:
    servers = bootstrap or bootstrap_servers()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            options = kafka_client_config() | {"bootstrap_servers": servers}
            return KafkaAdminClient(**options, client_id="concord-admin")
        except KafkaTimeoutError as exc:
            if time.monotonic() > deadline:
                raise TopicSetupError(
                    f"no Kafka broker answers at {servers}: run `concord kafka start` "
                    "or set KAFKA_BOOTSTRAP_SERVERS"
                ) from exc
            time.sleep(0.5)


def create_topics(catalogue: tuple[Topic, ...] = CATALOGUE, wait_s: float = 30.0) -> list[str]:
    """Create every missing topic; returns the names created (empty when all existed)."""
    admin = _admin(wait_s)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in catalogue if t.name not in existing]
        created = []
        for topic in missing:
            new = NewTopic(
                topic.name, topic.partitions, replication_factor(), topic_configs=topic.configs()
            )
            try:
                admin.create_topics([new])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another process made it between our listing and creating: fine
            except KafkaError as exc:
                raise TopicSetupError(f"cannot create topic {topic.name}: {exc}") from exc
        return created
    finally:
        admin.close()


def list_topics(wait_s: float = 10.0) -> list[str]:
    """Names of the topics on the cluster."""
    admin = _admin(wait_s)
    try:
        return sorted(admin.list_topics())
    finally:
        admin.close()


def replication_factor() -> int:
    """Replicas per topic: 1 for the local broker, CONCORD_REPLICATION_FACTOR on a cluster."""
    return config().replication_factor


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
