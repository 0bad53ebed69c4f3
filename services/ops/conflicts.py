"""Identity conflicts for the hub's operators: which are open, and a decision on one.

Read from the compacted identity-conflicts topic (the latest record of each conflict); a
decision goes to the identity linker on the links topic, which applies it and audits it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from schemas.codec import CodecError, decode_internal, encode_internal
from schemas.internal import IdentityConflictRecord, ResolveConflictCommand
from services.domain.identity import Decision, conflict_from_record


def conflict_entry(key: bytes | None, value: bytes | None) -> tuple[str, dict[str, Any]]:
    """(conflict id, record) of an identity-conflicts record; CodecError when it is not one."""
    record = decode_internal(value, IdentityConflictRecord).model_dump()
    try:
        conflict = conflict_from_record(record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CodecError(f"not an identity conflict record: {type(exc).__name__}") from exc
    if key is not None and key != conflict.conflict_id.encode():
        raise CodecError("not an identity conflict record: keyed by another conflict")
    return conflict.conflict_id, record


def open_conflicts(entries: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The conflicts still open, oldest first."""
    found = [dict(e) for e in entries.values() if e.get("status") == "open"]
    return sorted(found, key=lambda e: (e.get("raised_at") or "", e["conflict_id"]))


def conflict_lines(entry: Mapping[str, Any]) -> str:
    """A conflict for a terminal: id, when, status, the people, then each source's identifiers."""
    lines = [
        f"{entry['conflict_id']}  {entry['status']:<10}  raised {entry['raised_at']}  "
        f"people: {', '.join(entry['people'])}"
    ]
    claim = entry["claim"]
    for source, tokens in entry["sources"].items():
        said = "the link not applied" if source == claim["source"] else "linked before"
        lines.append(f"    {source} ({said}): {', '.join(tokens)}")
    if entry.get("resolved_at"):
        lines.append(f"    resolved {entry['resolved_at']} by {entry['resolved_by']}")
    return "\n".join(lines)


def resolve_command(
    conflict_id: str, decision: Decision, *, operator: str, reason: str, at: datetime
) -> bytes:
    """The operator's decision as the linker reads it from the links topic."""
    command = ResolveConflictCommand(
        conflict_id=conflict_id,
        decision=decision,
        operator=operator,
        reason=reason,
        at=at,
        request_id=uuid.uuid4(),
    )
    return encode_internal(command)
