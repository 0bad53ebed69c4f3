"""The worker's HTTP rules decided without a broker: audit before answer, and request routing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from yarl import URL

from schemas.identifiers import NHS_NUMBER, PROBATION_CRN
from schemas.keys import person_partition
from services.stream.app import PersonRouter, app, calendars, token_person
from services.web.views import acknowledged, audited_answer
from tests.keys import person_id_for_token

ANSWER = {"person_id": "p-1", "verdict": "explained", "evidence": [{"status": "fulfilled"}]}


def outcome(send: Any, timeout_s: float = 5.0) -> Exception | None:
    return asyncio.run(acknowledged(send, timeout_s))


def delivered(result: object = None, error: Exception | None = None) -> Any:
    """A producer `send`: the record is queued, and its delivery future settles as given."""

    async def send() -> Awaitable[Any]:
        future = asyncio.get_running_loop().create_future()
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
        return future

    return send


def test_the_answer_is_given_once_kafka_has_the_audit_record() -> None:
    failure = outcome(delivered("metadata"))
    assert failure is None
    assert audited_answer(ANSWER, failure) == (200, ANSWER)


@pytest.mark.parametrize(
    "send",
    [
        delivered(error=KafkaTimeoutError()),  # the broker never acknowledged it
        delivered(error=KafkaConnectionError()),
    ],
)
def test_an_audit_record_kafka_refused_means_no_answer(send: Any) -> None:
    failure = outcome(send)
    assert failure is not None
    status, body = audited_answer(ANSWER, failure)
    assert status == 503
    assert "audit" in body["error"]
    assert "explained" not in str(body), "nothing of the answer is disclosed"


def test_a_producer_that_cannot_take_the_record_means_no_answer() -> None:
    async def send() -> Awaitable[Any]:
        raise KafkaConnectionError()

    assert isinstance(outcome(send), KafkaConnectionError)


def test_an_acknowledgement_that_never_comes_means_no_answer() -> None:
    async def send() -> Awaitable[Any]:
        return asyncio.get_running_loop().create_future()  # never settles

    assert isinstance(outcome(send, timeout_s=0.05), TimeoutError)


class FourWorkers(PersonRouter):
    """The router, with partition p of every routed table assigned to worker w<p>."""

    def table_metadata(self, table_name: str) -> dict[str, dict[str, list[int]]]:
        topic = app.tables[table_name].changelog_topic.get_topic_name()
        return {f"http://w{p}:6066": {topic: [p]} for p in range(4)}


@pytest.mark.parametrize("person", ["p-1", "p-0a1b2c3d4e5f60718293", "p-ffffffffffffffffffff"])
def test_a_request_about_a_person_goes_to_the_worker_holding_their_events(person: str) -> None:
    """The events (and the calendar they write) are on the partition of the bare person id."""
    owner = FourWorkers(app).key_store(calendars.name, person)
    assert owner == URL(f"http://w{person_partition(person)}:6066")


@pytest.mark.parametrize("token", [f"{NHS_NUMBER}|9434765919", f"{PROBATION_CRN}|X123456"])
def test_a_request_about_an_identifier_goes_to_its_provisional_persons_worker(token: str) -> None:
    """Where the identifier's link lands: beside the events naming it (schemas/keys.py)."""
    owner = FourWorkers(app).key_store(token_person.name, token)
    assert owner == URL(f"http://w{person_partition(person_id_for_token(token))}:6066")


def test_no_worker_holding_the_partition_is_a_key_error() -> None:
    """faust answers 503 for it: the partitions are being assigned."""

    class NoWorkers(PersonRouter):
        def table_metadata(self, table_name: str) -> dict[str, dict[str, list[int]]]:
            return {}

    with pytest.raises(KeyError):
        NoWorkers(app).key_store(calendars.name, "p-1")
