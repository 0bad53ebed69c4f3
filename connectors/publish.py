"""Publish partner FHIR files: validate each record, wrap it, send it; reject the rest.

Deciding (validate and wrap, pure) is split from doing (send to Kafka), so the
rules are tested without a broker and the sender is the only thing that waits.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TextIO

import structlog

from connectors.fhir_input import Record, read_file
from connectors.kafka_io import Publisher
from schemas import topics
from schemas.codec import encode, wrap_encoded
from schemas.envelope import DeadLetter, Envelope, last_updated, utc_now, wrap
from schemas.fhir import (
    CARRIED,
    PARTNER_RESOURCE_TYPES,
    PERSON_REFERENCES,
    InvalidResource,
    Problem,
    event_type_for,
    patient_identifiers,
    problems_in,
    subject_of,
)
from schemas.identifiers import (
    HUB_PERSON,
    LOCAL_PREFIX,
    IdentifierError,
    PersonIdentifier,
    local_system,
)
from services.domain.intake import unusable
from services.domain.kinds import AgencyKind
from services.domain.partners import UnknownPartner
from services.runtime import partner_directory, settings

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
    """A Bundle entry the hub passes by with a warning: a resource it does not route (Slot,
    Practitioner, Observation…), or a request it does not take (a GET in a batch); or an input
    its reader passes by, saying why (an HMPPS event type the hub has no use for)."""

    origin: str
    resource_type: str
    method: str | None = None  # set when the entry's request method is the reason
    why: str | None = None  # set when the reader said why (an event type the hub does not take)

    def reason(self) -> str:
        """Why the entry was passed by: "Slot is not routed by the hub"."""
        if self.why is not None:
            return self.why
        if self.method is not None:
            taken = " and ".join(TAKEN_METHODS)
            return f"a {self.method} request is not taken by the hub (it takes {taken})"
        return f"{self.resource_type or 'an entry'} is not routed by the hub"

    def warning(self) -> str:
        """The warning line: "file.json: Bundle.entry[3]: ignored: Slot is not routed by the hub"."""
        source, _, entry = self.origin.partition("#entry[")
        where = f"{source}: Bundle.entry[{entry}" if entry else source
        return f"{where}: ignored: {self.reason()}"


Decision = Accepted | Rejected | Ignored

# The Bundle entry request methods that carry a resource to the hub.
TAKEN_METHODS = ("POST", "PUT")


def passed_by(record: Record) -> Ignored | None:
    """A Bundle entry the hub passes by, or None when it is to be decided.

    Partners' Bundles come as their systems build them: a booking message carries the Slot,
    Schedule and directory entries beside the Appointment, a batch may hold reads. What the
    hub does not route is passed by with a warning so that the rest is taken; the types the
    hub carries but partners may not send (its own output) are still refused. Alone, any of
    these is refused: a request holding nothing for the hub is a mistake worth hearing of.
    """
    if record.ignored_because is not None:
        return Ignored(record.origin, "", why=record.ignored_because)
    if not record.in_bundle:
        return None
    resource_type = str((record.resource or {}).get("resourceType") or "")
    if record.request_method is not None and record.request_method not in TAKEN_METHODS:
        return Ignored(record.origin, resource_type, record.request_method)
    if record.ok and resource_type not in CARRIED:
        return Ignored(record.origin, resource_type)
    if record.ok and resource_type == "Patient" and _names_no_one(record.resource or {}):
        return Ignored(record.origin, resource_type, why=NAMES_NO_ONE)
    return None


NAMES_NO_ONE = (
    "a Patient with no id and no identifier the hub knows (NHS number, CRN, the partner's "
    "own number) names no one the hub can place"
)


def _names_no_one(patient: Mapping[str, Any]) -> bool:
    """A Patient the hub could never link: transaction Bundles carry such entries (a Patient
    created with a name only, or named by another organisation's identifiers)."""
    try:
        return "id" not in patient and not patient_identifiers(patient)
    except IdentifierError:
        return False  # it names someone wrongly: refused for that, saying so


def _checked(
    record: Record, partner: str, now: datetime | None
) -> Rejected | Ignored | tuple[dict[str, Any], str, tuple[PersonIdentifier, ...]]:
    """A record's verdict before wrapping: rejected, passed by, or (resource, type, subject)."""
    ignored = passed_by(record)
    if ignored is not None:
        return ignored
    if not record.ok or record.resource is None:
        return Rejected(record.origin, record.raw, record.problems)
    resource = record.resource
    resource_type = str(resource.get("resourceType"))
    try:
        subject = _checked_subject(resource, resource_type, record, partner)
    except InvalidResource as exc:
        return Rejected(record.origin, record.raw, tuple(exc.problems))
    reason = unusable(
        resource,
        source=partner,
        kind=partner_kind(partner),
        occurred_at=last_updated(resource) or now or utc_now(),
    )
    if reason is not None:
        return Rejected(record.origin, record.raw, (_problem(resource_type, reason),))
    return resource, resource_type, subject


def partner_kind(partner: str) -> AgencyKind | None:
    """The partner's kind as the worker reads it: the partner directory every edge signs in
    against (CONCORD_PARTNERS), else the id's prefix; None when neither places it."""
    # Reading the settings costs more than validating a record: once per partner and setting.
    return _kind(partner, os.environ.get("CONCORD_PARTNERS"))


@cache
def _kind(partner: str, _setting: str | None) -> AgencyKind | None:
    try:
        return partner_directory(settings().partners_file).kind_of(partner)
    except UnknownPartner:
        return None


def csv_columns(partner: str) -> Mapping[str, str]:
    """The partner's own CSV header names (csv_columns in the partner directory); none when
    the directory does not list the partner."""
    listed = partner_directory(settings().partners_file).get(partner)
    return listed.csv_columns if listed is not None else {}


def _problem(resource_type: str, reason: str) -> Problem:
    """A domain reason ("Task.focus: must …", "Consent.id is required …") as a problem at the
    element it names, or at the resource when it names none."""
    for separator in (": ", " "):
        path, found, message = reason.partition(separator)
        if found and path.startswith((f"{resource_type}.", f"{resource_type}[")):
            return Problem(path, message)
    if reason.startswith(f"{resource_type}: "):
        return Problem(resource_type, reason.removeprefix(f"{resource_type}: "))
    return Problem(resource_type, reason)


def decide(record: Record, partner: str, now: datetime | None = None) -> Decision:
    """Validate one record and wrap it as an envelope from `partner`, or say why not.

    Beyond FHIR validity, the record must be one the hub's steps can act on
    (services/domain/intake.py), so that the sender hears now rather than being refused later.
    """
    checked = _checked(record, partner, now)
    if isinstance(checked, Rejected | Ignored):
        return checked
    resource, resource_type, subject = checked
    envelope = wrap(
        resource,
        event_type=event_type_for(resource_type),
        source=partner,
        subject=subject,
        correlation=record.correlation,
        now=now,
    )
    return Accepted(record.origin, envelope)


@dataclass(frozen=True, slots=True)
class Encoded:
    """An accepted record as the bytes Kafka gets: what `decide` wraps, already encoded."""

    origin: str
    key: bytes
    value: bytes
    event_id: str


# What publishing decided for one record: sent as these bytes, dead-lettered, or passed by.
PublishResult = Encoded | Rejected | Ignored


def decide_encoded(record: Record, partner: str, now: datetime | None = None) -> PublishResult:
    """`decide`, with an accepted record's envelope built straight to its Kafka bytes.

    The checks are `decide`'s own; only the wrapping differs: the codec's `wrap_encoded`,
    whose bytes equal `encode(wrap(...))` exactly.
    """
    checked = _checked(record, partner, now)
    if isinstance(checked, Rejected | Ignored):
        return checked
    resource, resource_type, subject = checked
    key, value, event_id = wrap_encoded(
        resource,
        event_type=event_type_for(resource_type),
        source=partner,
        subject=subject,
        correlation=record.correlation,
        now=now,
    )
    return Encoded(record.origin, key, value, event_id)


def _checked_subject(
    resource: dict[str, Any], resource_type: str, record: Record, partner: str
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
        subject = subject_of(resource, record.bundled_patients, partner=partner)
    except IdentifierError as exc:
        raise InvalidResource([Problem(resource_type, str(exc))]) from exc
    problems = naming_problems(resource_type, subject, partner)
    if problems:
        raise InvalidResource(problems)
    return subject


def naming_problems(
    resource_type: str, subject: tuple[PersonIdentifier, ...], partner: str
) -> list[Problem]:
    """Why `partner` may not name its subject by these identifiers; [] when it may.

    Partners name a person by NHS number, CRN or their own local id (which a literal
    `Patient/123`, and a Patient's own id, stand for: schemas.fhir.subject_of). The hub's person id
    is the hub's to give: a partner using it could attach events to anyone. The one
    exception is a referral's Task, which answers a referral the hub delivered naming the
    person that way (the worker checks the Task comes from the referral's recipient).
    Another partner's local ids are that partner's to give.
    """
    where = f"{resource_type}.{PERSON_REFERENCES.get(resource_type, 'identifier')}"
    own = local_system(partner)
    problems = []
    for system, _value in subject:
        if system == HUB_PERSON and resource_type != "Task":
            problems.append(
                Problem(
                    where,
                    f"names the person by the hub's person id ({HUB_PERSON}), which only a "
                    f"referral's Task may use: name them by NHS number, CRN or your own id ({own})",
                )
            )
        elif system.startswith(LOCAL_PREFIX) and system != own:
            problems.append(
                Problem(
                    where,
                    f"names the person by another partner's local id ({system}): name them by "
                    f"NHS number, CRN or your own id ({own})",
                )
            )
    return problems


@dataclass(slots=True)
class PublishSummary:
    """What happened to a batch of input: counts and every rejection's message."""

    accepted: int = 0
    rejected: int = 0
    ignored: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
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
    *,
    workers: int | None = None,
    on_outcome: Callable[[PublishResult], None] | None = None,
) -> PublishSummary:
    """Decide and send every record; returns once Kafka has acknowledged them all.

    A large input is decided on every core (connectors.parallel); the order of what is
    sent, and every decision, are those of deciding one record after another.
    `workers=1` keeps it in this process; None lets the input's size choose. `on_outcome`
    hears each record's outcome as it is sent (the HTTP CSV upload reports it row by row).
    """
    from connectors.parallel import decide_all

    summary = PublishSummary()
    inbound = topics.INBOUND.name
    for done, (_record, outcome) in enumerate(
        decide_all(records, partner, workers=workers), start=1
    ):
        if isinstance(outcome, Encoded):
            publisher.send_encoded(inbound, outcome.key, outcome.value)
            summary.accepted += 1
            summary.event_ids.append(outcome.event_id)
        elif isinstance(outcome, Rejected):
            publisher.send_dead_letter(rejection_letter(outcome, partner))
            summary.rejected += 1
            summary.errors.append(f"{outcome.origin}: {outcome.reason()}")
        else:
            summary.ignored += 1
            summary.warnings.append(outcome.warning())
        if on_outcome is not None:
            on_outcome(outcome)
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


def rejection_letter(rejected: Rejected, partner: str) -> DeadLetter:
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
        from connectors.feeds.probation import records_from_probation_file

        return records_from_probation_file(path)
    if fmt == "csv":
        from connectors.feeds.csv_feed import records_from_csv_file

        return records_from_csv_file(path, partner, csv_columns(partner))
    if fmt == "hl7":
        from connectors.hl7v2.to_fhir import records_from_hl7_file

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
        total.warnings += summary.warnings
        total.event_ids += summary.event_ids
    return total
