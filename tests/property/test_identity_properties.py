"""Invariants of the person index: no sequence of link events gives a person two NHS numbers or
two CRNs, placeholders never join anyone, and what should not depend on arrival order does not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.identifiers import (
    NHS_NUMBER,
    PROBATION_CRN,
    PersonIdentifier,
    local_system,
    without_placeholders,
)
from services.domain.identity import (
    PersonIndex,
    RefusedLink,
    Resolution,
    canonical,
    clashes,
    resolve,
)
from tests.keys import KEY, person_id_for

MRN = local_system("mht-north")
# Two values of each system, so links can disagree; shared values across systems check that
# only (system, value) pairs ever match.
POOL = [
    PersonIdentifier(system, value)
    for system in (NHS_NUMBER, PROBATION_CRN, MRN)
    for value in ("9434765919", "X123456", "4010232137", "X654321")
]
SOURCES = st.sampled_from(["probation-london", "mht-north", "gp-Y01234"])

events = st.lists(
    st.tuples(SOURCES, st.lists(st.sampled_from(POOL), min_size=1, max_size=4)),
    min_size=1,
    max_size=8,
)

# People whose identifiers never disagree: each named by one value of each system.
ALICE = [PersonIdentifier(s, v) for s, v in [(NHS_NUMBER, "9434765919"), (PROBATION_CRN, "X1")]]
ALICE.append(PersonIdentifier(MRN, "M1"))
BOB = [PersonIdentifier(s, v) for s, v in [(NHS_NUMBER, "4010232137"), (PROBATION_CRN, "X2")]]
BOB.append(PersonIdentifier(MRN, "M2"))
consistent_events = st.lists(
    st.tuples(
        SOURCES,
        st.sampled_from([ALICE, BOB]).flatmap(
            lambda person: st.lists(st.sampled_from(person), min_size=1, max_size=3)
        ),
    ),
    min_size=1,
    max_size=8,
)

Event = tuple[str, list[PersonIdentifier]]


def resolve_all(event_list: list[Event]) -> tuple[PersonIndex, list[Resolution | RefusedLink]]:
    index = PersonIndex(KEY)
    decisions = []
    for source, identifiers in event_list:
        index, decision = resolve(index, identifiers, source=source)
        decisions.append(decision)
    return index, decisions


def linked_components(event_list: list[Event]) -> set[frozenset[str]]:
    """The identifiers each chain of events joins, found without the index."""
    components: list[set[str]] = []
    for _, event in event_list:
        joined = {identifier.token() for identifier in event}
        for component in [c for c in components if c & joined]:
            components.remove(component)
            joined |= component
        components.append(joined)
    return {frozenset(component) for component in components}


@given(events)
def test_no_sequence_of_links_gives_a_person_two_values_of_one_system(
    event_list: list[Event],
) -> None:
    index, _ = resolve_all(event_list)

    for tokens in index.members.values():
        assert clashes(tokens) == ()
        assert sum(t.startswith(NHS_NUMBER + "|") for t in tokens) <= 1
        assert sum(t.startswith(PROBATION_CRN + "|") for t in tokens) <= 1


@given(events, st.data())
def test_whether_links_conflict_does_not_depend_on_their_order(
    event_list: list[Event], data: st.DataObject
) -> None:
    """A conflict is raised, in any order, exactly when all the links together would join two
    values of one system; and every conflict lies within such a set of links."""
    shuffled = data.draw(st.permutations(event_list))
    disagreeing = {c for c in linked_components(event_list) if clashes(c)}

    for order in (event_list, shuffled):
        _, decisions = resolve_all(order)
        refusals = [d for d in decisions if isinstance(d, RefusedLink)]
        assert bool(refusals) == bool(disagreeing)
        for refusal in refusals:
            assert any(refusal.conflict.tokens <= c for c in disagreeing)


@given(consistent_events, st.data())
def test_links_that_agree_give_the_same_persons_and_ids_in_any_order(
    event_list: list[Event], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(event_list))
    in_order, decisions = resolve_all(event_list)
    reordered, _ = resolve_all(shuffled)

    assert all(isinstance(d, Resolution) for d in decisions)
    assert in_order.person_of == reordered.person_of
    assert in_order.members == reordered.members
    assert set(in_order.members.values()) == linked_components(event_list)
    by_token = {i.token(): i for i in ALICE + BOB}
    for person_id, tokens in in_order.members.items():
        assert person_id == min(person_id_for(by_token[token]) for token in tokens)


@given(events)
def test_a_person_is_always_some_events_linked_identifiers_and_never_more(
    event_list: list[Event],
) -> None:
    """Refused links join nothing: each person lies within what the events link."""
    index, _ = resolve_all(event_list)
    components = linked_components(event_list)

    for person_id, tokens in index.members.items():
        assert any(tokens <= component for component in components)
        assert all(index.person_of[token] == person_id for token in tokens)


@given(events)
def test_every_id_ever_returned_leads_to_the_persons_current_id(event_list: list[Event]) -> None:
    index, decisions = resolve_all(event_list)

    for (_, event), decision in zip(event_list, decisions, strict=True):
        if isinstance(decision, Resolution):
            assert canonical(index, decision.person_id) == index.person_of[event[0].token()]


@given(events, SOURCES, st.lists(st.sampled_from(POOL), min_size=1, max_size=4))
def test_resolving_the_same_event_twice_changes_nothing_the_second_time(
    event_list: list[Event], source: str, event: list[PersonIdentifier]
) -> None:
    index, _ = resolve_all(event_list)
    once, first = resolve(index, event, source=source)
    twice, second = resolve(once, event, source=source)

    assert twice == once
    if isinstance(first, Resolution):
        assert isinstance(second, Resolution)
        assert second.person_id == first.person_id
        assert (second.merges, second.new_tokens) == ((), ())
    else:
        assert isinstance(second, RefusedLink)
        assert second.conflict == first.conflict
        assert not second.raised, "the same conflict is raised once"


PLACEHOLDERS = [PersonIdentifier(NHS_NUMBER, digit * 10) for digit in "09"]
CRNS = [PersonIdentifier(PROBATION_CRN, f"X{n:06d}") for n in range(1, 5)]


crn_with_placeholders = st.tuples(
    st.sampled_from(CRNS), st.lists(st.sampled_from(PLACEHOLDERS), max_size=2)
).map(lambda drawn: [drawn[0], *drawn[1]])


@given(st.lists(st.tuples(SOURCES, crn_with_placeholders), min_size=1, max_size=8))
def test_placeholders_never_join_two_crns(event_list: list[Event]) -> None:
    """Every path into the index leaves placeholders out, so a shared 9999999999 joins no one."""
    index, _ = resolve_all([(s, list(without_placeholders(e))) for s, e in event_list])

    assert not {p.token() for p in PLACEHOLDERS} & index.person_of.keys()
    assert all(len(tokens) == 1 for tokens in index.members.values())


# Merges: mht-north saying two of its own records are one person, among any other links.
MERGES = st.tuples(
    st.just("mht-north"),
    st.lists(
        st.sampled_from([i for i in POOL if i.system == MRN]), min_size=2, max_size=2, unique=True
    ),
)
events_with_merges = st.lists(
    st.one_of(
        st.tuples(st.just(False), SOURCES, st.lists(st.sampled_from(POOL), min_size=1, max_size=4)),
        MERGES.map(lambda merge: (True, *merge)),
    ),
    min_size=1,
    max_size=10,
)


@given(events_with_merges)
def test_no_merge_ever_gives_a_person_two_nhs_numbers_or_two_crns(
    event_list: list[tuple[bool, str, list[PersonIdentifier]]],
) -> None:
    """A partner's merge may join its own records, never two NHS numbers or two CRNs; and only
    a merge (or an operator) puts two of one partner's ids on one person."""
    index = PersonIndex(KEY)
    for is_merge, source, identifiers in event_list:
        merging = frozenset(i.token() for i in identifiers[1:]) if is_merge else frozenset()
        index, _ = resolve(index, identifiers, source=source, merging=merging)

    merged = [c.tokens for c in index.conflicts.values() if c.status == "merged"]
    for tokens in index.members.values():
        assert sum(t.startswith(NHS_NUMBER + "|") for t in tokens) <= 1
        assert sum(t.startswith(PROBATION_CRN + "|") for t in tokens) <= 1
        own = {t for t in tokens if t.startswith(MRN + "|")}
        assert len(own) <= 1 or any(own <= allowed for allowed in merged)
