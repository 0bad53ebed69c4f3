"""The partner-activity topic's record: when the hub last heard from a partner.

Workers write one per partner at most once a second; every worker reads the compacted
topic whole to tell an officer how fresh each partner's feed is. The record is
schemas/internal.py's PartnerActivity.
"""

from __future__ import annotations

from datetime import datetime

from schemas.codec import CodecError, decode_internal, encode_internal
from schemas.internal import PartnerActivity


def activity_record(partner: str, recorded_at: str) -> bytes:
    """The record saying `partner` was heard from at `recorded_at` (an envelope's recorded_at)."""
    return encode_internal(PartnerActivity(partner=partner, last_heard=recorded_at))


def heard_from(value: bytes | None) -> tuple[str, datetime]:
    """(partner, when last heard) of a record; CodecError when it is not one."""
    record = decode_internal(value, PartnerActivity)
    try:
        heard = datetime.fromisoformat(record.last_heard.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CodecError("not a partner-activity record: last_heard is not a date-time") from exc
    if heard.tzinfo is None:
        raise CodecError("not a partner-activity record: last_heard has no UTC offset")
    return record.partner, heard
