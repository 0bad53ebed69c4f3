"""`/metrics`, `/livez` and `/ready` for the processes that are not faust workers: added to an
aiohttp application (the gateway, the pages) or served on a port of their own (the MLLP listener
on CONCORD_MLLP_HTTP_PORT, the deliverer on CONCORD_DELIVERY_HTTP_PORT).

`/livez` says the process's event loop answers; `/ready` says it can do its work now: Kafka
answers (and whatever else the process adds, e.g. the deliverer's partitions are assigned).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from services.observe.metrics import exposition
from services.runtime import bootstrap_servers, kafka_client_config

log = structlog.get_logger(__name__)

Check = Callable[[], Awaitable[bool]]
# The settings naming the health ports of the processes that serve them on a port of their own.
MLLP_HTTP = ("CONCORD_MLLP_HTTP_PORT", 8082)
DELIVERY_HTTP = ("CONCORD_DELIVERY_HTTP_PORT", 8083)
KAFKA_PROBE_TIMEOUT_S = 3.0
KAFKA_PROBE_EVERY_S = 5.0  # probes arriving faster share the last answer: Kafka is asked no more


async def metrics(_: web.Request) -> web.Response:
    """The process's metrics in Prometheus's text format."""
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def livez(_: web.Request) -> web.Response:
    """200 while the process's event loop answers."""
    return web.json_response({"live": True})


def ready_handler(checks: dict[str, Check]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """200 when every check passes, else 503 naming the ones that failed."""

    async def ready(_: web.Request) -> web.Response:
        results = {name: await check() for name, check in checks.items()}
        failing = sorted(name for name, ok in results.items() if not ok)
        body = {"ready": not failing, "failing": failing}
        return web.json_response(body, status=503 if failing else 200)

    return ready


def add_routes(app: web.Application, ready: dict[str, Check] | None = None) -> None:
    """Add /metrics and /livez to an application, and /ready when it has readiness checks."""
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    if ready is not None:
        app.router.add_get("/ready", ready_handler(ready))


async def serve_health(host: str, port: int, ready: dict[str, Check]) -> web.AppRunner:
    """Serve /metrics, /livez and /ready on their own port (port 0 picks a free one); the caller
    cleans the runner up when it stops."""
    app = web.Application()
    add_routes(app, ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("health.listening", host=host, port=bound_port(runner))
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a health server listens on (the one chosen when asked for port 0)."""
    return int(runner.addresses[0][1])


def http_address(port_variable: str, default_port: int) -> tuple[str, int]:
    """Where a process serves its health endpoints: CONCORD_HEALTH_HOST (127.0.0.1) and the port
    in `port_variable`; ValueError names a malformed port."""
    raw = os.environ.get(port_variable, str(default_port)).strip()
    if not raw.isdigit() or not 0 <= int(raw) < 65536:
        raise ValueError(f"{port_variable} must be a TCP port number, not {raw!r}")
    return os.environ.get("CONCORD_HEALTH_HOST", "127.0.0.1"), int(raw)


class KafkaProbe:
    """Whether Kafka answers a metadata request, asked at most every few seconds and off the
    event loop; a failure is logged once per change, by its type only."""

    def __init__(self, bootstrap: str | None = None, timeout_s: float = KAFKA_PROBE_TIMEOUT_S):
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._answer: tuple[float, bool] | None = None
        self._lock = asyncio.Lock()

    def _ask(self) -> bool:
        timeout_ms = int(self._timeout_s * 1000)
        try:
            admin = KafkaAdminClient(
                **(
                    kafka_client_config()
                    | {"bootstrap_servers": self._bootstrap or bootstrap_servers()}
                ),
                client_id="concord-ready",
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
        except KafkaError as exc:
            self._tell(False, type(exc).__name__)
            return False
        try:
            admin.list_topics()
        except KafkaError as exc:
            self._tell(False, type(exc).__name__)
            return False
        finally:
            admin.close()
        self._tell(True, None)
        return True

    def _tell(self, ok: bool, error: str | None) -> None:
        if self._answer is None or self._answer[1] != ok:
            (log.info if ok else log.warning)("health.kafka", reachable=ok, error=error)

    async def __call__(self) -> bool:
        async with self._lock:
            now = time.monotonic()
            if self._answer is not None and now - self._answer[0] < KAFKA_PROBE_EVERY_S:
                return self._answer[1]
            ok = await asyncio.get_running_loop().run_in_executor(None, self._ask)
            self._answer = (time.monotonic(), ok)
            return ok
