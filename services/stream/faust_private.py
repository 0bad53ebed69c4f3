"""Every use of faust-streaming's private API, in one place, for the pinned version only.

faust gives no setting for these, so the hub subclasses or calls its internals: the fetch wait
of its aiokafka consumer, a corrected offset-commit rule, a web server without faust's own
pages, and the current-event variable its tables read. Each relies on the code of the version
in pyproject.toml; importing this module with another version fails with what to check
(tests/unit/test_faust_private.py checks each internal still exists).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiokafka
import faust
import structlog
from faust.streams import _current_event
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.utils.functional import consecutive_numbers
from faust.web.drivers import aiohttp as faust_aiohttp

from services.runtime import config

# The version whose internals this module was written against (pinned in pyproject.toml).
FAUST_VERSION = "0.15.3"


class FaustVersionMismatch(ImportError):  # noqa: N818 -- reads as the condition it reports
    """faust-streaming is not the version whose internals the hub relies on."""


def check_faust_version(installed: str) -> None:
    """FaustVersionMismatch unless `installed` is the pinned faust-streaming version."""
    if installed != FAUST_VERSION:
        raise FaustVersionMismatch(
            f"faust-streaming {installed} is installed, but services/stream/faust_private.py "
            f"relies on the internals of {FAUST_VERSION}: re-check each use before changing "
            "the pin in pyproject.toml"
        )


check_faust_version(faust.__version__)


# How long a fetch waits on the broker for data to arrive. faust-streaming hard-codes 1,500 ms
# in its aiokafka driver, with no setting, and an event waits that long at each hop between
# agents when traffic is light (alert latency p99 at 500 events/s: 1.7 s with it, 68 ms at 100).
FETCH_MAX_WAIT_MS = config().fetch_max_wait_ms


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read once, when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for `tp`: one past the run of handled offsets from the last commit.

        faust-streaming 0.15.3's own (transport/consumer.py, Consumer._new_offset) folds the
        offsets it believes were skipped (`_gap`) into the acked list without dropping those
        already acked, and a repeated offset ends the first run of consecutive offsets after two.
        After a rebalance they repeat: recovery resumes the stream partitions before it seeks them
        to their committed offsets (tables/recovery.py, on_recovery_completed), records fetched
        meanwhile are handled and acked, the seek puts the read offset back, and the next record
        looks as if it skipped them. Each commit (every 2.8 s) then advanced the partition by one
        offset until past the repeats: the committed offsets of a drain crept for a minute or more.
        """
        acked = self._acked[tp]
        if not acked:
            return None
        top = max(acked)
        gap = self._gap[tp]
        if gap:
            # Only below the highest ack: the agents ack in offset order, so an offset under it
            # was handled or never delivered, while one above may still be on its way.
            for interval in gap.overlap(0, top):
                acked.extend(range(interval.begin, min(interval.end, top)))
            gap.chop(0, top)
        acked[:] = sorted(set(acked))
        committed = self._committed_offset[tp]
        if committed and acked[0] - committed > 1:
            return None  # as faust: an offset before the first ack is not handled yet
        run = next(consecutive_numbers(acked))
        del acked[: len(run)]
        self._acked_index[tp].difference_update(run)
        return int(run[-1]) + 1


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class HubWeb(faust_aiohttp.Web):
    """faust's aiohttp web server with none of faust's own pages, only the hub's.

    faust serves `/table/<name>/<key>/` (any table entry: whole calendars, identifiers), `/router`
    (every worker's address and partitions), and statistics, to anyone who can reach the port.
    Request routing between workers needs none of them: a worker passes a request to another
    over HTTP, at the same port, with the partner's credentials.
    """

    default_blueprints = ()
    production_blueprints = ()
    debug_blueprints = ()
    optional_blueprints = ()


class HubApp(faust.App):
    """faust's App, on a Kafka transport whose consumer waits FETCH_MAX_WAIT_MS per fetch,
    serving only the hub's web pages, remembering which of its agents have crashed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # agent (or follower) name -> the exception type that stopped it, for /ready. Kept until
        # the process restarts: on a crash faust commits the offsets it holds (Consumer.
        # on_task_error) before its supervisor restarts the actor, so what the crashed batch
        # left unhandled may never be handled; the operator must look, not a restart hide it.
        self.crashed_agents: dict[str, str] = {}

    def note_crash(self, name: str, exc: BaseException) -> None:
        """Record that `name` stopped on `exc` (its type only: an exception can quote data)."""
        self.crashed_agents[name] = type(exc).__name__
        structlog.get_logger(__name__).error("agent.crashed", agent=name, error=type(exc).__name__)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        # faust (app/base.py, App.agent) passes this as every agent's on_error, called from
        # Agent._execute_actor when the agent's function raises, before the actor is marked dead.
        self.note_crash(agent.name, exc)
        await super()._on_agent_error(agent, exc)

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_web(self) -> Any:
        return HubWeb(self)


@contextmanager
def handling(event: Any) -> Iterator[None]:
    """Make `event` the current event while a batch is handled one event at a time.

    faust tables read and write the partition of the current event, which faust sets only
    while iterating a stream one event at a time; `take_events` hands over a list instead.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
