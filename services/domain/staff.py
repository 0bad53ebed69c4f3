"""People who sign in to the pages: who they are, which partner they work for, in which role, and
the signed statement of that identity the pages pass to the workers. Pure: no I/O.

The workers apply the disclosure policy by the partner's kind, as for the partner's own system,
and name the individual in every AuditEvent. The statement is an HMAC over the identity and an
expiry with a secret only the pages process and the workers hold (CONCORD_PAGES_SECRET), so a
request cannot name a person the pages did not sign in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal, get_args

from services.domain.kinds import AgencyKind

StaffRole = Literal[
    "probation-officer", "clinician", "voluntary-worker", "operator", "commissioner"
]
STAFF_ROLES: tuple[StaffRole, ...] = get_args(StaffRole)
# The partner kinds each role works for. Operators work for the hub, no partner: no person
# pages. Commissioners work for a commissioning body, whose partner kind reads figures only.
ROLE_KINDS: Mapping[StaffRole, frozenset[AgencyKind]] = MappingProxyType(
    {
        "probation-officer": frozenset({"probation"}),
        "clinician": frozenset({"gp", "mht"}),
        "voluntary-worker": frozenset({"voluntary"}),
        "operator": frozenset(),
        "commissioner": frozenset({"commissioner"}),
    }
)
ROLE_LABELS: Mapping[StaffRole, str] = MappingProxyType(
    {
        "probation-officer": "Probation officer",
        "clinician": "Clinician",
        "voluntary-worker": "Voluntary-sector worker",
        "operator": "Hub operator",
        "commissioner": "Commissioner",
    }
)
# The header the pages put the statement in; how long one statement is good for.
STAFF_HEADER = "X-Concord-Staff"
STATEMENT_LIFETIME = timedelta(minutes=2)
_VERSION = "v1"


class StaffRefused(Exception):  # noqa: N818 -- reads as what the caller gets
    """A statement of identity that is missing, malformed, forged or expired; says which."""


@dataclass(frozen=True, slots=True)
class Staff:
    """One signed-in person: a user id (never a name in logs), their partner and role."""

    user: str
    partner: str
    role: StaffRole


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), f"{_VERSION}.{body}".encode(), hashlib.sha256).digest())


def statement(staff: Staff, secret: str, at: datetime) -> str:
    """The header value stating `staff` is signed in, good until STATEMENT_LIFETIME after `at`."""
    if not secret:
        raise ValueError("the pages secret is empty")
    expires = int((at + STATEMENT_LIFETIME).timestamp())
    payload = {"user": staff.user, "partner": staff.partner, "role": staff.role, "exp": expires}
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    return f"{_VERSION}.{body}.{_mac(secret, body)}"


def verify_statement(header: str | None, secret: str, at: datetime) -> Staff:
    """The person a statement names, once its signature and expiry check out; StaffRefused else."""
    if not header:
        raise StaffRefused("no statement of who is signed in")
    if not secret:
        raise StaffRefused("this worker has no pages secret, so it accepts no statements")
    version, _, rest = header.partition(".")
    body, _, mac = rest.partition(".")
    if version != _VERSION or not body or not mac:
        raise StaffRefused("the statement of who is signed in is malformed")
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise StaffRefused("the statement of who is signed in is not signed by the pages")
    try:
        payload = json.loads(_unb64(body))
        user, partner, role, expires = (
            payload["user"],
            payload["partner"],
            payload["role"],
            payload["exp"],
        )
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise StaffRefused("the statement of who is signed in is malformed") from None
    if role not in STAFF_ROLES or not isinstance(user, str) or not isinstance(partner, str):
        raise StaffRefused("the statement of who is signed in names no known role")
    if not isinstance(expires, int) or at.timestamp() > expires:
        raise StaffRefused("the statement of who is signed in has expired")
    return Staff(user=user, partner=partner, role=role)


def may_act_for(role: StaffRole, kind: AgencyKind) -> bool:
    """True when someone in `role` may act for a partner of `kind`."""
    return kind in ROLE_KINDS[role]
