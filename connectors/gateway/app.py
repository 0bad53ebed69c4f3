"""The HTTP ingest gateway: partners POST FHIR resources and Bundles, answered 202 only once Kafka
has acknowledged every envelope, and otherwise with a FHIR OperationOutcome (see
connectors/gateway/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web
from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError

from connectors.gateway.guards import Guards, GuardSettings, guard_settings, read_within, serve
from connectors.gateway.negotiation import (
    AcceptedForm,
    Format,
    accepted_form,
    answer_format,
    prefer_return,
    public_base,
    public_url_setting,
    render,
)
from connectors.gateway.rules import (
    Admitted,
    Answer,
    Busy,
    IdempotencyMemory,
    IssueCode,
    LatestVersions,
    Mismatch,
    Published,
    RefusedRequest,
    Replay,
    assess,
    fingerprint,
    key_refusal,
    refuse,
    response_message,
)
from connectors.gateway.spec import capability_statement, openapi_document
from connectors.kafka_io import DeliveryError, Publisher, new_producer
from connectors.publish import Rejected, rejection_letter
from schemas import topics
from schemas.fhir import PARTNER_RESOURCE_TYPES
from schemas.identifiers import PARTNER_ID
from services.domain.partners import Partner
from services.domain.signin import basic_credentials
from services.observe.health import KafkaProbe
from services.observe.health import add_routes as add_health_routes
from services.observe.metrics import count_gateway_request
from services.runtime import partner_directory, settings

log = structlog.get_logger(__name__)

MIB = 1024 * 1024
RETRY_AFTER_S = 10
DEAD_LETTER_PREFIX = 64 * 1024  # of an oversized body, enough for an operator to see what it was
# Ids a $process-message caller may send to follow its message through; echoed on the answer.
ECHOED_HEADERS = ("X-Request-Id", "X-Correlation-Id")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The gateway's settings; `gateway_config()` reads them from the environment."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = MIB
    partners_file: Path = field(default_factory=lambda: settings().partners_file)
    kafka_timeout_s: float = 10.0
    producers: int = 4
    idempotency_ttl_s: float = 24 * 60 * 60
    idempotency_max_keys: int = 10_000
    versions_max_keys: int = 100_000
    public_url: str | None = None  # the address callers reach the gateway at, behind a proxy
    guards: GuardSettings = field(default_factory=GuardSettings)  # rates and timeouts


def gateway_config() -> GatewayConfig:
    """Settings from CONCORD_GATEWAY_* variables (ValueError names a malformed one)."""
    env = os.environ
    partners_file = settings().partners_file  # MissingConfiguration names what to set
    try:
        config = GatewayConfig(
            partners_file=partners_file,
            host=env.get("CONCORD_GATEWAY_HOST", "127.0.0.1"),
            port=int(env.get("CONCORD_GATEWAY_PORT", "8080")),
            max_body=int(env.get("CONCORD_GATEWAY_MAX_BODY", str(MIB))),
            kafka_timeout_s=float(env.get("CONCORD_GATEWAY_KAFKA_TIMEOUT_S", "10")),
            producers=int(env.get("CONCORD_GATEWAY_PRODUCERS", "4")),
        )
    except ValueError as exc:
        raise ValueError(f"a CONCORD_GATEWAY_* setting is not a number: {exc}") from exc
    return replace(
        config,
        public_url=public_url_setting(env.get("CONCORD_GATEWAY_PUBLIC_URL")),
        guards=guard_settings(),
    )


class KafkaUnavailable(Exception):  # noqa: N818 -- reads as the condition it reports
    """Kafka did not take or acknowledge the messages in time."""


@dataclass(slots=True)
class _Lane:
    producer: KafkaProducer
    publisher: Publisher


class Lanes:
    """Kafka producers, each lent to one request at a time in a worker thread.

    A Publisher's confirm() waits for everything it has queued, so sharing one between
    concurrent requests would let one request's answer depend on another's messages.
    """

    def __init__(self, size: int, make_producer: Callable[[], KafkaProducer]) -> None:
        self._make = make_producer
        self._idle: list[_Lane] = []
        self._slots = asyncio.Semaphore(size)
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="gateway-kafka")

    def _open(self) -> _Lane:
        producer = self._make()
        return _Lane(producer, Publisher(producer))

    async def run(self, job: Callable[[Publisher], None]) -> None:
        """Run a blocking job with a producer of its own; KafkaUnavailable when Kafka fails it."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            lane = self._idle.pop() if self._idle else None
            done = False
            try:
                if lane is None:
                    lane = await loop.run_in_executor(self._executor, self._open)
                await loop.run_in_executor(self._executor, job, lane.publisher)
                done = True
            except MessageSizeTooLargeError:
                raise
            except (KafkaError, DeliveryError) as exc:
                raise KafkaUnavailable(type(exc).__name__) from exc
            finally:
                if lane is not None and done:
                    self._idle.append(lane)
                elif lane is not None:
                    # Its queue may hold this request's failed messages: start the next one afresh.
                    self._executor.submit(lane.producer.close, 1)

    async def close(self) -> None:
        """Close every idle producer and the worker threads."""
        loop = asyncio.get_running_loop()
        idle, self._idle = self._idle, []
        for lane in idle:
            await loop.run_in_executor(self._executor, lane.producer.close, 5)
        self._executor.shutdown(wait=True)


def gateway_producer(timeout_s: float) -> KafkaProducer:
    """A durable producer (acks=all) that gives up within the gateway's Kafka timeout."""
    timeout_ms = int(timeout_s * 1000)
    # Finding no broker at all takes half the timeout, so even a request that has to open a
    # producer is answered 503 within it.
    return new_producer(
        client_id="concord-gateway", max_block_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms // 2
    )


class Gateway:
    """The gateway's state: settings, the Kafka lanes, the idempotency and version memories."""

    def __init__(
        self, config: GatewayConfig, make_producer: Callable[[], KafkaProducer] | None = None
    ) -> None:
        self.config = config
        self.memory = IdempotencyMemory(config.idempotency_ttl_s, config.idempotency_max_keys)
        self.versions = LatestVersions(config.versions_max_keys)
        self.lanes = Lanes(
            config.producers, make_producer or (lambda: gateway_producer(config.kafka_timeout_s))
        )
        self.guards = Guards(config.guards)

    async def sign_in(self, request: web.Request) -> Partner | RefusedRequest:
        """The partner proven by HTTP Basic, within the rates of its source and its own;
        otherwise a 401, 429 or 503 refusal (`guards.Guards.sign_in`)."""
        partner_id, secret = basic_credentials(request.headers.get("Authorization"))
        directory = partner_directory(self.config.partners_file)
        return await self.guards.sign_in(directory, partner_id, secret, request.remote or "")

    async def publish(self, admitted: Admitted) -> None:
        """Send every envelope, as encoded when admitted; return once Kafka has acknowledged all."""
        deadline = time.monotonic() + self.config.kafka_timeout_s
        inbound = topics.INBOUND.name

        def job(publisher: Publisher) -> None:
            for item in admitted.accepted:
                publisher.send_encoded(inbound, item.key, item.value)
            publisher.confirm(max(0.0, deadline - time.monotonic()))  # one deadline in all

        await self.lanes.run(job)

    async def keep(self, refusal: RefusedRequest, raw: bytes, origin: str, partner: str) -> bool:
        """Put a refused input on the dead-letter topic with its reason; False if Kafka failed."""
        problems = tuple(i.as_problem() for i in refusal.issues)
        text = raw.decode("utf-8", errors="replace")
        letter = rejection_letter(Rejected(origin, text, problems), partner)
        timeout_s = self.config.kafka_timeout_s

        def job(publisher: Publisher) -> None:
            publisher.send_dead_letter(letter)
            publisher.confirm(timeout_s)

        try:
            await self.lanes.run(job)
        except (KafkaUnavailable, MessageSizeTooLargeError) as exc:
            log.error("gateway.dead_letter_failed", partner=partner, error=type(exc).__name__)
            return False
        return True


# --- answering ----------------------------------------------------------------------------------

GATEWAY = web.AppKey("gateway", Gateway)
FACTS = web.RequestKey("gateway.facts", dict)  # what the request's log line reports
ANSWER_IN = web.RequestKey("gateway.format", str)  # "json" or "xml": how FHIR answers are written


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer, whether a retry should get it again (final), whether it is such a replay, and
    whether the partner should retry after a while (Retry-After)."""

    answer: Answer
    final: bool = False
    replayed: bool = False
    retry_after: int = 0  # seconds, for a Retry-After header (0: none)


@dataclass(frozen=True, slots=True)
class Post:
    """One signed-in partner's POST, its body read."""

    partner: str
    route_type: str | None
    content_type: str | None
    key: str | None
    body: bytes
    message: bool = False  # POST /fhir/$process-message
    correlation: str | None = None  # its X-Correlation-Id
    form: AcceptedForm = "summary"  # what a 202 carries (Prefer, and the answer's format)
    reached: str = ""  # the address the partner reached the gateway at

    @property
    def origin(self) -> str:
        """Where the input came from, as the dead-letter record names it."""
        if self.message:
            return "POST /fhir/$process-message"
        return f"POST /fhir/{self.route_type}" if self.route_type else "POST /fhir"

    def accepted(self, admitted: Admitted) -> Answer:
        """The answer once accepted: 202 with the event ids (or as Prefer asks), or 200 with a
        FHIR response message for $process-message."""
        if self.message:
            endpoint = f"{self.reached}/fhir/$process-message"
            return Answer(200, response_message(admitted, endpoint, datetime.now(UTC)))
        if self.form == "minimal":
            return Answer(202, {})
        if self.form == "representation" and admitted.accepted:  # a create: one, as published
            return Answer(202, dict(admitted.accepted[0].envelope.resource))
        if self.form == "outcome":
            return Answer(202, admitted.message_outcome())
        return Answer(202, admitted.answer())


def refused_reply(refusal: RefusedRequest, final: bool = False, retry_after: int = 0) -> Reply:
    """The reply to a refused request: its status and OperationOutcome, and how long to wait
    before retrying when the refusal or the caller says."""
    wait = retry_after or refusal.retry_after
    return Reply(Answer(refusal.status, refusal.outcome()), final=final, retry_after=wait)


def answer_in(request: web.Request) -> Format:
    """The format FHIR answers to this request are written in (see `every_request`)."""
    return "xml" if request.get(ANSWER_IN) == "xml" else "json"


def respond(request: web.Request, reply: Reply) -> web.Response:
    """The HTTP response for a reply, with the headers its status calls for."""
    answer, facts = reply.answer, request[FACTS]
    facts["status"] = answer.status
    if answer.status >= 400:
        facts["problems"] = len(answer.body.get("issue", ()))
    if answer.body:
        body, media = render(answer.body, answer_in(request))
        response = web.Response(status=answer.status, body=body, content_type=media)
    else:  # Prefer: return=minimal
        response = web.Response(status=answer.status)
    if answer.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="concord"'
    if reply.retry_after:
        response.headers["Retry-After"] = str(reply.retry_after)
    if reply.replayed:
        response.headers["Idempotent-Replayed"] = "true"
        facts["replayed"] = True
    return response


async def read_limited(request: web.Request, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body, and whether there was more; TimeoutError (answered 408)
    when it has not all arrived within the read timeout."""
    timeout_s = request.app[GATEWAY].config.guards.read_timeout_s
    return await read_within(request, limit, timeout_s)


def too_large(declared: int | None, limit: int) -> RefusedRequest:
    """413 for a body over the limit."""
    size = f"{declared} bytes" if declared is not None else "more than that"
    return refuse(413, "too-long", "(body)", f"{size} is over the limit of {limit} bytes")


async def receive(request: web.Request) -> web.Response:
    """POST /fhir and /fhir/{resourceType}: sign in, read the body within the limit, answer."""
    return await _receive(request, message=False)


async def process_message(request: web.Request) -> web.Response:
    """POST /fhir/$process-message: a message Bundle, answered 200 with a FHIR response message;
    X-Request-Id and X-Correlation-Id are echoed, and the correlation id, when given, is the
    envelopes' correlation."""
    response = await _receive(request, message=True)
    for name in ECHOED_HEADERS:
        value = request.headers.get(name)
        if value is not None and key_refusal(value, name) is None:
            response.headers[name] = value
    return response


async def _receive(request: web.Request, *, message: bool) -> web.Response:
    gateway, facts = request.app[GATEWAY], request[FACTS]
    partner = await gateway.sign_in(request)
    if isinstance(partner, RefusedRequest):
        return respond(request, refused_reply(partner))
    facts["partner"] = partner.id
    headers, limit = request.headers, gateway.config.max_body
    route_type = request.match_info.get("resource_type")
    prefer = prefer_return(headers.get("Prefer")) if route_type else None
    declared = request.content_length
    if declared is not None and declared > limit:
        # Never read what was declared too large: keep a prefix for the operator.
        body, over = await read_limited(request, DEAD_LETTER_PREFIX)
    else:
        body, over = await read_limited(request, limit)
    post = Post(
        partner.id,
        route_type,
        headers.get("Content-Type"),
        headers.get("Idempotency-Key"),
        body[:DEAD_LETTER_PREFIX] if over else body,
        message,
        headers.get("X-Correlation-Id") if message else None,
        accepted_form(prefer, answer_in(request), create=route_type is not None),
        reached_at(request),
    )
    if over or (declared is not None and declared > limit):
        reply = await refused(gateway, facts, too_large(declared, limit), post)
    else:
        reply = await answer_post(gateway, facts, post)
    response = respond(request, reply)
    if prefer is not None and response.status < 300 and not reply.replayed:
        response.headers["Preference-Applied"] = f"return={prefer}"
    return response


async def answer_post(gateway: Gateway, facts: dict[str, Any], post: Post) -> Reply:
    """The reply to a post within the size limit, once per Idempotency-Key when it has one."""
    refusal = key_refusal(post.key) or key_refusal(post.correlation, "X-Correlation-Id")
    if refusal is not None:
        return await refused(gateway, facts, refusal, post)
    if post.key is None:
        return await decide(gateway, facts, post)
    mismatch = refuse(
        422,
        "processing",
        "(Idempotency-Key)",
        "already used for a different request in the last 24 hours: use a new key for new content",
    )
    return await once(
        gateway.memory,
        f"{post.partner}\nkey:{post.key}",
        fingerprint(f"{post.origin}\n{post.correlation or ''}", post.body),
        lambda: decide(gateway, facts, post),
        on_mismatch=lambda: refused(gateway, facts, mismatch, post),
    )


async def refused(
    gateway: Gateway, facts: dict[str, Any], refusal: RefusedRequest, post: Post
) -> Reply:
    """Dead-letter a refused input (when its sender is trusted) and reply with the outcome.

    The reply is final (replayed to a retry) unless the dead letter could not be written,
    so that a retry tries again to keep it.
    """
    kept = False
    if refusal.dead_letter:
        kept = await gateway.keep(refusal, post.body, post.origin, post.partner)
    facts["kept"] = kept
    return refused_reply(refusal, final=kept or not refusal.dead_letter)


async def once(
    memory: IdempotencyMemory,
    key: str,
    print_: str,
    work: Callable[[], Awaitable[Reply]],
    on_mismatch: Callable[[], Awaitable[Reply]],
) -> Reply:
    """Do `work` once per key: replay its final reply to a retry, refuse a key reused for other content."""
    seen = memory.begin(key, print_)
    if isinstance(seen, Replay):
        return Reply(seen.answer, final=True, replayed=True)
    if isinstance(seen, Busy):
        message = "the first request with this key is still being answered; retry shortly"
        return refused_reply(
            refuse(409, "conflict", "(Idempotency-Key)", message), retry_after=RETRY_AFTER_S
        )
    if isinstance(seen, Mismatch):
        return await on_mismatch()
    reply: Reply | None = None
    try:
        reply = await work()
    finally:
        memory.finish(key, print_, reply.answer if reply is not None and reply.final else None)
    return reply


async def decide(gateway: Gateway, facts: dict[str, Any], post: Post) -> Reply:
    """Assess the body; refuse it, or publish it unless it repeats the latest versions published."""
    # Validating a 1 MiB Bundle takes seconds of CPU: off the event loop, so others are answered.
    loop = asyncio.get_running_loop()
    verdict = await loop.run_in_executor(
        None,
        partial(
            assess,
            post.body,
            post.content_type,
            post.route_type,
            post.partner,
            message=post.message,
            correlation=post.correlation,
        ),
    )
    if isinstance(verdict, RefusedRequest):
        return await refused(gateway, facts, verdict, post)
    facts["ignored"] = verdict.ignored
    if not verdict.accepted:  # only entries passed by: nothing to publish
        return Reply(post.accepted(verdict), final=True)
    # Whatever the key: content equal to the latest version published is a repeat, an older
    # version is stale. An earlier content sent again (an appointment moved back) is neither.
    seen = gateway.versions.check(post.partner, verdict)
    if isinstance(seen, RefusedRequest):
        return await refused(gateway, facts, seen, post)
    if isinstance(seen, Published):
        return Reply(post.accepted(verdict), final=True, replayed=True)
    reply = await publish(gateway, facts, verdict, post)
    if reply.answer.status < 300:
        gateway.versions.record(post.partner, verdict)
    return reply


async def publish(gateway: Gateway, facts: dict[str, Any], admitted: Admitted, post: Post) -> Reply:
    """202 (200 for $process-message) once Kafka has acknowledged every envelope; 503 (retry)
    if it has not."""
    try:
        await gateway.publish(admitted)
    except KafkaUnavailable:
        message = "the hub could not store your request just now; nothing was accepted: retry later"
        return refused_reply(
            refuse(503, "transient", "(Kafka)", message), retry_after=RETRY_AFTER_S
        )
    except MessageSizeTooLargeError:
        too_big = refuse(413, "too-long", "(body)", "an event is over the broker's message limit")
        return refused_reply(too_big, final=True)
    facts["events"], facts["ignored"] = len(admitted.accepted), admitted.ignored
    return Reply(post.accepted(admitted), final=True)


def reached_at(request: web.Request) -> str:
    """The address the caller reached the gateway at (CONCORD_GATEWAY_PUBLIC_URL when set)."""
    headers = request.headers
    return public_base(
        request.app[GATEWAY].config.public_url,
        request.scheme,
        request.host,
        headers.get("X-Forwarded-Proto"),
        headers.get("X-Forwarded-Host"),
    )


async def metadata(request: web.Request) -> web.Response:
    """GET /metadata: the FHIR CapabilityStatement, naming the address it was reached at."""
    cache_min = int(request.app[GATEWAY].config.idempotency_ttl_s // 60)
    return respond(
        request, Reply(Answer(200, capability_statement(reached_at(request), cache_min)))
    )


async def openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: the OpenAPI 3 document, its server the address it was reached at."""
    return respond(request, Reply(Answer(200, openapi_document(reached_at(request)))))


# --- the application ----------------------------------------------------------------------------


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


def _claimed_partner(request: web.Request) -> str | None:
    claimed, _ = basic_credentials(request.headers.get("Authorization"))
    return claimed if PARTNER_ID.match(claimed) else None


def _answers_fhir(request: web.Request) -> bool:
    """Whether the route answers in FHIR, so that `_format` and `Accept` decide how."""
    return request.path == "/metadata" or request.path.startswith("/fhir")


@web.middleware
async def every_request(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answer every error with an OperationOutcome, and log one line per request (no content)."""
    started = time.monotonic()
    facts: dict[str, Any] = {}
    request[FACTS] = facts
    wanted = answer_format(request.query.get("_format"), request.headers.get("Accept"))
    request[ANSWER_IN] = wanted if isinstance(wanted, str) else "json"
    response: web.StreamResponse
    try:
        if isinstance(wanted, RefusedRequest) and _answers_fhir(request):
            response = respond(request, refused_reply(wanted))  # 406, before anything is read
        else:
            response = await handler(request)
    except TimeoutError:  # the body did not arrive within the read timeout
        message = "the request body did not arrive in time; nothing was accepted"
        response = respond(request, refused_reply(refuse(408, "timeout", "(body)", message)))
        response.force_close()
    except web.HTTPException as exc:  # the router's 404 and 405
        code: IssueCode = "not-supported"
        message = f"{exc.reason}: the endpoints are listed at /openapi.json"
        response = respond(request, refused_reply(refuse(exc.status, code, "(path)", message)))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception as exc:
        # Exception text may quote the payload: log the type only.
        log.error("gateway.failed", error=type(exc).__name__)
        failed = refuse(500, "exception", "(server)", "the gateway failed; nothing was accepted")
        response = respond(request, refused_reply(failed))
    count_gateway_request(
        request.method, request.path, request.content_type, response.status, facts
    )
    route_type = request.match_info.get("resource_type")
    log.info(
        "gateway.request",
        method=request.method,
        route=_route_of(request),
        resource_type=route_type if route_type in PARTNER_RESOURCE_TYPES else None,
        partner=facts.get("partner") or _claimed_partner(request),
        status=response.status,
        events=facts.get("events", 0),
        ignored=facts.get("ignored", 0),
        problems=facts.get("problems", 0),
        dead_lettered=facts.get("kept", False),
        replayed=facts.get("replayed", False),
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )
    return response


def build_app(
    config: GatewayConfig | None = None, make_producer: Callable[[], KafkaProducer] | None = None
) -> web.Application:
    """The gateway as an aiohttp application (settings from the environment by default)."""
    config = config or gateway_config()
    # The body is read by hand against max_body; aiohttp's own cap only has to stay out of the way.
    app = web.Application(middlewares=[every_request], client_max_size=config.max_body + 1)
    gateway = Gateway(config, make_producer)
    app[GATEWAY] = gateway
    app.router.add_post("/fhir", receive)
    app.router.add_post("/fhir/$process-message", process_message)  # before {resource_type}
    app.router.add_post("/fhir/{resource_type}", receive)
    app.router.add_get("/metadata", metadata)
    app.router.add_get("/fhir/metadata", metadata)
    app.router.add_get("/openapi.json", openapi)
    from connectors.gateway.upload import upload_csv  # it builds on this module: imported here

    app.router.add_post("/upload/csv", upload_csv)
    add_health_routes(app, ready={"kafka": KafkaProbe()})

    async def close_lanes(_: web.Application) -> None:
        await gateway.lanes.close()
        gateway.guards.close()

    app.on_cleanup.append(close_lanes)
    return app


def openapi_text() -> str:
    """The OpenAPI document as committed at connectors/gateway/openapi.json."""
    return orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2).decode() + "\n"


def main(argv: list[str] | None = None) -> int:
    """`concord gateway [--host H] [--port P] [--openapi]`: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="concord gateway", description="Run the HTTP ingest gateway for partner FHIR input."
    )
    parser.add_argument("--host", help="address to listen on (CONCORD_GATEWAY_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (CONCORD_GATEWAY_PORT, 8080)")
    parser.add_argument(
        "--openapi", action="store_true", help="print the OpenAPI document and exit"
    )
    args = parser.parse_args(argv)
    if args.openapi:
        sys.stdout.write(openapi_text())
        return 0
    from services.runtime import configure_logging as configure

    configure()
    try:
        config = gateway_config()
    except ValueError as exc:
        print(f"concord gateway: {exc}", file=sys.stderr)
        return 2
    config = replace(config, host=args.host or config.host, port=args.port or config.port)
    log.info("gateway.starting", host=config.host, port=config.port, max_body=config.max_body)
    try:
        asyncio.run(serve(build_app(config), config.host, config.port, config.guards))
    except OSError as exc:
        print(
            f"concord gateway: cannot listen on {config.host}:{config.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
