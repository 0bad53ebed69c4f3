"""Invariants of multi-day evidence (an Encounter's stay, perhaps still under way) against a
probation expectation for a whole day: when they overlap, and what later versions do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.appointments import slot_from_encounter
from services.domain.calendar import Calendar, Slot, Version
from services.domain.instants import fhir_instant
from services.domain.reconciliation import (
    is_explained_absence,
    open_alert_keys,
    overlaps,
    reconcile,
)

DAY0 = datetime(2026, 12, 1, tzinfo=UTC)
BUFFER = timedelta(minutes=30)
PROPERTY = settings(max_examples=200, deadline=None)


def expected_day(day: int) -> Slot:
    """A probation expectation for one day, no time given: the whole day, missed."""
    start = DAY0 + timedelta(days=day)
    return Slot(
        "probation-london/day",
        "probation-london",
        "probation",
        "noshow",
        start,
        start + timedelta(days=1),
        None,
        Version(1, DAY0, "e-day"),
    )


@st.composite
def stays(draw: st.DrawFn) -> tuple[datetime, datetime | None]:
    """A stay's start and end (None: still under way), over as many as five days."""
    start = DAY0 + timedelta(minutes=15 * draw(st.integers(0, 4 * 24 * 6)))
    if draw(st.booleans()):
        return start, None
    return start, start + timedelta(minutes=15 * draw(st.integers(0, 4 * 24 * 5)))


def encounter(status: str, start: datetime, end: datetime | None, version: int) -> Slot:
    period = {"start": fhir_instant(start)}
    if end is not None:
        period["end"] = fhir_instant(end)
    resource = {
        "resourceType": "Encounter",
        "id": "stay-1",
        "meta": {"versionId": str(version)},
        "status": status,
        "period": period,
    }
    return slot_from_encounter(
        resource, source="mht-rv5", kind="mht", event_id=f"e-{version}", occurred_at=DAY0
    )


@PROPERTY
@given(stays(), st.integers(0, 6), st.sampled_from(["arrived", "in-progress", "finished"]))
def test_an_attended_stay_explains_a_missed_day_exactly_when_they_meet(
    stay: tuple[datetime, datetime | None], day: int, status: str
) -> None:
    start, end = stay
    evidence = encounter(status, start, end, 1)
    missed = expected_day(day)
    # the model: a stay under way lasts on; a finished one with no end is its start alone
    last = end if end is not None else (None if status != "finished" else start)
    meet = start < missed.end + BUFFER and (last is None or missed.start < last + BUFFER)
    assert overlaps(missed, evidence, BUFFER) is overlaps(evidence, missed, BUFFER) is meet
    assert is_explained_absence(missed, evidence)
    keys = open_alert_keys(Calendar("p", {s.appointment_id: s for s in (missed, evidence)}))
    assert (("explained-absence", missed.appointment_id, evidence.appointment_id) in keys) is meet


@PROPERTY
@given(stays(), st.integers(0, 6), st.integers(0, 4 * 24 * 6))
def test_ending_a_stay_never_explains_more_than_it_did_while_under_way(
    stay: tuple[datetime, datetime | None], day: int, quarter_hours: int
) -> None:
    start, _ = stay
    ended = start + timedelta(minutes=15 * quarter_hours)
    missed = expected_day(day)
    if overlaps(missed, encounter("finished", start, ended, 2), BUFFER):
        assert overlaps(missed, encounter("in-progress", start, None, 1), BUFFER)


@PROPERTY
@given(stays(), st.integers(0, 6), st.sampled_from(["cancelled", "entered-in-error"]))
def test_a_withdrawal_leaves_no_explained_absence_whatever_the_delivery_order(
    stay: tuple[datetime, datetime | None], day: int, withdrawal: str
) -> None:
    start, end = stay
    versions = [
        encounter("in-progress", start, None, 1),
        encounter("finished", start, end or start + timedelta(days=2), 2),
        encounter(withdrawal, start, end, 3),
    ]
    for order in permutations(versions):
        calendar = Calendar("p", {"probation-london/day": expected_day(day)})
        for slot in order:
            calendar, _ = reconcile(calendar, slot, BUFFER)
        assert calendar.slots["mht-rv5/Encounter/stay-1"].status == withdrawal
        assert open_alert_keys(calendar, BUFFER) == frozenset()
