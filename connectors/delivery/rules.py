"""The decisions of outbound delivery, without I/O: endpoints, settings, retry schedule, outcomes,
which offsets may be committed, and what a failed delivery tells the operator.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from schemas.envelope import DeadLetter, Envelope
from schemas.identifiers import PARTNER_ID
from schemas.vocabulary import ALERT_SYSTEM, HUB_SOURCE

Format = Literal["fhir", "json", "hl7"]
FORMATS: tuple[Format, ...] = ("fhir", "json", "hl7")
OPERATOR = "hub-operator"  # the ALERTS key for the hub's own operators: logged, never delivered
DELIVERY_FAILED = "delivery-failed"
DELIVERY_FAILED_EVENT = "alert.delivery.failed"
# Fixed, so the operator alert for one failure has the same id if it is raised again.
FAILURE_NAMESPACE = uuid.UUID("9d3c1a57-6e2b-5f40-8a1d-4c7b0e9f2d13")
MAX_RAW_CHARS = 512 * 1024  # a dead letter stays well under the broker's 1 MB message limit


# --- endpoints ------------------------------------------------------------------------------


class EndpointConfigError(ValueError):
    """The endpoints file is wrong; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how one partner receives its messages."""

    partner: str
    format: Format
    url: str | None = None  # fhir and json: the webhook
    host: str | None = None  # hl7: the partner's MLLP listener
    port: int | None = None

    def describe(self) -> str:
        """The address, for logs and start-up messages (no credentials are ever in it)."""
        return self.url if self.url is not None else f"mllp://{self.host}:{self.port}"


_FIELDS: Mapping[Format, frozenset[str]] = {
    "fhir": frozenset({"partner", "format", "url"}),
    "json": frozenset({"partner", "format", "url"}),
    "hl7": frozenset({"partner", "format", "host", "port"}),
}


def _entry(raw: Any, where: str) -> Endpoint:
    if not isinstance(raw, Mapping):
        raise EndpointConfigError(f"{where}: must be a mapping with partner, format and address")
    partner = raw.get("partner")
    if not isinstance(partner, str) or not PARTNER_ID.match(partner):
        raise EndpointConfigError(f"{where}: partner: {partner!r} is not a partner id")
    where = f"{where} ({partner})"
    if partner == OPERATOR:
        raise EndpointConfigError(f"{where}: operator alerts are logged, never delivered")
    fmt = raw.get("format")
    if fmt not in FORMATS:
        raise EndpointConfigError(f"{where}: format: {fmt!r} is not one of {', '.join(FORMATS)}")
    unknown = sorted(set(raw) - _FIELDS[fmt])
    if unknown:
        allowed = ", ".join(sorted(_FIELDS[fmt]))
        raise EndpointConfigError(
            f"{where}: {', '.join(unknown)}: not a field of a {fmt} endpoint ({allowed})"
        )
    if fmt == "hl7":
        return _mllp_entry(raw, partner, where)
    url = raw.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointConfigError(f"{where}: url: must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise EndpointConfigError(f"{where}: url: must not carry credentials")
    return Endpoint(partner, fmt, url=url)


def _mllp_entry(raw: Mapping[str, Any], partner: str, where: str) -> Endpoint:
    host, port = raw.get("host"), raw.get("port")
    if not isinstance(host, str) or not host:
        raise EndpointConfigError(f"{where}: host: required for an hl7 endpoint")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise EndpointConfigError(f"{where}: port: must be a whole number from 1 to 65535")
    return Endpoint(partner, "hl7", host=host, port=port)


def load_endpoints(document: Any, origin: str) -> dict[str, Endpoint]:
    """The endpoints of a parsed YAML document, by partner; errors start with `origin`."""
    if not isinstance(document, Mapping) or not isinstance(document.get("endpoints"), list):
        raise EndpointConfigError(f"{origin}: must be a mapping with an 'endpoints' list")
    endpoints: dict[str, Endpoint] = {}
    for index, raw in enumerate(document["endpoints"]):
        endpoint = _entry(raw, f"{origin}: endpoints[{index}]")
        if endpoint.partner in endpoints:
            raise EndpointConfigError(
                f"{origin}: endpoints[{index}] ({endpoint.partner}): partner listed twice"
            )
        endpoints[endpoint.partner] = endpoint
    return endpoints


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Retry, timeout and memory limits (connectors/delivery/README.md lists the variables)."""

    max_attempts: int = 60
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 120.0
    timeout_s: float = 10.0
    max_backlog: int = 1000  # fetched, undelivered messages per partition before it is paused
    commit_interval_s: float = 1.0


_ENV: Mapping[str, tuple[str, type[int] | type[float]]] = {
    "max_attempts": ("CONCORD_DELIVERY_MAX_ATTEMPTS", int),
    "backoff_base_s": ("CONCORD_DELIVERY_BACKOFF_BASE_S", float),
    "backoff_cap_s": ("CONCORD_DELIVERY_BACKOFF_CAP_S", float),
    "timeout_s": ("CONCORD_DELIVERY_TIMEOUT_S", float),
    "max_backlog": ("CONCORD_DELIVERY_MAX_BACKLOG", int),
    "commit_interval_s": ("CONCORD_DELIVERY_COMMIT_INTERVAL_S", float),
}


def settings_from_env(env: Mapping[str, str]) -> DeliverySettings:
    """Settings from environment variables, defaults where unset; ValueError naming a bad one."""
    values: dict[str, Any] = {}
    for name, (variable, kind) in _ENV.items():
        if variable not in env:
            continue
        try:
            value = kind(env[variable])
        except ValueError:
            raise ValueError(f"{variable}: {env[variable]!r} is not a number") from None
        if value <= 0:
            raise ValueError(f"{variable}: must be greater than 0")
        values[name] = value
    return DeliverySettings(**values)


# --- retries --------------------------------------------------------------------------------

JITTER = 0.1  # at most this fraction is taken off a delay, so partners' retries spread out


def backoff_delay(attempt: int, settings: DeliverySettings, spread: float = 0.0) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): doubling from the base, capped.

    `spread` in [0, 1) takes up to JITTER of the delay off; jitter only ever shortens a delay,
    so the schedule's span has a known lower bound (schedule_span).
    """
    exponent = min(attempt - 1, 64)  # 2**64 seconds is already past any cap
    delay = min(settings.backoff_cap_s, settings.backoff_base_s * 2.0**exponent)
    return delay * (1.0 - JITTER * spread)


def retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds, or None when absent or an HTTP date (not honoured)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


# What one delivery attempt came to.
AttemptVerdict = Literal["delivered", "retry", "refused"]


def http_verdict(status: int) -> AttemptVerdict:
    """What an HTTP status means: 2xx delivered; 408, 429 and 5xx worth retrying; else refused.

    Redirects are refused too: a webhook that moved is a configuration fix, not a retry.
    """
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "refused"


# --- commit offsets -------------------------------------------------------------------------


@dataclass(slots=True)
class PartitionOffsets:
    """The fetched, not yet finished offsets of one partition, and what may be committed.

    Partners finish out of offset order (one is down, another is not), so the committed offset
    is the lowest unfinished one: everything below it is delivered or dead-lettered.
    """

    in_flight: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest offset fetched
    committed: int | None = None  # the last offset committed
    revoked: bool = False  # the partition went to another consumer: its queued work is dropped

    def fetched(self, offset: int) -> None:
        """A message was fetched and handed to a partner's queue."""
        self.in_flight.add(offset)
        self.next_offset = max(self.next_offset or 0, offset + 1)

    def finished(self, offset: int) -> None:
        """A message was delivered, dead-lettered or deliberately skipped."""
        self.in_flight.discard(offset)

    def backlog(self) -> int:
        """How many fetched messages are still waiting or being delivered."""
        return len(self.in_flight)

    def committable(self) -> int | None:
        """The offset to commit (Kafka's "next to read"), or None if nothing new is finished."""
        if self.next_offset is None:
            return None
        target = min(self.in_flight) if self.in_flight else self.next_offset
        if self.committed is not None and target <= self.committed:
            return None
        return target


# --- failures -------------------------------------------------------------------------------


def undeliverable_letter(
    raw: bytes, *, reason: str, partner: str, source: str, event_id: str | None, now: datetime
) -> DeadLetter:
    """The undeliverable message, whole (trimmed only if huge), with why, for an operator to replay."""
    text = raw.decode("utf-8", errors="replace")
    if len(text) > MAX_RAW_CHARS:
        text = text[:MAX_RAW_CHARS] + f"\n…[truncated from {len(text)} characters]"
    return DeadLetter(
        reason=reason,
        source=source,
        origin=f"delivery:{partner}",
        received_at=now,
        raw=text,
        event_id=uuid.UUID(event_id) if event_id else None,
    )


def operator_alert(*, partner: str, event_id: str | None, reason: str, now: datetime) -> Envelope:
    """A DetectedIssue for the hub's operators: which partner, which event, why — nothing clinical."""
    event = event_id or "unknown"
    alert_id = uuid.uuid5(FAILURE_NAMESPACE, f"{partner}\n{event}\n{reason}")
    stamp = now.isoformat().replace("+00:00", "Z")
    resource = {
        "resourceType": "DetectedIssue",
        "id": str(alert_id),
        "status": "final",
        "severity": "high",
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": DELIVERY_FAILED}]},
        "identifiedDateTime": stamp,
        "detail": f"delivery to {partner} of event {event} failed: {reason}",
    }
    return Envelope(
        event_id=alert_id,
        event_type=DELIVERY_FAILED_EVENT,
        source=HUB_SOURCE,
        subject=None,
        occurred_at=now,
        recorded_at=now,
        correlation_id=uuid.UUID(event_id) if event_id else alert_id,
        resource=resource,
    )
