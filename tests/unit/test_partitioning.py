"""The hub's partition rules agree with the clients' default partitioners."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner as AioPartitioner
from hypothesis import given
from hypothesis import strategies as st

from schemas import topics
from schemas.codec import CodecError, decode_assignment, wrap_encoded
from schemas.envelope import wrap
from schemas.identifiers import (
    HUB_PERSON,
    NHS_NUMBER,
    PROBATION_CRN,
    PersonIdentifier,
    local_system,
)
from schemas.keys import (
    checked_referral_token,
    inbound_key,
    partition_for,
    person_partition,
    referral_home,
    referral_token,
)
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


# --- a referral's Task found by its referral -----------------------------------------------------

SERVICE_TASK = {
    "resourceType": "Task",
    "id": "mht-own-1",
    "status": "accepted",
    "intent": "order",
    "focus": {"reference": "ServiceRequest/ref-1"},
}
LOCAL = PersonIdentifier(local_system("mht-rv5"), "mrn-5")


def test_a_task_naming_no_person_or_only_its_senders_own_id_is_keyed_by_its_referral() -> None:
    token = referral_token("mht-rv5", "ref-1")
    assert inbound_key(SERVICE_TASK, "mht-rv5", ()) == token
    assert inbound_key(SERVICE_TASK, "mht-rv5", (LOCAL,)) == token
    based_on = {**SERVICE_TASK, "focus": None, "basedOn": [{"reference": "ServiceRequest/ref-1"}]}
    assert inbound_key(based_on, "mht-rv5", ()) == token
    # Its home is where the hub keeps the referral's person: an unkeyed placement.
    assert home_partition(token.encode()) == referral_home(token) == person_partition(token)


def test_a_task_naming_a_shared_identifier_goes_to_that_person_as_any_event_does() -> None:
    hub = PersonIdentifier(HUB_PERSON, "p-0123")
    crn = PersonIdentifier(PROBATION_CRN, "X123456")
    assert inbound_key(SERVICE_TASK, "mht-rv5", (hub,)) == hub.token()
    assert inbound_key(SERVICE_TASK, "probation-london", (crn, LOCAL)) == crn.token()
    no_referral = {**SERVICE_TASK, "focus": {"reference": "Appointment/a-1"}}
    assert inbound_key(no_referral, "mht-rv5", (LOCAL,)) == LOCAL.token()
    assert inbound_key(no_referral, "mht-rv5", ()) == "mht-rv5"


def test_the_envelope_and_the_fast_path_agree_on_a_tasks_key() -> None:
    envelope = wrap(SERVICE_TASK, event_type="referral.task.updated", source="mht-rv5", subject=())
    key, _, _ = wrap_encoded(
        SERVICE_TASK, event_type="referral.task.updated", source="mht-rv5", subject=()
    )
    assert envelope.key() == key == referral_token("mht-rv5", "ref-1").encode()


def test_a_referral_token_is_checked_before_it_is_filed() -> None:
    token = referral_token("mht-rv5", "ref-1")
    assert decode_assignment(token.encode(), b"p-1") == (token, b"p-1")
    for bad in ("urn:concord:referral|mht-rv5", "urn:concord:referral|MHT RV5/ref-1"):
        with pytest.raises(ValueError, match="not a referral token"):
            checked_referral_token(bad)
        with pytest.raises(CodecError, match="not an assignment"):
            decode_assignment(bad.encode(), b"p-1")
