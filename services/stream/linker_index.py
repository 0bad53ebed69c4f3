"""The linker's index as its tables hold it: the slice a message touches is loaded into a
`PersonIndex` for the domain to decide on (services/domain/linking.py), and what changed is
written back. One partition: the one global view of links."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.codec import decode_internal, encode_internal
from schemas.internal import IdentityConflictRecord, ResolveConflictCommand
from services.domain.identity import Conflict, PersonIndex, conflict_from_record, conflict_record
from services.runtime import person_key
from services.stream.app import (
    linked_conflict_ids,
    linked_conflicts,
    linked_members,
    linked_person_of,
    linked_sources,
)
from services.stream.pipeline import identifiers_of


def tokens_of(message: dict[str, Any] | ResolveConflictCommand) -> set[str]:
    """The identifier tokens a message for the linker touches."""
    if isinstance(message, ResolveConflictCommand):
        stored = linked_conflicts.get(message.conflict_id)
        return set(_conflict_of(stored).identifiers) if stored else set()
    return {identifier.token() for identifier in identifiers_of(message)}


def _conflict_of(stored: bytes) -> IdentityConflictRecord:
    return decode_internal(stored, IdentityConflictRecord)


def load_index(tokens: set[str]) -> PersonIndex:
    """The slice of the linker's index touching these tokens: their persons, and the conflicts
    involving any of those persons' tokens (with the persons those conflicts involve)."""
    members: dict[str, frozenset[str]] = {}
    named_by: dict[str, frozenset[str]] = {}
    conflicts: dict[str, Conflict] = {}
    pending, seen = set(tokens), set()
    while pending:
        token = pending.pop()
        seen.add(token)
        linked = linked_person_of.get(token)
        person = linked.decode() if linked else None
        if person and person not in members and (held := linked_members.get(person)):
            members[person] = frozenset(orjson.loads(held))
            pending |= members[person] - seen
        if sources := linked_sources.get(token):
            named_by[token] = frozenset(orjson.loads(sources))
        for conflict_id in orjson.loads(linked_conflict_ids.get(token) or b"[]"):
            if conflict_id not in conflicts:
                conflict = conflict_from_record(
                    _conflict_of(linked_conflicts[conflict_id]).model_dump()
                )
                conflicts[conflict_id] = conflict
                pending |= conflict.tokens - seen
    person_of = {token: person for person, held in members.items() for token in held}
    return PersonIndex(
        key=person_key(),
        person_of=person_of,
        members=members,
        named_by=named_by,
        conflicts=conflicts,
    )


def save_index(before: PersonIndex, after: PersonIndex) -> None:
    """Write what changed between `before` and `after` to the linker's tables."""
    for person in before.members.keys() - after.members.keys():
        del linked_members[person]
    for person, tokens in after.members.items():
        if before.members.get(person) != tokens:
            linked_members[person] = orjson.dumps(sorted(tokens))
            for token in tokens:
                linked_person_of[token] = person.encode()
    for token, sources in after.named_by.items():
        if before.named_by.get(token) != sources:
            linked_sources[token] = orjson.dumps(sorted(sources))
    for conflict_id, conflict in after.conflicts.items():
        if before.conflicts.get(conflict_id) == conflict:
            continue
        record = IdentityConflictRecord.model_validate(conflict_record(conflict))
        linked_conflicts[conflict_id] = encode_internal(record)
        for token in conflict.tokens:
            known = orjson.loads(linked_conflict_ids.get(token) or b"[]")
            if conflict_id not in known:
                linked_conflict_ids[token] = orjson.dumps(sorted([*known, conflict_id]))
