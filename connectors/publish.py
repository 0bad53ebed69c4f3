"""Publish partner FHIR files: validate each record, wrap it, send it; reject the rest.

Deciding (validate and wrap, pure) is split from doing (send to Kafka), so the
rules are tested without a broker and the sender is the only thing that waits.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

from connectors.fhir_input import SUPPORTING_TYPES, Record, read_file
from connectors.kafka_io import Publisher
from schemas.codec import encode
from schemas.envelope import DeadLetter, Envelope, utc_now, wrap
from schemas.fhir import (
    PARTNER_RESOURCE_TYPES,
    InvalidResource,
    Problem,
    event_type_for,
    problems_in,
    subject_of,
)
from schemas.identifiers import IdentifierError, PersonIdentifier

log = structlog.get_logger(__name__)

MAX_DEAD_LETTER_BYTES = (
    1024 * 1024 - 4096
)  # the broker's 1 MiB record limit, less room for key and framing
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record that passed validation, wrapped and ready to publish."""

    origin: str
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that failed, with every reason, bound for the dead-letter topic."""

    origin: str
    raw: str
    problems: tuple[Problem, ...]

    def reason(self) -> str:
        """One line naming each problem."""
        return "; ".join(str(p) for p in self.problems)


@dataclass(frozen=True, slots=True)
class Ignored:
    """A supporting resource in a Bundle (Practitioner, Location…) the hub does not carry."""

    origin: str
    resource_type: str


Decision = Accepted | Rejected | Ignored


def decide(record: Record, partner: str, now: datetime | None = None) -> Decision:
    """Validate one record and wrap it as an envelope from `partner`, or say why not."""
    if not record.ok or record.resource is None:
        return Rejected(record.origin, record.raw, record.problems)
    resource = record.resource
    resource_type = str(resource.get("resourceType"))
    if record.in_bundle and resource_type in SUPPORTING_TYPES:
        return Ignored(record.origin, resource_type)
    try:
        subject = _checked_subject(resource, resource_type, record)
    except InvalidResource as exc:
        return Rejected(record.origin, record.raw, tuple(exc.problems))
    envelope = wrap(
        resource,
        event_type=event_type_for(resource_type),
        source=partner,
        subject=subject,
        correlation=record.correlation,
        now=now,
    )
    return Accepted(record.origin, envelope)


def _checked_subject(
    resource: dict[str, Any], resource_type: str, record: Record
) -> tuple[PersonIdentifier, ...]:
    """The person a partner's resource is about, once it passed every check; InvalidResource if not."""
    if resource_type not in PARTNER_RESOURCE_TYPES:
        allowed = ", ".join(PARTNER_RESOURCE_TYPES)
        raise InvalidResource(
            [Problem(resource_type, f"not accepted from partners (accepted: {allowed})")]
        )
    problems = problems_in(resource)
    if problems:
        raise InvalidResource(problems)
    try:
        return subject_of(resource, record.bundled_patients)
    except IdentifierError as exc:
        raise InvalidResource([Problem(resource_type, str(exc))]) from exc


@dataclass(slots=True)
class PublishSummary:
    """What happened to a batch of input: counts and every rejection's message."""

    accepted: int = 0
    rejected: int = 0
    ignored: int = 0
    errors: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


class Progress:
    """Prints a line to stderr every couple of seconds while a long input is published."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self._label, self._stream = label, stream
        self._started = self._last = time.monotonic()

    def tick(self, done: int) -> None:
        """Report `done` records so far, at most every PROGRESS_EVERY_S seconds."""
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            rate = done / max(now - self._started, 1e-9)
            self._stream.write(f"{self._label}: {done} records ({rate:.0f}/s)\n")
            self._stream.flush()
            self._last = now


def publish_records(
    records: Iterable[Record],
    partner: str,
    publisher: Publisher,
    on_progress: Callable[[int], None] | None = None,
) -> PublishSummary:
    """Decide and send every record; returns once Kafka has acknowledged them all."""
    summary = PublishSummary()
    for done, record in enumerate(records, start=1):
        decision = decide(record, partner)
        if isinstance(decision, Accepted):
            publisher.send_envelope(decision.envelope)
            summary.accepted += 1
            summary.event_ids.append(str(decision.envelope.event_id))
        elif isinstance(decision, Rejected):
            publisher.send_dead_letter(dead_letter(decision, partner))
            summary.rejected += 1
            summary.errors.append(f"{decision.origin}: {decision.reason()}")
        else:
            summary.ignored += 1
        if on_progress is not None:
            on_progress(done)
    publisher.confirm()
    log.info(
        "publish.done",
        partner=partner,
        accepted=summary.accepted,
        rejected=summary.rejected,
        ignored=summary.ignored,
    )
    return summary


def dead_letter(rejected: Rejected, partner: str) -> DeadLetter:
    """The dead-letter record of a rejection: the raw input, cut until it fits the broker, and why."""
    letter = DeadLetter(
        reason=rejected.reason(),
        source=partner,
        origin=rejected.origin,
        received_at=utc_now(),
        raw=rejected.raw,
    )
    kept = len(rejected.raw)
    while len(encode(letter)) > MAX_DEAD_LETTER_BYTES and kept:
        kept //= 2  # escaping and multi-byte text make the encoded size hard to predict
        cut = (
            rejected.raw[:kept]
            + f"\n…[truncated from {len(rejected.raw)} characters to fit the broker]"
        )
        letter = letter.model_copy(update={"raw": cut})
    return letter


FORMATS = ("auto", "fhir", "probation", "csv", "hl7")


def reader_for(path: Path, partner: str, fmt: str = "auto") -> Iterator[Record]:
    """The records of one partner file: FHIR (JSON, NDJSON, XML), the probation feed, CSV or HL7 v2."""
    if fmt == "auto":
        fmt = {".csv": "csv", ".hl7": "hl7"}.get(path.suffix.lower(), "fhir")
    if fmt == "probation":
        from connectors.probation import records_from_probation_file

        return records_from_probation_file(path)
    if fmt == "csv":
        from connectors.csv_feed import records_from_csv_file

        return records_from_csv_file(path, partner)
    if fmt == "hl7":
        from connectors.hl7v2 import records_from_hl7_file

        return records_from_hl7_file(path, partner)
    return read_file(path)


def publish_files(
    paths: Iterable[Path], partner: str, publisher: Publisher, fmt: str = "auto"
) -> PublishSummary:
    """Publish every record of every file; unreadable files become rejections too."""
    total = PublishSummary()
    for path in paths:
        progress = Progress(path.name)
        summary = publish_records(reader_for(path, partner, fmt), partner, publisher, progress.tick)
        total.accepted += summary.accepted
        total.rejected += summary.rejected
        total.ignored += summary.ignored
        total.errors += summary.errors
        total.event_ids += summary.event_ids
    return total
