"""Replaying a person's event after a crash, as a restarted worker does (services/stream/batch.py):
before its change was stored, the event makes the same outputs under the same ids, whenever it is
replayed; after, it makes none. So a replay repeats an alert, never loses one or makes a new one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import topics
from services.domain.decisions import Rules
from services.runtime import ROOT, partner_directory, service_directory
from services.stream.pipeline import person_event
from tests.unit.test_person import appointment

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DIRECTORY = partner_directory(ROOT / "deploy" / "demo" / "partners.yaml")
SERVICES = service_directory(ROOT / "deploy" / "services.yaml")
PARTNERS = ["probation-london", "vol-recovery", "gp-Y01234", "mht-rv5"]
STATUSES = ["booked", "arrived", "fulfilled", "cancelled", "noshow"]
PROPERTY = settings(max_examples=150, deadline=None)


def rules(minutes_later: int) -> Rules:
    """The rules as a worker started `minutes_later` after START applies them."""
    now = START + timedelta(minutes=minutes_later)
    return Rules(directory=DIRECTORY, now=now, services=SERVICES)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """An appointment event of one of the partners: any status, hour and version."""
    partner = draw(st.sampled_from(PARTNERS))
    hour = draw(st.integers(8, 12))
    return appointment(
        partner,
        f"{partner}-{draw(st.integers(1, 3))}",
        draw(st.sampled_from(STATUSES)),
        f"{hour:02d}:{draw(st.sampled_from(['00', '30']))}",
        f"{hour + 1:02d}:00",
        version=draw(st.integers(1, 3)),
    )


def outputs(outs: list[Any]) -> list[tuple[str, bytes, str | None]]:
    """Each output's topic, key, and the event id it carries (None for one without)."""
    found = []
    for out in outs:
        value = orjson.loads(out.value)
        found.append((out.topic.name, out.key, value.get("event_id") or value.get("counted_id")))
    return found


def stored_after(history: list[dict[str, Any]]) -> bytes | None:
    """The person's stored record after each event of `history` was applied and stored."""
    stored = None
    for message in history:
        step = person_event(stored, message, rules(0))
        stored = step.stored if step.stored is not None else stored
    return stored


@PROPERTY
@given(st.lists(events(), max_size=8), events(), st.integers(0, 600), st.integers(0, 600))
def test_an_event_not_yet_stored_makes_the_same_outputs_whenever_it_is_replayed(
    history: list[dict[str, Any]], message: dict[str, Any], first: int, again: int
) -> None:
    before = stored_after(history)
    handled = person_event(before, message, rules(first))
    replayed = person_event(before, message, rules(again))
    assert outputs(replayed.outs) == outputs(handled.outs)
    assert replayed.stored == handled.stored


@PROPERTY
@given(st.lists(events(), max_size=8), events(), st.integers(0, 600))
def test_an_event_already_stored_makes_no_new_output_when_replayed(
    history: list[dict[str, Any]], message: dict[str, Any], later: int
) -> None:
    before = stored_after(history)
    handled = person_event(before, message, rules(0))
    applied = handled.stored if handled.stored is not None else before
    replayed = person_event(applied, message, rules(later))
    # Nothing changes again; what is said again (a contradiction flagged to its sender) is
    # said under the id it had.
    assert replayed.stored is None
    assert set(outputs(replayed.outs)) <= set(outputs(handled.outs))
    assert not any(out.topic.name == topics.ALERTS.name for out in replayed.outs)
