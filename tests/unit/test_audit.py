"""Unit tests for the audit record of a disclosure: valid FHIR, one id per disclosure, basis kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from schemas.fhir import problems_in
from services.domain.audit import audit_event
from tests.audit import basis_of

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def event(
    disclosure_id: str = "evt-1/probation-london", basis: str = "role-default", **changes: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "disclosure_id": disclosure_id,
        "person_id": "person-7",
        "recipient": "probation-london",
        "role": "probation-officer",
        "what": "DetectedIssue/clash-1",
        "basis": basis,
        "at": AT,
        **changes,
    }
    return audit_event(**fields)


@pytest.mark.parametrize(
    "basis", ["role-default", "own-record", "direct-care", "probation-london/consent-1"]
)
def test_the_audit_event_is_valid_fhir_and_its_basis_round_trips(basis: str) -> None:
    resource = event(basis=basis)
    assert problems_in(resource) == []
    assert basis_of(resource) == basis


def test_the_basis_is_written_as_a_policy_uri() -> None:
    assert event()["agent"][0]["policy"] == ["urn:concord:basis:role-default"]
    assert event(basis="own-record")["agent"][0]["policy"] == ["urn:concord:basis:own-record"]
    assert event(basis="direct-care")["agent"][0]["policy"] == ["urn:concord:basis:direct-care"]
    assert event(basis="gp-Y01234/c9")["agent"][0]["policy"] == ["urn:concord:consent:gp-Y01234/c9"]


def test_it_says_who_received_what_about_whom_and_when() -> None:
    resource = event(at=AT.astimezone(timezone(timedelta(hours=1))))
    assert resource["recorded"] == "2026-12-03T09:00:00Z"
    assert resource["type"]["code"] == "110106"
    assert resource["subtype"] == [{"system": "urn:concord:audit", "code": "disclosure"}]
    (agent,) = resource["agent"]
    assert agent["who"] == {
        "identifier": {"system": "urn:concord:partner", "value": "probation-london"}
    }
    assert agent["type"] == {
        "coding": [{"system": "urn:concord:role", "code": "probation-officer"}]
    }
    assert agent["requestor"] is False
    person, what = resource["entity"]
    assert person["what"] == {
        "identifier": {"system": "urn:concord:id:person", "value": "person-7"}
    }
    assert what == {"what": {"reference": "DetectedIssue/clash-1"}}


def test_the_same_disclosure_always_gets_the_same_audit_id() -> None:
    assert event()["id"] == event(at=AT + timedelta(hours=1))["id"]
    assert event()["id"] != event(disclosure_id="evt-1/gp-Y01234")["id"]


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        event(at=datetime(2026, 12, 3, 9, 0))  # naive on purpose


def test_a_policy_that_is_not_a_concord_basis_is_refused() -> None:
    resource = event()
    resource["agent"][0]["policy"] = ["http://example.org/policy"]
    with pytest.raises(ValueError, match="policy"):
        basis_of(resource)


@pytest.mark.parametrize("basis", ["case-record", "referral", "probation-london/consent-1"])
def test_a_new_relationship_is_audited_as_a_change_to_the_record_with_its_basis(
    basis: str,
) -> None:
    resource = event(basis=basis, what="ServiceRequest/sr-1", subtype="relationship")
    assert problems_in(resource) == []
    assert resource["subtype"] == [{"system": "urn:concord:audit", "code": "relationship"}]
    assert (resource["type"]["code"], resource["action"]) == ("110110", "C")
    assert basis_of(resource) == basis
