"""Partner secrets: stored only as salted PBKDF2 hashes, checked in constant time."""

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


def is_secret_hash(value: object) -> bool:
    """True for a value in the stored form (not for a plain secret pasted by mistake)."""
    if not isinstance(value, str):
        return False
    parts = value.split("$")
    return len(parts) == 4 and parts[0] == SCHEME and parts[1].isdigit()


def verify_secret(secret: str, stored: str) -> bool:
    """True when `secret` matches the stored hash."""
    if not is_secret_hash(stored):
        return False
    _, iterations, salt, expected = stored.split("$")
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), base64.b64decode(salt), int(iterations))
    return hmac.compare_digest(_b64(digest), expected)
