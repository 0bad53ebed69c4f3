"""The deliverer's watch: a new identity conflict and a partner gone quiet become operator
alerts naming a partner and counts, once each; records the hub did not write are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.delivery.watch import OperatorWatch, gave_up_class
from schemas.codec import CodecError, encode_internal
from schemas.internal import ConflictClaim, IdentityConflictRecord, PartnerActivity


class Alerts:
    """Collects what the watch raises, as OperatorAlerts would send it."""

    def __init__(self) -> None:
        self.raised: list[tuple[str, str, dict[str, int]]] = []

    def raise_alert(self, kind: str, partner: str, counts: Any) -> None:
        self.raised.append((kind, partner, dict(counts)))


def conflict(conflict_id: str, status: str = "open") -> bytes:
    return encode_internal(
        IdentityConflictRecord(
            conflict_id=conflict_id,
            status=status,  # type: ignore[arg-type]
            raised_at="2026-12-01T09:00:00Z",
            resolved_at=None,
            resolved_by=None,
            reason=None,
            systems=["https://fhir.nhs.uk/Id/nhs-number"],
            identifiers=["token-a", "token-b", "token-c"],
            people=["p-1", "p-2"],
            sources={"mht-rv5": ["token-a"], "probation-london": ["token-b", "token-c"]},
            claim=ConflictClaim(source="mht-rv5", identifiers=["token-a", "token-b"], record=None),
        )
    )


def activity(partner: str, at: str) -> bytes:
    return encode_internal(PartnerActivity(partner=partner, last_heard=at))


def test_a_new_open_conflict_is_told_once_with_counts_only() -> None:
    alerts = Alerts()
    watch = OperatorWatch(alerts, {})  # type: ignore[arg-type]
    watch.conflict(conflict("c-1"))
    watch.conflict(conflict("c-1"))  # the same conflict again (e.g. a source added)
    watch.conflict(conflict("c-2", status="kept-apart"))  # settled: nothing to tell
    assert alerts.raised == [
        ("identity-conflict", "mht-rv5", {"identifiers": 3, "people": 2, "sources": 2})
    ]


def test_a_partner_quiet_past_its_silent_after_is_told_once() -> None:
    alerts = Alerts()
    watch = OperatorWatch(alerts, {"gp-Y01234": timedelta(hours=6)})  # type: ignore[arg-type]
    watch.heard(activity("gp-Y01234", "2026-12-01T09:00:00Z"))
    watch.heard(activity("gp-Y01234", "2026-12-01T08:00:00Z"))  # older: ignored
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    watch.check(start + timedelta(hours=5))
    watch.check(start + timedelta(hours=7))
    watch.check(start + timedelta(hours=8))
    assert alerts.raised == [
        ("partner-silent", "gp-Y01234", {"quiet_for_s": 7 * 3600, "expected_s": 6 * 3600})
    ]


@pytest.mark.parametrize(
    "value",
    [b"not json", activity("gp-Y01234", "yesterday"), activity("gp-Y01234", "2026-12-01T09:00")],
)
def test_a_partner_activity_record_the_hub_did_not_write_is_refused(value: bytes) -> None:
    watch = OperatorWatch(Alerts(), {})  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        watch.heard(value)
    assert watch.last_heard == {}


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("refused: HTTP 400", "refused"),
        ("gave up after 60 attempts: HTTP 503", "gave-up"),
        ("not a valid envelope", "invalid"),
        ("no endpoint is configured for this partner", "no-endpoint"),
        ("something new", "other"),
    ],
)
def test_a_give_up_reason_becomes_one_of_a_few_labels(reason: str, label: str) -> None:
    assert gave_up_class(reason) == label
