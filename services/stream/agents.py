"""The stream processors: each decodes a message, has the domain decide and the outbox render
(services/stream/pipeline.py), and emits.

A batch's table writes reach the changelog and the store only once Kafka has confirmed its
outputs, and its offsets are committed only after that (services/stream/batch.py), so a crash
repeats an alert (same deterministic id) rather than losing it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any

import structlog

from schemas import topics
from schemas.codec import (
    CodecError,
    decode_assignment,
    decode_inbound,
    decode_link_message,
    decode_person_message,
    peek,
    resolved,
)
from schemas.identifiers import IdentifierError
from schemas.internal import (
    IdentityFlagsCommand,
    PersonCommand,
)
from schemas.keys import found_by_referral, person_partition
from services import runtime
from services.domain.decisions import CheckDeadlines, Rules
from services.domain.identity import (
    person_of,
    to_linker,
)
from services.domain.refusals import IssueType, Refusal, sender_of
from services.observe.metrics import count_dead_letter
from services.runtime import area_map, partner_directory, person_key, service_directory
from services.stream.activity import activity_record
from services.stream.app import (
    SETTINGS,
    TOPICS,
    app,
    calendars,
    deadlines,
    identity_flags,
    inbound_and_assignments,
    links,
    measure_cells,
    measure_events,
    person_events,
    token_person,
)
from services.stream.batch import PERSON_RECORDS, emit, entries, put, read, unit_of_work
from services.stream.crash_points import crash_point
from services.stream.faust_private import handling
from services.stream.linker_index import load_index, save_index, tokens_of
from services.stream.outbox import flags_entry, refusal_outs, render, report_outs, routed
from services.stream.pipeline import (
    MALFORMED,
    UnknownReferralError,
    by_referral,
    cells_of,
    count_step,
    counted_person_event,
    identifiers_of,
    link_step,
    month_reports,
    person_id_of_key,
)

log = structlog.get_logger(__name__)
ACTIVITY_EVERY_S = 1.0
# Agents take events in batches: up to BATCH_MAX, or what arrived within BATCH_WITHIN_S.
# Each batch is handled in offset order, so each person's events keep their order.
BATCH_MAX = 500
BATCH_WITHIN_S = 0.02
# The figures are republished per batch: a longer wait gathers more facts into one publication.
MEASURES_WITHIN_S = 1.0


async def reject(
    raw: bytes | None,
    reason: str,
    stage: str,
    sent: list[Awaitable[Any]] | None = None,
    code: IssueType | None = None,
) -> None:
    """Refuse a message the hub cannot process: dead-lettered with the reason, and told to its
    sender when the message says who that is (services.stream.outbox.refusal_outs)."""
    try:
        message = peek(raw)
    except CodecError:
        message = {}  # not even JSON, or no value at all: kept for the operator, no one to tell
    refusal = Refusal(reason, code or ("invalid" if stage == "person-index" else "processing"))
    kept = raw if raw is not None else b""  # a tombstone's letter holds nothing, not "{}"
    await emit(refusal_outs(message, refusal, runtime.now(), origin=stage, raw=kept), sent)
    count_dead_letter(stage, refusal.code)
    sender = sender_of(message)  # logged only as far as it is a partner id and an event id
    log.warning(
        "message.refused",
        stage=stage,
        event_id=sender.event_id if sender else None,
        partner=sender.partner if sender else None,
        reason=reason.split(":", maxsplit=1)[0],
    )


@asynccontextmanager
async def refusing(
    raw: bytes | None, stage: str, sent: list[Awaitable[Any]] | None = None
) -> AsyncIterator[None]:
    """Handle one record, refusing it (`reject`) if handling raises anything at all.

    The one broadest catch of each agent: a record no step can handle, for whatever reason, is
    dead-lettered with its reason and the agent carries on with the next, rather than crash and
    leave every later record unhandled (a crashed agent cannot be trusted, services/web/views.py
    says so on /ready). The steps' own catches give the expected refusals their better reasons.
    An exception from the refusal itself (Kafka will not take the dead letter) does crash it.
    """
    try:
        yield
    except Exception as exc:
        await reject(raw, unhandled(stage, exc), stage, sent)


def unhandled(stage: str, exc: Exception) -> str:
    """The reason a record that raised `exc` in `stage` is refused: what was wrong, by type."""
    detail = str(exc) if isinstance(exc, CodecError) else ""  # a codec error quotes no value
    return f"{stage} could not handle the record: {type(exc).__name__}" + (
        f": {detail}" if detail else ""
    )


class ActivityThrottle:
    """Tells the partner-activity topic when each partner was last heard from, at most once a second."""

    def __init__(self) -> None:
        self._sent: dict[str, float] = {}

    async def heard(self, partner: str, recorded_at: str) -> None:
        now = time.monotonic()
        if now - self._sent.get(partner, 0.0) < ACTIVITY_EVERY_S:
            return
        self._sent[partner] = now
        value = activity_record(partner, recorded_at)
        await TOPICS[topics.PARTNER_ACTIVITY.name].send(key=partner.encode(), value=value)


@app.agent(inbound_and_assignments)
async def person_index(stream: Any) -> None:
    """Resolve inbound envelopes to hub people; learn token links from the linker.

    An event whose person lives on the partition it arrived on (the edge sends it there,
    schemas/keys.py) is reconciled here and now; any other is re-keyed by person
    onto person-events for the reconciler, or sent to the linker.
    """
    activity = ActivityThrottle()
    async for batch in stream.take_events(BATCH_MAX, BATCH_WITHIN_S):
        # Settled (outputs, then state) before the batch's offsets commit
        async with unit_of_work(PERSON_RECORDS) as sent:
            rules = current_rules()  # one clock reading per batch: a batch spans milliseconds
            for event in batch:
                with handling(event):
                    async with refusing(event.value, "person-index", sent):
                        await _index_one(event, activity, rules, sent)
        log.debug("person_index.batch", events=len(batch))


async def _index_one(
    event: Any, activity: ActivityThrottle, rules: Rules, sent: list[Awaitable[Any]]
) -> None:
    if event.message.topic == topics.ASSIGNMENTS.name:
        try:
            token, person_id = decode_assignment(event.key, event.value)
        except CodecError as exc:
            await reject(event.value, str(exc), "person-index")
            return
        put(token_person, token, person_id)
        return
    partition = event.message.partition
    try:
        envelope = decode_inbound(event.value)
        identifiers = identifiers_of(envelope)
        referral = found_by_referral(envelope["resource"], envelope["source"], identifiers)
        if referral is not None:  # the person is the one its referral is filed under
            filed = read(token_person, referral)
            person, outs = by_referral(envelope, event.value, referral, filed, partition)
            here = person is not None and not outs
        else:
            linked = read(token_person, identifiers[0].token()) if len(identifiers) == 1 else None
            assigned = linked.decode() if linked else None
            to_link = to_linker(envelope, identifiers)
            person = None if to_link else person_of(identifiers, assigned, person_key())
            here = person is not None and person_partition(person) == partition
            outs = [] if here else routed(envelope, event.value, identifiers, person)
    except UnknownReferralError as exc:
        await reject(event.value, str(exc), "person-index", sent, code="not-found")
        return
    except IdentifierError as exc:
        await reject(event.value, f"subject identifier rejected: {exc}", "person-index", sent)
        return
    except MALFORMED as exc:
        # A codec error names the field and quotes no value; another only its type.
        detail = str(exc) if isinstance(exc, CodecError) else exc.__class__.__name__
        reason = f"not a valid envelope: {detail}"
        await reject(event.value, reason, "person-index", sent)
        return
    if person is not None and here:
        await _reconcile(person, resolved(envelope, person), event.value, rules, sent)
    await emit(outs, sent)
    await activity.heard(envelope["source"], envelope["recorded_at"])
    log.debug(
        "person_index.routed",
        event_id=envelope["event_id"],
        event_type=envelope["event_type"],
        partner=envelope["source"],
        here=here,
    )


@app.agent(links)
async def linker(stream: Any) -> None:
    """Join identifiers named together, or refuse a link as an identity conflict; apply the
    operator's decisions on conflicts (one partition: the one global view of links)."""
    async for event in stream.events():
        async with refusing(event.value, "linker"):
            await _link_one(event.value)


async def _link_one(raw: bytes | None) -> None:
    try:
        message = decode_link_message(raw)
        index = load_index(tokens_of(message))
        step = link_step(message, index, current_rules())
    except MALFORMED as exc:
        await reject(raw, f"cannot link: {exc.__class__.__name__}: {exc}", "linker")
        return
    await emit([*step.outs, *step.counted])
    save_index(index, step.updated)
    log.info("linker.handled", **step.summary)


def current_rules() -> Rules:
    """The rules the messages being handled now are decided under."""
    return Rules(
        directory=partner_directory(SETTINGS.partners_file),
        now=runtime.now(),
        services=service_directory(SETTINGS.services_file),
        sla=SETTINGS.sla_working_days,
        buffer=SETTINGS.travel_buffer,
    )


@app.timer(interval=SETTINGS.escalation_check.total_seconds())  # type: ignore[untyped-decorator]
async def escalation_check() -> None:
    """Ask the reconciler to escalate referrals past their deadline (it decides, in order)."""
    now = runtime.now()
    due = [person for person, when in list(deadlines.items()) if _due(person, when, now)]
    for out in render([CheckDeadlines(person, now) for person in due], now):
        await TOPICS[out.topic.name].send(key=out.key, value=out.value)


def _due(person: str, when: bytes | None, now: datetime) -> bool:
    """True when the person's next referral deadline has passed. An entry that cannot be read
    (the hub writes each one; a corrupt store) is logged and passed by, not a stopped timer:
    the person's next change writes it again."""
    try:
        return datetime.fromisoformat((when or b"").decode()) <= now
    except (UnicodeDecodeError, ValueError, TypeError):
        log.error("escalation_check.unreadable_deadline", person_id=person)
        return False


@app.agent(person_events)
async def reconciler(stream: Any) -> None:
    """Keep each person's calendar; raise and resolve clash and explained-absence alerts."""
    async for batch in stream.take_events(BATCH_MAX, BATCH_WITHIN_S):
        alerts = 0
        async with unit_of_work(PERSON_RECORDS) as sent:  # settled before the offsets commit
            rules = current_rules()
            for event in batch:
                with handling(event):
                    async with refusing(event.value, "reconciler", sent):
                        alerts += await _reconcile_one(event, rules, sent)
        # One line per batch: a line per event cost more than the event at full speed.
        log.info("reconciler.handled", events=len(batch), alerts=alerts)


async def _reconcile_one(event: Any, rules: Rules, sent: list[Awaitable[Any]]) -> int:
    """Handle one message from person-events (keyed by person), in order."""
    try:
        person, message = person_id_of_key(event.key), decode_person_message(event.value)
    except MALFORMED as exc:
        await reject(event.value, f"cannot reconcile: {exc}", "reconciler", sent)
        return 0
    if isinstance(message, IdentityFlagsCommand):  # the linker's word on identity conflicts
        put(identity_flags, person, flags_entry(message))
        return 0
    return await _reconcile(person, message, event.value, rules, sent)


async def _reconcile(
    person: str,
    message: dict[str, Any] | PersonCommand,
    raw: bytes,
    rules: Rules,
    sent: list[Awaitable[Any]],
) -> int:
    """Apply one message to the person's record: the table write, then its outputs.

    Reading and writing the record with no await between is what keeps the two agents that
    reconcile (person index, reconciler) from interleaving on one person. The write reaches the
    store only after Kafka confirmed the outputs (services/stream/batch.py): a crash before
    leaves the record as it was and the batch's offsets uncommitted, so the event is handled
    again and raises the same outputs.
    """
    try:
        step, counted = counted_person_event(read(calendars, person), message, rules)
    except MALFORMED as exc:
        await reject(raw, f"cannot reconcile: {exc}", "reconciler", sent)
        return 0
    if step.stored is not None:
        put(calendars, person, step.stored)
        if step.has_referrals:  # the escalation timer's index of referral deadlines
            deadline = step.next_deadline
            put(deadlines, person, deadline.isoformat().encode() if deadline else None)
    await emit([*step.outs, *counted], sent)
    alerted = any(out.topic is topics.ALERTS for out in step.outs)
    crash_point("state-written", alerted and step.stored is not None)
    if isinstance(message, dict):
        log.debug(
            "reconciler.event",
            event_id=message.get("event_id"),
            event_type=message.get("event_type"),
            partner=message.get("source"),
            person_id=person,
            alerts=len(step.outs),
        )
    else:
        log.debug("reconciler.command", command=message.command, person_id=person)
    return len(step.outs)


@app.agent(measure_events)
async def measures(stream: Any) -> None:
    """Count each fact once into the aggregate cells; publish the months it changed as
    MeasureReports, small numbers suppressed (one partition: the cells are one small table)."""
    async for batch in stream.take_events(BATCH_MAX, MEASURES_WITHIN_S):
        months: set[str] = set()
        async with unit_of_work() as sent:  # settled before the batch's offsets commit
            for event in batch:
                with handling(event):
                    async with refusing(event.value, "measures", sent):
                        months.update(await _count_one(event.value, sent))
            await _publish_months(months, sent)
        log.info("measures.counted", events=len(batch), months=len(months))


async def _count_one(raw: bytes | None, sent: list[Awaitable[Any]]) -> list[str]:
    """Count one fact; the month it counted in (none when refused)."""
    try:
        month, writes = count_step(
            raw, partial(read, measure_cells), partial(entries, measure_cells)
        )
    except MALFORMED as exc:
        await reject(raw, f"cannot count: {exc}", "measures", sent)
        return []
    for key, value in writes.items():
        put(measure_cells, key, value)
    return [month]


async def _publish_months(months: set[str], sent: list[Awaitable[Any]]) -> None:
    """Publish the MeasureReports of the months a batch changed. The counts are kept whatever
    happens here: a month that cannot be reported now is reported with the next fact counted."""
    now = runtime.now()
    try:
        cells = cells_of(entries(measure_cells))
        areas = area_map(SETTINGS.areas_file)
        outs = [
            o for m in sorted(months) for o in report_outs(month_reports(cells, areas, m, now), now)
        ]
    except Exception as exc:  # a stored cell or the area map, not a record: nothing to refuse
        log.error("measures.not_reported", months=len(months), error=type(exc).__name__)
        return
    await emit(outs, sent)
