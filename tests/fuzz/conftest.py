"""The fuzz runner: feeds mutated inputs to an entry point and collects every input it fails on.

`CONCORD_FUZZ_INPUTS` sets how many inputs each format gets (the test suite's short run uses a
few hundred; `make fuzz` 10,000), `CONCORD_FUZZ_SEED` which ones (the same seed gives the same
inputs, so a failure is reproduced by running again with its seed). A long run prints its
progress and a summary line per format to the terminal.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import pytest

from tests.fuzz.mutations import mutants

PROGRESS_EVERY_S = 10.0
SHOWN_FAILURES = 3


@dataclass
class Failure:
    """An input an entry point raised on, and how to make it again."""

    number: int
    data: bytes
    trace: str


@dataclass
class Fuzz:
    """Runs entry points over mutated inputs; see the module docstring for the settings."""

    count: int
    seed: int
    loud: bool
    quiet: Callable[[], AbstractContextManager[object]] = nullcontext
    failures: list[Failure] = field(default_factory=list)

    def inputs(self, name: str, seeds: list[bytes], kind: str, short: int) -> Iterator[bytes]:
        """Mutants of the seeds: `short` of them in the test suite's run, `count` in a long one."""
        count = self.count or short
        rng = random.Random(f"{self.seed}/{name}")
        started = last = time.monotonic()
        done = 0
        for done, data in enumerate(mutants(seeds, kind, rng, count), start=1):
            yield data
            if self.loud and time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                rate = done / (last - started)
                self._say(f"fuzz {name}: {done}/{count} inputs ({rate:.0f}/s)")
        elapsed = time.monotonic() - started
        if self.loud:
            failed = len(self.failures)
            self._say(f"fuzz {name}: {done} inputs in {elapsed:.1f} s, {failed} failed")

    def run(
        self,
        name: str,
        seeds: list[bytes],
        kind: str,
        short: int,
        entry_point: Callable[[bytes], object],
        *,
        allowed: tuple[type[BaseException], ...] = (),
    ) -> None:
        """Feed every input to `entry_point`; fail listing the inputs it raised on (but `allowed`)."""
        assert seeds, f"no seed inputs for {name}"
        for number, data in enumerate(self.inputs(name, seeds, kind, short), start=1):
            try:
                entry_point(data)
            except allowed:
                pass
            except Exception:
                self.failures.append(Failure(number, data, traceback.format_exc()))
        self.check(name)

    def check(self, name: str) -> None:
        """Fail the test, showing the first few failing inputs, if there were any."""
        if not self.failures:
            return
        shown = "\n".join(
            f"--- input #{f.number}: {f.data[:500]!r}\n{f.trace}"
            for f in self.failures[:SHOWN_FAILURES]
        )
        pytest.fail(
            f"{name}: {len(self.failures)} inputs raised (CONCORD_FUZZ_SEED={self.seed}):\n{shown}",
            pytrace=False,
        )

    def _say(self, line: str) -> None:
        with self.quiet():
            print(line, file=sys.stderr, flush=True)


@pytest.fixture
def fuzz(capsys: pytest.CaptureFixture[str]) -> Fuzz:
    """A runner with this run's input count and seed."""
    count = int(os.environ.get("CONCORD_FUZZ_INPUTS", "0"))
    seed = int(os.environ.get("CONCORD_FUZZ_SEED", "0"))
    return Fuzz(count=count, seed=seed, loud=count > 0, quiet=capsys.disabled)


def each(records: Iterable[object]) -> list[object]:
    """Drain an iterator of records: the entry point's work happens as they are read."""
    return list(records)
