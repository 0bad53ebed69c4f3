"""Invariants of calendar reconciliation: order and repetition do not matter, no alert is
lost or repeated, clashes are symmetric, the travel buffer is honoured at its edges."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.domain.calendar import AgencyKind, Calendar, Slot, Version
from services.domain.reconciliation import (
    Alert,
    AlertKey,
    merge,
    open_alert_keys,
    overlaps,
    reconcile,
)

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
BUFFER = timedelta(minutes=30)
# A small pool of appointments, so that changes often hit the same ids and times overlap.
APPOINTMENTS: list[tuple[str, AgencyKind]] = [
    ("probation-london", "probation"),
    ("probation-london", "probation"),
    ("probation-kent", "probation"),
    ("gp-Y01234", "gp"),
    ("gp-Y01234", "gp"),
    ("mht-nelft", "mht"),
    ("vol-turning-point", "voluntary"),
]
STATUSES = [
    "booked",
    "arrived",
    "checked-in",
    "fulfilled",
    "noshow",
    "cancelled",
    "entered-in-error",
]

PROPERTY = settings(max_examples=200, deadline=None)


@st.composite
def changes(draw: st.DrawFn) -> Slot:
    """One appointment change; its event id is derived from its content, so two changes
    with equal versions are the same change delivered twice."""
    index = draw(st.integers(0, len(APPOINTMENTS) - 1))
    partner, kind = APPOINTMENTS[index]
    status = draw(st.sampled_from(STATUSES))
    timed = draw(st.integers(0, 9)) > 0
    at = draw(st.integers(0, 16)) * 15
    minutes = draw(st.sampled_from([15, 30, 60, 90]))
    location = draw(st.sampled_from([None, "office", "surgery"]))
    number = draw(st.integers(1, 4))
    start = T0 + timedelta(minutes=at)
    event_id = f"{index}|{status}|{timed}|{at}|{minutes}|{location}|{number}"
    return Slot(
        appointment_id=f"{partner}/a{index}",
        partner=partner,
        kind=kind,
        status=status,
        start=start if timed else None,
        end=start + timedelta(minutes=minutes) if timed else None,
        location=location,
        version=Version(number, T0 - timedelta(days=1) + timedelta(hours=number), event_id),
    )


def fold(changes: Iterable[Slot], person_id: str = "person-1") -> tuple[Calendar, list[Alert]]:
    calendar, alerts = Calendar(person_id), []
    for change in changes:
        calendar, new = reconcile(calendar, change, BUFFER)
        alerts += new
    return calendar, alerts


def ledger(alerts: Iterable[Alert], open_keys: Iterable[AlertKey] = ()) -> set[AlertKey]:
    """Replay alerts onto the open set, failing on a repeated raise or a stray resolve."""
    current = set(open_keys)
    for alert in alerts:
        key = (alert.kind, *alert.appointment_ids)
        if alert.action == "raised":
            assert key not in current, f"raised twice: {key}"
            current.add(key)
        else:
            assert key in current, f"resolved but not open: {key}"
            current.remove(key)
    return current


def latest(changes: Iterable[Slot]) -> dict[str, Slot]:
    winners: dict[str, Slot] = {}
    for change in changes:
        current = winners.get(change.appointment_id)
        if current is None or change.version > current.version:
            winners[change.appointment_id] = change
    return winners


@PROPERTY
@given(st.data(), st.lists(changes(), max_size=14))
def test_any_order_and_repetition_gives_the_same_calendar_and_alerts(
    data: st.DataObject, sequence: list[Slot]
) -> None:
    repeats = data.draw(st.lists(st.sampled_from(sequence), max_size=6)) if sequence else []
    delivery = data.draw(st.permutations(sequence + repeats))

    calendar, _ = fold(sequence)
    redelivered, _ = fold(delivery)

    assert redelivered == calendar
    assert dict(calendar.slots) == latest(sequence)
    assert open_alert_keys(redelivered, BUFFER) == open_alert_keys(calendar, BUFFER)


@PROPERTY
@given(st.lists(changes(), max_size=20))
def test_alerts_raised_minus_resolved_equal_the_final_open_set(sequence: list[Slot]) -> None:
    calendar, alerts = Calendar("person-1"), []
    for change in sequence:
        calendar, new = reconcile(calendar, change, BUFFER)
        for alert in new:
            # Each alert carries the slots as they stand once its change is applied.
            assert alert.slots == tuple(calendar.slots[i] for i in alert.appointment_ids)
            assert alert.person_id == "person-1"
        alerts += new
    assert ledger(alerts) == open_alert_keys(calendar, BUFFER)


@PROPERTY
@given(st.data(), st.lists(changes(), max_size=12))
def test_open_alerts_do_not_depend_on_insertion_order(
    data: st.DataObject, sequence: list[Slot]
) -> None:
    slots = list(latest(sequence).values())
    shuffled = data.draw(st.permutations(slots))
    forwards = Calendar("person-1", {s.appointment_id: s for s in slots})
    backwards = Calendar("person-1", {s.appointment_id: s for s in shuffled})
    assert open_alert_keys(forwards, BUFFER) == open_alert_keys(backwards, BUFFER)


@PROPERTY
@given(changes(), changes())
def test_clash_detection_is_symmetric(a: Slot, b: Slot) -> None:
    if a.appointment_id == b.appointment_id:
        return
    assert overlaps(a, b, BUFFER) == overlaps(b, a, BUFFER)
    ab = Calendar("person-1", {a.appointment_id: a, b.appointment_id: b})
    ba = Calendar("person-1", {b.appointment_id: b, a.appointment_id: a})
    keys = open_alert_keys(ab, BUFFER)
    assert keys == open_alert_keys(ba, BUFFER)
    for kind, first, second in keys:
        if kind == "clash":
            assert first < second


@PROPERTY
@given(
    start=st.integers(0, 24 * 60),
    minutes=st.integers(1, 240),
    buffer_minutes=st.integers(1, 120),
    later_first=st.booleans(),
)
def test_buffer_is_honoured_at_its_edges(
    start: int, minutes: int, buffer_minutes: int, later_first: bool
) -> None:
    buffer = timedelta(minutes=buffer_minutes)

    first_start = T0 + timedelta(minutes=start)
    first_end = first_start + timedelta(minutes=minutes)
    first = Slot(
        appointment_id="probation-london/p",
        partner="probation-london",
        kind="probation",
        status="booked",
        start=first_start,
        end=first_end,
        location="office",
        version=Version(1, T0, "e1"),
    )

    def pair(gap: int) -> Calendar:
        second_start = first_end + timedelta(minutes=gap)
        second = Slot(
            appointment_id="gp-Y01234/g",
            partner="gp-Y01234",
            kind="gp",
            status="booked",
            start=second_start,
            end=second_start + timedelta(minutes=30),
            location="surgery",
            version=Version(1, T0, "e2"),
        )
        ordered = (second, first) if later_first else (first, second)
        return Calendar("person-1", {s.appointment_id: s for s in ordered})

    assert open_alert_keys(pair(buffer_minutes), buffer) == frozenset()
    assert open_alert_keys(pair(buffer_minutes - 1), buffer) == {
        ("clash", "gp-Y01234/g", "probation-london/p")
    }


@PROPERTY
@given(changes(), changes())
def test_an_older_version_never_overwrites_a_newer_one(a: Slot, b: Slot) -> None:
    b = replace(b, appointment_id=a.appointment_id, partner=a.partner, kind=a.kind)
    assume(a.version != b.version)
    older, newer = sorted((a, b), key=lambda s: s.version)
    for order in ((older, newer), (newer, older)):
        calendar, _ = fold(order)
        assert calendar.slots[a.appointment_id] == newer


@PROPERTY
@given(st.lists(st.tuples(changes(), st.booleans()), max_size=16))
def test_merging_two_people_equals_having_known_them_as_one(
    tagged: list[tuple[Slot, bool]],
) -> None:
    """However changes were split between two provisional people, the merge gives the
    calendar and open alerts of one person, raising nothing that was already open."""
    a, alerts_a = fold((s for s, to_a in tagged if to_a), "provisional-a")
    b, alerts_b = fold((s for s, to_a in tagged if not to_a), "provisional-b")
    merged, alerts = merge(a, b, "person-1", BUFFER)
    whole, _ = fold(s for s, _ in tagged)

    assert merged == whole
    assert ledger(alerts, ledger(alerts_a) | ledger(alerts_b)) == open_alert_keys(whole, BUFFER)
    assert all(alert.person_id == "person-1" for alert in alerts)
    assert merge(b, a, "person-1", BUFFER) == (merged, alerts)
