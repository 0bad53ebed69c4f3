"""Partner secrets: stored only as hashes. New hashes are argon2id (made and checked by the
runtime with argon2-cffi: services/runtime.py); salted PBKDF2 hashes of older directories are
still read, and checked here in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "pbkdf2_sha256"
ITERATIONS = 120_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_secret(secret: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The stored form of a secret: `pbkdf2_sha256$iterations$salt$hash`."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


ARGON2ID_PREFIX = "$argon2id$"


def is_argon2id_hash(value: object) -> bool:
    """True for an argon2id hash in its PHC string form (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`)."""
    return (
        isinstance(value, str) and value.startswith(ARGON2ID_PREFIX) and len(value.split("$")) == 6
    )


def _is_pbkdf2_hash(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split("$")
    return len(parts) == 4 and parts[0] == SCHEME and parts[1].isdigit()


def is_secret_hash(value: object) -> bool:
    """True for a value in a stored form (not for a plain secret pasted by mistake)."""
    return is_argon2id_hash(value) or _is_pbkdf2_hash(value)


def verify_secret(secret: str, stored: str) -> bool:
    """True when `secret` matches a stored PBKDF2 hash (argon2id hashes: the runtime checks them)."""
    if not _is_pbkdf2_hash(stored):
        return False
    _, iterations, salt, expected = stored.split("$")
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(_b64(digest), expected)
