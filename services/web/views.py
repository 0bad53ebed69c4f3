"""The worker's HTTP endpoints: readiness, the breach check, referral inboxes, counts, and the
commissioners' figures.

Every endpoint but readiness needs a signed-in partner. A commissioner is refused everywhere but
`/measures` (aggregate figures, small numbers suppressed), and only a commissioner reads those:
`claimed` and `signed_in` refuse commissioners unless the endpoint is an aggregate one. A question about a person is answered
by the worker holding that person's data: a worker passes the request on to it (services/stream/app.py
routes by the rule that placed the data, schemas/keys.py), so any worker answers for
any person. faust's own pages (tables, routing, statistics) are not served (services/stream/app.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from yarl import URL

from schemas import topics
from schemas.codec import CodecError
from schemas.identifiers import HUB_PERSON
from schemas.keys import person_id_for
from schemas.topics import Topic
from services import runtime
from services.domain.breach import NotAnswered, answer_breach_check, asked_by, check_asker
from services.domain.decisions import Answered
from services.domain.kinds import AGGREGATE_ONLY_KINDS
from services.domain.partners import Partner
from services.domain.person_view import person_view
from services.domain.signin import AuthError, basic_credentials
from services.domain.staff import STAFF_HEADER, StaffRefused, may_act_for, verify_statement
from services.observe.metrics import BREACH_CHECK_SECONDS, timed
from services.runtime import (
    aiokafka_client_config,
    authenticate,
    pages_secret,
    partner_directory,
    person_key,
)
from services.stream.activity import heard_from
from services.stream.app import SETTINGS, app, calendars, identity_flags, token_person
from services.stream.outbox import dead_letter, render
from services.stream.state import decode_calendar
from services.web.inbox import entry_of, inbox
from services.web.measures import bundle_of, chosen_reports, report_of, reports_csv

log = structlog.get_logger(__name__)

# partner id -> when the hub last heard from it; every worker follows the whole topic
LAST_HEARD: dict[str, datetime] = {}


def is_ready() -> bool:
    """True once tables are recovered, no rebalance is under way, and no agent has crashed."""
    recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
    return not app.rebalancing and recovered and not app.crashed_agents


@app.page("/ready")
async def ready(web: Any, request: Any) -> Any:
    """200 when this worker can answer routed requests; 503 while it is starting or
    rebalancing, or for good once one of its agents or followers has crashed (`crashed` names
    them: the worker must be restarted)."""
    body: dict[str, Any] = {"ready": is_ready()}
    if app.crashed_agents:
        body["crashed"] = sorted(app.crashed_agents)
    return web.json(body, status=200 if body["ready"] else 503)


SIGN_IN = "sign in as a partner (HTTP Basic: partner id and secret)"
AGGREGATE_ONLY = (
    "commissioners see aggregate figures only: GET /measures; this endpoint is about people"
)
COMMISSIONERS_ONLY = "the figures are for commissioners: sign in as a commissioner partner"
# The HTTP status of each reason the domain gives for not answering a breach check.
NOT_ANSWERED_STATUS = {"not-allowed": 403, "not-asked-so": 400, "not-known": 404}


class AccessRefused(Exception):  # noqa: N818 -- reads as what the caller gets
    """A request answered with an HTTP error status and a sentence saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _problem(web: Any, refused: AccessRefused | NotAnswered) -> Any:
    """The error response to a refused request, or to a question the domain does not answer."""
    if isinstance(refused, NotAnswered):
        refused = AccessRefused(NOT_ANSWERED_STATUS[refused.why], refused.message)
    response = web.json({"error": refused.message}, status=refused.status)
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="concord"'
    return response


def staff_member(request: Any) -> tuple[Partner, str] | None:
    """The partner and user id of a person signed in to the pages, from the pages' signed
    statement (services/domain/staff.py); None when the request carries none; AccessRefused (401)
    when it is forged or expired, or the role may not act for that partner."""
    header = request.headers.get(STAFF_HEADER)
    if header is None:
        return None
    try:
        staff = verify_statement(header, pages_secret(), datetime.now(UTC))
    except StaffRefused as exc:
        log.warning("signin.refused", reason=str(exc))
        raise AccessRefused(401, SIGN_IN) from None
    partner = partner_directory(SETTINGS.partners_file).get(staff.partner)
    if partner is None or not may_act_for(staff.role, partner.kind):
        raise AccessRefused(401, SIGN_IN)
    return partner, staff.user


def person_level(partner: Partner) -> Partner:
    """The partner, when it may reach an endpoint about people; AccessRefused (403) otherwise."""
    if partner.kind in AGGREGATE_ONLY_KINDS:
        raise AccessRefused(403, AGGREGATE_ONLY)
    return partner


def claimed(request: Any) -> Partner:
    """The partner a request names in its credentials, not yet verified; AccessRefused (401) if none,
    and (403) for a commissioner: every endpoint that passes a request on is about people.

    A worker passing a request on checks no more than this, so a request without credentials is
    refused where it arrives; the worker that answers from a person's data verifies the secret.
    """
    staff = staff_member(request)
    if staff is not None:
        return staff[0]
    partner_id, secret = basic_credentials(request.headers.get("Authorization"))
    partner = partner_directory(SETTINGS.partners_file).get(partner_id)
    if partner is None or not secret:
        raise AccessRefused(401, SIGN_IN)
    return person_level(partner)


def signed_in(request: Any, *, aggregate: bool = False) -> Partner:
    """The asking partner; AccessRefused when sign-in fails or the worker is not ready, and for a
    commissioner unless the endpoint is an `aggregate` one."""
    return signed_in_as(request, aggregate=aggregate)[0]


def signed_in_as(request: Any, *, aggregate: bool = False) -> tuple[Partner, str | None]:
    """The asking partner and, when a person signed in to the pages asks, their user id; a
    commissioner only at an `aggregate` endpoint."""
    staff = staff_member(request)
    if staff is not None:
        asking, user = staff[0], staff[1]
    else:
        partner_id, secret = basic_credentials(request.headers.get("Authorization"))
        try:
            asking = authenticate(partner_directory(SETTINGS.partners_file), partner_id, secret)
        except AuthError:
            raise AccessRefused(401, SIGN_IN) from None
        user = None
    if not is_ready():
        raise AccessRefused(503, "the worker is starting or rebalancing; try again shortly")
    return (asking if aggregate else person_level(asking)), user


RELAY_TIMEOUT_S = 30.0
# A question takes at most three hops: the identifier's worker, the person's, and the worker of
# the person they were merged into. More means the workers disagree mid-rebalance.
MAX_HOPS = 3
HOPS_HEADER = "X-Concord-Hops"
REBALANCING = "the hub is assigning its partitions; try again shortly"


def _owner(table: Any, key: str) -> URL | None:
    """The URL of the worker holding `key` of `table`, or None when it is this one."""
    try:
        owner = URL(str(app.router.key_store(table.name, key)))
    except KeyError as exc:
        log.warning("request.unrouted", table=table.name, reason=str(exc))
        raise AccessRefused(503, REBALANCING) from None
    here = app.conf.canonical_url
    return None if (owner.host, owner.port) == (here.host, here.port) else owner


async def _relay(web: Any, url: URL, request: Any) -> Any:
    """The answer of another worker to the partner's request, passed back as it is."""
    sent = request.headers.get(HOPS_HEADER, "0")
    hops = (int(sent) if sent.isascii() and sent.isdigit() else MAX_HOPS) + 1
    if hops > MAX_HOPS:
        log.warning("request.unrouted", reason="too many hops")
        raise AccessRefused(503, REBALANCING)
    headers = {"Authorization": request.headers.get("Authorization", ""), HOPS_HEADER: str(hops)}
    if STAFF_HEADER in request.headers:
        headers[STAFF_HEADER] = request.headers[STAFF_HEADER]
    timeout = aiohttp.ClientTimeout(total=RELAY_TIMEOUT_S)
    try:
        async with app.http_client.get(url, headers=headers, timeout=timeout) as response:
            body = await response.read()
            relayed = web.bytes(body, content_type=response.content_type, status=response.status)
            if "WWW-Authenticate" in response.headers:
                relayed.headers["WWW-Authenticate"] = response.headers["WWW-Authenticate"]
            return relayed
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return _problem(
            web, AccessRefused(503, "the worker holding this person did not answer; try again")
        )


async def _at_owner(
    web: Any,
    request: Any,
    table: Any,
    key: str,
    *,
    path: str,
    here: Callable[[], Awaitable[Any]],
) -> Any:
    """Answer here if this worker holds `key` of `table`, else pass the request to the one that does.

    `path` (with its query) is what the request is to the owner: the same question, or the next
    step of it. Routing is by schemas/keys.py's rule, the one the events were placed by
    (services/stream/app.py, PersonRouter).
    """
    owner = _owner(table, key)
    if owner is None:
        return await here()
    return await _relay(web, owner.join(URL(path, encoded=True)), request)


def _breach_check_path(person_id: str, request: Any) -> str:
    query = urlencode({"appointment": request.query.get("appointment", "")})
    return f"/people/{quote(person_id, safe='')}/breach-check?{query}"


def _person_view_path(person_id: str, request: Any) -> str:
    return f"/people/{quote(person_id, safe='')}/person-view"


PersonAnswer = Callable[[Any, Any, str], Awaitable[Any]]


async def _by_identifier(
    web: Any,
    request: Any,
    asking: Partner,
    path_of: Callable[[str, Any], str],
    answer: PersonAnswer,
) -> Any:
    """A question about a person named by an identifier of the asking partner's own system.

    Two steps, each on the worker holding what it needs: the identifier's person (token-person),
    then that person's calendar. Neither says which person an identifier is, or that it is anyone:
    only the question's own answer (or its 404) comes back.
    """
    identifier = asked_by(asking, request.query.get("identifier", ""))
    token = identifier.token()

    async def resolved_here() -> Any:
        if identifier.system == HUB_PERSON:
            person = identifier.value
        else:
            assigned = token_person.get(token)
            person = assigned.decode() if assigned else person_id_for(identifier, person_key())
        here = partial(answer, web, request, person)
        return await _at_owner(
            web, request, calendars, person, path=path_of(person, request), here=here
        )

    return await _at_owner(
        web, request, token_person, token, path=request.path_qs, here=resolved_here
    )


@app.page("/breach-check")
async def breach_check_by_identifier(web: Any, request: Any) -> Any:
    """The breach check for a person named by an identifier of the asking partner's own system."""
    try:
        asking = claimed(request)
        check_asker(asking)
        return await _by_identifier(web, request, asking, _breach_check_path, _breach_check)
    except (AccessRefused, NotAnswered) as refused:
        return _problem(web, refused)


@app.page("/person-view")
async def person_view_by_identifier(web: Any, request: Any) -> Any:
    """The person page's answer for a person named by an identifier of the partner's own system:
    appointments across agencies, open clashes and missed appointments' verdicts, as it may see
    them (services/domain/person_view.py)."""
    try:
        asking = claimed(request)
        return await _by_identifier(web, request, asking, _person_view_path, _person_view)
    except (AccessRefused, NotAnswered) as refused:
        return _problem(web, refused)


@app.page("/people/{person_id}/person-view")
async def person_view_of(web: Any, request: Any, person_id: str) -> Any:
    """The person page's answer for a hub person id, on the worker holding the person."""
    try:
        claimed(request)
        here = partial(_person_view, web, request, person_id)
        return await _at_owner(web, request, calendars, person_id, path=request.path_qs, here=here)
    except (AccessRefused, NotAnswered) as refused:
        return _problem(web, refused)


async def _person_view(web: Any, request: Any, person_id: str) -> Any:
    """The person page's answer, here on the worker holding the calendar, given once audited."""
    try:
        asking, user = signed_in_as(request)
        stored = calendars.get(person_id)
        calendar = decode_calendar(stored) if stored else None
        if calendar is not None and calendar.merged_into is not None:
            survivor = calendar.merged_into
            here = partial(_person_view, web, request, survivor)
            path = _person_view_path(survivor, request)
            return await _at_owner(web, request, calendars, survivor, path=path, here=here)
        now = datetime.now(UTC)
        answer, answered = person_view(
            calendar,
            asking,
            last_heard=dict(LAST_HEARD),
            buffer=SETTINGS.travel_buffer,
            identity_conflict=identity_flags.get(person_id) is not None,
            directory=partner_directory(SETTINGS.partners_file),
            at=now,
            disclosure_id=uuid.uuid4(),
            user=user,
        )
    except (AccessRefused, NotAnswered) as refused:
        return _problem(web, refused)
    failure = await record_disclosure(answered, now)
    status, body = audited_answer(answer, failure)
    log.info(
        "person_view.answered", person_id=person_id, partner=asking.id, audited=failure is None
    )
    return web.json(body, status=status)


@app.page("/people/{person_id}/breach-check")
async def breach_check_view(web: Any, request: Any, person_id: str) -> Any:
    """Verdict, minimised evidence and feed freshness for one of the asking partner's appointments."""
    try:
        check_asker(claimed(request))
        here = partial(_breach_check, web, request, person_id)
        return await _at_owner(web, request, calendars, person_id, path=request.path_qs, here=here)
    except (AccessRefused, NotAnswered) as refused:
        return _problem(web, refused)


@timed(BREACH_CHECK_SECONDS)
async def _breach_check(web: Any, request: Any, person_id: str) -> Any:
    """The breach check answered here, by the worker holding the person's calendar: the domain
    decides the answer, and it is given once its audit record is on the audit topic."""
    try:
        asking, user = signed_in_as(request)
        check_asker(asking)
        stored = calendars.get(person_id)
        calendar = decode_calendar(stored) if stored else None
        if calendar is not None and calendar.merged_into is not None:
            # Known since as another person: the partner may hold the id it was given before.
            survivor = calendar.merged_into
            path = _breach_check_path(survivor, request)
            here = partial(_breach_check, web, request, survivor)
            return await _at_owner(web, request, calendars, survivor, path=path, here=here)
        now = datetime.now(UTC)
        answer, answered = answer_breach_check(
            calendar,
            asking,
            request.query.get("appointment", ""),
            last_heard=dict(LAST_HEARD),
            buffer=SETTINGS.travel_buffer,
            identity_conflict=identity_flags.get(person_id) is not None,
            directory=partner_directory(SETTINGS.partners_file),
            at=now,
            disclosure_id=uuid.uuid4(),
        )
        answered = replace(answered, user=user)
    except (AccessRefused, NotAnswered) as refused:
        return _problem(web, refused)
    failure = await record_disclosure(answered, now)
    status, body = audited_answer(answer, failure)
    log.info(
        "breach_check.answered",
        person_id=person_id,
        partner=asking.id,
        verdict=answer["verdict"],
        audited=failure is None,
    )
    return web.json(body, status=status)


def audited_answer(
    answer: dict[str, Any], failure: BaseException | None
) -> tuple[int, dict[str, Any]]:
    """The response to a breach check: the answer once its audit record is stored, else a 503.

    A disclosure Kafka has not recorded on the audit topic is not made.
    """
    if failure is not None:
        return 503, {
            "error": "the hub could not record this disclosure in its audit log, so it does not "
            "answer; try again shortly"
        }
    return 200, answer


async def acknowledged(
    send: Callable[[], Awaitable[Awaitable[Any]]], timeout_s: float
) -> Exception | None:
    """None once Kafka has acknowledged the record `send` hands to the producer; else why not.

    `send` returns the record's delivery future; both steps are bounded by `timeout_s`.
    """
    try:
        async with asyncio.timeout(timeout_s):
            delivery = await send()
            await delivery
    except Exception as exc:  # whatever the cause, the disclosure was not recorded
        return exc
    return None


async def record_disclosure(answered: Answered, at: datetime) -> Exception | None:
    """Put the AuditEvent of one disclosure on the audit topic; None once Kafka has it, else why not."""
    [out] = render([answered], at)
    failure = await acknowledged(
        partial(app.producer.send, out.topic.name, out.key, out.value, None, None, None),
        SETTINGS.audit_timeout_s,
    )
    if failure is not None:
        log.error("audit.not_recorded", person_id=answered.person_id, error=type(failure).__name__)
    return failure


async def follow(topic: Topic, apply: Any, entries: dict[str, Any]) -> None:
    """Read a compacted topic whole, then keep up with it, passing each message to `apply`,
    which keeps the latest of each key in `entries`.

    A tombstone (a key with no value) deletes its key's entry, as compaction will. A record
    `apply` cannot take (another producer's bytes, anything it raises on) is passed by and
    dead-lettered with the reason: every worker reads these topics whole at start, so one
    such record must not stop them all. A follower that stops for any other reason (Kafka) is
    noted as crashed, and /ready says so.
    """
    try:
        consumer = AIOKafkaConsumer(
            **aiokafka_client_config(), enable_auto_commit=False, group_id=None
        )
        await consumer.start()
    except Exception as exc:
        app.note_crash(f"follow:{topic.name}", exc)
        raise
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    try:
                        if message.value is None and message.key:
                            entries.pop(message.key.decode(), None)
                        else:
                            apply(message.key, message.value)
                    except Exception as exc:  # the one catch of this follower: pass it by
                        await passed_by(topic, message.value, exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        app.note_crash(f"follow:{topic.name}", exc)
        raise
    finally:
        await consumer.stop()


async def passed_by(topic: Topic, raw: bytes | None, exc: Exception) -> None:
    """Dead-letter a record of a followed topic that could not be taken, with the reason.

    Every worker reads the topic whole at each start, so the same record is dead-lettered once
    per worker start, under the same origin and reason, until it is compacted away or replaced.
    """
    reason = f"follow {topic.name}: {type(exc).__name__}"
    if isinstance(exc, CodecError):
        reason += f": {exc}"  # a codec error quotes no value
    letter = dead_letter({}, reason, runtime.now(), origin=f"follow:{topic.name}", raw=raw or b"")
    await app.producer.send(letter.topic.name, letter.key, letter.value, None, None, None)
    log.warning("follow.dead_lettered", topic=topic.name, error=type(exc).__name__)


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
    await follow(topics.PARTNER_ACTIVITY, _heard, LAST_HEARD)


@app.task  # type: ignore[untyped-decorator]  # faust decorators are untyped
async def follow_referrals() -> None:
    """Keep the referral inboxes current from the compacted referrals topic, read whole."""
    await follow(topics.REFERRALS, _referral_entry, REFERRAL_INBOX)


REFERRAL_INBOX: dict[str, dict[str, Any]] = {}


@app.page("/referrals")
async def referral_inbox(web: Any, request: Any) -> Any:
    """The signed-in partner's referrals (sent or received), optionally filtered by ?status=."""
    try:
        asking = signed_in(request)
    except AccessRefused as refused:
        return _problem(web, refused)
    return web.json({"referrals": inbox(REFERRAL_INBOX, asking.id, request.query.get("status"))})


@app.page("/stats")
async def stats(web: Any, request: Any) -> Any:
    """How many people's calendars this worker holds (tombstones of merged people excluded)."""
    try:
        signed_in(request)
    except AccessRefused as refused:
        return _problem(web, refused)
    people = sum(1 for value in calendars.values() if decode_calendar(value).merged_into is None)
    return web.json({"calendars": people, "partners_heard": len(LAST_HEARD)})


# report id -> the latest MeasureReport published (measures topic, read whole)
MEASURES: dict[str, dict[str, Any]] = {}


def _measure(key: bytes | None, value: bytes | None) -> None:
    report = report_of(value)
    MEASURES[str(report["id"])] = report


@app.task  # type: ignore[untyped-decorator]  # faust decorators are untyped
async def follow_measures() -> None:
    """Keep the published figures current from the compacted measures topic, read whole."""
    await follow(topics.MEASURES, _measure, MEASURES)


@app.page("/measures")
async def measures_view(web: Any, request: Any) -> Any:
    """The commissioners' figures as FHIR MeasureReports (a Bundle), or as CSV (`?format=csv`);
    `?month=YYYY-MM` and `?figure=` narrow them. Small numbers are suppressed before
    publication, so nothing here is about a person."""
    try:
        asking = signed_in(request, aggregate=True)
        if asking.kind not in AGGREGATE_ONLY_KINDS:
            raise AccessRefused(403, COMMISSIONERS_ONLY)
        chosen = chosen_reports(
            MEASURES.values(), request.query.get("month"), request.query.get("figure")
        )
    except AccessRefused as refused:
        return _problem(web, refused)
    except ValueError as exc:
        return web.json({"error": str(exc)}, status=400)
    log.info("measures.read", partner=asking.id, reports=len(chosen))
    if request.query.get("format") == "csv":
        return web.bytes(reports_csv(chosen).encode(), content_type="text/csv")
    return web.json(bundle_of(chosen))
