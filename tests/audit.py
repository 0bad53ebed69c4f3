"""Reading the hub's AuditEvents back: the basis each records (services/domain/audit.py writes it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.vocabulary import BASIS_PREFIX, CONSENT_PREFIX


def basis_of(event: Mapping[str, Any]) -> str:
    """The basis an AuditEvent records: "role-default", "own-record" or a consent id."""
    policy = event["agent"][0]["policy"][0]
    if isinstance(policy, str) and policy.startswith(CONSENT_PREFIX):
        return policy.removeprefix(CONSENT_PREFIX)
    if isinstance(policy, str) and policy.startswith(BASIS_PREFIX):
        return policy.removeprefix(BASIS_PREFIX)
    raise ValueError(f"AuditEvent.agent[0].policy[0]: {policy!r} is not a concord basis")
