"""The hub's clock: real time, shifted by CONCORD_CLOCK_SHIFT_HOURS for demos and tests of deadlines."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta


def now() -> datetime:
    """The current time as the hub sees it (aware, UTC)."""
    shift = float(os.environ.get("CONCORD_CLOCK_SHIFT_HOURS", "0"))
    return datetime.now(UTC) + timedelta(hours=shift)
