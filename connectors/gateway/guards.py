"""The gateway's defences against abuse: sign-in within rates (per source address, per partner,
and far stricter for secret checks), secrets checked on their own threads, bodies read within a
time limit, idle and stalled connections closed, and a cap on open connections.

See connectors/gateway/README.md, "Limits".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog
from aiohttp import web

from connectors.abuse import EdgeLimits, RateLimits, SignInBusy, SignInPool, edge_limits
from connectors.gateway.rules import RefusedRequest, refuse
from services.domain.partners import Partner, PartnerDirectory
from services.domain.signin import AuthError, already_proven
from services.runtime import authenticate

log = structlog.get_logger(__name__)

BUSY_RETRY_S = 5


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Rates and timeouts; `guard_settings()` reads them from the environment."""

    limits: EdgeLimits = field(default_factory=EdgeLimits)
    idle_timeout_s: float = 15.0  # a connection with no request (or half a header) is closed
    read_timeout_s: float = 30.0  # the whole body must arrive within this
    max_connections: int = 512  # open connections; more are closed as they arrive


def guard_settings() -> GuardSettings:
    """Settings from CONCORD_RATE_*, CONCORD_SIGN_IN_* and CONCORD_GATEWAY_* (ValueError names
    a malformed one)."""
    env = os.environ
    try:
        found = GuardSettings(
            limits=edge_limits(),
            idle_timeout_s=float(env.get("CONCORD_GATEWAY_IDLE_TIMEOUT_S", "15")),
            read_timeout_s=float(env.get("CONCORD_GATEWAY_READ_TIMEOUT_S", "30")),
            max_connections=int(env.get("CONCORD_GATEWAY_MAX_CONNECTIONS", "512")),
        )
    except ValueError as exc:
        raise ValueError(f"a gateway limit is malformed: {exc}") from exc
    if found.idle_timeout_s <= 0 or found.read_timeout_s <= 0 or found.max_connections < 1:
        raise ValueError("gateway timeouts and CONCORD_GATEWAY_MAX_CONNECTIONS must be positive")
    return found


def too_many(wait_s: int, whose: str) -> RefusedRequest:
    """429 with how long to wait."""
    message = f"too many {whose} just now: retry after {wait_s} s"
    return replace(
        refuse(429, "throttled", "(rate)", message, dead_letter=False), retry_after=wait_s
    )


class Guards:
    """The rate counters and the sign-in pool of one gateway process."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.rates = RateLimits(settings.limits)
        limits = settings.limits
        self.pool = SignInPool(limits.sign_in_threads, limits.sign_in_queue)

    async def sign_in(
        self, directory: PartnerDirectory, partner_id: str, secret: str | None, source: str
    ) -> Partner | RefusedRequest:
        """The partner proven by its secret, or the refusal: 429 when its source address has made
        too many requests or asked for too many secret checks (a secret already proven is not
        checked again, so in practice: wrong secrets; the secret is then not checked), or the
        partner too many requests; 401 for a wrong credential; 503 when too many sign-ins
        wait for a check."""
        wait = self.rates.hit("source", source)
        if wait is not None:
            return too_many(wait, "requests from your address")
        partner = already_proven(directory, partner_id, secret)
        if partner is None:
            # Counted before the check, so that a burst of wrong secrets is cut off at once,
            # not only once the first of them have been found wrong.
            wait = self.rates.hit("sign-in-check", source)
            if wait is not None:
                return too_many(wait, "sign-ins from your address")
            try:
                partner = await self.pool.run(authenticate, directory, partner_id, secret)
            except SignInBusy:
                message = "too many sign-ins are being checked just now: retry shortly"
                busy = refuse(503, "transient", "(Authorization)", message, dead_letter=False)
                return replace(busy, retry_after=BUSY_RETRY_S)
            except AuthError as exc:
                reason = str(exc) if partner_id and secret else "no credential"
                message = f"{reason}: sign in with HTTP Basic (your partner id and secret)"
                return refuse(401, "security", "(Authorization)", message, dead_letter=False)
        wait = self.rates.hit("partner", partner.id)
        if wait is not None:
            return too_many(wait, f"requests from partner {partner.id}")
        return partner

    def close(self) -> None:
        """Stop the sign-in threads."""
        self.pool.close()


async def read_within(request: web.Request, limit: int, timeout_s: float) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body and whether there was more; TimeoutError when the body
    has not arrived within `timeout_s` (a sender trickling bytes holds no connection for ever)."""
    chunks, size = [], 0
    async with asyncio.timeout(timeout_s):
        while chunk := await request.content.readany():
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def capped(server: web.Server, max_connections: int) -> Callable[[], asyncio.Protocol]:
    """The server's protocol factory, closing connections beyond `max_connections` at once."""

    def protocol() -> asyncio.Protocol:
        if len(server.connections) >= max_connections:
            log.warning("gateway.connection_refused", reason="connection cap")
            return _Refused()
        return server()

    return protocol


async def serve(app: web.Application, host: str, port: int, settings: GuardSettings) -> None:
    """Serve `app` until SIGTERM or SIGINT, with the idle timeout and the connection cap."""
    # aiohttp's keep-alive timer also runs from the moment a connection is made until its first
    # request is whole, so it is the header read timeout as well as the idle one.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=settings.idle_timeout_s)
    await runner.setup()
    loop = asyncio.get_running_loop()
    assert runner.server is not None
    server = await loop.create_server(
        capped(runner.server, settings.max_connections), host, port, reuse_address=True
    )
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        server.close()
        await runner.cleanup()
