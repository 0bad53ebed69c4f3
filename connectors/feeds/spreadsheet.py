"""Values as UK spreadsheets write them: day-first dates, 12- and 24-hour times, the text
encodings and separators of a CSV export.

Dates are read with `datetime.strptime` against a fixed list of day-first layouts and
nothing else: a reader that guesses (dateutil's `dayfirst` falls back to month-first when
the day is over 12) would turn an American export into wrong appointments instead of errors.
"""

from __future__ import annotations

import codecs
import re
from datetime import date, datetime, time

from connectors.feeds.fields import FieldError

# Day first, always. The first layout is the one errors suggest.
DATE_LAYOUTS = (
    "%d/%m/%Y",  # 31/12/2026, 1/2/2026
    "%d/%m/%y",  # 31/12/26
    "%d-%m-%Y",  # 31-12-2026
    "%d-%m-%y",  # 31-12-26
    "%d.%m.%Y",  # 31.12.2026
    "%d %b %Y",  # 31 Dec 2026
    "%d %B %Y",  # 31 December 2026
    "%d-%b-%Y",  # 31-Dec-2026 (Excel's dd-mmm-yyyy)
    "%d-%b-%y",  # 31-Dec-26
    "%d %b %y",  # 31 Dec 26
    "%Y-%m-%d",  # 2026-12-31
)
# 24-hour first; am/pm readings need the am/pm, so 9.30 alone is half past nine in the morning.
TIME_LAYOUTS = (
    "%H:%M",  # 09:30, 9:30
    "%H:%M:%S",  # 09:30:00
    "%H.%M",  # 9.30
    "%I:%M%p",  # 9:30am, 9:30 PM
    "%I.%M%p",  # 9.30am
    "%I%p",  # 9am
    "%I:%M:%S%p",  # 9:30:00 AM
)
DATE_HINT = "day first: 31/12/2026, 31/12/26, 31-12-2026, 31 Dec 2026 or 2026-12-31"
TIME_HINT = "09:30, 9:30, 9.30am or 09:30:00, London time"
# Excel on a UK Windows machine saves "CSV (Comma delimited)" in Windows-1252.
FALLBACK_ENCODING = "cp1252"
SEPARATORS = (",", ";", "\t")
_SEPT = re.compile(r"\bsept\b", re.IGNORECASE)


def _readings(value: str, layouts: tuple[str, ...]) -> set[datetime]:
    found: set[datetime] = set()
    if not value.isascii():
        return found  # strptime takes any Unicode digit: the hub reads ASCII digits only
    for layout in layouts:
        try:
            reading = datetime.strptime(value, layout)
        except ValueError:
            continue
        if "%y" in layout and reading.year < 2000:
            reading = reading.replace(year=reading.year + 100)  # 69 is 2069, not 1969
        found.add(reading)
    return found


def read_date(value: str) -> date:
    """A day-first date in one of DATE_LAYOUTS; FieldError naming the value otherwise."""
    text = " ".join(value.split())
    text = _SEPT.sub("Sep", text)  # strptime knows only "Sep"
    readings = {reading.date() for reading in _readings(text, DATE_LAYOUTS)}
    if len(readings) > 1:  # no two layouts above overlap; kept so a new one cannot slip in
        raise FieldError(f"{value!r} is ambiguous ({DATE_HINT})")
    if not readings:
        raise FieldError(f"{value!r} is not a date ({DATE_HINT})")
    return readings.pop()


def read_time(value: str) -> time:
    """A wall-clock time in one of TIME_LAYOUTS; FieldError naming the value otherwise."""
    text = "".join(value.split()).upper()  # "9.30 am" and "9.30AM" alike
    readings = {reading.time() for reading in _readings(text, TIME_LAYOUTS)}
    if len(readings) != 1:
        raise FieldError(f"{value!r} is not a time ({TIME_HINT})")
    return readings.pop()


def read_date_time(value: str) -> tuple[date, time | None]:
    """A date, with the time when one follows it (`31/12/2026 09:30`, `2026-12-31T09:30`)."""
    words = value.replace("T", " ", 1).split() if value[:4].isdigit() else value.split()
    # Try the longest date first: "31 Dec 2026 9.30 am" is a date of three words.
    for cut in range(len(words), 0, -1):
        day_text, time_text = " ".join(words[:cut]), " ".join(words[cut:])
        try:
            day = read_date(day_text)
        except FieldError:
            continue
        if not time_text:
            return day, None
        try:
            return day, read_time(time_text)
        except FieldError:
            raise FieldError(f"{value!r}: {time_text!r} is not a time ({TIME_HINT})") from None
    return read_date(value), None  # raises, naming the whole value


def decode(data: bytes, hint: str) -> str:
    """The text of a CSV export: UTF-8 (with or without a byte-order mark), UTF-16 with one
    (Excel's "Unicode text"), else Windows-1252; ValueError when it is none of them."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            reason = f"not UTF-16 text after its byte-order mark: {exc.reason}{hint}"
            raise ValueError(reason) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode(FALLBACK_ENCODING)
    except UnicodeDecodeError as exc:
        byte = data[exc.start : exc.start + 1].hex()
        raise ValueError(
            f"neither UTF-8 nor Windows-1252 text (byte 0x{byte} at offset {exc.start}){hint}"
        ) from None


def separator(header_line: str) -> str:
    """The separator a header line uses: the commonest of comma, semicolon and tab (a comma
    when none appears), so that exports from European-locale spreadsheets read as well."""
    return max(SEPARATORS, key=header_line.count)
