"""Invariants of the person index: any order of link events gives the same persons and ids."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.identifiers import NHS_NUMBER, PROBATION_CRN, PersonIdentifier, local_system
from services.domain.identity import PersonIndex, canonical, person_id_for, resolve

# Shared values across systems check that only (system, value) pairs ever match.
POOL = [
    PersonIdentifier(system, value)
    for system in (NHS_NUMBER, PROBATION_CRN, local_system("mht-north"))
    for value in ("9434765919", "X123456", "4010232137", "X654321")
]

events = st.lists(
    st.lists(st.sampled_from(POOL), min_size=1, max_size=4),
    min_size=1,
    max_size=8,
)


def resolve_all(
    event_list: list[list[PersonIdentifier]],
) -> tuple[PersonIndex, list[tuple[str, list[PersonIdentifier]]]]:
    index = PersonIndex()
    seen = []
    for event in event_list:
        index, resolution = resolve(index, event)
        seen.append((resolution.person_id, event))
    return index, seen


def linked_components(event_list: list[list[PersonIdentifier]]) -> set[frozenset[str]]:
    """The identifiers each chain of events joins, found without the index."""
    components: list[set[str]] = []
    for event in event_list:
        joined = {identifier.token() for identifier in event}
        for component in [c for c in components if c & joined]:
            components.remove(component)
            joined |= component
        components.append(joined)
    return {frozenset(component) for component in components}


@given(events, st.data())
def test_any_order_gives_the_same_persons_and_ids(
    event_list: list[list[PersonIdentifier]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(event_list))
    in_order, _ = resolve_all(event_list)
    reordered, _ = resolve_all(shuffled)

    assert in_order.person_of == reordered.person_of
    assert in_order.members == reordered.members


@given(events)
def test_a_person_is_exactly_the_identifiers_some_chain_of_events_links(
    event_list: list[list[PersonIdentifier]],
) -> None:
    index, _ = resolve_all(event_list)

    assert set(index.members.values()) == linked_components(event_list)
    by_token = {identifier.token(): identifier for identifier in POOL}
    for person_id, tokens in index.members.items():
        assert person_id == min(person_id_for(by_token[token]) for token in tokens)
        assert all(index.person_of[token] == person_id for token in tokens)


@given(events)
def test_every_id_ever_returned_leads_to_the_persons_current_id(
    event_list: list[list[PersonIdentifier]],
) -> None:
    index, seen = resolve_all(event_list)

    for person_id, event in seen:
        assert canonical(index, person_id) == index.person_of[event[0].token()]


@given(events, st.lists(st.sampled_from(POOL), min_size=1, max_size=4))
def test_resolving_the_same_event_twice_changes_nothing_the_second_time(
    event_list: list[list[PersonIdentifier]], event: list[PersonIdentifier]
) -> None:
    index, _ = resolve_all(event_list)
    once, first = resolve(index, event)
    twice, second = resolve(once, event)

    assert twice == once
    assert second.person_id == first.person_id
    assert second.merges == ()
    assert second.new_tokens == ()
