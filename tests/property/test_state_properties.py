"""Any calendar survives the table encoding unchanged."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.calendar import Calendar, Slot, Version
from services.domain.relationships import Relationship
from services.stream.state import decode_calendar, encode_calendar

instants = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
maybe_text = st.none() | st.text()


@st.composite
def slots(draw: st.DrawFn) -> Slot:
    start = draw(st.none() | instants)
    end = None if start is None else start + draw(st.timedeltas(timedelta(0), timedelta(days=2)))
    return Slot(
        appointment_id=draw(st.text(min_size=1)),
        partner=draw(st.text(min_size=1)),
        kind=draw(st.sampled_from(["probation", "gp", "mht", "voluntary"])),
        status=draw(st.text()),
        start=start,
        end=end,
        location=draw(maybe_text),
        version=Version(draw(st.integers(0, 2**53)), draw(instants), draw(st.text())),
        service_type=draw(maybe_text),
        based_on=draw(maybe_text),
    )


relationships = st.dictionaries(
    st.text(min_size=1),
    st.builds(
        Relationship,
        st.sampled_from(["probation", "gp", "mht", "voluntary"]),
        st.sampled_from(["case-record", "referral", "consent"]),
        st.text(),
    ),
    max_size=3,
)
known_as = st.dictionaries(
    st.text(min_size=1), st.frozensets(st.text(min_size=1), max_size=3), max_size=3
)
calendars = st.builds(
    lambda person, found, related, named: Calendar(
        person, {s.appointment_id: s for s in found}, relationships=related, known_as=named
    ),
    st.text(min_size=1),
    st.lists(slots(), max_size=8),
    relationships,
    known_as,
)


@settings(max_examples=300, deadline=None)
@given(calendars, st.none() | st.text(min_size=1))
def test_any_calendar_round_trips_through_the_encoding(
    cal: Calendar, merged_into: str | None
) -> None:
    moved = replace(cal, merged_into=merged_into)
    decoded = decode_calendar(encode_calendar(moved))
    assert decoded == moved
    for slot in decoded.slots.values():
        assert slot.version.updated.tzinfo is UTC
        assert slot.start is None or slot.start.tzinfo is UTC
