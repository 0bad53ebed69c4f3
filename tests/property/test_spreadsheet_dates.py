"""Any date written in any accepted spreadsheet layout reads back as itself, day first."""

from __future__ import annotations

import re
from datetime import date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.feeds.spreadsheet import DATE_LAYOUTS, read_date, read_date_time, read_time

# Two-digit years are read as 2000-2099, so those layouts are tried on this century only.
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))
this_century = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))
layouts = st.sampled_from(DATE_LAYOUTS)


def _unpadded(text: str) -> str:
    """The way a spreadsheet writes 1/2/2026 for 01/02/2026."""
    return "/".join(part.lstrip("0") or "0" for part in text.split("/"))


@given(day=this_century, layout=layouts)
def test_any_date_in_any_layout_reads_back_as_itself(day: date, layout: str) -> None:
    assert read_date(day.strftime(layout)) == day


@given(day=dates)
def test_four_digit_year_layouts_read_any_year(day: date) -> None:
    for layout in (layout for layout in DATE_LAYOUTS if "%Y" in layout):
        assert read_date(day.strftime(layout)) == day


@given(day=this_century)
def test_slashed_dates_without_leading_zeros_are_day_first(day: date) -> None:
    assert read_date(_unpadded(day.strftime("%d/%m/%Y"))) == day


@given(day=this_century.filter(lambda d: d.day <= 12 and d.day != d.month))
def test_a_date_that_could_be_read_month_first_never_is(day: date) -> None:
    """01/02/2026 is the first of February: swapping day and month would give another date."""
    swapped = f"{day.month:02d}/{day.day:02d}/{day.year}"
    assert read_date(swapped) == date(day.year, day.day, day.month)


@given(day=this_century.filter(lambda d: d.day > 12))
def test_a_month_first_date_whose_day_is_over_twelve_is_refused_not_swapped(day: date) -> None:
    month_first = f"{day.month:02d}/{day.day:02d}/{day.year}"
    with pytest.raises(ValueError, match=re.escape(repr(month_first))):
        read_date(month_first)


@given(
    day=this_century,
    layout=layouts,
    at=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    clock=st.sampled_from(("%H:%M", "%H:%M:%S", "%I:%M%p", "%I.%M %p")),
)
def test_a_date_and_time_in_one_cell_read_back_as_themselves(
    day: date, layout: str, at: time, clock: str
) -> None:
    written = datetime.combine(day, at).strftime(f"{layout} {clock}")
    assert read_date_time(written) == (day, at)
    assert read_time(at.strftime(clock)) == at
