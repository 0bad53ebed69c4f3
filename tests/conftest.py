"""Shared fixtures: the real Kafka broker for integration and end-to-end tests.

Tests under tests/integration and tests/e2e are marked `kafka` and use the
broker that `concord kafka start` runs (or KAFKA_BOOTSTRAP_SERVERS). Each test
gets topics under a fresh prefix, so tests never read each other's messages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.demo import use_demo_settings

ROOT = Path(__file__).parent.parent
use_demo_settings()  # tests run on the demo partners; every process they start inherits them
NEEDS_KAFKA = ("integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in NEEDS_KAFKA for part in Path(str(item.fspath)).relative_to(ROOT).parts[:2]):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker's bootstrap address, starting the local broker if it is not running."""
    from deploy.kafka import local

    return local.start()


@pytest.fixture
def topics(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh topic prefix for this test, with every catalogue topic created under it.

    The topics (and the workers' changelogs under the same prefix) are deleted afterwards:
    a single-node broker holding thousands of partitions runs short of memory.
    """
    from deploy.topics import create_topics, delete_topics_with_prefix

    prefix = f"test-{uuid.uuid4().hex[:10]}."
    monkeypatch.setenv("CONCORD_TOPIC_PREFIX", prefix)
    create_topics()
    yield prefix
    # The broker the topics were made on, even if the test pointed the environment elsewhere.
    delete_topics_with_prefix(prefix, bootstrap=kafka_bootstrap)


def run_concord(
    *args: str, timeout_s: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `concord` command in a subprocess with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "services.ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "CONCORD_LOG_FORMAT": "json", **(env or {})},
        cwd=ROOT,
        check=False,
    )
