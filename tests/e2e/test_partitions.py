"""Events take one hop when the edge sends them to their person's partition, two otherwise,
and both ways reach the same record."""

from __future__ import annotations

import json

from kafka import KafkaProducer

from connectors.fhir_input import read_text
from connectors.kafka_io import read_topic
from connectors.publish import Encoded, decide_encoded
from schemas import topics
from schemas.keys import person_partition
from services.runtime import kafka_client_config
from tests.e2e.conftest import NHS, Worker, alerts, appointment
from tests.keys import home_partition, person_id_for_token

PERSON = (NHS, "9434765919")
GP_BOOKED = appointment("gp-7", "booked", "2026-12-03T10:00:00Z", "2026-12-03T10:30:00Z", PERSON)
MHT_BOOKED = appointment("mht-7", "booked", "2026-12-03T10:10:00Z", "2026-12-03T11:00:00Z", PERSON)


def encoded(partner: str, resource: dict) -> Encoded:
    [record] = read_text(json.dumps(resource), "test.json")
    outcome = decide_encoded(record, partner)
    assert isinstance(outcome, Encoded), outcome
    return outcome


def test_an_event_on_its_home_partition_and_one_elsewhere_meet_in_one_calendar(
    worker: Worker, publish
) -> None:
    home = person_partition(person_id_for_token("|".join(PERSON)))
    assert home_partition("|".join(PERSON).encode()) == home

    publish("gp-Y01234", GP_BOOKED)  # the edge sends it home: reconciled where it lands
    elsewhere = (home + 1) % topics.INBOUND.partitions
    mht = encoded("mht-rv5", MHT_BOOKED)
    producer = KafkaProducer(**kafka_client_config(), acks="all")
    try:
        producer.send(topics.INBOUND.name, key=mht.key, value=mht.value, partition=elsewhere)
        producer.flush(timeout=30)
    finally:
        producer.close()

    raised = alerts(2)
    assert sorted((a["event_type"], a["recipient"]) for a in raised) == [
        ("alert.clash.raised", "gp-Y01234"),
        ("alert.clash.raised", "mht-rv5"),
    ]
    # Only the event that arrived away from its person's partition was re-keyed for a second hop.
    rekeyed = [json.loads(value) for _, value in read_topic(topics.PERSON_EVENTS.name)]
    assert [m["event_id"] for m in rekeyed] == [mht.event_id]
