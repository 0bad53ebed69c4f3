"""Referral inboxes: the referrals a partner sent or received, with where each stands.

Built from the compacted referrals topic (latest entry per referral), by the CLI
directly and by each worker for its HTTP API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson


def latest_entries(messages: Iterable[tuple[bytes | None, bytes]]) -> dict[str, dict[str, Any]]:
    """The newest entry per referral from the topic's messages, oldest first."""
    entries: dict[str, dict[str, Any]] = {}
    for key, value in messages:
        if key is not None:
            entries[key.decode()] = orjson.loads(value)
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
