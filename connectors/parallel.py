"""Deciding a large publish on every core, in the order the records came.

Validation (fhir.resources' R4B models and the hub's checks) is most of what
publishing costs, and it is pure: a pool of worker processes runs
`connectors.publish.decide_encoded` on chunks of records and hands back each
accepted record's Kafka key and envelope bytes, or its problems; this process
only reads the input and produces. Each resource is still validated exactly
once, by the same code as the serial path, and the outcomes come back in input
order, so what is sent is what deciding one record after another would send.
Small inputs stay in this process: a pool costs more to start than they take.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from itertools import chain, islice
from multiprocessing.pool import AsyncResult
from typing import TYPE_CHECKING, Any

from connectors.fhir_input import Record
from schemas.fhir import CARRIED, PARTNER_RESOURCE_TYPES

if TYPE_CHECKING:
    from connectors.publish import PublishResult

PARALLEL_FROM = 2_000  # records; fewer are decided in this process
CHUNK = 250  # records per task: ~75 ms of validation, so the pickling overhead is small
IN_FLIGHT_PER_WORKER = 3  # chunks queued per worker: enough to keep it busy, bounded memory

# What a worker sends back for one record: ("e", key, value, event id) for an accepted
# record, ("r", problems) for a rejected one, ("i", resource type) for an ignored one,
# or None for a record this process decided itself (it never parsed).
Wire = tuple[Any, ...] | None
# What a worker gets of a record: resource, Bundle patients, correlation, in_bundle, request method.
WireRecord = tuple[dict[str, Any], Mapping[str, Mapping[str, Any]], str | None, bool, str | None]


def default_workers() -> int:
    """Worker processes for a large input: one per core, at least one."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def decide_all(
    records: Iterable[Record],
    partner: str,
    now: datetime | None = None,
    workers: int | None = None,
) -> Iterator[tuple[Record, PublishResult]]:
    """(record, outcome) for every record in input order; in parallel when it pays.

    `workers=None` decides in this process unless the input has more than
    PARALLEL_FROM records and the machine more than one core.
    """
    it = iter(records)
    if workers is None:
        head = list(islice(it, PARALLEL_FROM + 1))
        workers = default_workers() if len(head) > PARALLEL_FROM else 1
        it = chain(head, it)
    if workers <= 1:
        return _serial(it, partner, now)
    return _parallel(it, partner, now, workers)


def _serial(
    records: Iterator[Record], partner: str, now: datetime | None
) -> Iterator[tuple[Record, PublishResult]]:
    from connectors.publish import decide_encoded

    for record in records:
        yield record, decide_encoded(record, partner, now)


def _parallel(
    records: Iterator[Record], partner: str, now: datetime | None, workers: int
) -> Iterator[tuple[Record, PublishResult]]:
    _load_models()  # before the fork, so every worker starts with them loaded
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(workers, initializer=_load_models) as pool:
        pending: deque[tuple[list[Record], AsyncResult[list[Wire]]]] = deque()
        while chunk := list(islice(records, CHUNK)):
            wire = [_to_wire(record) for record in chunk]
            pending.append((chunk, pool.apply_async(_decide_chunk, (wire, partner, now))))
            if len(pending) >= workers * IN_FLIGHT_PER_WORKER:
                yield from _outcomes(*pending.popleft())
        while pending:
            yield from _outcomes(*pending.popleft())


def _to_wire(record: Record) -> WireRecord | None:
    """What a worker needs of a record: not its origin or raw text, which stay here.

    A plain tuple: pickling the Record itself costs over twice as much.
    """
    if not record.ok or record.resource is None:
        return None
    return (
        record.resource,
        record.bundled_patients,
        record.correlation,
        record.in_bundle,
        record.request_method,
    )


def _outcomes(
    chunk: list[Record], result: AsyncResult[list[Wire]]
) -> Iterator[tuple[Record, PublishResult]]:
    from connectors.publish import Encoded, Ignored, Rejected, decide_encoded

    for record, answer in zip(chunk, result.get(), strict=True):
        if answer is None:
            yield record, decide_encoded(record, "")  # a parse failure: rejected as read
        elif answer[0] == "e":
            yield record, Encoded(record.origin, answer[1], answer[2], answer[3])
        elif answer[0] == "r":
            yield record, Rejected(record.origin, record.raw, answer[1])
        else:
            yield record, Ignored(record.origin, answer[1], answer[2])


def _decide_chunk(wire: list[WireRecord | None], partner: str, now: datetime | None) -> list[Wire]:
    """In a worker: the outcome of each record of a chunk, in the chunk's order."""
    from connectors.publish import Encoded, Rejected, decide_encoded

    answers: list[Wire] = []
    for parts in wire:
        if parts is None:
            answers.append(None)
            continue
        resource, patients, correlation, in_bundle, method = parts
        record = Record(
            "", "", resource, patients, correlation, in_bundle=in_bundle, request_method=method
        )
        outcome = decide_encoded(record, partner, now)
        if isinstance(outcome, Encoded):
            answers.append(("e", outcome.key, outcome.value, outcome.event_id))
        elif isinstance(outcome, Rejected):
            answers.append(("r", outcome.problems))
        else:
            answers.append(("i", outcome.resource_type, outcome.method))
    return answers


def _load_models() -> None:
    """Import the R4B models partners' resources are validated against."""
    for resource_type in PARTNER_RESOURCE_TYPES:
        importlib.import_module(f"fhir.resources.R4B.{CARRIED[resource_type][0]}")
    importlib.import_module("connectors.publish")
