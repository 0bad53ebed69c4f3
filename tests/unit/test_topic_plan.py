"""What the hub asks of the cluster: the plan of topics and changelogs, its sizes and configs
from the settings, the Strimzi resources, and where every record goes for a partition count."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from deploy.topics import planned, strimzi_manifest, table
from schemas import topics
from schemas.keys import (
    PersonKey,
    person_id_for_token,
    person_partition,
    placed_partition,
    token_home,
)
from services.ops.cli import main

KEY = PersonKey.from_secret("test-only")


@pytest.fixture
def default_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONCORD_TOPIC_PREFIX", "CONCORD_APP_ID", "CONCORD_PARTITIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CONCORD_REPLICATION_FACTOR", raising=False)


@pytest.mark.parametrize(("replicas", "insync"), [(1, 1), (2, 1), (3, 2), (5, 4)])
def test_min_insync_replicas_is_one_fewer_than_the_replicas_and_at_least_one(
    replicas: int, insync: int
) -> None:
    assert topics.min_insync_replicas(replicas) == insync


def test_every_topic_and_changelog_takes_replicas_and_min_insync_from_one_setting(
    default_names: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCORD_REPLICATION_FACTOR", "3")
    plan = planned()
    assert len(plan) == len(topics.CATALOGUE) + len(topics.TABLES)
    assert {(t.replication_factor, t.configs["min.insync.replicas"]) for t in plan} == {(3, "2")}
    changelogs = [t for t in plan if t.name.endswith("-changelog")]
    assert {t.configs["cleanup.policy"] for t in changelogs} == {"compact"}


def test_the_partition_count_sizes_the_per_person_topics_and_their_tables(
    default_names: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCORD_PARTITIONS", "12")
    sizes = {t.name: t.partitions for t in planned()}
    assert sizes["concord.inbound"] == sizes["concord.person-events"] == 12
    assert (
        sizes["concord.hub-calendars-changelog"]
        == sizes["concord.hub-token-person-changelog"]
        == 12
    )
    # The identity linker's view is global: one partition, whatever the count.
    assert sizes["concord.links"] == sizes["concord.hub-linked-person-of-changelog"] == 1


@pytest.mark.parametrize("value", ["0", "four", "-2", "1001"])
def test_an_unusable_partition_count_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CONCORD_PARTITIONS", value)
    with pytest.raises(topics.SettingError, match="CONCORD_PARTITIONS must be a whole number"):
        topics.hub_partitions()


def test_the_plan_names_the_changelogs_faust_keeps_for_the_workers_tables(
    default_names: None,
) -> None:
    """The changelogs the plan lists are those of the faust app's own tables, by name and size."""
    from services.stream.app import app

    kept = {t.changelog_topic.get_topic_name(): t.partitions for t in app.tables.values()}
    listed = {t.changelog.name: t.changelog.partitions for t in topics.TABLES}
    assert kept == listed
    assert app.conf.topic_allow_declare is False, "workers create no topics"
    assert app.conf.topic_disable_leader is True, "so no leader topic is needed"


def test_the_table_lists_name_partitions_replicas_and_configs(default_names: None) -> None:
    lines = table(planned()).splitlines()
    assert lines[0].split() == ["topic", "partitions", "replicas", "configs"]
    assert lines[1].split()[:3] == ["concord.inbound", "4", "1"]
    assert "min.insync.replicas=1" in lines[1]


def test_strimzi_resources_are_kafka_topics_of_the_concord_cluster(default_names: None) -> None:
    documents = list(yaml.safe_load_all(strimzi_manifest(planned(replicas=3), "test")))
    assert len(documents) == len(planned())
    for document in documents:
        assert document["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert document["kind"] == "KafkaTopic"
        assert document["metadata"]["labels"] == {"strimzi.io/cluster": "concord"}
        assert document["spec"]["replicas"] == 3
        assert document["spec"]["config"]["min.insync.replicas"] == "2"


def test_the_committed_strimzi_topics_are_current(
    default_names: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["topics", "plan", "--format", "strimzi", "--replication-factor", "3", "--check"])
    assert status == 0, capsys.readouterr()


def test_check_fails_when_the_committed_topics_differ(
    default_names: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["topics", "plan", "--format", "strimzi", "--partitions", "8", "--check"])
    assert status == 1
    assert "--partitions 8 --write" in capsys.readouterr().err


tokens = st.builds(
    lambda system, value: f"{system}|{value}",
    st.sampled_from(
        [
            "https://fhir.nhs.uk/Id/nhs-number",
            "urn:concord:id:probation-crn",
            "urn:concord:referral",
        ]
    ),
    st.text("ABCDEFGHJ0123456789/-", min_size=1, max_size=12),
)


@given(token=tokens, partitions=st.integers(1, 64))
def test_a_token_is_placed_at_its_home_for_any_count(token: str, partitions: int) -> None:
    placed = placed_partition(token.encode(), KEY, partitions)
    assert placed == token_home(token, KEY, partitions)
    assert 0 <= placed < partitions


@given(token=tokens, partitions=st.integers(1, 64))
def test_a_person_id_is_placed_on_its_person_partition_for_any_count(
    token: str, partitions: int
) -> None:
    person = person_id_for_token(token, KEY)
    assert placed_partition(person.encode(), KEY, partitions) == person_partition(
        person, partitions
    )


@pytest.mark.parametrize(
    ("to", "prefix", "why"),
    [(0, "concord2.", "at least 1"), (8, "concord.", "its own prefix")],
)
def test_repartition_refuses_a_move_that_cannot_be_made_before_touching_kafka(
    default_names: None, to: int, prefix: str, why: str
) -> None:
    from deploy.repartition import RepartitionError, repartition

    with pytest.raises(RepartitionError, match=why):
        repartition(to=to, into_prefix=prefix)


def test_a_changelog_record_is_re_placed_by_its_bare_key(default_names: None) -> None:
    """Changelogs hold keys as JSON strings; the rule places the key itself."""
    from deploy.repartition import Copy, _placed

    person = person_id_for_token("urn:concord:id:probation-crn|X123456", KEY)
    old, new = planned(partitions=2), planned(partitions=8, prefix="concord2.")
    index = topics.plan().index(topics.CALENDARS.changelog)
    copy = Copy(old[index], new[index], changelog=True, group=None)
    assert _placed(f'"{person}"'.encode(), copy, KEY, 0) == person_partition(person, 8)
