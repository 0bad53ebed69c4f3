"""Invariants of the data-quality rules, over any sequence of appointment changes from several
partners: a flag changes the calendar only by keeping what it held, everything else is decided as
without the rules, a cancellation never takes an outcome, and a flag goes to the sender."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import topics
from schemas.codec import decode
from schemas.identifiers import NHS_NUMBER
from services.domain import person
from services.domain.appointments import slot_from_appointment
from services.domain.calendar import Calendar, Slot, apply_change, stale_change
from services.domain.data_quality import OUTCOME_STATUSES
from services.domain.decisions import DataQualityFlagged, Decision, UpdateRefused
from services.domain.instants import read_instant
from services.domain.person import decide
from services.stream.outbox import render
from tests.property.test_calendar_properties import changes
from tests.property.test_outbox_properties import NOW, PERSON, RULES, appointment, envelope

PROPERTY = settings(max_examples=200, deadline=None)
# Few appointments, versions and times, so that ids, versions and times often meet.
IDS = [("gp-Y01234", "g0"), ("gp-Y01234", "g1"), ("gp-Y01234", "g2"), ("vol-recovery", "v0")]
STATUSES = ["booked", "booked", "cancelled", "noshow", "fulfilled", "arrived", "pending"]
LIFECYCLE = ["booked", "cancelled", "noshow", "fulfilled"]


def change(
    source: str, fhir_id: str, status: str, number: int, at: tuple[int, int]
) -> dict[str, Any]:
    """Version `number` of a partner's appointment on 3 December, `at` (start, end) in minutes."""
    start, end = at
    resource = {
        "resourceType": "Appointment",
        "id": fhir_id,
        "meta": {"versionId": str(number), "lastUpdated": f"2026-11-30T08:0{number}:00Z"},
        "status": status,
        "start": f"2026-12-03T{start // 60:02d}:{start % 60:02d}:00Z",
        "end": f"2026-12-03T{end // 60:02d}:{end % 60:02d}:00Z",
    }
    return envelope(source, resource, NHS_NUMBER, "9434765919")


times = st.tuples(st.integers(0, 4), st.sampled_from([15, 30, 60])).map(
    lambda t: (600 + 15 * t[0], 600 + 15 * t[0] + t[1])
)


@st.composite
def one_partners_changes(draw: st.DrawFn) -> dict[str, Any]:
    """A change to one of a few appointments, mostly one partner's, at a few times."""
    source, fhir_id = draw(st.sampled_from(IDS))
    status, number = draw(st.sampled_from(STATUSES)), draw(st.integers(1, 3))
    return change(source, fhir_id, status, number, draw(times))


@st.composite
def lifecycles(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Successive versions of one appointment (booked, cancelled, missed...)."""
    source, fhir_id = draw(st.sampled_from(IDS))
    statuses = draw(st.lists(st.sampled_from(LIFECYCLE), min_size=2, max_size=4))
    at = draw(times)
    return [change(source, fhir_id, s, n, at) for n, s in enumerate(statuses, 1)]


@st.composite
def deliveries(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Lifecycles and odd changes from several partners, in order or interleaved in any order."""
    odd = st.one_of(one_partners_changes(), changes().map(appointment))
    singles = draw(st.lists(odd, max_size=8))
    versions = [m for lifecycle in draw(st.lists(lifecycles(), max_size=3)) for m in lifecycle]
    if draw(st.booleans()):
        return singles + versions
    return draw(st.permutations(singles + versions))


sequences = deliveries()


def slot_of(message: Mapping[str, Any]) -> Slot:
    """The change a message carries, as the calendar would keep it."""
    return slot_from_appointment(
        message["resource"],
        source=message["source"],
        kind=RULES.directory.kind_of(message["source"]),
        event_id=message["event_id"],
        occurred_at=read_instant(message["occurred_at"]),
    )


@contextmanager
def without_the_rules() -> Iterator[None]:
    """decide() as it was before the data-quality rules: no contradiction is ever found."""
    with patch.object(person, "contradictions", lambda calendar, slot: ()):
        yield


def flags(decisions: list[Decision]) -> list[DataQualityFlagged]:
    return [d for d in decisions if isinstance(d, DataQualityFlagged)]


def steps(
    sequence: list[dict[str, Any]],
) -> Iterator[tuple[Calendar, dict[str, Any], Calendar, list[Decision]]]:
    """Each message with the record before it, the record after it, and what it decided."""
    record = Calendar(PERSON)
    for message in sequence:
        after, decisions = decide(record, message, RULES)
        yield record, message, after, decisions
        record = after


@PROPERTY
@given(sequences)
def test_a_flag_changes_the_calendar_only_by_keeping_what_it_held(
    sequence: list[dict[str, Any]],
) -> None:
    for before, message, after, decisions in steps(sequence):
        change = slot_of(message)
        found = flags(decisions)
        if found and not found[0].applied:
            held = before.slots[change.appointment_id]
            assert after is before
            assert decisions == found, "kept and told, nothing else"
            reused = held.version[:2] == change.version[:2]
            cancelled = held.status == "cancelled" and change.status in OUTCOME_STATUSES
            assert reused or cancelled, "the held state is kept only where a rule defines it"
        else:
            expected = before if stale_change(before, change) else apply_change(before, change)
            assert after.slots == expected.slots


@PROPERTY
@given(sequences)
def test_apart_from_the_flag_every_message_decides_what_it_did_without_the_rules(
    sequence: list[dict[str, Any]],
) -> None:
    for before, message, after, decisions in steps(sequence):
        found = flags(decisions)
        if found and not found[0].applied:
            continue  # the defensible state: the one change the rules make
        with without_the_rules():
            unflagged_after, unflagged = decide(before, message, RULES)
        assert after == unflagged_after
        assert [d for d in decisions if not isinstance(d, DataQualityFlagged)] == unflagged


@PROPERTY
@given(sequences)
def test_a_cancelled_appointment_never_takes_an_outcome(sequence: list[dict[str, Any]]) -> None:
    for before, _, after, _ in steps(sequence):
        for appointment_id, held in before.slots.items():
            if held.status == "cancelled":
                assert after.slots[appointment_id].status not in OUTCOME_STATUSES


@PROPERTY
@given(sequences)
def test_a_flag_is_addressed_to_the_sender_of_the_message_that_raised_it_and_told_once(
    sequence: list[dict[str, Any]],
) -> None:
    for _, message, _, decisions in steps(sequence):
        found = flags(decisions)
        assert len(found) <= 1, "one message per event, however many rules fired"
        assert not (found and any(isinstance(d, UpdateRefused) for d in decisions)), (
            "a change is flagged or refused, never both"
        )
        for flag in found:
            assert flag.message is message
            [told] = [o for o in render([flag], NOW) if o.topic is topics.OUTBOUND]
            assert told.key == message["source"].encode()
            extension = decode(told.value).resource["extension"][1]
            assert extension["valueIdentifier"]["value"] == message["event_id"]
