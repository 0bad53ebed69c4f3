"""Referral inboxes: the referrals a partner sent or received, with where each stands.

Built from the compacted referrals topic (latest entry per referral), by the CLI
directly and by each worker for its HTTP API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from schemas.codec import CodecError, decode_internal
from schemas.internal import ReferralInboxEntry


def entry_of(key: bytes | None, value: bytes | None) -> tuple[str, dict[str, Any]]:
    """(referral id, entry) of a referrals record (schemas/internal.py's ReferralInboxEntry, as
    a dict); CodecError when it is not an entry."""
    try:
        referral_id = (key or b"").decode()
    except UnicodeDecodeError as exc:
        raise CodecError("referral key is not UTF-8 text") from exc
    if not referral_id:
        raise CodecError("not a referral inbox entry: the record has no key")
    return referral_id, decode_internal(value, ReferralInboxEntry).model_dump()


def latest_entries(
    messages: Iterable[tuple[bytes | None, bytes | None]],
    read: Callable[[bytes | None, bytes | None], tuple[str, dict[str, Any]]] = entry_of,
) -> dict[str, dict[str, Any]]:
    """The newest entry per key of a compacted topic's messages, read by `read` (by default
    referral inbox entries); records `read` refuses (CodecError) are skipped."""
    entries: dict[str, dict[str, Any]] = {}
    for key, value in messages:
        try:
            entry_key, entry = read(key, value)
        except CodecError:
            continue  # not an entry the hub wrote: nothing to show
        entries[entry_key] = entry
    return entries


def inbox(
    entries: Mapping[str, Mapping[str, Any]], partner: str, status: str | None = None
) -> list[dict[str, Any]]:
    """The referrals addressed to or sent by `partner`, optionally in one status, newest first."""
    mine = [
        dict(e)
        for e in entries.values()
        if partner in (e.get("referrer"), e.get("recipient"))
        and (status is None or e.get("status") == status)
    ]
    return sorted(mine, key=lambda e: e.get("updated") or "", reverse=True)


def inbox_line(entry: Mapping[str, Any], partner: str) -> str:
    """One readable line: direction, referral, status, category, urgency, deadline, first appointment."""
    direction = (
        f"to {entry.get('recipient') or '(nobody)'}"
        if entry["referrer"] == partner
        else f"from {entry['referrer']}"
    )
    extra = []
    if entry.get("first_appointment"):
        extra.append("first appointment booked")
    if entry.get("escalated"):
        extra.append("ESCALATED")
    if entry.get("reason"):
        extra.append(f"reason: {entry['reason']}")
    return (
        f"{entry['id']:<14} {direction:<22} {entry['status']:<12} {entry.get('category') or '-':<27} "
        f"{entry['urgency']:<8} due {entry.get('deadline') or '-'}"
        + ("  " + "; ".join(extra) if extra else "")
    )
