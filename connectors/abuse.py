"""Against abuse at the partner-facing edges (the gateway, its CSV upload, the pages' sign-in): the
secret check on a small thread pool of its own, and rate limits per partner and per source
address, so that a flood of wrong secrets or requests from one place slows only that place.

Rates are `limits` rate strings ("600/minute", "10/second"), counted in a moving window in
this process's memory: each gateway process limits what reaches it (see the gateway README).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, TypeVar

from limits import RateLimitItem, parse, storage, strategies

T = TypeVar("T")
SIGN_IN_NICENESS = 10
Counted = Literal["partner", "source", "sign-in-check", "failed-sign-in"]


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """How much one partner and one source address may ask of an edge; `edge_limits()` reads
    them from the environment (README, "Configuration")."""

    partner_rate: str = "600/minute"  # requests per signed-in partner
    source_rate: str = "1200/minute"  # requests per source address, signed in or not
    # Secret checks per source address (the gateway): every sign-in whose secret is not already
    # proven counts before it is checked, so a flood of wrong secrets is cut off at once.
    sign_in_check_rate: str = "10/minute"
    failed_sign_in_rate: str = "10/minute"  # refused password sign-ins per address (the pages)
    # Threads checking secrets: each argon2id check itself runs 4 lanes in parallel (~64 MiB).
    sign_in_threads: int = 1
    sign_in_queue: int = 64  # sign-ins waiting for those threads before more are turned away


LIMIT_SETTINGS = {
    "CONCORD_RATE_PARTNER": "partner_rate",
    "CONCORD_RATE_SOURCE": "source_rate",
    "CONCORD_RATE_SIGN_IN_CHECK": "sign_in_check_rate",
    "CONCORD_RATE_FAILED_SIGN_IN": "failed_sign_in_rate",
}


def edge_limits() -> EdgeLimits:
    """The limits from CONCORD_RATE_* and CONCORD_SIGN_IN_* (ValueError names a bad one)."""
    env, defaults = os.environ, EdgeLimits()
    rates = {
        field: env.get(name, getattr(defaults, field)) for name, field in LIMIT_SETTINGS.items()
    }
    for name, field in LIMIT_SETTINGS.items():
        try:
            parse(rates[field])
        except ValueError:
            raise ValueError(
                f"{name} must be a rate such as 600/minute or 10/second, not {rates[field]!r}"
            ) from None
    counts = {}
    for name, default in (
        ("CONCORD_SIGN_IN_THREADS", defaults.sign_in_threads),
        ("CONCORD_SIGN_IN_QUEUE", defaults.sign_in_queue),
    ):
        raw = env.get(name, str(default))
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, not {raw!r}")
        counts[name] = int(raw)
    return EdgeLimits(
        **rates,
        sign_in_threads=counts["CONCORD_SIGN_IN_THREADS"],
        sign_in_queue=counts["CONCORD_SIGN_IN_QUEUE"],
    )


class RateLimits:
    """The moving-window counters of one process: `hit` counts a request and says how long to
    wait when it is one too many; `check` asks without counting."""

    def __init__(self, limits: EdgeLimits, clock: Callable[[], float] = time.time) -> None:
        self._rates: dict[Counted, RateLimitItem] = {
            "partner": parse(limits.partner_rate),
            "source": parse(limits.source_rate),
            "sign-in-check": parse(limits.sign_in_check_rate),
            "failed-sign-in": parse(limits.failed_sign_in_rate),
        }
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._clock = clock

    def hit(self, counted: Counted, key: str) -> int | None:
        """Count one request of `key`; None when within its rate, else the seconds to wait."""
        if self._limiter.hit(self._rates[counted], counted, key):
            return None
        return self._wait(counted, key)

    def check(self, counted: Counted, key: str) -> int | None:
        """None when `key` may still make a request of this kind, else the seconds to wait."""
        if self._limiter.test(self._rates[counted], counted, key):
            return None
        return self._wait(counted, key)

    def _wait(self, counted: Counted, key: str) -> int:
        reset: float = self._limiter.get_window_stats(self._rates[counted], counted, key).reset_time
        return max(1, math.ceil(reset - self._clock()))


def _yield_the_processor() -> None:
    """Run this sign-in thread, and the argon2 lane threads it starts (they inherit it), at a
    lower scheduling priority than the event loop and request work (Linux: per-thread nice)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SIGN_IN_NICENESS)


class SignInBusy(Exception):  # noqa: N818 -- reads as the condition it reports
    """More sign-ins are waiting for a secret check than the queue holds."""


class SignInPool:
    """Secret checks on threads of their own, never on the event loop and never queued behind
    other work (nor other work behind them); at most `queue` wait, the rest are turned away."""

    def __init__(self, threads: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="sign-in", initializer=_yield_the_processor
        )
        self._queue = queue
        self._waiting = 0

    async def run(self, check: Callable[..., T], *args: object) -> T:
        """`check(*args)` on the pool; SignInBusy when the queue is full."""
        if self._waiting >= self._queue:
            raise SignInBusy
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, check, *args)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        """Stop the threads once their checks are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class PasswordGuard:
    """For a sign-in form (the pages): each password checked on the sign-in threads, and an
    address with too many refused sign-ins told to wait before its next one is even checked."""

    def __init__(self, limits: EdgeLimits | None = None) -> None:
        limits = limits or EdgeLimits()
        self.rates = RateLimits(limits)
        self.pool = SignInPool(limits.sign_in_threads, limits.sign_in_queue)

    async def check(self, source: str, check: Callable[[], T | None]) -> T | int | None:
        """`check()`'s answer (None: refused, and counted against `source`), or the seconds
        `source` must wait first; SignInBusy when too many checks wait."""
        wait = self.rates.check("failed-sign-in", source)
        if wait is not None:
            return wait
        found = await self.pool.run(check)
        if found is None:
            self.rates.hit("failed-sign-in", source)
        return found
