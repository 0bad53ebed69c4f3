"""How the hub writes an instant in what it sends: FHIR instant form, UTC with a `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def fhir_instant(value: datetime) -> str:
    """`2026-12-03T10:00:00Z` for an aware datetime."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
