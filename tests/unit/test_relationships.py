"""Unit tests for relationships: only trusted facts relate a partner to a person, never a claim."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PROBATION_CRN, local_system
from services.domain.calendar import Calendar, with_relationships
from services.domain.consent import ConsentDecision
from services.domain.partners import PartnerDirectory
from services.domain.referrals import Referral
from services.domain.relationships import (
    Relationship,
    audit_terms,
    from_case_record,
    from_consents,
    from_referrals,
    new_relationships,
    officers,
    relate,
    systems_to_ask_by,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DIRECTORY = PartnerDirectory.from_dict(
    {
        "partners": [
            {"id": "probation-london", "kind": "probation", "name": "London PDU"},
            {"id": "gp-Y01234", "kind": "gp", "name": "High Street Surgery"},
            {"id": "mht-rv5", "kind": "mht", "name": "A trust"},
            {"id": "vol-recovery", "kind": "voluntary", "name": "Recovery Hub"},
            {"id": "vol-housing", "kind": "voluntary", "name": "Safe Homes"},
        ]
    }
)
CASE = Relationship("probation", "case-record", "e-case")
OFFICER = {"probation-london": CASE}


def consent(
    consent_id: str,
    *recipients: str,
    permit: bool = True,
    source: str = "probation-london",
    hours: int = 0,
) -> ConsentDecision:
    return ConsentDecision(
        consent_id=f"{source}/{consent_id}",
        source=source,
        permit=permit,
        recipients=frozenset(recipients),
        roles=frozenset(),
        categories=frozenset({"appointment-times"}),
        start=None,
        end=None,
        recorded=T0 + timedelta(hours=hours),
    )


def referral(recipient: str | None, status: str = "requested") -> Referral:
    return Referral(
        referral_id="probation-london/sr-1",
        fhir_id="sr-1",
        referrer="probation-london",
        recipient=recipient,
        status=status,
        category="substance-misuse-treatment",
        urgency="routine",
        requested=T0,
        deadline=None,
    )


# --- what is not a relationship ------------------------------------------------------------


def test_publishing_an_appointment_relates_no_one() -> None:
    """A voluntary service naming an NHS number, or a CRN, is making a claim, not a relationship."""
    for systems in ((NHS_NUMBER,), (PROBATION_CRN,), (local_system("vol-recovery"),)):
        assert (
            from_case_record(
                {}, source="vol-recovery", kind="voluntary", systems=systems, event_id="e"
            )
            == {}
        )


def test_a_probation_event_without_a_crn_is_no_case_record() -> None:
    assert (
        from_case_record(
            {}, source="probation-london", kind="probation", systems=(NHS_NUMBER,), event_id="e"
        )
        == {}
    )


def test_a_calendar_of_claims_has_no_relationships() -> None:
    claimed = Calendar("p-1", partners={"vol-recovery": "voluntary", "probation-x": "probation"})
    assert (
        with_relationships(claimed, DIRECTORY, source="vol-recovery", kind="voluntary") is claimed
    )


# --- the trusted facts ---------------------------------------------------------------------


def test_a_probation_partner_publishing_under_a_crn_has_a_case_record() -> None:
    related = from_case_record(
        {},
        source="probation-london",
        kind="probation",
        systems=(PROBATION_CRN, NHS_NUMBER),
        event_id="e-1",
    )
    assert related == {"probation-london": Relationship("probation", "case-record", "e-1")}


def test_a_referral_relates_its_recipient_once_it_is_sent() -> None:
    assert from_referrals({}, [referral("vol-recovery")], DIRECTORY) == {
        "vol-recovery": Relationship("voluntary", "referral", "probation-london/sr-1")
    }
    for unsent in ("held", "no-service", "incomplete"):
        assert from_referrals({}, [referral("vol-recovery", unsent)], DIRECTORY) == {}
    assert from_referrals({}, [referral(None, "no-service")], DIRECTORY) == {}


def test_a_referral_to_a_partner_the_directory_cannot_place_relates_no_one() -> None:
    assert from_referrals({}, [referral("unknown-org")], DIRECTORY) == {}


def test_a_consent_naming_the_partner_relates_it() -> None:
    related = from_consents(OFFICER, [consent("c-1", "vol-recovery")], DIRECTORY)
    assert related["vol-recovery"] == Relationship("voluntary", "consent", "probation-london/c-1")


def test_a_consent_by_role_alone_names_no_partner() -> None:
    by_role = ConsentDecision(
        "probation-london/c-1",
        "probation-london",
        True,
        frozenset(),
        frozenset({"voluntary-worker"}),
        frozenset(),
        None,
        None,
        T0,
    )
    assert from_consents(OFFICER, [by_role], DIRECTORY) is OFFICER


def test_a_partner_cannot_consent_for_itself() -> None:
    """A consent counts only when recorded by a partner with a case record or a referral."""
    own = consent("c-1", "vol-housing", source="vol-housing")
    assert from_consents(OFFICER, [own], DIRECTORY) is OFFICER
    by_consent_only = {"vol-recovery": Relationship("voluntary", "consent", "x/c-0")}
    chained = consent("c-2", "vol-housing", source="vol-recovery")
    assert "vol-housing" not in from_consents(by_consent_only, [chained], DIRECTORY)
    referred = {"vol-recovery": Relationship("voluntary", "referral", "probation-london/sr-1")}
    assert "vol-housing" in from_consents(referred, [chained], DIRECTORY)


def test_a_withdrawal_ends_a_relationship_that_rested_on_the_consent() -> None:
    given = from_consents(OFFICER, [consent("c-1", "vol-recovery")], DIRECTORY)
    withdrawn = [consent("c-1", "vol-recovery", permit=False, hours=1)]
    assert from_consents(given, withdrawn, DIRECTORY) == OFFICER


def test_a_later_deny_from_another_consent_ends_it_too_and_an_equal_time_deny_wins() -> None:
    permit = consent("c-1", "vol-recovery")
    assert "vol-recovery" not in from_consents(
        OFFICER, [permit, consent("c-2", "vol-recovery", permit=False, hours=1)], DIRECTORY
    )
    assert "vol-recovery" not in from_consents(
        OFFICER, [consent("c-2", "vol-recovery", permit=False), permit], DIRECTORY
    )


def test_a_case_record_or_referral_outlasts_a_withdrawn_consent() -> None:
    given = from_consents(OFFICER, [consent("c-1", "vol-recovery")], DIRECTORY)
    referred = from_referrals(given, [referral("vol-recovery")], DIRECTORY)
    assert referred["vol-recovery"].basis == "referral", "the durable basis replaces the consent"
    withdrawn = [consent("c-1", "vol-recovery", permit=False, hours=1)]
    assert from_consents(referred, withdrawn, DIRECTORY)["vol-recovery"].basis == "referral"


def test_relate_keeps_the_first_durable_basis_and_is_identity_when_nothing_changes() -> None:
    assert relate(OFFICER, "probation-london", CASE) is OFFICER
    other = Relationship("probation", "referral", "x/sr-2")
    assert relate(OFFICER, "probation-london", other) is OFFICER


def test_with_relationships_joins_every_fact_the_calendar_holds() -> None:
    calendar = Calendar(
        "p-1",
        consents=(consent("c-1", "mht-rv5"),),
        referrals={"probation-london/sr-1": referral("vol-recovery")},
    )
    related = with_relationships(
        calendar,
        DIRECTORY,
        source="probation-london",
        kind="probation",
        systems=(PROBATION_CRN,),
        event_id="e-9",
    ).relationships
    assert {p: r.basis for p, r in related.items()} == {
        "probation-london": "case-record",
        "vol-recovery": "referral",
        "mht-rv5": "consent",
    }
    assert officers(related) == {"probation-london"}


# --- auditing and asking -------------------------------------------------------------------


def test_new_relationships_are_those_not_held_before() -> None:
    after = {**OFFICER, "vol-recovery": Relationship("voluntary", "referral", "p/sr-1")}
    assert new_relationships(OFFICER, after) == [("vol-recovery", after["vol-recovery"])]
    assert new_relationships(after, after) == []


def test_audit_terms_name_the_fact_and_the_basis() -> None:
    assert audit_terms(CASE) == ("urn:uuid:e-case", "case-record")
    assert audit_terms(Relationship("voluntary", "referral", "probation-london/sr-1")) == (
        "ServiceRequest/sr-1",
        "referral",
    )
    assert audit_terms(Relationship("voluntary", "consent", "probation-london/c-1")) == (
        "Consent/c-1",
        "probation-london/c-1",
    )


def test_a_partner_asks_by_identifiers_of_its_own_system_only() -> None:
    assert systems_to_ask_by("probation-london", "probation") == {
        PROBATION_CRN,
        HUB_PERSON,
        local_system("probation-london"),
    }
    voluntary = systems_to_ask_by("vol-recovery", "voluntary")
    assert NHS_NUMBER not in voluntary
    assert PROBATION_CRN not in voluntary
    assert local_system("vol-housing") not in voluntary
    assert local_system("vol-recovery") in voluntary
