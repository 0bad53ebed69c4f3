"""Invariants of reading a probation feed file: the same events give the same records whichever
shape the file has (one document, a JSON array, NDJSON), plain or inside SNS notifications."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.feeds.probation import records_from_probation_text
from connectors.feeds.probation_api import DetailUnavailable

PUBLIC = Path(__file__).parents[1] / "fixtures" / "public" / "hmpps"
SAMPLES = [
    json.loads((PUBLIC / name).read_text(encoding="utf-8"))
    for name in (
        "approved-premises-person-arrived.json",
        "approved-premises-person-departed.json",
        "cas3-person-arrived.json",
        "esupervision-check-in-received.json",
        "approved-premises-booking-made.json",
        "approved-premises-person-not-arrived.json",  # needs its detail: refused here
    )
]
PROPERTY = settings(max_examples=100, deadline=None)


def no_api(_url: str) -> Mapping[str, Any]:
    raise DetailUnavailable("the probation API is not configured")


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    base = dict(draw(st.sampled_from(SAMPLES)))
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        seconds=draw(st.integers(0, 365 * 24 * 3600))
    )
    base["occurredAt"] = moment.isoformat()
    return base


def sns(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "Message": json.dumps(event),
        "MessageAttributes": {"eventType": {"Type": "String", "Value": event["eventType"]}},
    }


def outcome(text: str, origin: str) -> list[tuple[Any, ...]]:
    """What each record is, without where it was read from."""
    return [
        (r.resource, tuple(str(p) for p in r.problems), r.ignored_because)
        for r in records_from_probation_text(text, origin, no_api)
    ]


@PROPERTY
@given(st.lists(events(), min_size=1, max_size=6), st.booleans())
def test_every_shape_of_a_file_gives_the_same_records(
    found: list[dict[str, Any]], wrapped: bool
) -> None:
    items = [sns(e) if wrapped else e for e in found]
    as_ndjson = outcome("\n".join(json.dumps(e) for e in items) + "\n", "events.ndjson")
    as_array = outcome(json.dumps(items, indent=2), "events.json")
    one_by_one = [o for e in items for o in outcome(json.dumps(e, indent=4), "event.json")]
    assert as_ndjson == as_array == one_by_one
    assert len(as_ndjson) == len(items), "one record per event: never one per line"
