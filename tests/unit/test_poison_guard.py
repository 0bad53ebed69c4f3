"""What the worker does when a record cannot be handled at all, and when an agent crashes:
the reason a refusal gives, and readiness turned off for good by a crash."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from schemas.codec import CodecError, letter_text, record_value
from services.stream import agents
from services.stream.app import app
from services.stream.faust_private import HubApp
from services.web import views


@pytest.fixture
def no_crashes() -> Iterator[None]:
    app.crashed_agents.clear()
    yield
    app.crashed_agents.clear()


def test_every_agent_reports_its_crash_to_the_hub_app() -> None:
    """faust passes the app's error hook to each agent; the hub's records the crash."""
    for agent in app.agents.values():
        assert agent._on_error.__func__ is HubApp._on_agent_error


def test_a_crashed_agent_turns_readiness_off_naming_it_and_logging_no_data(
    no_crashes: None,
) -> None:
    recovered = app.tables.recovery.completed
    recovered.set()  # as once the worker's tables are recovered
    try:
        assert views.is_ready()
        with capture_logs() as logs:
            asyncio.run(app._on_agent_error(agents.linker, KeyError("X123456")))
        assert app.crashed_agents == {agents.linker.name: "KeyError"}
        assert not views.is_ready()
    finally:
        recovered.clear()
    assert "X123456" not in repr(logs)
    assert [line["event"] for line in logs] == ["agent.crashed"]


def test_an_unexpected_exception_is_refused_by_its_type_only() -> None:
    """Its text may quote the record (a KeyError names the missing key, here an identifier)."""
    assert agents.unhandled("reconciler", KeyError("X123456")) == (
        "reconciler could not handle the record: KeyError"
    )
    codec = CodecError("not an envelope: subject is not an object")
    assert agents.unhandled("linker", codec).endswith(f"CodecError: {codec}")


def test_a_tombstone_is_refused_by_name_and_kept_as_nothing() -> None:
    with pytest.raises(CodecError, match="tombstone"):
        record_value(None)
    assert letter_text(None) == ""


def test_a_huge_record_is_cut_short_in_its_dead_letter() -> None:
    text = letter_text(b"\xff" + b"x" * 2_000_000)
    assert len(text) < 600_000
    assert text.startswith("\ufffdxxx")
    assert text.endswith("[truncated from 2000001 characters]")


def test_an_unreadable_deadline_is_passed_by_not_a_stopped_escalation_timer() -> None:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert agents._due("p-1", b"2026-11-30T09:00:00+00:00", now)
    assert not agents._due("p-1", b"2026-12-02T09:00:00+00:00", now)
    with capture_logs() as logs:
        for unreadable in (b"soon", b"\xff", b"2026-11-30T09:00:00", None):
            assert not agents._due("p-1", unreadable, now)
    assert {line["event"] for line in logs} == {"escalation_check.unreadable_deadline"}
