"""A real three-node cluster on its own ports: topics replicated three ways stay writable with
acks=all while one broker is killed, and the killed broker rejoins.

Jars are shared with the normal cache; the cluster's data, pids and logs are removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator

import pytest
from kafka.admin import KafkaAdminClient

from connectors.kafka_io import Publisher
from deploy.kafka import local
from deploy.topics import create_topics
from schemas import topics

pytestmark = pytest.mark.kafka

PORT = 19710  # nodes on 19710-19712, controllers on 19713-19715


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A running three-node cluster; every process the test starts knows all three nodes."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("CONCORD_KAFKA_CONTROLLER_PORT", raising=False)
    monkeypatch.setenv("CONCORD_KAFKA_PORT", str(PORT))
    bootstrap = local.start_cluster(3)
    yield bootstrap
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    local.stop_cluster(timeout_s=20.0)
    shutil.rmtree(local.cluster_nodes()[0].files.data.parent, ignore_errors=True)


def leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """Partition -> (leader, replicas, in-sync replicas)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        [described] = admin.describe_topics([topic])
    finally:
        admin.close()
    return {
        p["partition_index"]: (p["leader_id"], sorted(p["replica_nodes"]), sorted(p["isr_nodes"]))
        for p in described["partitions"]
    }


def publish(count: int) -> None:
    """`count` messages with acks=all, raising unless Kafka acknowledged every one."""
    publisher = Publisher()
    try:
        for n in range(count):
            publisher.send_encoded(topics.DEADLETTER.name, b"k", f'{{"n": {n}}}'.encode())
        publisher.confirm(timeout_s=60.0)
    finally:
        publisher.close()


def test_three_brokers_stay_writable_with_one_killed(
    cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = local.cluster_status()
    assert status is not None
    assert status["running"] is True
    assert [node["node"] for node in status["nodes"]] == [1, 2, 3]  # type: ignore[union-attr]
    assert cluster == "127.0.0.1:19710,127.0.0.1:19711,127.0.0.1:19712"
    assert local.start_cluster(3) == cluster  # already up: returns at once

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", cluster)
    monkeypatch.setenv("CONCORD_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("CONCORD_TOPIC_PREFIX", f"cluster-{uuid.uuid4().hex[:8]}.")
    create_topics((topics.DEADLETTER,))
    before = leaders(cluster, topics.DEADLETTER.name)
    assert all(replicas == [1, 2, 3] for _, replicas, _ in before.values())
    publish(50)

    victim = before[0][0]  # the leader of partition 0
    [node] = [n for n in status["nodes"] if n["node"] == victim]  # type: ignore[union-attr]
    os.kill(node["pid"], signal.SIGKILL)
    publish(50)  # acks=all with min.insync.replicas 2: two replicas are enough
    after = leaders(cluster, topics.DEADLETTER.name)
    assert all(leader != victim for leader, _, _ in after.values())
    assert all(victim not in isr for _, _, isr in after.values())

    local.start_node(victim)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")  # local reads it as "an external cluster"
    assert local.cluster_status()["running"] is True  # type: ignore[index]
