"""Referral rules: directory, routing, consent hold, lifecycle, working-day deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from services.domain.consent import ConsentDecision
from services.domain.referrals import (
    IllegalTransition,
    ReferralRequest,
    ServiceDirectory,
    due_for_escalation,
    escalate,
    open_referral,
    route,
    transition,
    working_deadline,
)
from services.runtime import ROOT

DIRECTORY = ServiceDirectory.from_dict(
    yaml.safe_load((ROOT / "deploy" / "services.yaml").read_text())
)
MONDAY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def request(
    category: str | None = "mental-health-assessment", area: str | None = "E09000022", **kw
) -> ReferralRequest:
    fields = {
        "referral_id": "probation-london/ref-1",
        "fhir_id": "ref-1",
        "referrer": "probation-london",
        "category": category,
        "urgency": "routine",
        "area": area,
        "preferred": None,
        "has_content": False,
        "authored": MONDAY,
    } | kw
    return ReferralRequest(**fields)


def test_referral_goes_to_the_service_covering_the_area() -> None:
    decision = route(request(), DIRECTORY, (), MONDAY)
    assert (decision.outcome, decision.service.partner) == ("routed", "mht-rv5")


def test_preferred_organisation_wins_when_it_offers_the_service_there() -> None:
    decision = route(
        request("gp-registration", "SE11", preferred="gp-Y01234"), DIRECTORY, (), MONDAY
    )
    assert decision.service.partner == "gp-Y01234"


def test_no_service_in_the_area_says_so() -> None:
    decision = route(request(area="W1"), DIRECTORY, (), MONDAY)
    assert decision.outcome == "no-service"
    assert "W1" in decision.reason


def test_referral_without_category_is_incomplete() -> None:
    assert route(request(category=None), DIRECTORY, (), MONDAY).outcome == "incomplete"


def test_content_without_consent_is_held_and_says_what_is_missing() -> None:
    decision = route(request(has_content=True), DIRECTORY, (), MONDAY)
    assert decision.outcome == "held-for-consent"
    assert "consent" in decision.reason


def test_content_with_referral_content_consent_is_routed() -> None:
    consent = ConsentDecision(
        consent_id="probation-london/c1",
        source="probation-london",
        permit=True,
        recipients=frozenset(),
        roles=frozenset(),
        categories=frozenset({"referral-content"}),
        start=None,
        end=None,
        recorded=MONDAY - timedelta(days=1),
    )
    assert route(request(has_content=True), DIRECTORY, (consent,), MONDAY).outcome == "routed"


def test_directory_with_unknown_category_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="unknown category"):
        ServiceDirectory.from_dict(
            {
                "organisations": [
                    {
                        "partner": "mht-rv5",
                        "type": "mht",
                        "name": "x",
                        "services": [{"category": "dentistry", "areas": ["X"]}],
                    }
                ]
            }
        )


def routed():
    return open_referral(request(), route(request(), DIRECTORY, (), MONDAY))


def test_lifecycle_follows_the_legal_transitions() -> None:
    referral = routed()
    for status in ("received", "accepted", "in-progress", "completed"):
        referral = transition(referral, status, by="mht-rv5", reason=None, at=MONDAY)
    assert referral.status == "completed"


def test_completed_cannot_become_requested_again() -> None:
    referral = routed()
    for status in ("accepted", "completed"):
        referral = transition(referral, status, by="mht-rv5", reason=None, at=MONDAY)
    with pytest.raises(IllegalTransition, match="is completed; it cannot become requested"):
        transition(referral, "requested", by="mht-rv5", reason=None, at=MONDAY)


def test_only_the_receiving_service_accepts() -> None:
    with pytest.raises(IllegalTransition, match="only the receiving service"):
        transition(routed(), "accepted", by="probation-london", reason=None, at=MONDAY)


def test_rejection_keeps_its_reason() -> None:
    rejected = transition(
        routed(), "rejected", by="mht-rv5", reason="outside our catchment", at=MONDAY
    )
    assert rejected.reason == "outside our catchment"


def test_routine_deadline_is_five_working_days_and_urgent_one() -> None:
    assert working_deadline(MONDAY, 5) == MONDAY + timedelta(days=7)  # next Monday
    friday = MONDAY + timedelta(days=4)
    assert working_deadline(friday, 1) == friday + timedelta(days=3)  # Monday, not Saturday


def test_escalation_happens_once_after_the_deadline() -> None:
    referral = routed()
    assert not due_for_escalation(referral, referral.deadline - timedelta(minutes=1))
    assert due_for_escalation(referral, referral.deadline)
    assert not due_for_escalation(escalate(referral), referral.deadline + timedelta(days=3))


def test_accepted_referral_is_never_escalated() -> None:
    accepted = transition(routed(), "accepted", by="mht-rv5", reason=None, at=MONDAY)
    assert not due_for_escalation(accepted, MONDAY + timedelta(days=30))


@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(1, 20),
)
def test_deadline_never_falls_at_a_weekend_and_counts_exactly_the_working_days(
    start: datetime, days: int
) -> None:
    deadline = working_deadline(start, days)
    assert deadline.weekday() < 5
    assert deadline > start
    working = sum(
        1
        for n in range(1, (deadline - start).days + 1)
        if (start + timedelta(days=n)).weekday() < 5
    )
    assert working == days
