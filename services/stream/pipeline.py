"""The stream steps as plain functions: a record decoded, decided by services/domain/, rendered by
services/stream/outbox.py. Outputs name their topic, key and bytes, so a step is tested without
Kafka or faust; the agents (services/stream/agents.py) only read, call these, and emit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from schemas import topics
from schemas.codec import CodecError, checked_envelope, decode_internal
from schemas.fhir import validate
from schemas.identifiers import (
    PersonIdentifier,
    check_identifier,
    without_placeholders,
)
from schemas.internal import (
    DeadlinesCommand,
    IdentityFlagsCommand,
    MeasureFact,
    MergeCommand,
    PersonCommand,
    ResolveConflictCommand,
    TransferCommand,
)
from schemas.keys import person_partition, referral_home, referral_named
from schemas.measures import BY_CODE
from services.domain.calendar import Calendar
from services.domain.decisions import CheckDeadlines, Merge, PersonMessage, Rules, Transfer
from services.domain.identity import PersonIndex, RefusedLink
from services.domain.instants import read_instant
from services.domain.linking import link_event, settle_conflict
from services.domain.measure_reports import AreaMap, measure_reports, tables
from services.domain.measures import (
    Cell,
    CellKey,
    Counted,
    add_fact,
    cell_key,
    closed,
    conflict_facts,
    decode_cell,
    encode_cell,
    open_months,
    record_facts,
)
from services.domain.person import decide, person_named
from services.domain.referral_steps import next_deadline
from services.runtime import bank_holidays
from services.stream.outbox import Out, fact_outs, render, routed
from services.stream.state import decode_calendar, encode_calendar

# What a step may raise on a malformed message; the agents keep such a message on the
# dead-letter topic with the reason. (CodecError and IdentifierError are ValueErrors.)
MALFORMED = (KeyError, TypeError, ValueError)


def identifiers_of(envelope: Mapping[str, Any]) -> list[PersonIdentifier]:
    """The subject identifiers of an envelope dict, placeholders left out; IdentifierError for
    an invalid one, or when only placeholders name the person.

    The edge has checked them already; checking again is cheap and keeps a producer
    that bypasses the edge from planting a bad NHS number or a placeholder in the person index.
    """
    subject = envelope.get("subject") or {}
    checked = [check_identifier(i["system"], i["value"]) for i in subject.get("identifiers", ())]
    return list(without_placeholders(checked))


# --- identity linker: links (one partition) -> assignments, merges, conflicts, the event ---


class LinkStep(NamedTuple):
    """What one message on the links topic did: the new index, its outputs, a log summary."""

    updated: PersonIndex
    outs: list[Out]
    summary: dict[str, Any]
    counted: tuple[Out, ...] = ()  # what it counts for the commissioners' figures


def link_step(
    message: Mapping[str, Any] | ResolveConflictCommand, index: PersonIndex, rules: Rules
) -> LinkStep:
    """One message for the linker (schemas.codec.decode_link_message): a partner's event, or an
    operator's decision on a conflict."""
    if isinstance(message, ResolveConflictCommand):
        return _resolve_command(message, index, rules)
    envelope = checked_envelope(dict(message))
    updated, resolution, decisions = link_event(index, envelope, identifiers_of(envelope), rules)
    summary: dict[str, Any] = {"event_id": message["event_id"], "partner": message["source"]}
    if isinstance(resolution, RefusedLink):
        summary.update(conflict_id=resolution.conflict.conflict_id, raised=resolution.raised)
    else:
        summary.update(person_id=resolution.person_id, merges=len(resolution.merges))
    counted = tuple(fact_outs(conflict_facts(decisions)))
    return LinkStep(updated, render(decisions, rules.now), summary, counted)


def _resolve_command(command: ResolveConflictCommand, index: PersonIndex, rules: Rules) -> LinkStep:
    """An operator's decision on a conflict, as the operator's command (services/ops) sends it."""
    updated, settlement, decisions = settle_conflict(
        index,
        command.conflict_id,
        command.decision,
        operator=command.operator,
        reason=command.reason,
        at=command.at,
        request=str(command.request_id),
        rules=rules,
    )
    summary = {"command": command.command, "conflict_id": settlement.conflict.conflict_id}
    status = settlement.conflict.status if settlement.changed else "unchanged"
    return LinkStep(updated, render(decisions, rules.now), {**summary, "status": status})


# --- a referral's Task found by its referral (schemas/keys.py found_by_referral) ---


class UnknownReferralError(ValueError):
    """A Task found by its referral, and the hub holds no such referral: the sender is told."""


def by_referral(
    envelope: Mapping[str, Any], raw: bytes, token: str, filed: bytes | None, partition: int
) -> tuple[str | None, list[Out]]:
    """Where a Task found by its referral goes, given the person filed under the referral's
    token on this partition (`filed`): that person's record (no outputs when it is kept on this
    partition), or, arriving on another partition than the token's, on to the token's home
    partition (its second hop). UnknownReferralError when the token's home holds no referral."""
    home = referral_home(token)
    if filed is None:
        if partition != home:
            return None, [Out(topics.INBOUND, token.encode(), raw, home)]
        raise UnknownReferralError(unknown_referral(envelope))
    person = filed.decode()
    if person_partition(person) == partition:
        return person, []
    return person, routed(envelope, raw, (), person)


def unknown_referral(envelope: Mapping[str, Any]) -> str:
    """Why a Task found by its referral is refused when the referral is not known."""
    referral = referral_named(envelope["resource"])
    return (
        f"Task.focus: no referral ServiceRequest/{referral} sent by or delivered to "
        f"{envelope['source']} is known to the hub. A Task naming no person (or only your own id "
        "for them) is matched by its referral: check the ServiceRequest id, or update the Task "
        "the hub delivered with the referral, whose Task.for names the person"
    )


# --- reconciler: person-events (keyed by person) -> calendars table, alerts ---

# The referral and consent rules read these resources as the edge validated them. They are
# few, so they are validated again here: a record from a producer that bypassed the edge is
# refused naming its problem instead of failing inside a rule. Appointments, the bulk of the
# traffic, are read defensively by the domain's slot_from_appointment instead.
VALIDATED_AGAIN = frozenset({"ServiceRequest", "Task", "Consent"})


def person_id_of_key(key: bytes | None) -> str:
    """The hub person id a person-events record is keyed by; CodecError when it has none."""
    try:
        person = (key or b"").decode()
    except UnicodeDecodeError as exc:
        raise CodecError("person key is not UTF-8 text") from exc
    if not person:
        raise CodecError("a person-events record needs the person id as its key")
    return person


def person_message(message: Mapping[str, Any] | PersonCommand) -> PersonMessage:
    """What a person's record decides on: a hub command (schemas.codec.decode_person_message) as
    the domain's value, or a partner's event whose referral or consent resource is valid FHIR
    (schemas.fhir.validate)."""
    if isinstance(message, MergeCommand):
        return Merge(message.absorbed, message.survivor)
    if isinstance(message, TransferCommand):
        return Transfer(message.absorbed, message.survivor, decode_calendar(message.calendar))
    if isinstance(message, DeadlinesCommand):
        return CheckDeadlines(message.person_id, message.now)
    if isinstance(message, IdentityFlagsCommand):
        raise ValueError(f"a {message.command} command is not for the person's record")
    if message["resource"].get("resourceType") in VALIDATED_AGAIN:
        validate(message["resource"])
    return message


def _when(message: PersonMessage, rules: Rules) -> datetime:
    """When a message's change happened: the event's time, or the command's, so a replay counts
    each fact in the same month; a record handed over is counted at the time it is handled."""
    if isinstance(message, CheckDeadlines):
        return message.now
    if isinstance(message, Mapping):
        return read_instant(message["occurred_at"])
    return rules.now


class PersonStep(NamedTuple):
    """What one person-keyed message did: the record's new bytes, messages, the next deadline."""

    stored: bytes | None  # None when the record is unchanged
    outs: list[Out]
    next_deadline: datetime | None = None  # earliest referral deadline, when stored changed
    # False when the person has no referrals, so there is no deadline to set or clear.
    has_referrals: bool = True


class CountedStep(NamedTuple):
    """A person-keyed message's step, and what its change counts for the commissioners' figures
    (measure-events records)."""

    step: PersonStep
    counted: tuple[Out, ...]


def person_event(
    stored: bytes | None, message: Mapping[str, Any] | PersonCommand, rules: Rules
) -> PersonStep:
    """Apply one person-keyed message to that person's record (calendar, consents, referrals)."""
    return counted_person_event(stored, message, rules).step


def counted_person_event(
    stored: bytes | None, message: Mapping[str, Any] | PersonCommand, rules: Rules
) -> CountedStep:
    """`person_event`, and the facts its change counts, counted where the record is."""
    decoded = person_message(message)
    person = person_named(decoded)
    record = decode_calendar(stored) if stored is not None else Calendar(person)
    updated, decisions = decide(record, decoded, rules)
    outs = render(decisions, rules.now)
    if updated is record:
        return CountedStep(PersonStep(None, outs), ())
    when, handed_over = _when(decoded, rules), isinstance(decoded, Transfer)
    facts = record_facts(record, updated, decisions, when, bank_holidays(), handed_over=handed_over)
    # A hand-over clears the absorbed person's escalation entry and sets the survivor's.
    has_referrals = bool(record.referrals or updated.referrals)
    step = PersonStep(encode_calendar(updated), outs, next_deadline(updated), has_referrals)
    return CountedStep(step, tuple(fact_outs(facts)))


# --- measures: measure-events (one partition) -> measure-cells table, measures topic ---

LATEST_MONTH = "latest-month"  # the measure-cells entry naming the latest month counted


def cell_entry(key: CellKey) -> str:
    """A cell's key in the measure-cells table."""
    return "|".join(key)


def cells_of(entries: Iterable[tuple[str, bytes]]) -> dict[CellKey, Cell]:
    """The aggregate cells of the measure-cells table's entries."""
    cells: dict[CellKey, Cell] = {}
    for entry, value in entries:
        parts = tuple(entry.split("|"))
        if entry != LATEST_MONTH and len(parts) == 6:
            cells[parts] = decode_cell(orjson.loads(value))
    return cells


def fact_of(value: bytes | None) -> Counted:
    """A countable fact from the measure-events topic; CodecError naming what is wrong."""
    fact = decode_internal(value, MeasureFact)
    return Counted(
        fact.counted_id,
        fact.figure,
        fact.month,
        fact.area,
        fact.category,
        fact.urgency,
        fact.reason,
        fact.days,
    )


def count_step(
    value: bytes | None,
    read: Callable[[str], bytes | None],
    entries: Callable[[], Iterable[tuple[str, bytes]]],
) -> tuple[str, dict[str, bytes]]:
    """Count one fact into its cell (once: a fact seen before changes nothing); when it opens a
    new month, the months now closed keep their counts and forget their ids. The fact's month,
    and the table writes."""
    fact = fact_of(value)
    if fact.figure not in BY_CODE:
        raise CodecError(f"MeasureFact: figure {fact.figure!r} is not one of the figures")
    entry = cell_entry(cell_key(fact))
    stored = read(entry)
    cell = add_fact(decode_cell(orjson.loads(stored)) if stored else None, fact)
    writes = {} if cell is None else {entry: orjson.dumps(encode_cell(cell))}
    latest = (read(LATEST_MONTH) or b"").decode()
    if fact.month > latest:
        writes[LATEST_MONTH] = fact.month.encode()
        still_open = open_months(fact.month)
        for key, old in cells_of(entries()).items():
            if key[1] not in still_open and old.seen:
                writes[cell_entry(key)] = orjson.dumps(encode_cell(closed(old)))
    return fact.month, writes


def month_reports(
    cells: Mapping[CellKey, Cell], areas: AreaMap, month: str, now: datetime
) -> list[dict[str, Any]]:
    """Every MeasureReport of a month, small numbers suppressed."""
    return [
        report for t in tables(cells, areas, month) for report in measure_reports(t, areas, now)
    ]
