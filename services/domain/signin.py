"""Partner sign-in: who is asking, proven by their secret. Pure: the caller logs a refusal.

The secret is never kept in the clear or put in a message; a refusal names the partner id only
when it has a partner id's shape (a caller-supplied id may be free text).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable

from schemas.identifiers import PARTNER_ID
from services.domain.credentials import verify_secret
from services.domain.partners import Partner, PartnerDirectory

# PBKDF2 is slow on purpose; remember secrets already proven (by digest, not in the clear).
_proven: set[tuple[str, str, str]] = set()


class AuthError(Exception):
    """A missing or wrong credential; the message says which, and never contains the secret."""


class SignInRefused(AuthError):  # noqa: N818 -- reads as what the caller gets
    """A refused sign-in, with what may be logged of it."""

    def __init__(self, partner_id: str, reason: str) -> None:
        super().__init__(f"{reason} for partner {partner_id!r}")
        self.reason = reason
        self.shown_partner = partner_id if PARTNER_ID.match(partner_id) else "(not a partner id)"


def check_secret(
    directory: PartnerDirectory,
    partner_id: str,
    secret: str | None,
    verify: Callable[[str, str], bool] = verify_secret,
) -> Partner:
    """The partner, when `secret` is one of its live secrets (the current one, or the next one
    while it is being rotated in); SignInRefused otherwise. `verify` checks a secret against a
    stored hash (the runtime's checks argon2id too)."""
    partner = directory.get(partner_id)
    if not secret:
        raise SignInRefused(partner_id, "missing credential")
    live = [h for h in (partner.secret_hash, partner.next_secret_hash) if h] if partner else []
    if partner is None or not live:
        raise SignInRefused(partner_id, "unknown partner or wrong secret")
    digest = hashlib.sha256(secret.encode()).hexdigest()
    for stored in live:
        proof = (partner_id, stored, digest)
        if proof in _proven:
            return partner
        if verify(secret, stored):
            _proven.add(proof)
            return partner
    raise SignInRefused(partner_id, "unknown partner or wrong secret")


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
