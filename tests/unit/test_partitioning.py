"""The hub's partition rules agree with the clients' default partitioners."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner as AioPartitioner
from hypothesis import given
from hypothesis import strategies as st

from schemas import topics
from schemas.identifiers import HUB_PERSON, NHS_NUMBER
from schemas.keys import partition_for, person_partition
from tests.keys import home_partition, person_id_for_token

PARTITIONS = list(range(topics.PERSON_EVENTS.partitions))


@given(st.binary(min_size=1, max_size=64))
def test_partition_for_is_the_default_partitioners_choice(key: bytes) -> None:
    # faust (aiokafka) places person-events by key; the person index predicts that placement.
    expected = partition_for(key, len(PARTITIONS))
    assert AioPartitioner()(key, PARTITIONS, PARTITIONS) == expected


@given(st.from_regex(r"[0-9]{10}", fullmatch=True))
def test_an_identifiers_home_is_its_provisional_persons_partition(value: str) -> None:
    token = f"{NHS_NUMBER}|{value}"
    assert home_partition(token.encode()) == person_partition(person_id_for_token(token))


def test_a_hub_person_token_is_at_home_on_that_persons_partition() -> None:
    assert home_partition(f"{HUB_PERSON}|p-0123".encode()) == person_partition("p-0123")


def test_keys_that_are_not_tokens_keep_the_default_partitioner() -> None:
    assert home_partition(b"gp-Y01234") is None
    assert home_partition(b"|X1") is None


def test_topics_the_person_index_joins_share_a_partition_count() -> None:
    # One partition number names the same people on all three, or the single hop is wrong.
    assert topics.INBOUND.partitions == topics.ASSIGNMENTS.partitions
    assert topics.INBOUND.partitions == topics.PERSON_EVENTS.partitions
