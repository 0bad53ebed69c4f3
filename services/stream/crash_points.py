"""Test-only crash points: the worker exits at once, as if killed, at a named point of a batch.

Set by `CONCORD_TEST_CRASH_AT` (read once, at start), so the recovery tests can kill a worker in
the window they are about; unset, as in every deployment, no point does anything.
"""

from __future__ import annotations

import os

CRASH_AT = os.environ.get("CONCORD_TEST_CRASH_AT", "")
KILLED = 137  # the exit status of a process killed by SIGKILL, which this stands for


def crash_point(name: str, reached: bool = True) -> None:
    """Exit now, without cleaning up, when the test setting names this point and it is reached."""
    if reached and name == CRASH_AT:
        os.write(2, f"crash point {name}: exiting\n".encode())
        os._exit(KILLED)
