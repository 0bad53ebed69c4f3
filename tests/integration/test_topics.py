"""The hub's topics on the real broker: `concord topics create` makes the catalogue and the
workers' changelogs with their configs; a worker refuses to start on topics that are missing or
sized otherwise; a publish to a missing topic says so and is never reported accepted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from structlog.testing import capture_logs

from connectors.gateway.app import GatewayConfig, build_app
from deploy.topics import create_topics, delete_topics_with_prefix, list_topics, planned
from schemas import topics
from services.runtime import bootstrap_servers
from tests.conftest import run_concord
from tests.integration.test_gateway import APPOINTMENT, Client, Served

ROOT = Path(__file__).parents[2]
FILE = ROOT / "tests" / "fixtures" / "gp" / "appointment-booked.json"


@pytest.fixture
def bare_prefix(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh topic prefix with no topics under it (yet); whatever is made is deleted after."""
    prefix = f"test-{uuid.uuid4().hex[:10]}."
    monkeypatch.setenv("CONCORD_TOPIC_PREFIX", prefix)
    monkeypatch.delenv("CONCORD_APP_ID", raising=False)
    yield prefix
    delete_topics_with_prefix(prefix, bootstrap=kafka_bootstrap)


def ours(prefix: str) -> set[str]:
    return {name for name in list_topics() if name.startswith(prefix)}


def test_topics_create_makes_every_topic_and_changelog_with_its_configs(bare_prefix: str) -> None:
    made = run_concord("topics", "create")
    assert made.returncode == 0, made.stderr
    assert ours(bare_prefix) == {t.name for t in topics.plan()}
    assert f"{bare_prefix}hub-calendars-changelog" in ours(bare_prefix)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers())
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topics.CALENDARS.changelog.name)
        described = admin.describe_configs([resource])["topic"][resource.name]
    finally:
        admin.close()
    configs = {name: entry["value"] for name, entry in described.items()}
    assert configs["cleanup.policy"] == "compact"
    assert configs["min.insync.replicas"] == "1"  # one broker: RF 1, and min.insync one less, >= 1

    again = run_concord("topics", "create")
    assert again.stdout.strip() == "created 0 topic(s)"


def test_a_worker_refuses_to_start_on_a_missing_topic_naming_it(bare_prefix: str) -> None:
    refused = run_concord("worker", timeout_s=60)

    assert refused.returncode == 3
    assert f"topic {bare_prefix}inbound does not exist (and 22 more topics)" in refused.stderr
    assert "wants it with 4 partitions" in refused.stderr
    assert "concord topics create" in refused.stderr
    assert ours(bare_prefix) == set(), "a worker creates no topic"


def test_a_worker_refuses_another_partition_count_naming_found_and_wanted(
    bare_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_topics(plan=planned(partitions=2))

    refused = run_concord("worker", timeout_s=60, env={"CONCORD_PARTITIONS": "4"})

    assert refused.returncode == 3
    assert f"topic {bare_prefix}inbound has 2 partition(s)" in refused.stderr
    assert "but the hub wants 4" in refused.stderr
    assert "concord topics repartition" in refused.stderr


def test_publish_before_topics_exist_names_the_topic_and_accepts_nothing(bare_prefix: str) -> None:
    published = run_concord("publish", "--as", "gp-Y01234", str(FILE), env=_secret("gp-Y01234"))

    assert published.returncode == 3
    assert f"topic {bare_prefix}inbound does not exist" in published.stderr
    assert "concord topics create" in published.stderr
    assert "accepted 1" not in published.stdout
    assert ours(bare_prefix) == set(), "no publish creates a topic, even where the broker would"


def test_the_gateway_answers_503_not_202_when_inbound_is_missing(bare_prefix: str) -> None:
    with capture_logs() as logs, Served(build_app(GatewayConfig(kafka_timeout_s=5.0))) as served:
        reply = Client(served.port).post("/fhir/Appointment", APPOINTMENT)

    assert reply.status == 503
    assert reply.issues[0]["code"] == "transient"
    missing = [line for line in logs if line["event"] == "kafka.topic_missing"]
    assert missing
    assert missing[0]["topic"] == f"{bare_prefix}inbound"
    assert ours(bare_prefix) == set()


def _secret(partner: str) -> dict[str, str]:
    import json

    secrets = json.loads((ROOT / "deploy" / "demo" / "secrets.json").read_text())
    return {"CONCORD_PARTNER_SECRET": secrets[partner]}


def test_the_deliverer_refuses_to_start_on_missing_topics_and_creates_none(
    bare_prefix: str,
) -> None:
    refused = run_concord("deliver", timeout_s=60)

    assert refused.returncode == 3
    assert f"topic {bare_prefix}inbound does not exist" in refused.stderr
    assert ours(bare_prefix) == set()
