"""Operator alerts: a delivery given up, a new identity conflict, a partner silent for longer
than expected. Each is logged at once and, when CONCORD_OPERATOR_WEBHOOK_URL is set, POSTed
there as JSON by a background task: alerts of one kind about one partner raised while a POST is
under way are sent together as one, with counts, so a partner that is down cannot flood the
webhook; a POST is tried a bounded number of times and never holds up the hub.

The body names the kind, the partner id and counts: never a person, an identifier or an event id.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

import aiohttp
import structlog

from services.observe.metrics import OPERATOR_ALERTS, OPERATOR_WEBHOOK

log = structlog.get_logger(__name__)

AlertKind = Literal["delivery-gave-up", "identity-conflict", "partner-silent"]
WEBHOOK_ENV = "CONCORD_OPERATOR_WEBHOOK_URL"
ATTEMPTS = 3
TIMEOUT_S = 5.0
MAX_PENDING = 1000  # distinct (kind, partner) alerts waiting to be sent; beyond it they are dropped


class OperatorAlerts:
    """Logs operator alerts and sends them to the operator webhook, if one is set."""

    def __init__(self, url: str | None, *, backoff_s: float = 1.0) -> None:
        self.url = url or None
        self._backoff_s = backoff_s
        self._pending: dict[tuple[AlertKind, str], Counter[str]] = {}
        self._sender: asyncio.Task[None] | None = None

    def raise_alert(self, kind: AlertKind, partner: str, counts: Mapping[str, int]) -> None:
        """Log the alert and queue it for the webhook; returns at once."""
        OPERATOR_ALERTS.labels(kind).inc()
        log.warning("operator.alert", kind=kind, partner=partner, **dict(counts))
        if self.url is None:
            return
        key = (kind, partner)
        if key not in self._pending and len(self._pending) >= MAX_PENDING:
            OPERATOR_WEBHOOK.labels("dropped").inc()
            log.error("operator.webhook_dropped", kind=kind, partner=partner)
            return
        self._pending.setdefault(key, Counter()).update(counts)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_pending())

    async def _send_pending(self) -> None:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while self._pending:
                (kind, partner), counts = next(iter(self._pending.items()))
                del self._pending[(kind, partner)]
                await self._post(session, webhook_body(kind, partner, counts, datetime.now(UTC)))

    async def _post(self, session: aiohttp.ClientSession, body: dict[str, object]) -> None:
        assert self.url is not None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with session.post(self.url, json=body) as response:
                    if response.status < 300:
                        OPERATOR_WEBHOOK.labels("sent").inc()
                        return
                    error = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = type(exc).__name__
            if attempt < ATTEMPTS:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
        OPERATOR_WEBHOOK.labels("failed").inc()
        log.error("operator.webhook_failed", kind=body["kind"], attempts=ATTEMPTS, error=error)

    async def drained(self) -> None:
        """Wait until every queued alert has been sent or given up (for shutdown and tests)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)


def webhook_body(
    kind: AlertKind, partner: str, counts: Mapping[str, int], at: datetime
) -> dict[str, object]:
    """The JSON an operator alert is POSTed as."""
    return {
        "kind": kind,
        "partner": partner,
        "counts": dict(sorted(counts.items())),
        "at": at.isoformat().replace("+00:00", "Z"),
    }


_ALERTS: OperatorAlerts | None = None


def operator_alerts() -> OperatorAlerts:
    """This process's operator alerts, sent to CONCORD_OPERATOR_WEBHOOK_URL when it is set."""
    global _ALERTS  # noqa: PLW0603 -- one sender per process, made on first use
    if _ALERTS is None:
        _ALERTS = OperatorAlerts(os.environ.get(WEBHOOK_ENV, "").strip() or None)
    return _ALERTS
