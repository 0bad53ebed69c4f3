"""What the identity linker decides: an event's identifiers joined as one person (or the link
refused as an identity conflict), and an operator's decision on a conflict applied.

The person index's own rules are in services/domain/identity.py; this module says what each
change to the index means for the rest of the hub: who each identifier now belongs to, which
records move to a survivor, who is told of a conflict and who is flagged as under one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from schemas.identifiers import PersonIdentifier
from schemas.keys import person_id_for_token, token_home
from services.domain.consent import ROLE_OF_KIND
from services.domain.decisions import (
    Assigned,
    ConflictChanged,
    ConflictSettled,
    Decision,
    Disclose,
    Forward,
    IdentityFlagsChanged,
    Merge,
    Rules,
)
from services.domain.disclosure import disclose
from services.domain.identity import Decision as OperatorDecision
from services.domain.identity import (
    PersonIndex,
    RefusedLink,
    Resolution,
    Settlement,
    flag_changes,
    holder,
    own_records,
    record_of,
    resolve,
    settle,
)
from services.domain.identity_messages import conflict_notices
from services.domain.instants import read_instant


def link_event(
    index: PersonIndex,
    envelope: Mapping[str, Any],
    identifiers: Sequence[PersonIdentifier],
    rules: Rules,
) -> tuple[PersonIndex, Resolution | RefusedLink, list[Decision]]:
    """Join the identifiers one event names, or refuse the link as an identity conflict.

    A joined event goes on to its person's record; a refused one is applied nowhere, and its
    sources and the operator are told instead. A partner's Patient merging or linking its own
    records (HL7 ADT A40, A24) joins them unless an NHS number or CRN disagrees.
    """
    source, resource = envelope["source"], envelope["resource"]
    tokens = [i.token() for i in identifiers]
    updated, resolution = resolve(
        index,
        identifiers,
        source=source,
        record=record_of(source, resource.get("resourceType"), resource.get("id"), tokens),
        at=read_instant(envelope["recorded_at"]),
        merging=own_records(resource, source),
    )
    told = _conflicts_changed(index, updated, tokens, envelope["event_id"], rules)
    if isinstance(resolution, RefusedLink):
        return updated, resolution, told
    joined = _joined(index, updated, resolution)
    return updated, resolution, [*joined, *told, Forward(resolution.person_id, envelope)]


def settle_conflict(
    index: PersonIndex,
    conflict_id: str,
    decision: OperatorDecision,
    *,
    operator: str,
    reason: str,
    at: datetime,
    request: str,
    rules: Rules,
) -> tuple[PersonIndex, Settlement, list[Decision]]:
    """An operator's decision (by request `request`) on a conflict: applied, told to its
    sources, and audited for each person it concerns; nothing when it was settled already."""
    updated, settlement = settle(
        index, conflict_id, decision, operator=operator, reason=reason, at=at
    )
    if not settlement.changed:
        return updated, settlement, []
    conflict = settlement.conflict
    decisions = _joined(index, updated, settlement.resolution) if settlement.resolution else []
    decisions += _conflicts_changed(index, updated, [], request, rules)
    people = sorted({holder(updated, token) for token in conflict.tokens})
    decisions += [ConflictSettled(person, conflict, request) for person in people]
    return updated, settlement, decisions


def _joined(before: PersonIndex, after: PersonIndex, resolution: Resolution) -> list[Decision]:
    """Who each token now belongs to, and the merges that move records to the survivor."""
    survivor = resolution.person_id
    assigned: list[Decision] = [
        Assigned(token, survivor, token_home(token, after.key))
        for token in sorted(after.members.get(survivor, frozenset()))
        if before.person_of.get(token) != survivor
    ]
    # A token seen before its first link has its own provisional person, which the
    # linker never recorded: merge it too, so its record joins the survivor's.
    absorbed = {m.absorbed for m in resolution.merges}
    absorbed |= {person_id_for_token(token, after.key) for token in resolution.new_tokens}
    absorbed.discard(survivor)
    return assigned + [Merge(person, survivor) for person in sorted(absorbed)]


def _conflicts_changed(
    before: PersonIndex, after: PersonIndex, tokens: list[str], cause: str, rules: Rules
) -> list[Decision]:
    """For each conflict that changed: its record for the operator, and a notice to each source
    whose data disagree; then each person whose open conflicts changed is flagged so."""
    changed = [c for cid, c in sorted(after.conflicts.items()) if before.conflicts.get(cid) != c]
    decisions: list[Decision] = []
    for conflict in changed:
        decisions.append(ConflictChanged(conflict))
        for notice in conflict_notices(conflict, cause):
            role = ROLE_OF_KIND[rules.directory.kind_of(notice.recipient)]
            shown = disclose(
                notice.resource,
                resource_type="DetectedIssue",
                role=role,
                own=False,
                agency_kind=None,
                consents=(),
                recipient=notice.recipient,
                at=rules.now,
            )
            decisions.append(
                Disclose(
                    person_id=holder(after, notice.token),
                    recipient=notice.recipient,
                    role=role,
                    event_id=notice.event_id,
                    event_type=notice.event_type,
                    resource=shown.resource,
                    what=f"DetectedIssue/{conflict.conflict_id}",
                    basis=shown.basis,
                    cause=uuid.UUID(cause),
                )
            )
    affected = set(tokens).union(*(c.tokens for c in changed))
    decisions += [
        IdentityFlagsChanged(person, open_ids)
        for person, open_ids in flag_changes(before, after, sorted(affected)).items()
    ]
    return decisions
