"""Message keys and partitions, which the edge and the hub must agree on: the provisional hub
person id of an identifier, and which partition each message goes to.

Person ids are keyed with the hub's secret (`PersonKey`): an NHS number has only about a
billion possible values, so an unkeyed hash of one could be reversed by trying them all, and
person ids reach logs and partners. Every worker and connector of one hub shares the key; there
is no default, since a key in the source would let anyone recompute person ids.

An event about an identifier not yet linked to another belongs to that identifier's provisional
person. Sending it, on the inbound topic, to the partition that person has on the person-events
topic lets the worker holding that person's record handle it on arrival; the assignments that
redirect an identifier go to the same partition, so the person index finds them beside the
identifier's events. Anything sent elsewhere (a producer that does not know this rule) still
arrives: it takes the second hop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kafka.partitioner.default import murmur2

from schemas import topics
from schemas.identifiers import HUB_PERSON, PersonIdentifier


@dataclass(frozen=True, slots=True)
class PersonKey:
    """The hub's secret person-id key, as bytes ready to key a hash."""

    digest: bytes

    @classmethod
    def from_secret(cls, secret: str) -> PersonKey:
        if not secret:
            raise ValueError("the person-id key is empty")
        return cls(hashlib.blake2b(secret.encode(), digest_size=32).digest())

    def keyed_id(self, text: str, *, prefix: str, purpose: bytes) -> str:
        """`prefix-` and 80 bits of a keyed hash of `text`: no coordination between workers is
        needed, nothing of `text` is revealed without the key, and collisions are out of reach."""
        digest = hashlib.blake2b(
            text.encode(), digest_size=16, key=self.digest, person=purpose
        ).hexdigest()
        return f"{prefix}-{digest[:20]}"

    def __repr__(self) -> str:
        return "PersonKey(…)"  # never the secret, in a log or a traceback


def person_id_for_token(token: str, key: PersonKey) -> str:
    """The provisional hub person id of an identifier given as its `system|value` token."""
    return key.keyed_id(token, prefix="p", purpose=b"concord-person")


def person_id_for(identifier: PersonIdentifier, key: PersonKey) -> str:
    """The provisional hub person id of one identifier, the same on every worker and replay."""
    return person_id_for_token(identifier.token(), key)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client) gives `key`."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def person_partition(person: str) -> int:
    """The person's partition on the person-events topic (and of the tables that follow it)."""
    return partition_for(person.encode(), topics.PERSON_EVENTS.partitions)


def token_home(token: str, key: PersonKey) -> int:
    """The partition of the person an identifier token (`system|value`) resolves to unlinked."""
    system, _, value = token.rpartition("|")
    return person_partition(value if system == HUB_PERSON else person_id_for_token(token, key))


def home_partition(message_key: bytes, key: PersonKey) -> int | None:
    """The inbound (or assignments) partition of a message keyed by an identifier token.

    None for other keys (a partner id, a hub person id): the default partitioner's choice.
    """
    token = message_key.decode("utf-8", errors="replace")
    system, sep, _ = token.rpartition("|")
    return token_home(token, key) if sep and system else None
