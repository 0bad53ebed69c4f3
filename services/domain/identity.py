"""The hub's person index: which identifiers belong to one person, joined by exact match only.

Resolving an event's identifiers returns a new index and what changed; nothing here does I/O
(the person-id key is read from the environment once, on first use).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from schemas.identifiers import PersonIdentifier

# Person ids are keyed with the hub's secret: an NHS number has only about a billion possible
# values, so an unkeyed hash of one could be reversed by trying them all, and person ids reach
# logs and partners. Every worker and connector of one hub must share the key; there is no
# default, since a key in the source would let anyone recompute person ids.
PERSON_KEY_VARIABLE = "CONCORD_PERSON_KEY"


class PersonKeyMissing(RuntimeError):  # noqa: N818 -- reads as the condition it reports
    """No hub secret is set, so no person id can be made."""


@cache
def _person_key() -> bytes:
    key = os.environ.get(PERSON_KEY_VARIABLE)
    if not key:
        raise PersonKeyMissing(f"set {PERSON_KEY_VARIABLE} to the hub's secret person-id key")
    return hashlib.blake2b(key.encode(), digest_size=32).digest()


def person_id_for(identifier: PersonIdentifier) -> str:
    """The provisional hub person id of one identifier, the same on every worker and replay."""
    return person_id_for_token(identifier.token())


def person_id_for_token(token: str) -> str:
    """The provisional hub person id of an identifier given as its `system|value` token."""
    # A keyed hash needs no coordination between workers and reveals nothing of the identifier
    # without the key; 80 bits keeps accidental collisions out of reach.
    digest = hashlib.blake2b(
        token.encode(), digest_size=16, key=_person_key(), person=b"concord-person"
    ).hexdigest()
    return f"p-{digest[:20]}"


@dataclass(frozen=True, slots=True)
class Merge:
    """Person `absorbed` is now known to be person `survivor`."""

    absorbed: str
    survivor: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """The person an event's identifiers resolved to, and what that changed in the index."""

    person_id: str
    merges: tuple[Merge, ...]
    new_tokens: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PersonIndex:
    """Identifier tokens grouped into persons, each named by its tokens' least `person_id_for`.

    That choice makes a person's id depend only on which identifiers it holds, never on the
    order events arrived in, so every replay and every partition ordering agrees.
    """

    person_of: Mapping[str, str] = field(default_factory=dict)
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Old ids may still key events in flight, so they must keep leading to the person.
    merged_into: Mapping[str, str] = field(default_factory=dict)


def lookup(index: PersonIndex, identifier: PersonIdentifier) -> str | None:
    """The person holding `identifier`, or None when no event has named it yet."""
    return index.person_of.get(identifier.token())


def canonical(index: PersonIndex, person_id: str) -> str:
    """The current id of a person that may since have been merged into another."""
    # Ids only ever decrease along merged_into, so chains cannot loop; the bound is a guard
    # against an index built by hand.
    for _ in range(len(index.merged_into) + 1):
        survivor = index.merged_into.get(person_id)
        if survivor is None:
            return person_id
        person_id = survivor
    raise ValueError("merged_into contains a cycle")


def resolve(
    index: PersonIndex, identifiers: Sequence[PersonIdentifier]
) -> tuple[PersonIndex, Resolution]:
    """Join `identifiers` as one person, merging the persons they already belong to.

    Work and copying are proportional to the persons touched plus a shallow copy of the
    maps; a caller holding a large index may pass one holding only those persons.
    """
    if not identifiers:
        raise ValueError("an event must name its person by at least one identifier")
    named = {identifier.token(): identifier for identifier in identifiers}
    persons = {index.person_of[token] for token in named if token in index.person_of}
    new_tokens = tuple(sorted(named.keys() - index.person_of.keys()))

    if len(persons) == 1 and not new_tokens:
        return index, Resolution(persons.pop(), (), ())

    survivor = min(persons | {person_id_for(named[token]) for token in new_tokens})
    absorbed = sorted(persons - {survivor})
    moved = set(new_tokens).union(*(index.members[person] for person in absorbed))

    person_of = dict(index.person_of)
    person_of.update(dict.fromkeys(moved, survivor))
    members = dict(index.members)
    for person in absorbed:
        del members[person]
    members[survivor] = members.get(survivor, frozenset()) | moved
    merged_into = dict(index.merged_into)
    merged_into.update(dict.fromkeys(absorbed, survivor))

    merges = tuple(Merge(person, survivor) for person in absorbed)
    return (
        PersonIndex(person_of, members, merged_into),
        Resolution(survivor, merges, new_tokens),
    )
