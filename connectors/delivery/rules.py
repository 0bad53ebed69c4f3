"""The decisions of outbound delivery, without I/O: endpoints (with their credentials' references),
settings, retry schedule, outcomes, which offsets may be committed, and who a failed delivery is
told to: the operator always, and the referrer when it was a referral to a service.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from schemas.envelope import DeadLetter, Envelope, Subject
from schemas.identifiers import HUB_PERSON, PARTNER_ID
from schemas.vocabulary import ALERT_SYSTEM, HUB_SOURCE, RECIPIENT_EXTENSION
from services.domain.audit import audit_event
from services.domain.consent import ROLE_OF_KIND, Role

Format = Literal["fhir", "json", "hl7"]
FORMATS: tuple[Format, ...] = ("fhir", "json", "hl7")
OPERATOR = "hub-operator"  # the ALERTS key for the hub's own operators: logged, never delivered
DELIVERY_FAILED = "delivery-failed"
DELIVERY_FAILED_EVENT = "alert.delivery.failed"
REFERRAL_NOT_DELIVERED = "referral-not-delivered"
REFERRAL_NOT_DELIVERED_EVENT = "referral.delivery.failed"
# A referral on its way to the receiving service (services/domain/referral_steps.py): when it
# cannot be delivered, the referrer is told. Nothing else is, so a notice that cannot be
# delivered to the referrer raises no notice of its own.
REFERRAL_TO_SERVICE_EVENTS = frozenset({"referral.request.delivered"})
# Only probation refers through the hub (services/domain/referrals.py check_referrer).
REFERRER_ROLE: Role = ROLE_OF_KIND["probation"]
DISCLOSURE_AUDIT_EVENT = "audit.disclosure.recorded"
# Fixed, so the operator alert for one failure has the same id if it is raised again.
FAILURE_NAMESPACE = uuid.UUID("9d3c1a57-6e2b-5f40-8a1d-4c7b0e9f2d13")
MAX_RAW_CHARS = 512 * 1024  # a dead letter stays well under the broker's 1 MB message limit


# --- endpoints ------------------------------------------------------------------------------


class EndpointConfigError(ValueError):
    """The endpoints file is wrong; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a secret is kept — an environment variable, or a file (one member of a JSON object
    when `key` is given) — never the secret itself: the endpoints file holds no secrets."""

    env: str | None = None
    file: str | None = None
    key: str | None = None

    def describe(self) -> str:
        """Where the secret comes from, for `--check`: names only, never the value."""
        if self.env is not None:
            return f"env {self.env}"
        return f"file {self.file}" + (f" key {self.key}" if self.key is not None else "")


SIGNATURE_HEADER = "webhook-signature"  # the Standard Webhooks name


@dataclass(frozen=True, slots=True)
class HmacAuth:
    """A Standard Webhooks signature (HMAC-SHA256 over id, timestamp and body) on every request."""

    secret: SecretRef
    header: str = SIGNATURE_HEADER


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS settings beyond the default: the CA the partner's server is checked against (else the
    system's), and the hub's client certificate for mutual TLS. Paths are relative to the
    endpoints file."""

    ca: str | None = None
    client_cert: str | None = None
    client_key: str | None = None  # None: the key is in the client_cert file

    def describe(self) -> str:
        """The TLS mode, for `--check`."""
        server = (
            f"server checked against {self.ca}" if self.ca else "server checked against system CAs"
        )
        client = f", client certificate {self.client_cert}" if self.client_cert else ""
        return server + client


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how one partner receives its messages, and how it can tell they are the hub's."""

    partner: str
    format: Format
    url: str | None = None  # fhir and json: the webhook
    host: str | None = None  # hl7: the partner's MLLP listener
    port: int | None = None
    bearer: SecretRef | None = None  # fhir and json: Authorization: Bearer <token>
    hmac: HmacAuth | None = None  # fhir and json: a signature header over the body
    tls: Tls | None = None  # https, or MLLP over TLS
    where: str = field(default="", compare=False)  # "<file>: endpoints[i] (<partner>)", for errors

    def describe(self) -> str:
        """The address, for logs and start-up messages (no credentials are ever in it)."""
        if self.url is not None:
            return self.url
        return f"{'mllps' if self.tls else 'mllp'}://{self.host}:{self.port}"

    def describe_auth(self) -> str:
        """How the partner can tell a message is the hub's, for `--check`: never a secret."""
        modes = []
        if self.bearer is not None:
            modes.append(f"bearer token ({self.bearer.describe()})")
        if self.hmac is not None:
            modes.append(f"hmac-sha256 {self.hmac.header} ({self.hmac.secret.describe()})")
        if self.tls is not None and self.tls.client_cert is not None:
            modes.append("client certificate")
        auth = " + ".join(modes) if modes else "none"
        tls = f"; tls: {self.tls.describe()}" if self.tls is not None else ""
        return f"auth: {auth}{tls}"


_FIELDS: Mapping[Format, frozenset[str]] = {
    "fhir": frozenset({"partner", "format", "url", "auth", "tls"}),
    "json": frozenset({"partner", "format", "url", "auth", "tls"}),
    "hl7": frozenset({"partner", "format", "host", "port", "tls"}),
}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# Headers delivery sets itself: a signature under one of these names would replace them.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "content-length",
        "host",
        "idempotency-key",
        "webhook-id",
        "webhook-timestamp",
        "x-concord-event-type",
        "x-concord-attempt",
    }
)


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
    tls = _tls(raw["tls"], where) if "tls" in raw else None
    if fmt == "hl7":
        return _mllp_entry(raw, partner, where, tls)
    url = raw.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointConfigError(f"{where}: url: must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise EndpointConfigError(f"{where}: url: must not carry credentials")
    if tls is not None and parts.scheme != "https":
        raise EndpointConfigError(f"{where}: tls: needs an https:// url")
    bearer, hmac = _auth(raw["auth"], where) if "auth" in raw else (None, None)
    return Endpoint(partner, fmt, url=url, bearer=bearer, hmac=hmac, tls=tls, where=where)


def _mllp_entry(raw: Mapping[str, Any], partner: str, where: str, tls: Tls | None) -> Endpoint:
    host, port = raw.get("host"), raw.get("port")
    if not isinstance(host, str) or not host:
        raise EndpointConfigError(f"{where}: host: required for an hl7 endpoint")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise EndpointConfigError(f"{where}: port: must be a whole number from 1 to 65535")
    return Endpoint(partner, "hl7", host=host, port=port, tls=tls, where=where)


def _fields(raw: Any, where: str, name: str, allowed: Iterable[str]) -> Mapping[str, Any]:
    """`raw` as a mapping of only the `allowed` fields, at least one of them."""
    allowed = sorted(allowed)
    if not isinstance(raw, Mapping) or not raw:
        raise EndpointConfigError(f"{where}: {name}: must be a mapping of {', '.join(allowed)}")
    unknown = sorted(str(k) for k in set(raw) - set(allowed))
    if unknown:
        raise EndpointConfigError(
            f"{where}: {name}.{', '.join(unknown)}: not a field of {name} ({', '.join(allowed)})"
        )
    return raw


def _auth(raw: Any, where: str) -> tuple[SecretRef | None, HmacAuth | None]:
    auth = _fields(raw, where, "auth", ("bearer", "hmac"))
    bearer = hmac = None
    if "bearer" in auth:
        if not isinstance(auth["bearer"], Mapping):
            secret_ref(auth["bearer"], f"{where}: auth.bearer")  # refuses the inline value
        fields = _fields(auth["bearer"], where, "auth.bearer", ("secret",))
        bearer = secret_ref(fields.get("secret"), f"{where}: auth.bearer.secret")
    if "hmac" in auth:
        if not isinstance(auth["hmac"], Mapping):
            secret_ref(auth["hmac"], f"{where}: auth.hmac")  # refuses the inline value
        fields = _fields(auth["hmac"], where, "auth.hmac", ("secret", "header"))
        secret = secret_ref(fields.get("secret"), f"{where}: auth.hmac.secret")
        header = fields.get("header", SIGNATURE_HEADER)
        if (
            not isinstance(header, str)
            or not HEADER_NAME.match(header)
            or header.lower() in RESERVED_HEADERS
        ):
            raise EndpointConfigError(
                f"{where}: auth.hmac.header: must be an HTTP header name that delivery does not "
                f"set itself (default {SIGNATURE_HEADER})"
            )
        hmac = HmacAuth(secret, header)
    return bearer, hmac


def secret_ref(raw: Any, where: str) -> SecretRef:
    """A secret reference — {env: NAME}, {file: PATH} or {file: PATH, key: NAME} — read from the
    endpoints file. A plain value is refused, and never quoted: it may be the secret itself."""
    if raw is None:
        raise EndpointConfigError(f"{where}: required: {{env: VARIABLE}} or {{file: PATH}}")
    if not isinstance(raw, Mapping):
        raise EndpointConfigError(
            f"{where}: an inline secret is not allowed in the endpoints file: refer to it as "
            "{env: VARIABLE} or {file: PATH}"
        )
    unknown = sorted(str(k) for k in set(raw) - {"env", "file", "key"})
    if unknown:
        raise EndpointConfigError(f"{where}: {', '.join(unknown)}: not a field (env, file, key)")
    env, file, key = raw.get("env"), raw.get("file"), raw.get("key")
    if (env is None) == (file is None):
        raise EndpointConfigError(f"{where}: give exactly one of env and file")
    if env is not None:
        if not isinstance(env, str) or not ENV_NAME.match(env):
            raise EndpointConfigError(f"{where}: env: must be an environment variable's name")
        if key is not None:
            raise EndpointConfigError(f"{where}: key: only with file (a JSON object's member)")
        return SecretRef(env=env)
    if not isinstance(file, str) or not file:
        raise EndpointConfigError(f"{where}: file: must be a path")
    if key is not None and (not isinstance(key, str) or not key):
        raise EndpointConfigError(f"{where}: key: must be the name of a member of the JSON file")
    return SecretRef(file=file, key=key)


def _tls(raw: Any, where: str) -> Tls:
    fields = _fields(raw, where, "tls", ("ca", "client_cert", "client_key"))
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise EndpointConfigError(f"{where}: tls.{name}: must be a file path")
    if "client_key" in fields and "client_cert" not in fields:
        raise EndpointConfigError(f"{where}: tls.client_key: needs tls.client_cert")
    return Tls(fields.get("ca"), fields.get("client_cert"), fields.get("client_key"))


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
    commit_interval_s: float = 0.2
    journal_keys: int = 100_000  # delivered keys the journal keeps (DeliveredKeys)


_ENV: Mapping[str, tuple[str, type[int] | type[float]]] = {
    "max_attempts": ("CONCORD_DELIVERY_MAX_ATTEMPTS", int),
    "backoff_base_s": ("CONCORD_DELIVERY_BACKOFF_BASE_S", float),
    "backoff_cap_s": ("CONCORD_DELIVERY_BACKOFF_CAP_S", float),
    "timeout_s": ("CONCORD_DELIVERY_TIMEOUT_S", float),
    "max_backlog": ("CONCORD_DELIVERY_MAX_BACKLOG", int),
    "commit_interval_s": ("CONCORD_DELIVERY_COMMIT_INTERVAL_S", float),
    "journal_keys": ("CONCORD_DELIVERY_JOURNAL_KEYS", int),
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


# --- repeats --------------------------------------------------------------------------------


def delivery_key(partner: str, event_id: str) -> str:
    """What a delivered message is remembered by: its recipient and its event id (the
    idempotency key the partner is given)."""
    return f"{partner} {event_id}"


class DeliveredKeys:
    """The keys of the most recent `limit` messages delivered, oldest forgotten first.

    After a crash the messages past the committed offset are fetched again; those kept here are
    not sent again. A repeat older than the limit is sent again, with the same idempotency key.
    """

    def __init__(self, limit: int, keys: Iterable[str] = ()) -> None:
        self.limit = limit
        self._keys: dict[str, None] = {}  # insertion-ordered: the oldest first
        for key in keys:
            self.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> bool:
        """Remember `key`; False when it was remembered already."""
        if key in self._keys:
            return False
        self._keys[key] = None
        while len(self._keys) > self.limit:
            del self._keys[next(iter(self._keys))]
        return True


def journal_keys(text: str) -> list[str]:
    """The delivered keys a journal file holds, one a line, oldest first. A last line with no
    newline was cut short by a crash and is left out, as is any line that is not a key."""
    complete = text.split("\n")[:-1]
    return [line for line in complete if len(line.split(" ")) == 2 and all(line.split(" "))]


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
    raw: bytes | None,
    *,
    reason: str,
    partner: str,
    source: str,
    event_id: str | None,
    now: datetime,
) -> DeadLetter:
    """The undeliverable message, whole (trimmed only if huge), with why, for an operator to
    replay; a tombstone (no value) is kept as an empty text."""
    text = (raw or b"").decode("utf-8", errors="replace")
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


# --- telling the referrer -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferralParties:
    """Who referred which referral to whom, about whom: an entry of the referrals topic."""

    request_id: str  # the referrer's ServiceRequest id
    person_id: str
    referrer: str
    recipient: str | None


@dataclass(frozen=True, slots=True)
class ReferralSent:
    """A referral that delivery was taking to the receiving service."""

    recipient: str
    request_id: str
    person_id: str


def referral_sent(envelope: Envelope, partner: str) -> ReferralSent | None:
    """The referral `envelope` carried to `partner`, when it is a referral to a service."""
    resource = envelope.resource
    if envelope.event_type not in REFERRAL_TO_SERVICE_EVENTS:
        return None
    if resource.get("resourceType") != "ServiceRequest" or partner == OPERATOR:
        return None
    request_id, person_id = resource.get("id"), _person_of(envelope)
    if not isinstance(request_id, str) or not request_id or person_id is None:
        return None
    return ReferralSent(partner, request_id, person_id)


def _person_of(envelope: Envelope) -> str | None:
    if envelope.subject is not None and envelope.subject.person_id is not None:
        return envelope.subject.person_id
    subject = envelope.resource.get("subject")
    identifier = subject.get("identifier") if isinstance(subject, Mapping) else None
    if isinstance(identifier, Mapping) and identifier.get("system") == HUB_PERSON:
        value = identifier.get("value")
        return value if isinstance(value, str) and value else None
    return None


def referrer_to_tell(sent: ReferralSent, referrals: Iterable[ReferralParties]) -> str | None:
    """The partner that referred this referral to its recipient: the one referrer whose referral
    names the same ServiceRequest id, person and recipient. None when no referral matches, or
    more than one referrer does: a notice to the wrong referrer would tell it of another's
    referral, so the operator alert alone stands then."""
    referrers = {
        r.referrer
        for r in referrals
        if r.recipient == sent.recipient
        and r.request_id == sent.request_id
        and r.person_id == sent.person_id
        and r.referrer not in (sent.recipient, OPERATOR)
    }
    return referrers.pop() if len(referrers) == 1 else None


def referrer_notice(
    sent: ReferralSent, *, referrer: str, event_id: str, reason: str, now: datetime
) -> Envelope:
    """The referral alert for the referrer: which referral could not reach which service, and
    why, in the shape of the referral alerts it already receives (services/domain/
    referral_messages.py referral_alert). `reason` is delivery's own short reason (an HTTP
    status, an ACK code): never the partner's response text, never the referral's content."""
    notice_id = uuid.uuid5(FAILURE_NAMESPACE, f"referrer\n{referrer}\n{event_id}")
    # Delivery knows the person only by the hub's id; the referral's id is what the officer
    # finds it by.
    named = {"system": HUB_PERSON, "value": sent.person_id}
    resource = {
        "resourceType": "DetectedIssue",
        "id": str(notice_id),
        "contained": [{"resourceType": "Patient", "id": "patient", "identifier": [named]}],
        "extension": [{"url": RECIPIENT_EXTENSION, "valueString": referrer}],
        "status": "final",
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": REFERRAL_NOT_DELIVERED}]},
        "severity": "high",
        "patient": {"reference": "#patient", "identifier": named},
        "identifiedDateTime": now.isoformat().replace("+00:00", "Z"),
        "implicated": [{"reference": f"ServiceRequest/{sent.request_id}"}],
        "detail": (
            f"Referral {sent.request_id} could not be delivered to {sent.recipient} ({reason}). "
            "The service does not have it; the hub's operators have been alerted."
        ),
    }
    return Envelope(
        event_id=notice_id,
        event_type=REFERRAL_NOT_DELIVERED_EVENT,
        source=HUB_SOURCE,
        subject=Subject(person_id=sent.person_id),
        occurred_at=now,
        recorded_at=now,
        correlation_id=uuid.UUID(event_id),
        resource=resource,
    )


def notice_audit(notice: Envelope, *, referrer: str, now: datetime) -> Envelope:
    """The AuditEvent of a notice to the referrer: who was told what about whom, on the basis
    that it is the referrer's own referral (as the referral's Task is)."""
    person_id = notice.subject.person_id if notice.subject is not None else None
    assert person_id is not None, "a referrer notice names the person"
    audit = audit_event(
        disclosure_id=str(notice.event_id),
        person_id=person_id,
        recipient=referrer,
        role=REFERRER_ROLE,
        what=f"DetectedIssue/{notice.resource['id']}",
        basis="own-record",
        at=now,
    )
    return Envelope(
        event_id=uuid.UUID(audit["id"]),
        event_type=DISCLOSURE_AUDIT_EVENT,
        source=HUB_SOURCE,
        subject=Subject(person_id=person_id),
        occurred_at=now,
        recorded_at=now,
        correlation_id=notice.event_id,
        resource=audit,
    )
