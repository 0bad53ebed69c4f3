"""How the hub writes an instant in what it sends (FHIR instant form, UTC with a `Z`), and reads
one in a message."""

from __future__ import annotations

from datetime import UTC, datetime


def fhir_instant(value: datetime) -> str:
    """`2026-12-03T10:00:00Z` for an aware datetime."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def read_instant(value: str) -> datetime:
    """The instant an ISO 8601 string names, with `Z` or an offset, in the zone it was written in;
    ValueError when it is not one."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
