"""Which partition a message goes to, so that most events need one hop, not two.

An event about an identifier not yet linked to another belongs to that identifier's
provisional person. Sending it, on the inbound topic, to the partition that person has on
the person-events topic lets the worker holding that person's record handle it on arrival;
the assignments that redirect an identifier go to the same partition, so the person index
finds them beside the identifier's events. Anything sent elsewhere (a producer that does not
know this rule) still arrives: it takes the second hop.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2

from schemas import topics
from schemas.identifiers import HUB_PERSON
from services.domain.identity import person_id_for_token


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client) gives `key`."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def person_partition(person: str) -> int:
    """The person's partition on the person-events topic (and of the tables that follow it)."""
    return partition_for(person.encode(), topics.PERSON_EVENTS.partitions)


def home_partition(key: bytes) -> int | None:
    """The inbound (or assignments) partition of a message keyed by an identifier token.

    None for other keys (a partner id, a hub person id): the default partitioner's choice.
    """
    token = key.decode("utf-8", errors="replace")
    system, sep, _ = token.rpartition("|")
    return token_home(token) if sep and system else None


def token_home(token: str) -> int:
    """The partition of the person an identifier token (`system|value`) resolves to unlinked."""
    system, _, value = token.rpartition("|")
    return person_partition(value if system == HUB_PERSON else person_id_for_token(token))
