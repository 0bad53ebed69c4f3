"""The order of a partner's versions of one resource: how the hub tells a newer change from a stale one.

One rule for the gateway and the worker: the partner's `meta.versionId` (when a whole number),
then `meta.lastUpdated` (else when the event occurred: its arrival at the edge), then the event
id, so that any delivery order picks the same winner.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from services.domain.instants import fhir_instant, read_instant


class Version(NamedTuple):
    """Total order over changes to one resource; the larger version wins."""

    number: int  # FHIR meta.versionId when it is an integer, else 0
    updated: datetime  # meta.lastUpdated, else the event's occurred_at (aware, UTC)
    event_id: str  # tie-break, so any delivery order picks the same winner


def instant(path: str, value: Any) -> datetime | None:
    """A FHIR instant as an aware UTC datetime (None when absent); ValueError naming `path`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{path}: must be a FHIR instant string")
    try:
        parsed = read_instant(value)
    except ValueError:
        raise ValueError(f"{path}: {value!r} is not a FHIR instant") from None
    if parsed.utcoffset() is None:
        raise ValueError(f"{path}: {value!r} has no timezone")
    return parsed.astimezone(UTC)


def _version_number(version_id: Any) -> int:
    # Non-numeric version ids (ETags, hashes) carry no order; lastUpdated then decides.
    # More than 18 digits would not fit the 64-bit integer the calendars table stores.
    if isinstance(version_id, str) and version_id.isascii() and version_id.isdigit():
        return int(version_id) if len(version_id) <= 18 else 0
    return 0


def version_of(resource: Mapping[str, Any], event_id: str, occurred_at: datetime) -> Version:
    """The version of a partner's resource carried by event `event_id`; ValueError for a bad meta."""
    meta = resource.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    number = _version_number(meta.get("versionId"))
    path = f"{resource.get('resourceType')}.meta.lastUpdated"
    updated = instant(path, meta.get("lastUpdated"))
    if updated is None and occurred_at.utcoffset() is not None:
        updated = occurred_at.astimezone(UTC)
    # A naive occurred_at is left for the caller's own checks to reject, rather than guessed at.
    return Version(number, updated or occurred_at, event_id)


def is_stale(incoming: Version, held: Version) -> bool:
    """True when `incoming` is older than the version held: not newer, and not the same event.

    The same event delivered again (a byte-identical resend has the same content-derived event
    id) is no change and nothing to refuse.
    """
    return incoming.event_id != held.event_id and incoming < held


def described(version: Version) -> str:
    """A version as a partner reads it: `version 2 of 2026-12-01T08:02:00Z`."""
    stamp = fhir_instant(version.updated)
    return f"version {version.number} of {stamp}" if version.number else f"the version of {stamp}"


def stale_reason(resource_type: str, incoming: Version, held: Version) -> str:
    """The sentence refusing a stale version, naming the element the order is read from."""
    return (
        f"{resource_type}.meta: {described(incoming)} is older than {described(held)} the hub "
        "already has (ordered by meta.versionId, then meta.lastUpdated): a stale version is not "
        "applied"
    )
