"""`concord pages`: the web pages people use every day, served apart from the workers.

People sign in here (their organisation's OpenID Connect provider, oidc.py, or the local user
directory, users.py); the pages then ask the workers' HTTP API on their behalf, with a signed statement
of who is signed in (services/domain/staff.py). The workers stay the one place the disclosure
policy is applied and name the individual in every AuditEvent: nothing here decides what a
person may see, it only lays out what the workers answered.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jinja2
import structlog
from aiohttp import web
from aiohttp_session import get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from connectors.abuse import PasswordGuard, SignInBusy, edge_limits
from connectors.delivery.service import group_id as delivery_group
from connectors.kafka_io import Publisher
from connectors.pages import charts, operations, referrals
from connectors.pages.oidc import OidcRefused, Provider, as_session, oidc_config, user_from_claims
from connectors.pages.users import User, UserDirectory
from schemas import topics
from schemas.codec import CodecError, decode
from schemas.identifiers import NHS_NUMBER, PROBATION_CRN, local_system
from services.domain.instants import fhir_instant
from services.domain.partners import PartnerDirectory
from services.domain.person_view import spoken_time
from services.domain.staff import ROLE_LABELS, STAFF_HEADER, statement
from services.observe.health import add_routes as add_health_routes
from services.runtime import (
    MissingConfiguration,
    aiokafka_client_config,
    config,
    pages_secret,
    partner_directory,
    worker_url,
)

log = structlog.get_logger(__name__)
HERE = Path(__file__).parent
ASSETS = HERE / "node_modules" / "govuk-frontend" / "dist" / "govuk"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
USER = web.RequestKey("user", User)  # the signed-in user of a request


@dataclass(frozen=True, slots=True)
class PagesConfig:
    """Everything the pages need to know about their environment (README.md's table)."""

    host: str
    port: int
    users_file: Path
    worker: str
    cookie_key: bytes  # 32 bytes: the session cookie is encrypted and signed with it
    secure_cookies: bool
    idle_minutes: float


def pages_config() -> PagesConfig:
    """The configuration from the environment; a new random cookie key when none is set (every
    session then ends when the pages restart)."""
    current = config()
    key, users_file = current.pages_cookie_key, current.users
    if not users_file:
        raise MissingConfiguration(
            "set CONCORD_USERS (the pages' user directory; `make run` sets the demo's)"
        )
    return PagesConfig(
        host=current.pages_host,
        port=current.pages_port,
        users_file=users_file,
        worker=worker_url(),
        cookie_key=base64.urlsafe_b64decode(key) if key else secrets.token_bytes(32),
        secure_cookies=current.pages_secure_cookies,
        idle_minutes=current.pages_idle_minutes,
    )


# --- templates ----------------------------------------------------------------------------------

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
TEMPLATES.filters["spoken"] = lambda e: spoken_time(e.get("start"), e.get("end"))
TEMPLATES.filters["instant"] = lambda v: (
    spoken_time(v, None).removeprefix("from ") if v else "never"
)
TEMPLATES.filters["segment"] = lambda v: quote(str(v), safe="")  # one path segment, "/" too
TEMPLATES.globals["role_label"] = lambda role: ROLE_LABELS.get(role, role)


async def render(
    request: web.Request, name: str, status: int = 200, **context: Any
) -> web.Response:
    """The template `name` as an HTML page, with the signed-in user and the form token."""
    session = await get_session(request)
    html = TEMPLATES.get_template(name).render(
        user=request.get(USER), csrf_token=csrf_token(session), **context
    )
    return web.Response(text=html, status=status, content_type="text/html")


# --- sessions: sign-in, idle time-out, forms ----------------------------------------------------

CSRF_FIELD = "csrf_token"


def csrf_token(session: Any) -> str:
    """The session's form token, made on first use: every form carries it back."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return str(session[CSRF_FIELD])


def route_of(request: web.Request) -> str:
    """The route's pattern (`/people/{reference}`), for logs: a path may hold a CRN."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No framing, no sniffing, only this origin's scripts and styles; pages are never cached."""
    response = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if not request.path.startswith(("/assets/", "/static/")):
        response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def forms_need_their_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A form sent without this session's token is refused: another site cannot post as the user."""
    if request.method == "POST":
        session = await get_session(request)
        sent = (await request.post()).get(CSRF_FIELD)
        expected = session.get(CSRF_FIELD)
        if not (isinstance(sent, str) and expected and hmac.compare_digest(sent, expected)):
            log.warning("pages.form_refused", route=route_of(request))
            return await render(request, "refused.html", status=403)
    return await handler(request)


def signed_in_user(users: UserDirectory, idle_s: float) -> Any:
    """Middleware: the signed-in user on request[USER], or a redirect to sign in. A session idle
    longer than `idle_s` ends."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        session = await get_session(request)
        signed_by_provider = session.get("oidc_user")
        user = (
            User(
                **{k: signed_by_provider[k] for k in ("id", "name", "partner", "role")},
                password_hash="",
            )
            if signed_by_provider
            else users.get(session.get("user", ""))
        )
        seen = session.get("seen", 0)
        now = time.time()
        if user is not None and now - seen > idle_s:
            session.invalidate()
            user = None
            if request.path not in PUBLIC:
                raise web.HTTPSeeOther("/sign-in?timed-out=1")
        if user is not None:
            request[USER] = user
            session["seen"] = now
        elif request.path not in PUBLIC and not request.path.startswith(("/assets/", "/static/")):
            raise web.HTTPSeeOther("/sign-in")
        return await handler(request)

    return middleware


PUBLIC = frozenset(
    {"/sign-in", "/sign-in/oidc", "/sign-in/oidc/callback", "/health", "/livez", "/metrics"}
)


async def sign_in_page(request: web.Request) -> web.Response:
    timed_out = "timed-out" in request.query
    return await render(
        request,
        "sign_in.html",
        error=None,
        timed_out=timed_out,
        user_id="",
        oidc=request.app[OIDC] is not None,
    )


async def oidc_begin(request: web.Request) -> web.StreamResponse:
    """Send the person to their organisation's identity provider (authorization code + PKCE)."""
    provider = request.app[OIDC]
    if provider is None:
        raise web.HTTPNotFound()
    session = await get_session(request)
    raise web.HTTPSeeOther(await provider.begin(session, request.app[CLIENT]))


async def oidc_callback(request: web.Request) -> web.StreamResponse:
    """The provider sends the person back with a code: exchange it, check the ID token, sign in."""
    provider = request.app[OIDC]
    if provider is None:
        raise web.HTTPNotFound()
    session = await get_session(request)
    try:
        claims = await provider.complete(session, request.query, request.app[CLIENT])
        user = user_from_claims(claims, provider.config, request.app[DIRECTORY])
    except (OidcRefused, aiohttp.ClientError, KeyError) as exc:
        log.warning("pages.oidc_refused", reason=str(exc))
        error = "Your organisation's sign-in did not complete. Try again, or ask your administrator"
        return await render(
            request,
            "sign_in.html",
            status=401,
            error=error,
            timed_out=False,
            user_id="",
            oidc=True,
        )
    session = await new_session(request)
    session["oidc_user"], session["seen"] = as_session(user), time.time()
    csrf_token(session)
    log.info("pages.signed_in", user=user.id, partner=user.partner, by="oidc")
    raise web.HTTPSeeOther("/")


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    user_id, password = str(form.get("user", "")), str(form.get("password", ""))
    users: UserDirectory = request.app[USERS]
    user = None
    if user_id and password:  # argon2id on the sign-in threads, within the address's rate
        try:
            checked = await request.app[PASSWORDS].check(
                request.remote or "", partial(users.sign_in, user_id, password)
            )
        except SignInBusy:
            text = "Too many sign-ins are being checked just now: try again in a few seconds"
            return web.Response(text=text, status=503, headers={"Retry-After": "5"})
        if isinstance(checked, int):
            log.info("pages.sign_in_throttled")
            text = f"Too many refused sign-ins from your address: try again in {checked} seconds"
            return web.Response(text=text, status=429, headers={"Retry-After": str(checked)})
        user = checked
    if user is None:
        log.info("pages.sign_in_refused")
        error = "Enter a correct user name and password"
        return await render(
            request,
            "sign_in.html",
            status=401,
            error=error,
            timed_out=False,
            user_id=user_id,
            oidc=request.app[OIDC] is not None,
        )
    session = await new_session(request)  # a fresh session: no fixation across sign-in
    session["user"], session["seen"] = user.id, time.time()
    csrf_token(session)
    log.info("pages.signed_in", user=user.id, partner=user.partner)
    raise web.HTTPSeeOther("/")


async def sign_out(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPSeeOther("/sign-in")


async def home(request: web.Request) -> web.StreamResponse:
    user: User = request[USER]
    if user.role == "probation-officer":
        raise web.HTTPSeeOther("/people")
    if user.role in ("clinician", "voluntary-worker"):
        raise web.HTTPSeeOther("/referrals")
    if user.role == "operator":
        raise web.HTTPSeeOther("/dead-letters")
    if user.role == "commissioner":
        raise web.HTTPSeeOther("/figures")
    return await render(request, "home.html")


# --- asking the workers on the user's behalf ----------------------------------------------------


class WorkerUnavailable(Exception):  # noqa: N818 -- reads as the condition
    """The workers did not answer, or answered with an error the page cannot show as such."""


async def ask_worker(request: web.Request, path: str) -> tuple[int, dict[str, Any]]:
    """GET `path` from the workers as the signed-in user: (status, JSON answer)."""
    user: User = request[USER]
    config: PagesConfig = request.app[CONFIG]
    header = statement(user.staff, pages_secret(), datetime.now(UTC))
    client: aiohttp.ClientSession = request.app[CLIENT]
    try:
        async with client.get(config.worker + path, headers={STAFF_HEADER: header}) as response:
            return response.status, await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise WorkerUnavailable(type(exc).__name__) from None


# The identifier system each role names a person by: its own (relationships.systems_to_ask_by).
def person_system(user: User) -> str:
    kinds = {"probation-officer": PROBATION_CRN, "clinician": NHS_NUMBER}
    return kinds.get(user.role, local_system(user.partner))


def reference_label(user: User) -> str:
    return {"probation-officer": "CRN", "clinician": "NHS number"}.get(user.role, "Client ID")


# The roles that work with people; operators and commissioners never open a person's page.
WORKS_WITH_PEOPLE = frozenset({"probation-officer", "clinician", "voluntary-worker"})


def works_with_people(request: web.Request) -> User:
    """The signed-in user, when their role works with people; 403 otherwise."""
    user: User = request[USER]
    if user.role not in WORKS_WITH_PEOPLE:
        raise web.HTTPForbidden(text="Your role sees no person's records")
    return user


async def find_person(request: web.Request) -> web.StreamResponse:
    user = works_with_people(request)
    # As people write them: a CRN in any case, an NHS number with spaces; a client id as it is.
    wanted = request.query.get("reference", "").strip()
    if person_system(user) in (PROBATION_CRN, NHS_NUMBER):
        wanted = wanted.upper().replace(" ", "")
    if "reference" in request.query:
        if wanted:
            raise web.HTTPSeeOther(f"/people/{quote(wanted, safe='')}")
        error = f"Enter the person's {reference_label(user)}"
        return await render(
            request, "find.html", status=400, error=error, label=reference_label(user)
        )
    return await render(request, "find.html", error=None, label=reference_label(user))


async def person_page(request: web.Request) -> web.StreamResponse:
    user = works_with_people(request)
    reference = request.match_info["reference"]
    identifier = quote(f"{person_system(user)}|{reference}", safe="")
    status, answer = await ask_worker(request, f"/person-view?identifier={identifier}")
    if status in (400, 404):
        # Unknown, not related to this partner, or not an identifier: all answered alike.
        return await render(
            request, "not_found.html", status=404, reference=reference, label=reference_label(user)
        )
    if status != 200:
        raise WorkerUnavailable(str(status))
    template = "evidence.html" if request.match_info.get("note") else "person.html"
    if request.query.get("part") == "body":  # the live update takes the body alone
        template = "_person_body.html"
    # recent and upcoming: instants written the same way compare as text
    now = fhir_instant(datetime.now(UTC).replace(microsecond=0))
    return await render(
        request, template, reference=reference, label=reference_label(user), view=answer, now=now
    )


# --- live updates: an alert for the user's partner about the person refreshes the page ---------


class Alerts:
    """Who is watching which person: each open person page waits here for an alert about it."""

    def __init__(self) -> None:
        self._watchers: dict[tuple[str, str], set[asyncio.Queue[str]]] = {}

    def watch(self, partner: str, person_id: str) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=8)
        self._watchers.setdefault((partner, person_id), set()).add(queue)
        return queue

    def stop_watching(self, partner: str, person_id: str, queue: asyncio.Queue[str]) -> None:
        watchers = self._watchers.get((partner, person_id), set())
        watchers.discard(queue)
        if not watchers:
            self._watchers.pop((partner, person_id), None)

    def arrived(self, partner: str, person_id: str, event_type: str) -> None:
        for queue in self._watchers.get((partner, person_id), ()):
            if not queue.full():
                queue.put_nowait(event_type)


async def follow_alerts(alerts: Alerts) -> None:
    """Pass each new alert (keyed by its recipient partner, naming the hub person) to whoever
    watches that person for that partner. Only what is new: a page loads what came before."""
    consumer = AIOKafkaConsumer(
        topics.ALERTS.name,
        **aiokafka_client_config(),
        group_id=None,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async for message in consumer:
            try:
                envelope = decode(message.value)
                partner = (message.key or b"").decode()
            except (CodecError, UnicodeDecodeError):
                continue  # not an alert the hub wrote; the deliverer dead-letters it
            subject = envelope.subject
            if partner and subject is not None and subject.person_id:
                alerts.arrived(partner, subject.person_id, envelope.event_type)
    finally:
        await consumer.stop()


async def person_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events for one person page: `changed` when an alert about the person arrives
    for the user's partner. The person is found as the page found them (the workers answer)."""
    user = works_with_people(request)
    reference = request.match_info["reference"]
    identifier = quote(f"{person_system(user)}|{reference}", safe="")
    status, answer = await ask_worker(request, f"/person-view?identifier={identifier}")
    if status != 200:
        raise web.HTTPNotFound()
    alerts: Alerts = request.app[ALERTS]
    queue = alerts.watch(user.partner, answer["person_id"])
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    try:
        await response.write(b": watching\n\n")
        while True:
            try:
                await asyncio.wait_for(queue.get(), timeout=15)
                await response.write(b"event: changed\ndata: alert\n\n")
            except TimeoutError:
                await response.write(b": still here\n\n")  # keeps proxies from closing it
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        alerts.stop_watching(user.partner, answer["person_id"], queue)
    return response


@web.middleware
async def worker_trouble(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except WorkerUnavailable as exc:
        log.warning("pages.worker_unavailable", route=route_of(request), reason=str(exc))
        return await render(request, "unavailable.html", status=503)


# --- referrals --------------------------------------------------------------------------------


async def referral_entries(request: web.Request) -> list[dict[str, Any]]:
    """The user's partner's referrals (sent or received), as the workers' inbox gives them."""
    works_with_people(request)
    status, answer = await ask_worker(request, "/referrals")
    if status != 200:
        raise WorkerUnavailable(str(status))
    return list(answer["referrals"])


async def referral_inbox(request: web.Request) -> web.StreamResponse:
    user: User = request[USER]
    entries = await referral_entries(request)
    wanted = request.query.get("status") or None
    shown = [e for e in entries if wanted is None or e["status"] == wanted]
    return await render(
        request,
        "referrals.html",
        referrals=shown,
        statuses=referrals.STATUS_LABELS,
        wanted=wanted,
        partner=user.partner,
    )


async def _referral(request: web.Request) -> dict[str, Any]:
    wanted = request.match_info["referral"]
    for entry in await referral_entries(request):
        if entry["referral_id"] == wanted:
            return entry
    raise web.HTTPNotFound(text="No such referral in your inbox")


async def referral_page(
    request: web.Request, errors: dict[str, str] | None = None, status: int = 200
) -> web.StreamResponse:
    user: User = request[USER]
    entry = await _referral(request)
    received = entry.get("recipient") == user.partner
    state: operations.HubState = request.app[HUB]
    delivered = state.delivered.get((user.partner, entry["person_id"], entry["id"]))
    return await render(
        request,
        "referral.html",
        status=status,
        entry=entry,
        statuses=referrals.STATUS_LABELS,
        may_decide=received and entry["status"] in referrals.OPEN,
        may_book=received and entry["status"] == "accepted" and not entry["first_appointment"],
        done=request.query.get("done"),
        label=reference_label(user),
        received=received,
        delivered=delivered is not None,
        content=referrals.referral_content(delivered if received else None),
        errors=errors or {},
        form=dict(await request.post()) if request.method == "POST" else {},
    )


async def referral_action(request: web.Request) -> web.StreamResponse:
    """Accept, reject (with a reason) or book the first appointment of a referral received."""
    user: User = request[USER]
    entry = await _referral(request)
    action = request.match_info["action"]
    form = await request.post()
    now = datetime.now(UTC)
    if entry.get("recipient") != user.partner:
        raise web.HTTPForbidden(text="Only the service the referral was sent to can act on it")
    if action == "book":
        times = referrals.booking_times(form)
        person = referrals.person_named(form, person_system(user))
        if isinstance(times, dict) or isinstance(person, dict):
            errors = {**(person if isinstance(person, dict) else {})}
            errors |= times if isinstance(times, dict) else {}
            return await referral_page(request, errors, status=400)
        resource = referrals.first_appointment(entry, person, *times, now)
    else:
        reason = str(form.get("reason", "")).strip() or None
        if action == "reject" and reason is None:
            errors = {"reason": "Enter why the referral cannot be accepted"}
            return await referral_page(request, errors, status=400)
        resource = referrals.task(
            entry, "accepted" if action == "accept" else "rejected", now, reason
        )
    async with request.app[PUBLISH_LOCK]:
        summary = await referrals.publish_as(request, user.partner, user.id, resource)
    if summary.accepted != 1:
        errors = {"action": "The hub did not accept this: " + "; ".join(summary.errors)}
        return await render_refusal(request, errors)
    done = {"accept": "accepted", "reject": "rejected", "book": "booked"}[action]
    raise web.HTTPSeeOther(f"/referrals/{quote(entry['referral_id'], safe='')}?done={done}")


async def render_refusal(request: web.Request, errors: dict[str, str]) -> web.StreamResponse:
    return await referral_page(request, errors, status=422)


# --- the operator's pages ---------------------------------------------------------------------


def operator_only(request: web.Request) -> User:
    """The signed-in operator; 403 for anyone else."""
    user: User = request[USER]
    if user.role != "operator":
        raise web.HTTPForbidden(text="Only the hub's operators see this page")
    return user


async def dead_letters(request: web.Request) -> web.StreamResponse:
    operator_only(request)
    state: operations.HubState = request.app[HUB]
    filters, errors = operations.Filters.from_query(request.query)
    chosen = operations.selected(state.letters.values(), filters)
    wanted = request.query.get("page", "1")
    shown, pages = operations.page_of(chosen, int(wanted) if wanted.isdigit() else 1)
    page = min(max(1, int(wanted) if wanted.isdigit() else 1), pages)
    query = {k: v for k, v in request.query.items() if k != "page" and v}
    return await render(
        request,
        "dead_letters.html",
        status=400 if errors else 200,
        letters=shown,
        total=len(chosen),
        page=page,
        pages=pages,
        query=query,
        errors=errors,
        formats=operations.FORMATS,
        partners=sorted({i.letter.source for i in state.letters.values()}),
    )


def _letter(request: web.Request) -> operations.Letter:
    state: operations.HubState = request.app[HUB]
    item = state.letters.get(request.match_info["ref"])
    if item is None:
        raise web.HTTPNotFound(text="No such dead letter")
    return item


async def dead_letter(request: web.Request) -> web.StreamResponse:
    operator_only(request)
    return await render(
        request,
        "dead_letter.html",
        item=_letter(request),
        replayable=_letter(request).format in operations.REPLAYABLE,
        done=request.query.get("done"),
        errors={},
        corrected=_letter(request).letter.raw,
    )


async def replay_dead_letter(request: web.Request) -> web.StreamResponse:
    """Publish a corrected dead letter as its partner, through the edge checks, audited."""
    operator = operator_only(request)
    item = _letter(request)
    corrected = str((await request.post()).get("corrected", ""))
    if item.format not in operations.REPLAYABLE or not corrected.strip():
        errors = {"corrected": "Enter the corrected input to replay"}
        return await render(
            request,
            "dead_letter.html",
            status=400,
            item=item,
            replayable=item.format in operations.REPLAYABLE,
            done=None,
            errors=errors,
            corrected=corrected,
        )
    connect = request.app[referrals.CONNECT]
    async with request.app[PUBLISH_LOCK]:
        publisher = await asyncio.to_thread(connect)
        summary = await asyncio.to_thread(
            operations.replay, item, corrected, operator.id, publisher, datetime.now(UTC)
        )
    done = f"{summary.accepted}-{summary.rejected}"
    raise web.HTTPSeeOther(f"/dead-letters/{quote(item.ref, safe='')}?done={done}")


async def identity_conflicts(request: web.Request) -> web.StreamResponse:
    operator_only(request)
    state: operations.HubState = request.app[HUB]
    return await render(request, "conflicts.html", conflicts=state.open_conflicts())


async def partner_feeds(request: web.Request) -> web.StreamResponse:
    operator_only(request)
    state: operations.HubState = request.app[HUB]
    partners = request.app[PARTNERS]
    try:
        waiting, capped = await operations.delivery_backlog(delivery_group())
    except KafkaError as exc:
        log.warning("pages.backlog_unknown", reason=type(exc).__name__)
        waiting, capped = None, False
    rows = state.per_partner(partners, waiting or {})
    return await render(
        request, "partners.html", rows=rows, backlog_known=waiting is not None, capped=capped
    )


MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


async def figures(request: web.Request) -> web.StreamResponse:
    """The commissioners' figures of a month: a chart per figure by area, with its table."""
    user: User = request[USER]
    if user.role != "commissioner":
        raise web.HTTPForbidden(text="Only commissioners see the figures")
    month = request.query.get("month") or datetime.now(UTC).strftime("%Y-%m")
    if not MONTH.fullmatch(month):
        month = datetime.now(UTC).strftime("%Y-%m")
    status, bundle = await ask_worker(request, f"/measures?month={month}")
    if status != 200:
        raise WorkerUnavailable(f"HTTP {status}")
    reports = [entry["resource"] for entry in bundle.get("entry", [])]
    return await render(request, "figures.html", month=month, figures=charts.by_figure(reports))


async def figures_csv(request: web.Request) -> web.StreamResponse:
    """The month's figures as CSV (schemas/measures/data-dictionary.md), as the workers give it."""
    user: User = request[USER]
    if user.role != "commissioner":
        raise web.HTTPForbidden(text="Only commissioners see the figures")
    month = request.query.get("month", "")
    if not MONTH.fullmatch(month):
        raise web.HTTPBadRequest(text="month: give it as YYYY-MM")
    config: PagesConfig = request.app[CONFIG]
    header = statement(user.staff, pages_secret(), datetime.now(UTC))
    client: aiohttp.ClientSession = request.app[CLIENT]
    url = f"{config.worker}/measures?month={month}&format=csv"
    try:
        async with client.get(url, headers={STAFF_HEADER: header}) as answer:
            if answer.status != 200:
                raise WorkerUnavailable(f"HTTP {answer.status}")
            body = await answer.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise WorkerUnavailable(type(exc).__name__) from None
    return web.Response(
        body=body,
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="figures-{month}.csv"'},
    )


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


# --- the application ----------------------------------------------------------------------------

USERS = web.AppKey("users", UserDirectory)
PASSWORDS = web.AppKey("passwords", PasswordGuard)  # sign-in threads and refused sign-in rates
ALERTS = web.AppKey("alerts", Alerts)
CONFIG = web.AppKey("config", PagesConfig)
CLIENT = web.AppKey("client", aiohttp.ClientSession)
PUBLISH_LOCK = web.AppKey("publish_lock", asyncio.Lock)
HUB = web.AppKey("hub", operations.HubState)
PARTNERS: web.AppKey[list[str]] = web.AppKey("partners")
OIDC: web.AppKey[Provider | None] = web.AppKey("oidc")
DIRECTORY = web.AppKey("directory", PartnerDirectory)


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/health", health),
    ("GET", "/sign-in", sign_in_page),
    ("POST", "/sign-in", sign_in),
    ("GET", "/sign-in/oidc", oidc_begin),
    ("GET", "/sign-in/oidc/callback", oidc_callback),
    ("POST", "/sign-out", sign_out),
    ("GET", "/", home),
    ("GET", "/people", find_person),
    ("GET", "/people/{reference}", person_page),
    ("GET", "/people/{reference}/{note:evidence-note}", person_page),
    ("GET", "/people/{reference}/events", person_events),
    ("GET", "/referrals", referral_inbox),
    ("GET", "/referrals/{referral}", referral_page),
    ("POST", "/referrals/{referral}/{action:accept|reject|book}", referral_action),
    ("GET", "/dead-letters", dead_letters),
    ("GET", "/dead-letters/{ref}", dead_letter),
    ("POST", "/dead-letters/{ref}/replay", replay_dead_letter),
    ("GET", "/identity-conflicts", identity_conflicts),
    ("GET", "/partners", partner_feeds),
    ("GET", "/figures", figures),
    ("GET", "/figures.csv", figures_csv),
)


def build_app(
    config: PagesConfig,
    users: UserDirectory,
    *,
    directory: PartnerDirectory | None = None,
    oidc: Provider | None = None,
    live_updates: bool = True,
) -> web.Application:
    """The pages' aiohttp application for the partners listed (`live_updates`: follow the hub's
    topics: alerts for open person pages, and what the operator pages show)."""
    storage = EncryptedCookieStorage(
        config.cookie_key,
        cookie_name="concord_pages",
        httponly=True,
        secure=config.secure_cookies,
        samesite="Lax",
    )
    app = web.Application(
        middlewares=[
            security_headers,
            session_middleware(storage),
            worker_trouble,
            signed_in_user(users, config.idle_minutes * 60),
            forms_need_their_token,
        ]
    )
    app[USERS], app[CONFIG] = users, config
    app[PASSWORDS] = PasswordGuard(edge_limits())
    app[DIRECTORY] = directory or PartnerDirectory()
    app[HUB], app[PARTNERS] = operations.HubState(), sorted(app[DIRECTORY].partners)
    app[OIDC] = oidc

    async def client(app: web.Application) -> Any:
        app[CLIENT] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        yield
        await app[CLIENT].close()

    async def live(app: web.Application) -> Any:
        app[ALERTS] = Alerts()
        following = [
            asyncio.create_task(follow_alerts(app[ALERTS])),
            asyncio.create_task(operations.follow_hub(app[HUB])),
        ]
        yield
        for task in following:
            task.cancel()
        for task in following:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def publisher(app: web.Application) -> Any:
        app[PUBLISH_LOCK] = asyncio.Lock()
        made: list[Publisher] = []

        def connect() -> Publisher:  # the broker is needed only once someone acts
            if not made:
                made.append(Publisher())
            return made[0]

        app[referrals.CONNECT] = connect
        yield
        for each in made:
            await asyncio.to_thread(each.close)

    app.cleanup_ctx.append(client)
    app.cleanup_ctx.append(publisher)
    if live_updates:
        app.cleanup_ctx.append(live)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    add_health_routes(app)  # /metrics and /livez
    app.router.add_static("/assets", ASSETS / "assets")
    app.router.add_static("/static/govuk", ASSETS)
    app.router.add_static("/static/pages", HERE / "static")
    return app


def main(argv: list[str] | None = None) -> int:
    """`concord pages [--host H] [--port P]`: serve the pages until interrupted."""
    parser = argparse.ArgumentParser(
        prog="concord pages", description="Serve the web pages people sign in to."
    )
    parser.add_argument("--host", help="address to listen on (CONCORD_PAGES_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (CONCORD_PAGES_PORT, 8090)")
    args = parser.parse_args(argv)
    from services.runtime import configure_logging, settings

    configure_logging()
    current = settings()  # the partner directory and person key first, as every hub process
    config = pages_config()
    if not ASSETS.is_dir():
        print(
            "concord pages: the design system is not installed: run `make install`", file=sys.stderr
        )
        return 2
    if not pages_secret():
        print("concord pages: set CONCORD_PAGES_SECRET (shared with the workers)", file=sys.stderr)
        return 2
    directory = partner_directory(current.partners_file)
    try:
        users = UserDirectory.load(config.users_file, directory)
    except (ValueError, OSError) as exc:
        print(f"concord pages: the user directory {config.users_file}: {exc}", file=sys.stderr)
        return 2
    host, port = args.host or config.host, args.port or config.port
    log.info("pages.starting", host=host, port=port)
    try:
        provider_config = oidc_config()
    except (ValueError, OSError) as exc:
        print(f"concord pages: {exc}", file=sys.stderr)
        return 2
    provider = Provider(provider_config) if provider_config else None
    app = build_app(config, users, directory=directory, oidc=provider)
    web.run_app(app, host=host, port=port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
