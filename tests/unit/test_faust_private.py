"""The faust internals the hub relies on (services/stream/faust_private.py) are still there,
and only the pinned faust-streaming version is accepted."""

from __future__ import annotations

import inspect
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path

import aiokafka
import faust
import pytest
from faust import streams
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.web.drivers import aiohttp as faust_aiohttp

from services.stream import faust_private

ROOT = Path(__file__).parents[2]


def test_the_pinned_version_is_the_one_the_module_was_written_for() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [d for d in project["project"]["dependencies"] if d.startswith("faust-streaming")]
    assert pins == [f"faust-streaming=={faust_private.FAUST_VERSION}"]
    assert faust.__version__ == faust_private.FAUST_VERSION


def test_another_version_is_refused_naming_what_to_check() -> None:
    faust_private.check_faust_version(faust_private.FAUST_VERSION)
    with pytest.raises(faust_private.FaustVersionMismatch, match=r"faust_private\.py"):
        faust_private.check_faust_version("0.16.0")


def test_the_current_event_variable_is_there() -> None:
    assert isinstance(streams._current_event, ContextVar)


def test_the_consumer_internals_are_there() -> None:
    # The fetch wait the consumer thread overrides is read from this attribute.
    assert "self._fetch_max_wait_ms" in inspect.getsource(aiokafka.AIOKafkaConsumer.__init__)
    thread = faust_aiokafka.AIOKafkaConsumerThread
    assert callable(thread._create_worker_consumer)
    assert callable(faust_aiokafka.Consumer._new_consumer_thread)
    assert faust_aiokafka.Transport.Consumer is faust_aiokafka.Consumer
    # The commit rule replaced reads and writes these bookkeeping attributes.
    source = inspect.getsource(faust_consumer.Consumer._new_offset)
    for name in ("_acked", "_gap", "_committed_offset", "_acked_index"):
        assert re.search(rf"self\.{name}\b", source), name


def test_the_app_and_web_hooks_are_there() -> None:
    assert callable(faust.App._new_transport)
    assert callable(faust.App._new_web)
    for blueprints in (
        "default_blueprints",
        "production_blueprints",
        "debug_blueprints",
        "optional_blueprints",
    ):
        assert hasattr(faust_aiohttp.Web, blueprints)
    assert faust_private.HubWeb.default_blueprints == ()
