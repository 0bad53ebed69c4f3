"""The hub's person index: which identifiers belong to one person, joined by exact match only,
and the identity conflicts it refuses to join.

A person holds at most one value of each identifier system: one NHS number, one CRN, one id
in each partner's local system. A link that would give someone a second is not applied:
`resolve` returns the conflict instead, kept until the source corrects its record or the hub
operator settles it. The one exception is a partner's own word that two of its records are one
person (a merge, `own_records`): those may share a local system, unless an NHS number or CRN
disagrees, when the conflict is raised as for any other link. Resolving returns a new index and what changed; nothing here does I/O
(person ids are keyed with the hub's secret, which the index carries: schemas/keys.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.identifiers import HUB_PERSON, PersonIdentifier, local_system
from schemas.keys import PersonKey, person_id_for, person_id_for_token
from services.domain.instants import fhir_instant


@dataclass(frozen=True, slots=True)
class Merge:
    """Person `absorbed` is now known to be person `survivor`."""

    absorbed: str
    survivor: str


# merged: not a conflict but its record, a partner having merged its own records of the person
# (kept with the conflicts because it allows the same thing an operator's link does).
ConflictStatus = Literal["open", "kept-apart", "linked", "corrected", "merged"]
Decision = Literal["keep-apart", "link"]
# Patient.link types by which a partner says another of its records is the same person.
OWN_RECORD_LINKS = frozenset({"replaces", "replaced-by", "seealso"})
# Before any conflict was raised; tests and callers without a clock use it.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Claim:
    """One source's word that some identifiers are one person: the link an event makes."""

    source: str
    tokens: tuple[str, ...]  # sorted
    # The source's record that says so ("Patient/<id>", or its own local identifier), when
    # known: the same record sent again with other identifiers is its correction.
    record: str | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """A link the hub did not apply because a person would hold two values of one system."""

    conflict_id: str
    claim: Claim
    tokens: frozenset[str]  # the claim's identifiers and those of every person it would join
    systems: tuple[str, ...]  # the systems that would hold two values
    # Each source whose data disagree, with the identifiers it sent itself: the only ones
    # it is told about.
    told: Mapping[str, frozenset[str]]
    people: tuple[str, ...]  # the hub people kept apart, as they were named when raised
    raised_at: datetime
    status: ConflictStatus = "open"
    resolved_at: datetime | None = None
    resolved_by: str | None = None  # the operator, or the source whose correction settled it
    reason: str | None = None  # the operator's reason


@dataclass(frozen=True, slots=True)
class Resolution:
    """The person an event's identifiers resolved to, and what that changed in the index."""

    person_id: str
    merges: tuple[Merge, ...]
    new_tokens: tuple[str, ...]
    settled: tuple[Conflict, ...] = ()  # conflicts this link corrected


@dataclass(frozen=True, slots=True)
class RefusedLink:
    """A link not applied: the conflict it raised (or had raised before, when `raised` is False)."""

    conflict: Conflict
    raised: bool
    settled: tuple[Conflict, ...] = ()  # earlier conflicts of the same record that this replaces


@dataclass(frozen=True, slots=True)
class Settlement:
    """An operator's decision on a conflict, and the link it applied, if it linked."""

    conflict: Conflict
    resolution: Resolution | None
    changed: bool = True  # False when the conflict was settled already


class UnknownConflict(KeyError):  # noqa: N818 -- reads as what the operator is told
    """No conflict has this id."""


class ConflictError(ValueError):
    """An operator's decision the index cannot apply, with the reason."""


@dataclass(frozen=True, slots=True)
class PersonIndex:
    """Identifier tokens grouped into persons, each named by its tokens' least `person_id_for`.

    That choice makes a person's id depend only on which identifiers it holds, never on the
    order events arrived in, so every replay and every partition ordering agrees.
    """

    key: PersonKey  # the hub's secret, which makes a token's provisional person id
    person_of: Mapping[str, str] = field(default_factory=dict)
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Old ids may still key events in flight, so they must keep leading to the person.
    merged_into: Mapping[str, str] = field(default_factory=dict)
    # token -> the sources whose applied links named it: who is told when it is disputed.
    named_by: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Conflicts involving these tokens, settled ones too: a link kept apart stays refused.
    conflicts: Mapping[str, Conflict] = field(default_factory=dict)


def holder(index: PersonIndex, token: str) -> str:
    """The person holding a token now: its linked person, else its own provisional one."""
    return index.person_of.get(token) or person_id_for_token(token, index.key)


def to_linker(envelope: Mapping[str, Any], identifiers: Sequence[PersonIdentifier]) -> bool:
    """True for an event the identity linker must see: one joining identifiers, or a Patient.

    A Patient naming one identifier joins nothing, but it may be a source's correction of a
    record whose link the linker refused.
    """
    if len(identifiers) > 1:
        return True
    resource = envelope.get("resource") or {}
    return (
        resource.get("resourceType") == "Patient"
        and len(identifiers) == 1
        and identifiers[0].system != HUB_PERSON
    )


def person_of(
    identifiers: Sequence[PersonIdentifier], assigned: str | None, key: PersonKey
) -> str | None:
    """The person an event naming these identifiers is about; None when they are several or none.

    `assigned` is the person the one identifier was linked to, if any; an identifier never
    linked is its own provisional person, so no lookup across partitions is needed.
    """
    if len(identifiers) != 1:
        return None
    if identifiers[0].system == HUB_PERSON:
        return identifiers[0].value  # a reply about a person the hub named, e.g. a referral Task
    return assigned or person_id_for(identifiers[0], key)


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


def system_of(token: str) -> str:
    """The identifier system of a `system|value` token."""
    return token.rpartition("|")[0]


def clashes(tokens: Iterable[str], allowed: Sequence[frozenset[str]] = ()) -> tuple[str, ...]:
    """The systems in which `tokens` hold more than one value, unless an operator allowed them.

    `allowed` are the identifiers of conflicts the operator settled by linking: the values
    of one system within one of them may be held together.
    """
    held: dict[str, set[str]] = {}
    for token in tokens:
        held.setdefault(system_of(token), set()).add(token)
    return tuple(
        sorted(
            system
            for system, values in held.items()
            if len(values) > 1 and not any(values <= tokens for tokens in allowed)
        )
    )


def own_records(resource: Mapping[str, Any], source: str) -> frozenset[str]:
    """The tokens of `source`'s own records a Patient from it says are this person's too: the
    other records in its `link` (a merge, `replaces`, or a link, `seealso`) in its local system.

    Only a partner's own local ids: its word on its own records, never on another's or on
    national identifiers.
    """
    if resource.get("resourceType") != "Patient":
        return frozenset()
    own = local_system(source)
    found = set()
    for link in resource.get("link") or ():
        other = link.get("other") if isinstance(link, Mapping) else None
        identifier = other.get("identifier") if isinstance(other, Mapping) else None
        if not isinstance(identifier, Mapping) or link.get("type") not in OWN_RECORD_LINKS:
            continue
        if identifier.get("system") == own and isinstance(identifier.get("value"), str):
            found.add(PersonIdentifier(own, identifier["value"]).token())
    return frozenset(found)


def record_of(
    source: str, resource_type: str, resource_id: Any, tokens: Iterable[str]
) -> str | None:
    """The source's record an event's link comes from: its Patient id, else its own local id."""
    if resource_type == "Patient" and isinstance(resource_id, str) and resource_id:
        return f"Patient/{resource_id}"
    own = sorted(t for t in tokens if system_of(t) == local_system(source))
    return own[0] if own else None


def conflict_id_for(claim: Claim, tokens: Iterable[str], key: PersonKey) -> str:
    """A conflict's id: the same claim meeting the same identifiers always gets the same id.

    Keyed like person ids, so the id reveals nothing of the identifiers behind it.
    """
    text = "\n".join((claim.source, *claim.tokens, "", *sorted(tokens)))
    return key.keyed_id(text, prefix="c", purpose=b"concord-conflict")


def resolve(
    index: PersonIndex,
    identifiers: Sequence[PersonIdentifier],
    *,
    source: str = "",
    record: str | None = None,
    at: datetime = EPOCH,
    merging: frozenset[str] = frozenset(),
) -> tuple[PersonIndex, Resolution | RefusedLink]:
    """Join `identifiers` (named together by `source`) as one person, merging the persons they
    already belong to; or, when the person would hold two values of one system, refuse.

    `merging` are tokens of the source's own records it says are this person (`own_records`):
    the source's local ids may then be held together, and the merge is kept on record so they
    stay allowed; any other system that disagrees still refuses the link.

    Work and copying are proportional to the persons touched plus a shallow copy of the
    maps; a caller holding a large index may pass one holding only those persons and the
    conflicts that involve them.
    """
    if not identifiers:
        raise ValueError("an event must name its person by at least one identifier")
    claim = Claim(source, tuple(sorted({i.token() for i in identifiers})), record)
    persons = {index.person_of[t] for t in claim.tokens if t in index.person_of}
    new_tokens = tuple(t for t in claim.tokens if t not in index.person_of)
    held = set(new_tokens).union(*(index.members[person] for person in persons))
    replaced = _replaced(index, claim, at)
    systems = clashes(held, _allowed(index))
    if not systems:
        return _join(index, claim, persons, new_tokens, replaced)

    conflict_id = conflict_id_for(claim, held, index.key)
    known = index.conflicts.get(conflict_id)
    own_records_held = _own_records_held(claim, held, merging)
    if own_records_held:
        # The source's word on its own records: only what else disagrees is a conflict, and
        # an operator who kept these people apart is not overruled.
        systems = clashes(held, [*_allowed(index), own_records_held])
        if not systems and not (known is not None and known.status == "kept-apart"):
            merged = _merge_record(index, claim, held, at)
            return _join(index, claim, persons, new_tokens, (*replaced, merged))
        systems = systems or clashes(held, _allowed(index))
    if known is not None and known.status in ("open", "kept-apart"):
        if replaced:
            index = replace(
                index, conflicts={**index.conflicts, **{c.conflict_id: c for c in replaced}}
            )
        return index, RefusedLink(known, False, replaced)
    conflict = Conflict(
        conflict_id=conflict_id,
        claim=claim,
        tokens=frozenset(held),
        systems=systems,
        told=_told(index, claim, persons, systems),
        people=tuple(sorted(persons | {person_id_for_token(t, index.key) for t in new_tokens})),
        raised_at=at,
    )
    conflicts = {**index.conflicts, **{c.conflict_id: c for c in replaced}, conflict_id: conflict}
    return replace(index, conflicts=conflicts), RefusedLink(conflict, True, replaced)


def settle(
    index: PersonIndex,
    conflict_id: str,
    decision: Decision,
    *,
    operator: str,
    reason: str,
    at: datetime,
) -> tuple[PersonIndex, Settlement]:
    """The operator's decision on an open conflict: keep the people apart, or link them after all.

    Linking allows the conflict's identifiers to be held together from then on.
    """
    conflict = index.conflicts.get(conflict_id)
    if conflict is None:
        raise UnknownConflict(conflict_id)
    if conflict.status != "open":
        return index, Settlement(conflict, None, changed=False)
    status: ConflictStatus = "kept-apart" if decision == "keep-apart" else "linked"
    settled = replace(conflict, status=status, resolved_at=at, resolved_by=operator, reason=reason)
    index = replace(index, conflicts={**index.conflicts, conflict_id: settled})
    if decision == "keep-apart":
        return index, Settlement(settled, None)
    claim = settled.claim
    persons = {index.person_of[t] for t in claim.tokens if t in index.person_of}
    new_tokens = tuple(t for t in claim.tokens if t not in index.person_of)
    held = set(new_tokens).union(*(index.members[person] for person in persons))
    if clashes(held, _allowed(index)):
        raise ConflictError(
            "the people involved have since been linked to other identifiers that disagree: "
            "keep them apart, or correct the records at their sources"
        )
    index, resolution = _join(index, claim, persons, new_tokens, ())
    assert isinstance(resolution, Resolution)  # _join never refuses
    return index, Settlement(settled, resolution)


def flags(index: PersonIndex, tokens: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The open conflicts of each person now holding one of `tokens`, by person id."""
    held: dict[str, set[str]] = {}
    for token in tokens:
        person = index.person_of.get(token)
        held.setdefault(person or person_id_for_token(token, index.key), set()).update(
            index.members[person] if person else (token,)
        )
    still_open = [c for c in index.conflicts.values() if c.status == "open"]
    return {
        person: tuple(sorted(c.conflict_id for c in still_open if c.tokens & mine))
        for person, mine in held.items()
    }


def flag_changes(
    before: PersonIndex, after: PersonIndex, tokens: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Each person whose open conflicts differ between two indexes, with those open after.

    A person absorbed by a merge ends with none: its record has moved to the survivor.
    """
    tokens = tuple(tokens)
    was, now = flags(before, tokens), flags(after, tokens)
    return {
        person: now.get(person, ())
        for person in sorted(was.keys() | now.keys())
        if now.get(person, ()) != was.get(person, ())
    }


def _allowed(index: PersonIndex) -> list[frozenset[str]]:
    """Identifiers that may be held together: linked by the operator, or merged by their source."""
    return [c.tokens for c in index.conflicts.values() if c.status in ("linked", "merged")]


def _own_records_held(claim: Claim, held: set[str], merging: frozenset[str]) -> frozenset[str]:
    """The source's local ids among `held`, when the claim is the source merging its own records
    (every `merging` token is in the claim and in its local system); else none."""
    own = local_system(claim.source)
    if not merging or not merging <= set(claim.tokens):
        return frozenset()
    if any(system_of(token) != own for token in merging):
        return frozenset()
    return frozenset(token for token in held if system_of(token) == own)


def _merge_record(index: PersonIndex, claim: Claim, held: set[str], at: datetime) -> Conflict:
    """The record of the source merging its own records: what allows them to be held together."""
    persons = {index.person_of[t] for t in held if t in index.person_of}
    new_people = {
        person_id_for_token(t, index.key) for t in claim.tokens if t not in index.person_of
    }
    return Conflict(
        conflict_id=conflict_id_for(claim, held, index.key),
        claim=claim,
        tokens=frozenset(held),
        systems=(local_system(claim.source),),
        told={claim.source: frozenset(claim.tokens)},
        people=tuple(sorted(persons | new_people)),
        raised_at=at,
        status="merged",
        resolved_at=at,
        resolved_by=claim.source,
        reason="the source merged its own records of the person",
    )


def _replaced(index: PersonIndex, claim: Claim, at: datetime) -> tuple[Conflict, ...]:
    """Open conflicts of the claim's record, now settled: the source sent the record again."""
    if claim.record is None:
        return ()
    return tuple(
        replace(c, status="corrected", resolved_at=at, resolved_by=claim.source)
        for _, c in sorted(index.conflicts.items())
        if c.status == "open"
        and c.claim.source == claim.source
        and c.claim.record == claim.record
        and c.claim.tokens != claim.tokens
    )


def _told(
    index: PersonIndex, claim: Claim, persons: set[str], systems: tuple[str, ...]
) -> dict[str, frozenset[str]]:
    """Whom to tell: the claim's source, and each source whose applied link named a value of a
    disputed system; each with the identifiers it named itself."""
    told = {claim.source: set(claim.tokens)}
    existing = set().union(*(index.members[person] for person in persons))
    disputed = [t for t in existing if system_of(t) in systems]
    for source in set().union(*(index.named_by.get(t, frozenset()) for t in disputed)):
        own = {t for t in existing if source in index.named_by.get(t, frozenset())}
        told.setdefault(source, set()).update(own)
    return {source: frozenset(tokens) for source, tokens in told.items()}


def _join(
    index: PersonIndex,
    claim: Claim,
    persons: set[str],
    new_tokens: tuple[str, ...],
    settled: tuple[Conflict, ...],
) -> tuple[PersonIndex, Resolution | RefusedLink]:
    named_by = dict(index.named_by)
    if len(claim.tokens) > 1:  # a link: its source is told if these identifiers are disputed
        for token in claim.tokens:
            sources = named_by.get(token, frozenset())
            if claim.source not in sources:
                named_by[token] = sources | {claim.source}
    conflicts = {**index.conflicts, **{c.conflict_id: c for c in settled}}

    if len(persons) == 1 and not new_tokens:
        person = next(iter(persons))
        if named_by == index.named_by and not settled:
            return index, Resolution(person, (), ())
        updated = replace(index, named_by=named_by, conflicts=conflicts)
        return updated, Resolution(person, (), (), settled)

    survivor = min(persons | {person_id_for_token(token, index.key) for token in new_tokens})
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
        PersonIndex(index.key, person_of, members, merged_into, named_by, conflicts),
        Resolution(survivor, merges, new_tokens, settled),
    )


# --- the conflict record: the operator's view (identity-conflicts topic) and the linker's state


def conflict_record(conflict: Conflict) -> dict[str, Any]:
    """A conflict as JSON-ready data: identifiers involved, sources, when, status."""
    return {
        "conflict_id": conflict.conflict_id,
        "status": conflict.status,
        "raised_at": _when(conflict.raised_at),
        "resolved_at": _when(conflict.resolved_at),
        "resolved_by": conflict.resolved_by,
        "reason": conflict.reason,
        "systems": list(conflict.systems),
        "identifiers": sorted(conflict.tokens),
        "people": list(conflict.people),
        "sources": {source: sorted(tokens) for source, tokens in sorted(conflict.told.items())},
        "claim": {
            "source": conflict.claim.source,
            "identifiers": list(conflict.claim.tokens),
            "record": conflict.claim.record,
        },
    }


def conflict_from_record(record: Mapping[str, Any]) -> Conflict:
    """The conflict `conflict_record` wrote; KeyError or ValueError when it is not one."""
    claim = record["claim"]
    resolved_at = record["resolved_at"]
    return Conflict(
        conflict_id=record["conflict_id"],
        claim=Claim(claim["source"], tuple(claim["identifiers"]), claim["record"]),
        tokens=frozenset(record["identifiers"]),
        systems=tuple(record["systems"]),
        told={source: frozenset(tokens) for source, tokens in record["sources"].items()},
        people=tuple(record["people"]),
        raised_at=datetime.fromisoformat(record["raised_at"]),
        status=_status(record["status"]),
        resolved_at=datetime.fromisoformat(resolved_at) if resolved_at else None,
        resolved_by=record["resolved_by"],
        reason=record["reason"],
    )


def _status(value: Any) -> ConflictStatus:
    for status in ("open", "kept-apart", "linked", "corrected", "merged"):
        if value == status:
            return status
    raise ValueError(f"unknown conflict status {value!r}")


def _when(value: datetime | None) -> str | None:
    return fhir_instant(value) if value else None
