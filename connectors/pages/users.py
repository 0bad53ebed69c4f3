"""The pages' local user directory: people, their partner and role, and argon2id password hashes.

For the demo and tests; production signs people in through their organisation's OpenID Connect
provider instead (README.md). The file is checked whole when the pages start, so a typo stops
them rather than locking someone out later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.domain.partners import PartnerDirectory
from services.domain.staff import ROLE_KINDS, STAFF_ROLES, Staff, StaffRole, may_act_for

# argon2-cffi's defaults are the RFC 9106 low-memory profile of argon2id.
HASHER = PasswordHasher()
USER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
# Operators and commissioners work for the hub, which is no partner in the directory.
HUB = "hub"


@dataclass(frozen=True, slots=True)
class User:
    """One person who may sign in to the pages."""

    id: str
    name: str
    partner: str
    role: StaffRole
    password_hash: str

    @property
    def staff(self) -> Staff:
        """The identity the pages state to the workers."""
        return Staff(user=self.id, partner=self.partner, role=self.role)


def hash_password(password: str) -> str:
    """The argon2id hash of a password, as the user directory stores it."""
    return HASHER.hash(password)


def _user(position: int, entry: Any, partners: PartnerDirectory) -> User:
    where = f"user entry {position}"
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a mapping with id, name, partner, role, password_hash")
    missing = [n for n in ("id", "name", "partner", "role", "password_hash") if not entry.get(n)]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}")
    user_id, partner_id, role = str(entry["id"]), str(entry["partner"]), entry["role"]
    where += f" ({user_id!r})"
    if not USER_ID.match(user_id):
        raise ValueError(f"{where}: id must be lower-case letters, digits, '.', '_' or '-'")
    if role not in STAFF_ROLES:
        raise ValueError(f"{where}: role must be one of {', '.join(STAFF_ROLES)}")
    if ROLE_KINDS[role]:
        partner = partners.get(partner_id)
        if partner is None or not may_act_for(role, partner.kind):
            raise ValueError(f"{where}: a {role} must work for a partner of the right kind")
    elif partner_id != HUB:
        raise ValueError(f"{where}: a {role} works for the hub: partner must be {HUB!r}")
    if not str(entry["password_hash"]).startswith("$argon2id$"):
        raise ValueError(f"{where}: password_hash must be an argon2id hash")
    return User(user_id, str(entry["name"]), partner_id, role, str(entry["password_hash"]))


class UserDirectory:
    """The users, by id."""

    def __init__(self, users: Mapping[str, User]) -> None:
        self._users = dict(users)

    @classmethod
    def load(cls, path: Path, partners: PartnerDirectory) -> UserDirectory:
        """The directory in a YAML file (`users:` list), every entry checked."""
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        entries = data.get("users") if isinstance(data, Mapping) else None
        if not isinstance(entries, list):
            raise ValueError(f"{path}: expected a 'users' list")
        users: dict[str, User] = {}
        for position, entry in enumerate(entries, start=1):
            user = _user(position, entry, partners)
            if user.id in users:
                raise ValueError(f"user entry {position}: id {user.id!r} is listed twice")
            users[user.id] = user
        return cls(users)

    def __iter__(self) -> Any:
        return iter(self._users.values())

    def get(self, user_id: str) -> User | None:
        """The user with this id, or None."""
        return self._users.get(user_id)

    def sign_in(self, user_id: str, password: str) -> User | None:
        """The user, when `password` is theirs; None for an unknown user or a wrong password,
        after the same work either way so the answer's timing does not say which."""
        user = self._users.get(user_id.strip().lower())
        stored = user.password_hash if user else _DECOY
        try:
            HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user


_DECOY = HASHER.hash("no user has this password")
