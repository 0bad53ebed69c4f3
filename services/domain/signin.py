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
# What an unknown partner id's secret is checked against, so that its refusal takes as long as a
# known partner's wrong secret and its timing does not tell which partner ids exist. Made with
# argon2-cffi's default parameters, as the runtime hashes partner secrets (a test checks they
# agree); no secret matches it that anyone knows.
DECOY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$HrU1DMVJN2HlqupqmOfq8w$lS9/LQZUNCMht30rg0A8zts8kAhbrbDL3s/zALoGjI4"


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
    live = _live_hashes(partner)
    if partner is None or not live:
        verify(secret, DECOY_HASH)  # the same work as a wrong secret: see DECOY_HASH
        raise SignInRefused(partner_id, "unknown partner or wrong secret")
    known = already_proven(directory, partner_id, secret)
    if known is not None:
        return known
    digest = hashlib.sha256(secret.encode()).hexdigest()
    for stored in live:
        proof = (partner_id, stored, digest)
        if verify(secret, stored):
            _proven.add(proof)
            return partner
    raise SignInRefused(partner_id, "unknown partner or wrong secret")


def already_proven(
    directory: PartnerDirectory, partner_id: str, secret: str | None
) -> Partner | None:
    """The partner, when this secret has already been proven against one of its live hashes:
    no hashing, so a caller may ask this first, before queueing for the slow check."""
    partner = directory.get(partner_id)
    if partner is None or not secret:
        return None
    digest = hashlib.sha256(secret.encode()).hexdigest()
    proven = any((partner_id, stored, digest) in _proven for stored in _live_hashes(partner))
    return partner if proven else None


def _live_hashes(partner: Partner | None) -> list[str]:
    if partner is None:
        return []
    return [h for h in (partner.secret_hash, partner.next_secret_hash) if h]


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
