"""The offset the worker commits after a rebalance (services/stream/app.py, _Consumer._new_offset)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from intervaltree import IntervalTree

from services.stream.faust_private import _Consumer


def consumer(committed: int | None, acked: list[int], gaps: list[tuple[int, int]]) -> Any:
    """Just the bookkeeping _new_offset reads, for one partition "tp"."""
    state = SimpleNamespace(
        _acked=defaultdict(list, tp=list(acked)),
        _acked_index=defaultdict(set, tp=set(acked)),
        _gap=defaultdict(IntervalTree),
        _committed_offset=defaultdict(lambda: None, tp=committed),
    )
    for begin, end in gaps:
        state._gap["tp"].addi(begin, end)
    return state


def commits(state: Any) -> list[int]:
    """The offsets successive commits would send until nothing new can be committed."""
    sent: list[int] = []
    while (offset := _Consumer._new_offset(state, "tp")) is not None:
        if sent and offset <= sent[-1]:
            break
        state._committed_offset["tp"] = offset
        sent.append(offset)
    return sent


def test_a_gap_over_offsets_already_acked_is_committed_in_one_go() -> None:
    # As seen on the worker that joined: 1483..1522 handled, and a gap recorded over
    # 1484..1493 when recovery's seek put the read offset back to 1483. faust-streaming
    # 0.15.3 committed 1485, 1486, ... one offset per 2.8 s commit.
    assert commits(consumer(1483, list(range(1483, 1523)), [(1484, 1494)])) == [1523]


def test_offsets_never_delivered_are_committed_past() -> None:
    assert commits(consumer(5, [5, 6, 7, 8, 9, 15, 16], [(10, 15)])) == [17]


def test_a_gap_above_the_highest_ack_waits_for_the_acks() -> None:
    state = consumer(20, list(range(20, 25)), [(21, 30)])
    assert commits(state) == [25]
    state._acked["tp"].extend(range(25, 31))
    assert commits(state) == [31]


def test_nothing_to_commit_while_the_first_offset_is_not_handled() -> None:
    assert commits(consumer(10, [12, 13, 14], [])) == []
