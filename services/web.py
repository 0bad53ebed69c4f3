"""The worker's HTTP endpoints: find a person by identifier, and the breach check.

Each request is routed by faust to the worker that owns the key's partition,
so any worker answers for any person.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.kafka.local import bootstrap_servers
from schemas import topics
from schemas.codec import CodecError
from schemas.identifiers import IdentifierError, parse_token
from schemas.topics import Topic
from services.activity import heard_from
from services.auth import AuthError, authenticate, basic_credentials
from services.config import partner_directory
from services.domain.breach import breach_check, breach_check_answer
from services.domain.calendar import Calendar
from services.domain.consent import ROLE_OF_KIND
from services.domain.identity import person_id_for
from services.domain.partners import Partner
from services.hub import SETTINGS, TOPICS, app, calendars, token_person
from services.inbox import entry_of, inbox
from services.outputs import audit_out
from services.state import decode_calendar

log = structlog.get_logger(__name__)

# partner id -> when the hub last heard from it; every worker follows the whole topic
LAST_HEARD: dict[str, datetime] = {}
ROUTING_READY = asyncio.Event()


def is_ready() -> bool:
    """True once tables are recovered, no rebalance is under way, and routing knows the topics."""
    recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
    return ROUTING_READY.is_set() and not app.rebalancing and recovered


@app.task  # type: ignore[untyped-decorator]  # faust decorators are untyped
async def warm_routing() -> None:
    """Fetch the routed tables' partition metadata, which faust's request routing needs."""
    # No public way to ask: faust routes requests with this aiokafka producer.
    producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    for table in (token_person, calendars):
        await producer.partitions_for(table.changelog_topic.get_topic_name())
    ROUTING_READY.set()


@app.page("/ready")
async def ready(web: Any, request: Any) -> Any:
    """200 when this worker can answer routed requests, 503 while it is starting or rebalancing."""
    return web.json({"ready": is_ready()}, status=200 if is_ready() else 503)


def _problem(web: Any, status: int, message: str) -> Any:
    response = web.json({"error": message}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="concord"'
    return response


# Who may ask for a breach check: the agencies whose appointments can be missed.
BREACH_CHECK_KINDS = frozenset({"probation", "voluntary"})


def caller(request: Any) -> Partner | None:
    """The signed-in partner making the request (HTTP Basic), or None."""
    partner_id, secret = basic_credentials(request.headers.get("Authorization"))
    try:
        return authenticate(partner_directory(SETTINGS.partners_file), partner_id, secret)
    except AuthError:
        return None


@app.page("/people")
@app.table_route(table=token_person, query_param="identifier")
async def person_by_identifier(web: Any, request: Any) -> Any:
    """The hub person id an identifier resolves to (it may not have any events yet)."""
    try:
        signed_in(request)
        identifier = parse_token(request.query.get("identifier", ""))
    except Refusal as refusal:
        return _problem(web, refusal.status, refusal.message)
    except IdentifierError as exc:
        return _problem(web, 400, str(exc))
    assigned = token_person.get(identifier.token())
    person = assigned.decode() if assigned else person_id_for(identifier)
    return web.json({"person_id": person})


class Refusal(Exception):  # noqa: N818 -- reads as what the caller gets
    """A request answered with an HTTP error status and a sentence saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def signed_in(request: Any, kinds: frozenset[str] | None = None) -> Partner:
    """The asking partner; Refusal when the worker is not ready, sign-in fails, or the role may not ask."""
    if not is_ready():
        raise Refusal(503, "the worker is starting or rebalancing; try again shortly")
    asking = caller(request)
    if asking is None:
        raise Refusal(401, "sign in as a partner (HTTP Basic: partner id and secret)")
    if kinds is not None and asking.kind not in kinds:
        raise Refusal(403, "your organisation's role may not ask this")
    return asking


def calendar_for(person_id: str, asking: Partner) -> Calendar:
    """The person's calendar, when the asking partner has a relationship with the person.

    No relationship looks exactly like no person, so nobody can probe who the hub knows.
    """
    stored = calendars.get(person_id)
    calendar, merged_into = decode_calendar(stored) if stored else (None, None)
    if calendar is None or merged_into is not None or asking.id not in calendar.partners:
        raise Refusal(404, "no such person known to the hub")
    return calendar


def appointment_in(calendar: Calendar, wanted: str) -> str:
    """The calendar's appointment id for `wanted` (PARTNER/ID, or an ID unique in the calendar)."""
    matches = [i for i in calendar.slots if i == wanted or i.endswith("/" + wanted)]
    if not matches:
        raise Refusal(404, "no such appointment for this person")
    if len(matches) > 1:
        raise Refusal(400, "appointment id is ambiguous: give PARTNER/ID")
    return matches[0]


@app.page("/people/{person_id}/breach-check")
@app.table_route(table=calendars, match_info="person_id")
async def breach_check_view(web: Any, request: Any, person_id: str) -> Any:
    """Verdict, minimised evidence and feed freshness for one missed appointment."""
    try:
        asking = signed_in(request, BREACH_CHECK_KINDS)
        calendar = calendar_for(person_id, asking)
        appointment = appointment_in(calendar, request.query.get("appointment", ""))
    except Refusal as refusal:
        return _problem(web, refusal.status, refusal.message)
    check = breach_check(
        calendar, appointment, calendar.partners, dict(LAST_HEARD), SETTINGS.travel_buffer
    )
    now = datetime.now(UTC)
    directory = partner_directory(SETTINGS.partners_file)
    answer, basis = breach_check_answer(check, calendar, asking, directory, now)
    await record_disclosure(person_id, asking, f"BreachCheck/{appointment}", basis, now)
    log.info("breach_check.answered", person_id=person_id, partner=asking.id, verdict=check.verdict)
    return web.json(answer)


async def record_disclosure(
    person_id: str, asking: Partner, what: str, basis: str, at: datetime
) -> None:
    """Put the AuditEvent of one disclosure on the audit topic."""
    role = ROLE_OF_KIND[asking.kind]
    out = audit_out(
        uuid.uuid4(),
        person_id=person_id,
        recipient=asking.id,
        role=role,
        what=what,
        basis=basis,
        now=at,
    )
    await TOPICS[out.topic.name].send(key=out.key, value=out.value)


async def follow(topic: Topic, apply: Any) -> None:
    """Read a compacted topic whole, then keep up with it, passing each message to `apply`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers(), enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    try:
                        apply(message.key, message.value)
                    except CodecError as exc:  # not a record the hub wrote: pass it by
                        log.warning("follow.skipped", topic=topic.name, reason=str(exc))
    except asyncio.CancelledError:
        raise
    finally:
        await consumer.stop()


def _heard(key: bytes | None, value: bytes | None) -> None:
    partner, heard = heard_from(value)
    previous = LAST_HEARD.get(partner)
    if previous is None or heard > previous:
        LAST_HEARD[partner] = heard


def _referral_entry(key: bytes | None, value: bytes | None) -> None:
    referral_id, entry = entry_of(key, value)
    REFERRAL_INBOX[referral_id] = entry


@app.task  # type: ignore[untyped-decorator]  # faust decorators are untyped
async def follow_partner_activity() -> None:
    """Keep LAST_HEARD current from the compacted partner-activity topic, read whole."""
    await follow(topics.PARTNER_ACTIVITY, _heard)


@app.task  # type: ignore[untyped-decorator]  # faust decorators are untyped
async def follow_referrals() -> None:
    """Keep the referral inboxes current from the compacted referrals topic, read whole."""
    await follow(topics.REFERRALS, _referral_entry)


REFERRAL_INBOX: dict[str, dict[str, Any]] = {}


@app.page("/referrals")
async def referral_inbox(web: Any, request: Any) -> Any:
    """The signed-in partner's referrals (sent or received), optionally filtered by ?status=."""
    try:
        asking = signed_in(request)
    except Refusal as refusal:
        return _problem(web, refusal.status, refusal.message)
    return web.json({"referrals": inbox(REFERRAL_INBOX, asking.id, request.query.get("status"))})


@app.page("/stats")
async def stats(web: Any, request: Any) -> Any:
    """How many people's calendars this worker holds (tombstones of merged people excluded)."""
    people = sum(1 for value in calendars.values() if decode_calendar(value)[1] is None)
    return web.json({"calendars": people, "partners_heard": len(LAST_HEARD)})
