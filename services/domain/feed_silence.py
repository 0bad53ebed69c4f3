"""When a partner's feed has gone quiet for longer than the partner directory expects
(`silent_after`), the operators are told once; told again only after the partner has been heard
from and then gone quiet again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Silence:
    """A partner quiet for longer than expected."""

    partner: str
    quiet_for: timedelta
    expected: timedelta


def silences(
    expected: Mapping[str, timedelta],
    last_heard: Mapping[str, datetime],
    watching_since: datetime,
    now: datetime,
    told: frozenset[str],
) -> tuple[list[Silence], frozenset[str]]:
    """The silences to tell the operators of now, and every partner silent now (the `told` of
    the next check). A partner never heard from counts from `watching_since`."""
    silent: list[Silence] = []
    for partner, allowed in sorted(expected.items()):
        quiet_for = now - last_heard.get(partner, watching_since)
        if quiet_for > allowed:
            silent.append(Silence(partner, quiet_for, allowed))
    now_silent = frozenset(s.partner for s in silent)
    return [s for s in silent if s.partner not in told], now_silent
