"""Partner sign-in for the CLI and HTTP endpoints: who is asking, proven by their secret.

Failures are logged with the partner id and the reason only, never the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

import structlog

from schemas.identifiers import PARTNER_ID
from services.domain.credentials import verify_secret
from services.domain.partners import Partner, PartnerDirectory

log = structlog.get_logger(__name__)
SECRET_ENV = "CONCORD_PARTNER_SECRET"  # noqa: S105 -- the variable's name, not a secret

# PBKDF2 is slow on purpose; remember secrets already proven (by digest, not in the clear).
_proven: set[tuple[str, str, str]] = set()


class AuthError(Exception):
    """A missing or wrong credential; the message says which, and never contains the secret."""


def authenticate(directory: PartnerDirectory, partner_id: str, secret: str | None) -> Partner:
    """The partner, when `secret` is its secret; AuthError otherwise."""
    partner = directory.get(partner_id)
    if not secret:
        raise _refused(partner_id, "missing credential")
    if partner is None or partner.secret_hash is None:
        raise _refused(partner_id, "unknown partner or wrong secret")
    proof = (partner_id, partner.secret_hash, hashlib.sha256(secret.encode()).hexdigest())
    if proof in _proven:
        return partner
    if not verify_secret(secret, partner.secret_hash):
        raise _refused(partner_id, "unknown partner or wrong secret")
    _proven.add(proof)
    return partner


def _refused(partner_id: str, reason: str) -> AuthError:
    # A caller-supplied id is logged only when it has a partner id's shape: never free text.
    shown = partner_id if PARTNER_ID.match(partner_id) else "(not a partner id)"
    log.warning("auth.refused", partner=shown, reason=reason)
    return AuthError(f"{reason} for partner {partner_id!r}")


def secret_from(secret_file: str | None) -> str | None:
    """The CLI's secret: from --secret-file, else the CONCORD_PARTNER_SECRET variable."""
    if secret_file:
        return Path(secret_file).read_text(encoding="utf-8").strip()
    return os.environ.get(SECRET_ENV)


def basic_credentials(header: str | None) -> tuple[str, str | None]:
    """(partner id, secret) from an HTTP `Authorization: Basic …` header; ("", None) if absent."""
    if not header or not header.startswith("Basic "):
        return "", None
    try:
        decoded = base64.b64decode(header.removeprefix("Basic "), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", None
    partner_id, _, secret = decoded.partition(":")
    return partner_id, secret or None


def basic_header(partner_id: str, secret: str) -> str:
    """The `Authorization` header value for a partner's secret."""
    return "Basic " + base64.b64encode(f"{partner_id}:{secret}".encode()).decode()
