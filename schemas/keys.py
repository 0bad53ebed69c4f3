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

A referral's Task that names its person by nothing the hub's lookups share (no one, or only the
sender's own local id) is keyed by its referral instead (`found_by_referral`): the hub keeps each
referral's person under the referral's token, as it keeps each linked identifier's person.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kafka.partitioner.default import murmur2

from schemas import topics
from schemas.identifiers import (
    HUB_PERSON,
    NHS_NUMBER,
    PARTNER_ID,
    PROBATION_CRN,
    PersonIdentifier,
)

# A referral as one of its parties names it: `<partner>/<ServiceRequest id>` (its referrer, or the
# service it was delivered to). Not a person identifier: it never links anyone.
REFERRAL: Final = "urn:concord:referral"
# The systems a person is found by on any partition; a partner's local id is only its own.
SHARED_SYSTEMS: Final = frozenset({NHS_NUMBER, PROBATION_CRN, HUB_PERSON})


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


def person_partition(person: str, partitions: int | None = None) -> int:
    """The person's partition on the person-events topic (and of the tables that follow it),
    of `partitions` (default: the topic's, CONCORD_PARTITIONS)."""
    return partition_for(person.encode(), partitions or topics.PERSON_EVENTS.partitions)


def token_home(token: str, key: PersonKey, partitions: int | None = None) -> int:
    """The partition of the person an identifier token (`system|value`) resolves to unlinked;
    of a referral token, where the hub keeps the referral's person."""
    system, _, value = token.rpartition("|")
    if system == REFERRAL:
        return referral_home(token, partitions)
    person = value if system == HUB_PERSON else person_id_for_token(token, key)
    return person_partition(person, partitions)


def referral_token(partner: str, service_request_id: str) -> str:
    """The token of referral `service_request_id` as `partner` (its referrer or its service) names it."""
    return f"{REFERRAL}|{partner}/{service_request_id}"


_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def checked_referral_token(token: str) -> str:
    """`token` when it is a referral token the hub writes; ValueError saying why not."""
    system, _, named = token.partition("|")
    partner, _, referral = named.partition("/")
    if system != REFERRAL or not PARTNER_ID.fullmatch(partner) or not _FHIR_ID.fullmatch(referral):
        raise ValueError(f"not a referral token ({REFERRAL}|<partner id>/<ServiceRequest id>)")
    return token


def referral_home(token: str, partitions: int | None = None) -> int:
    """The partition a referral token's Tasks arrive on and its person is kept on: unkeyed, as
    a referral id says nothing about a person."""
    return person_partition(token, partitions)


def referral_named(resource: Mapping[str, Any]) -> str | None:
    """The id of the ServiceRequest a Task is about (Task.focus, else Task.basedOn); None if none."""
    if resource.get("resourceType") != "Task":
        return None
    for reference in (resource.get("focus"), *(resource.get("basedOn") or ())):
        target = reference.get("reference") if isinstance(reference, Mapping) else None
        found = target.removeprefix("ServiceRequest/") if isinstance(target, str) else ""
        if found and found != target:
            return found
    return None


def found_by_referral(
    resource: Mapping[str, Any], source: str, subject: Iterable[PersonIdentifier]
) -> str | None:
    """The referral token a referral's Task from `source` is keyed and found by, when it names
    its person by nothing shared (no one, or only the sender's own local id); None otherwise,
    when it goes to the person it names as any event does."""
    referral = referral_named(resource)
    if referral is None or any(system in SHARED_SYSTEMS for system, _ in subject):
        return None
    return referral_token(source, referral)


def inbound_key(
    resource: Mapping[str, Any], source: str, subject: tuple[PersonIdentifier, ...]
) -> str:
    """The key of a partner's event on the inbound topic: its referral's token (a Task found by
    its referral), else its first identifier's token, else (naming no one) its source."""
    referral = found_by_referral(resource, source, subject)
    if referral is not None:
        return referral
    return subject[0].token() if subject else source


def home_partition(message_key: bytes, key: PersonKey, partitions: int | None = None) -> int | None:
    """The inbound (or assignments) partition of a message keyed by an identifier token.

    None for other keys (a partner id, a hub person id): the default partitioner's choice.
    """
    token = message_key.decode("utf-8", errors="replace")
    system, sep, _ = token.rpartition("|")
    return token_home(token, key, partitions) if sep and system else None


def placed_partition(message_key: bytes, key: PersonKey, partitions: int) -> int:
    """The partition of `partitions` where the hub puts a record keyed `message_key`, on any of
    its topics or tables: an identifier or referral token's home, else the default partitioner's
    (a hub person id's partition, a partner's, a referral's). `concord topics repartition`
    re-places every record by it when the count changes."""
    home = home_partition(message_key, key, partitions)
    return partition_for(message_key, partitions) if home is None else home
