"""Unit tests for consent: reading FHIR Consent, keeping the latest version, and the basis it gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.fhir import problems_in
from services.domain.consent import (
    ROLE_OF_KIND,
    Category,
    ConsentDecision,
    Role,
    basis_for,
    decision_from_consent,
    record,
)

EXAMPLE = Path(__file__).parents[2] / "schemas" / "examples" / "governance.consent.recorded.json"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SOURCE = "probation-london"


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def consent(status: str = "active", **provision: Any) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": "c1",
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": "urn:concord:id:probation-crn", "value": "X123456"}},
        "dateTime": "2026-12-01T09:00:00Z",
        "provision": provision,
    }


def actor(partner: str | None = None, role: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "role": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP",
                }
            ]
        },
        "reference": {"display": "someone"},
    }
    if partner:
        found["reference"] = {"identifier": {"system": "urn:concord:partner", "value": partner}}
    if role:
        found["role"]["coding"].append({"system": "urn:concord:role", "code": role})
    return found


def category(code: str) -> dict[str, Any]:
    return {"coding": [{"system": "urn:concord:disclosure-category", "code": code}]}


def read(resource: dict[str, Any]) -> ConsentDecision:
    return decision_from_consent(resource, source=SOURCE, occurred_at=hours(5))


def decision(
    consent_id: str = "probation-london/c1",
    *,
    permit: bool = True,
    recorded: datetime = T0,
    recipients: frozenset[str] = frozenset(),
    roles: frozenset[Role] = frozenset(),
    categories: frozenset[Category] = frozenset(),
    start: datetime | None = None,
    end: datetime | None = None,
) -> ConsentDecision:
    return ConsentDecision(
        consent_id, SOURCE, permit, recipients, roles, categories, start, end, recorded
    )


def basis(
    decisions: tuple[ConsentDecision, ...],
    at: datetime,
    *,
    recipient: str = "probation-london",
    role: Role = "probation-officer",
    category: Category = "appointment-detail",
) -> str | None:
    return basis_for(decisions, recipient=recipient, role=role, category=category, at=at)


# --- reading FHIR Consent -------------------------------------------------------------


def test_the_published_example_reads_as_an_open_permit_for_its_period() -> None:
    resource = json.loads(EXAMPLE.read_text(encoding="utf-8"))["resource"]
    assert problems_in(resource) == []
    assert read(resource) == ConsentDecision(
        consent_id="probation-london/consent-1",
        source=SOURCE,
        permit=True,
        recipients=frozenset(),
        roles=frozenset(),
        categories=frozenset(),
        start=datetime(2026, 12, 1, tzinfo=UTC),
        end=datetime(2027, 12, 1, tzinfo=UTC),
        recorded=T0,
    )


def test_the_test_consent_is_valid_fhir() -> None:
    resource = consent(
        type="permit",
        actor=[actor("gp-Y01234", "gp")],
        code=[category("appointment-detail")],
    )
    assert problems_in(resource) == []


def test_recipients_roles_and_categories_come_from_concord_codes_only() -> None:
    found = read(
        consent(
            type="permit",
            actor=[actor("gp-Y01234"), actor(role="probation-officer")],
            code=[category("appointment-detail")],
            **{
                "class": [{"system": "urn:concord:disclosure-category", "code": "referral-content"}]
            },
        )
    )
    assert found.recipients == {"gp-Y01234"}
    assert found.roles == {"probation-officer"}
    assert found.categories == {"appointment-detail", "referral-content"}
    assert found.permit


def test_an_active_deny_is_a_deny_and_a_missing_type_a_permit() -> None:
    assert not read(consent(type="deny")).permit
    assert read(consent()).permit


@pytest.mark.parametrize(
    "status", ["inactive", "rejected", "entered-in-error", "draft", "proposed"]
)
def test_a_consent_that_is_not_active_is_a_withdrawal(status: str) -> None:
    assert not read(consent(status, type="permit")).permit


def test_recorded_falls_back_to_last_updated_then_to_the_event_time() -> None:
    resource = consent()
    del resource["dateTime"]
    assert read(resource).recorded == hours(5)
    resource["meta"] = {"lastUpdated": "2026-12-01T10:30:00+01:00"}
    assert read(resource).recorded == hours(0.5)


def test_a_date_only_period_end_covers_its_whole_day() -> None:
    found = read(consent(period={"start": "2026-12-01", "end": "2026-12-31"}))
    assert found.start == datetime(2026, 12, 1, tzinfo=UTC)
    assert found.end == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("resource", "element"),
    [
        ({k: v for k, v in consent().items() if k != "id"}, "Consent.id"),
        (consent(actor=[actor(role="police")]), "Consent.provision.actor[0].role"),
        (consent(code=[category("everything")]), "Consent.provision.code[0]"),
        (
            consent(**{"class": [{"system": "urn:concord:disclosure-category", "code": "x"}]}),
            "Consent.provision.class[0]",
        ),
        (consent(actor=[actor()]), "Consent.provision.actor[0]"),
        (
            consent(code=[{"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}]),
            "Consent.provision.code",
        ),
        (consent(type="maybe"), "Consent.provision.type"),
        (consent(provision=[{"type": "deny"}]), "Consent.provision.provision"),
        (consent(period={"start": "2026-12-01T09:00:00"}), "Consent.provision.period.start"),
    ],
)
def test_what_the_hub_cannot_read_is_refused_naming_the_element(
    resource: dict[str, Any], element: str
) -> None:
    with pytest.raises(ValueError, match=element.replace("[", r"\[").replace("]", r"\]")):
        read(resource)


def test_role_of_each_agency_kind() -> None:
    assert dict(ROLE_OF_KIND) == {
        "probation": "probation-officer",
        "gp": "gp",
        "mht": "mht-clinician",
        "voluntary": "voluntary-worker",
        "commissioner": "commissioner",
    }


def test_a_naive_recorded_time_is_refused() -> None:
    with pytest.raises(ValueError, match="recorded"):
        decision(recorded=datetime(2026, 12, 1))  # naive on purpose


# --- record: the latest version of each consent ------------------------------------------


def test_a_later_version_of_a_consent_replaces_the_earlier_one() -> None:
    first = decision(recorded=hours(0))
    withdrawn = decision(permit=False, recorded=hours(2))
    assert record(record((), first), withdrawn) == (withdrawn,)
    assert record(record((), withdrawn), first) == (withdrawn,)


def test_the_same_decision_delivered_twice_changes_nothing() -> None:
    decisions = record((), decision())
    assert record(decisions, decision()) is decisions
    # an equal time keeps what is held, even if the content differs
    assert record(decisions, decision(permit=False)) is decisions


def test_decisions_are_kept_in_recorded_then_id_order() -> None:
    b, a, c = decision("b", recorded=hours(1)), decision("a", recorded=hours(1)), decision("c")
    decisions: tuple[ConsentDecision, ...] = ()
    for new in (b, a, c):
        decisions = record(decisions, new)
    assert decisions == (c, a, b)


# --- basis_for -------------------------------------------------------------------------


def test_a_permit_is_the_basis_and_no_decision_is_none() -> None:
    assert basis((decision(),), hours(1)) == "probation-london/c1"
    assert basis((), hours(1)) is None


def test_withdrawal_by_inactive_status_takes_effect_from_when_it_was_recorded() -> None:
    permit = read(consent())
    withdrawn = decision_from_consent(
        {**consent("inactive"), "dateTime": "2026-12-01T12:00:00Z"},
        source=SOURCE,
        occurred_at=hours(3),
    )
    decisions = record(record((), permit), withdrawn)
    assert basis(decisions, hours(4)) is None


def test_a_later_deny_withdraws_an_earlier_permit() -> None:
    decisions = record(
        record((), decision("p", recorded=hours(0))), decision("d", permit=False, recorded=hours(2))
    )
    assert basis(decisions, hours(3)) is None


def test_a_withdrawal_recorded_after_a_disclosure_does_not_affect_it() -> None:
    decisions = (decision("p", recorded=hours(0)), decision("d", permit=False, recorded=hours(2)))
    assert basis(decisions, hours(1)) == "p"
    assert basis(decisions, hours(2)) is None


def test_a_decision_recorded_after_the_disclosure_does_not_count() -> None:
    assert basis((decision(recorded=hours(2)),), hours(1)) is None


def test_replacing_a_consent_forgets_its_earlier_version_so_a_replay_fails_closed() -> None:
    decisions = record(
        record((), decision(recorded=hours(0))), decision(permit=False, recorded=hours(2))
    )
    assert basis(decisions, hours(1)) is None


def test_a_later_permit_overrides_an_earlier_deny() -> None:
    decisions = (decision("d", permit=False, recorded=hours(0)), decision("p", recorded=hours(1)))
    assert basis(decisions, hours(2)) == "p"


def test_at_an_equal_recorded_time_a_deny_wins_in_any_order() -> None:
    permit, deny = decision("a"), decision("b", permit=False)
    assert basis((permit, deny), hours(1)) is None
    assert basis((deny, permit), hours(1)) is None


def test_the_period_is_start_inclusive_end_exclusive() -> None:
    decisions = (decision(start=hours(1), end=hours(3)),)
    assert basis(decisions, hours(0.5)) is None
    assert basis(decisions, hours(1)) == "probation-london/c1"
    assert basis(decisions, hours(2.9)) == "probation-london/c1"
    assert basis(decisions, hours(3)) is None


def test_a_permit_covers_only_its_recipients_roles_and_categories() -> None:
    decisions = (
        decision(
            recipients=frozenset({"probation-london"}),
            roles=frozenset({"probation-officer"}),
            categories=frozenset({"appointment-detail"}),
        ),
    )
    assert basis(decisions, hours(1)) == "probation-london/c1"
    assert basis(decisions, hours(1), recipient="probation-kent") is None
    assert basis(decisions, hours(1), role="gp") is None
    assert basis(decisions, hours(1), category="referral-content") is None


def test_a_narrow_deny_leaves_a_broad_permit_standing_elsewhere() -> None:
    decisions = (
        decision("p", recorded=hours(0)),
        decision("d", permit=False, recorded=hours(1), recipients=frozenset({"vol-recovery"})),
    )
    assert basis(decisions, hours(2)) == "p"
    assert basis(decisions, hours(2), recipient="vol-recovery", role="voluntary-worker") is None
