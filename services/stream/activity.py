"""The partner-activity topic's record: when the hub last heard from a partner.

Workers write one per partner at most once a second; every worker reads the compacted
topic whole to tell an officer how fresh each partner's feed is.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from schemas.codec import CodecError, peek


def activity_record(partner: str, recorded_at: str) -> bytes:
    """The record saying `partner` was heard from at `recorded_at` (an envelope's recorded_at)."""
    return orjson.dumps({"partner": partner, "last_heard": recorded_at})


def heard_from(value: bytes | None) -> tuple[str, datetime]:
    """(partner, when last heard) of a record; CodecError when it is not one."""
    data = peek(value or b"")
    partner, when = data.get("partner"), data.get("last_heard")
    if not isinstance(partner, str) or not isinstance(when, str):
        raise CodecError("not a partner-activity record: partner and last_heard must be strings")
    try:
        heard = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CodecError("not a partner-activity record: last_heard is not a date-time") from exc
    if heard.tzinfo is None:
        raise CodecError("not a partner-activity record: last_heard has no UTC offset")
    return partner, heard
