"""Whether the hub's steps can act on a partner's resource: the readings the worker makes, made at
the edge as well, so that a sender hears at once (a 4xx, a NAK, a CLI error) rather than later.

Each check is the worker's own reading function, not a copy of it: what the edge accepts, the
worker can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.domain.appointments import SLOT_READERS
from services.domain.consent import decision_from_consent
from services.domain.kinds import AGGREGATE_ONLY_KINDS, AgencyKind
from services.domain.referrals import check_referrer, request_from_service_request, task_update


def unusable(
    resource: Mapping[str, Any], *, source: str, kind: AgencyKind | None, occurred_at: datetime
) -> str | None:
    """Why the hub could not act on `resource` from partner `source` of `kind`; None when it can.

    `kind` is None for a partner the directory cannot place: the worker could not reconcile
    anything it sends.
    """
    resource_type = resource.get("resourceType")
    if kind is None:
        return f"{resource_type}: the partner directory does not list {source}"
    if kind in AGGREGATE_ONLY_KINDS:
        return (
            f"{resource_type}: {source} is a {kind}: commissioners receive aggregate figures "
            "and send no events about people"
        )
    try:
        if isinstance(resource_type, str) and resource_type in SLOT_READERS:
            SLOT_READERS[resource_type](
                resource, source=source, kind=kind, event_id="", occurred_at=occurred_at
            )
        elif resource_type == "Consent":
            decision_from_consent(resource, source=source, occurred_at=occurred_at)
        elif resource_type == "ServiceRequest":
            check_referrer(source, kind)
            request_from_service_request(resource, source=source, occurred_at=occurred_at)
        elif resource_type == "Task":
            task_update(resource)
    except ValueError as exc:
        return str(exc)
    return None
