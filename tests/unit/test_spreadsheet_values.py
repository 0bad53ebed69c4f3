"""Values as UK spreadsheets write them: day-first dates, times, encodings and separators."""

from __future__ import annotations

from datetime import date, time

import pytest

from connectors.feeds.fields import FieldError
from connectors.feeds.spreadsheet import (
    DATE_HINT,
    TIME_HINT,
    decode,
    read_date,
    read_date_time,
    read_time,
    separator,
)

NEW_YEARS_EVE = date(2026, 12, 31)


@pytest.mark.parametrize(
    "text",
    [
        "31/12/2026",
        "31/12/26",
        "31-12-2026",
        "31-12-26",
        "31.12.2026",
        "31 Dec 2026",
        "31 dec 2026",
        "31 December 2026",
        "31-Dec-2026",
        "31-Dec-26",
        "2026-12-31",
        " 31/12/2026 ",
    ],
)
def test_every_accepted_layout_reads_new_years_eve(text: str) -> None:
    assert read_date(text) == NEW_YEARS_EVE


def test_slashed_dates_are_day_first_never_month_first() -> None:
    assert read_date("01/02/2026") == date(2026, 2, 1)
    assert read_date("1/2/26") == date(2026, 2, 1)


def test_september_may_be_written_sept() -> None:
    assert read_date("3 Sept 2026") == date(2026, 9, 3)
    assert read_date("3 September 2026") == date(2026, 9, 3)


@pytest.mark.parametrize(
    "text",
    [
        "12/31/2026",  # month first: refused, not swapped
        "31/02/2026",
        "2026/12/31",
        "31/12",
        "Dec 31 2026",
        "31122026",
        "\uff13\uff11/12/2026",  # full-width digits
        "\u0663\u0661/12/2026",  # Arabic-Indic digits
        "tomorrow",
        "",
    ],
)
def test_a_date_in_no_accepted_layout_is_refused_naming_it(text: str) -> None:
    with pytest.raises(FieldError) as refused:
        read_date(text)
    assert str(refused.value) == f"{text!r} is not a date ({DATE_HINT})"


def test_two_digit_years_are_this_century() -> None:
    assert read_date("01/01/70") == date(2070, 1, 1)
    assert read_date("31-Dec-99") == date(2099, 12, 31)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:30", time(9, 30)),
        ("9:30", time(9, 30)),
        ("9.30", time(9, 30)),
        ("9.30am", time(9, 30)),
        ("9.30 AM", time(9, 30)),
        ("9:30pm", time(21, 30)),
        ("12:15pm", time(12, 15)),
        ("12:15am", time(0, 15)),
        ("9am", time(9, 0)),
        ("09:30:00", time(9, 30)),
        ("9:30:15 PM", time(21, 30, 15)),
        ("21:05", time(21, 5)),
    ],
)
def test_times_read_in_every_accepted_layout(text: str, expected: time) -> None:
    assert read_time(text) == expected


@pytest.mark.parametrize(
    "text", ["25:00", "9:60", "13:30pm", "0930", "half nine", "9", "", "\u0669:30"]
)
def test_a_time_in_no_accepted_layout_is_refused_naming_it(text: str) -> None:
    with pytest.raises(FieldError) as refused:
        read_time(text)
    assert str(refused.value) == f"{text!r} is not a time ({TIME_HINT})"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("31/12/2026", (NEW_YEARS_EVE, None)),
        ("31/12/2026 09:30", (NEW_YEARS_EVE, time(9, 30))),
        ("31/12/2026 09:30:00", (NEW_YEARS_EVE, time(9, 30))),
        ("31 Dec 2026 9.30 am", (NEW_YEARS_EVE, time(9, 30))),
        ("2026-12-31T09:30", (NEW_YEARS_EVE, time(9, 30))),
        ("2026-12-31 21:30", (NEW_YEARS_EVE, time(21, 30))),
    ],
)
def test_a_date_may_carry_its_time(text: str, expected: tuple[date, time | None]) -> None:
    assert read_date_time(text) == expected


def test_a_date_with_a_bad_time_names_the_time() -> None:
    with pytest.raises(FieldError) as refused:
        read_date_time("31/12/2026 25:30")
    assert str(refused.value) == f"'31/12/2026 25:30': '25:30' is not a time ({TIME_HINT})"


def test_a_bad_date_with_a_time_names_the_whole_value() -> None:
    with pytest.raises(FieldError) as refused:
        read_date_time("12/31/2026 09:30")
    assert str(refused.value) == f"'12/31/2026 09:30' is not a date ({DATE_HINT})"


def test_utf8_with_and_without_a_byte_order_mark_and_utf16_excel_text() -> None:
    text = "client_id,service\nC-1,Café £5\n"
    assert decode(text.encode(), "") == text
    assert decode(b"\xef\xbb\xbf" + text.encode(), "") == text
    assert decode(text.encode("utf-16"), "") == text  # Python writes the byte-order mark


def test_windows_1252_is_read_when_the_text_is_not_utf8() -> None:
    text = "service\n\u201cDrop-in\u201d \u2013 £5\n"
    assert decode(text.encode("cp1252"), "") == text


def test_bytes_neither_utf8_nor_windows_1252_are_refused_with_the_hint() -> None:
    with pytest.raises(
        ValueError,
        match=r"^neither UTF-8 nor Windows-1252 text \(byte 0x8d at offset 2\); save it$",
    ):
        decode(b"ab\x8dcd", "; save it")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("client_id,date,status", ","),
        ("client_id;date;status", ";"),
        ("client_id\tdate\tstatus", "\t"),
        ("Client ID;Date, of appointment;Status", ";"),
        ("client_id", ","),
    ],
)
def test_the_separator_is_the_one_the_header_uses(line: str, expected: str) -> None:
    assert separator(line) == expected
