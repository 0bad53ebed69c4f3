"""What lets a partner tell that a message is the hub's: the secrets an endpoint refers to, read
once at start-up, the TLS context of its connection, and the headers that carry a bearer token
and a Standard Webhooks signature (https://www.standardwebhooks.com).

Reading secrets and certificates is the only I/O here; `auth_headers` is a pure function of the
credentials, the message id, the body and the time.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

from connectors.delivery.rules import SIGNATURE_HEADER, Endpoint, EndpointConfigError, SecretRef

# The Standard Webhooks spec asks for secrets of 24 to 64 random bytes.
MIN_HMAC_SECRET_BYTES = 24
HMAC_PREFIX = "whsec_"


@dataclass(frozen=True, slots=True)
class Credentials:
    """One endpoint's resolved credentials; the secrets never appear in a repr."""

    bearer: str | None = field(default=None, repr=False)
    signer: Webhook | None = field(default=None, repr=False)
    signature_header: str = SIGNATURE_HEADER
    ssl: ssl.SSLContext | None = None  # None: the default context (system CAs, no client cert)


NONE = Credentials()


def auth_headers(
    credentials: Credentials, message_id: str, body: bytes, now: datetime
) -> dict[str, str]:
    """The headers that authenticate one request: `Authorization: Bearer`, and the Standard
    Webhooks `webhook-id`, `webhook-timestamp` and signature (`v1,<base64 HMAC-SHA256 of
    "<id>.<timestamp>.<body>">`). Signed at `now`, so every attempt carries a fresh timestamp."""
    headers: dict[str, str] = {}
    if credentials.bearer is not None:
        headers["Authorization"] = f"Bearer {credentials.bearer}"
    if credentials.signer is not None:
        now = now.astimezone(UTC)  # the library reads the time as UTC whatever its zone
        headers["webhook-id"] = message_id
        headers["webhook-timestamp"] = str(int(now.timestamp()))
        headers[credentials.signature_header] = credentials.signer.sign(
            message_id, now, body.decode("utf-8")
        )
    return headers


def credentials_for(endpoint: Endpoint, base: Path, env: Mapping[str, str]) -> Credentials:
    """The endpoint's credentials: its secrets read from `env` or files (relative paths from
    `base`, the endpoints file's folder), its TLS context built. EndpointConfigError names the
    file, entry and field, never a secret's value."""
    where = endpoint.where or endpoint.partner
    bearer = signer = None
    if endpoint.bearer is not None:
        bearer = read_secret(endpoint.bearer, base, env, f"{where}: auth.bearer.secret")
        if any(c.isspace() for c in bearer):
            raise EndpointConfigError(f"{where}: auth.bearer.secret: a token has no spaces")
    if endpoint.hmac is not None:
        field_name = f"{where}: auth.hmac.secret"
        signer = _signer(read_secret(endpoint.hmac.secret, base, env, field_name), field_name)
    context = None
    if endpoint.tls is not None:
        context = _tls_context(endpoint, base, where)
    header = endpoint.hmac.header if endpoint.hmac is not None else SIGNATURE_HEADER
    return Credentials(bearer, signer, header, context)


def read_secret(ref: SecretRef, base: Path, env: Mapping[str, str], where: str) -> str:
    """The secret a reference points at, stripped of surrounding white space."""
    if ref.env is not None:
        value = env.get(ref.env, "").strip()
        if not value:
            raise EndpointConfigError(f"{where}: environment variable {ref.env} is not set")
        return value
    assert ref.file is not None
    path = base / ref.file
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EndpointConfigError(f"{where}: cannot read {path}: {exc.strerror}") from exc
    if ref.key is None:
        value = text.strip()
    else:
        try:
            document = json.loads(text)
        except ValueError:
            raise EndpointConfigError(f"{where}: {path} is not a JSON object") from None
        if not isinstance(document, dict):
            raise EndpointConfigError(f"{where}: {path} is not a JSON object")
        member = document.get(ref.key)
        value = member.strip() if isinstance(member, str) else ""
    if not value:
        named = f" member {ref.key}" if ref.key is not None else ""
        raise EndpointConfigError(f"{where}: {path}{named}: no secret there")
    return value


def _signer(secret: str, where: str) -> Webhook:
    """A Standard Webhooks signer for `secret`: "whsec_" and the base64 of 24 to 64 bytes."""
    encoded = secret.removeprefix(HMAC_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    if len(key) < MIN_HMAC_SECRET_BYTES:
        raise EndpointConfigError(
            f"{where}: must be a Standard Webhooks secret: {HMAC_PREFIX} and the base64 of at "
            f"least {MIN_HMAC_SECRET_BYTES} random bytes"
        )
    return Webhook(key)


def _tls_context(endpoint: Endpoint, base: Path, where: str) -> ssl.SSLContext:
    """A client context that checks the partner's server (against `ca`, else the system's CAs,
    with its host name) and, for mutual TLS, presents the hub's certificate."""
    tls = endpoint.tls
    assert tls is not None
    try:
        context = ssl.create_default_context(cafile=str(base / tls.ca) if tls.ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise EndpointConfigError(f"{where}: tls.ca: {_problem(exc)}") from exc
    if tls.client_cert is not None:
        key = str(base / tls.client_key) if tls.client_key else None
        try:
            context.load_cert_chain(str(base / tls.client_cert), key)
        except (OSError, ssl.SSLError) as exc:
            fields = "tls.client_cert, tls.client_key" if key else "tls.client_cert"
            raise EndpointConfigError(f"{where}: {fields}: {_problem(exc)}") from exc
    return context


def _problem(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not a usable certificate or key ({exc.reason or 'unreadable'})"
    return f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else str(exc)


def resolve_credentials(
    endpoints: Mapping[str, Endpoint], base: Path, env: Mapping[str, str]
) -> dict[str, Credentials]:
    """Every endpoint's credentials, by partner; the first problem raised as EndpointConfigError."""
    return {partner: credentials_for(e, base, env) for partner, e in endpoints.items()}
