"""Unit tests for what the breach check tells its asker: less by default, nothing under a deny."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.domain.breach import EXPLANATIONS, breach_check, breach_check_answer
from services.domain.calendar import AgencyKind, Calendar, Slot, Version
from services.domain.consent import (
    Category,
    ConsentDecision,
    basis_for,
    decision_from_consent,
    denial_for,
)
from services.domain.disclosure import disclose
from services.domain.partners import Partner, PartnerDirectory
from services.stream.state import decode_calendar, encode_calendar

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
OFFICER = Partner("probation-london", "probation", "London Probation Delivery Unit")
DIRECTORY = PartnerDirectory(
    {
        "probation-london": OFFICER,
        "mht-rv5": Partner("mht-rv5", "mht", "South London and Maudsley NHS FT"),
        "gp-Y01234": Partner("gp-Y01234", "gp", "High Street Surgery"),
    }
)


def slot(appointment_id: str, partner: str, kind: AgencyKind, status: str) -> Slot:
    return Slot(
        appointment_id=f"{partner}/{appointment_id}",
        partner=partner,
        kind=kind,
        status=status,
        start=T0,
        end=T0 + timedelta(hours=1),
        location=None,
        version=Version(1, T0, f"e-{appointment_id}"),
        service_type="Psychiatry: psychosis follow-up",
    )


MISSED = slot("p-1", "probation-london", "probation", "noshow")
MHT_VISIT = slot("m-1", "mht-rv5", "mht", "fulfilled")


def decision(
    category: Category | None, *, permit: bool, denies: bool, recorded: datetime = NOW
) -> ConsentDecision:
    return ConsentDecision(
        consent_id=f"gp-Y01234/c-{category}-{permit}-{denies}-{recorded:%H%M}",
        source="gp-Y01234",
        permit=permit,
        denies=denies,
        recipients=frozenset(),
        roles=frozenset({"probation-officer"}),
        categories=frozenset({category}) if category else frozenset(),
        start=None,
        end=None,
        recorded=recorded - timedelta(days=1),
    )


def answer(*consents: ConsentDecision, asking: Partner = OFFICER) -> tuple[dict[str, Any], str]:
    calendar = Calendar(
        "p-1",
        {MISSED.appointment_id: MISSED, MHT_VISIT.appointment_id: MHT_VISIT},
        {"probation-london": "probation", "mht-rv5": "mht"},
        consents,
    )
    check = breach_check(calendar, MISSED.appointment_id, {"mht-rv5": "mht"}, {"mht-rv5": NOW})
    return breach_check_answer(check, calendar, asking, DIRECTORY, NOW)


def test_by_default_the_officer_sees_a_health_service_and_no_partner_ids() -> None:
    shown, basis = answer()
    assert shown["verdict"] == "explained"
    assert shown["evidence"] == [
        {
            "appointment_id": "evidence-1",
            "organisation_type": "health-service",
            "status": "fulfilled",
            "start": "2026-12-03T10:00:00Z",
            "end": "2026-12-03T11:00:00Z",
            "recorded": "2026-12-03T10:00:00Z",  # when the service said so: for the evidence note
        }
    ]
    assert shown["partners"] == [
        {"organisation_type": "health-service", "last_heard": "2026-12-04T09:00:00Z"}
    ]
    assert basis == "role-default"
    text = json.dumps(shown)
    for revealing in ("mht", "Maudsley", "Psychiatry"):
        assert revealing not in text


def test_with_detail_consent_the_officer_sees_the_organisation_and_service() -> None:
    permit = decision("appointment-detail", permit=True, denies=False)
    shown, basis = answer(permit)
    (evidence,) = shown["evidence"]
    assert evidence["appointment_id"] == "mht-rv5/m-1"
    assert evidence["organisation_type"] == "mht"
    assert evidence["organisation"] == "South London and Maudsley NHS FT"
    assert evidence["service_type"] == "Psychiatry: psychosis follow-up"
    assert shown["partners"] == [
        {"partner": "mht-rv5", "organisation_type": "mht", "last_heard": "2026-12-04T09:00:00Z"}
    ]
    assert basis == permit.consent_id


@pytest.mark.parametrize("category", ["appointment-times", "appointment-detail", None])
def test_a_deny_to_probation_gives_one_fixed_withheld_answer(category: Category | None) -> None:
    deny = decision(category, permit=False, denies=True)
    shown, basis = answer(deny)
    assert shown == {
        "person_id": "p-1",
        "appointment_id": MISSED.appointment_id,
        "verdict": "withheld",
        "explanation": EXPLANATIONS["withheld"],
        "evidence": [],
        "partners": [],
    }
    assert basis == deny.consent_id, "audited with the consent as its basis"


def test_the_withheld_answer_is_the_same_whatever_the_calendar_holds() -> None:
    deny = decision("appointment-times", permit=False, denies=True)
    calendar = Calendar("p-1", {MISSED.appointment_id: MISSED}, {}, (deny,))
    check = breach_check(calendar, MISSED.appointment_id, {}, {})
    assert check.verdict == "no-known-conflict"
    alone, _ = breach_check_answer(check, calendar, OFFICER, DIRECTORY, NOW)
    assert alone == answer(deny)[0]


def test_a_later_permit_lifts_a_deny_and_a_withdrawn_permit_is_not_a_deny() -> None:
    deny = decision("appointment-times", permit=False, denies=True, recorded=NOW - timedelta(1))
    permit = decision("appointment-times", permit=True, denies=False)
    assert answer(deny, permit)[0]["verdict"] == "explained"
    withdrawn = decision("appointment-detail", permit=False, denies=False)
    assert answer(withdrawn)[0]["verdict"] == "explained"


def test_a_deny_for_another_recipient_changes_nothing_for_the_officer() -> None:
    deny = ConsentDecision(
        consent_id="gp-Y01234/c-9",
        source="gp-Y01234",
        permit=False,
        denies=True,
        recipients=frozenset({"vol-recovery"}),
        roles=frozenset(),
        categories=frozenset(),
        start=None,
        end=None,
        recorded=NOW - timedelta(days=1),
    )
    assert answer(deny)[0]["verdict"] == "explained"


def test_a_deny_narrows_another_agencys_appointment_below_the_role_default() -> None:
    deny = decision("appointment-times", permit=False, denies=True)
    appointment = {
        "resourceType": "Appointment",
        "id": "a2",
        "status": "fulfilled",
        "start": "2026-12-03T10:00:00Z",
        "end": "2026-12-03T11:00:00Z",
    }
    shown = disclose(
        appointment,
        resource_type="Appointment",
        role="probation-officer",
        own=False,
        agency_kind="mht",
        consents=(deny,),
        recipient="probation-london",
        at=NOW,
    )
    assert shown.resource == {"resourceType": "Appointment", "id": "a2"}
    assert shown.basis == deny.consent_id


def consent_resource(kind: str, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": "c1",
        "status": status,
        "dateTime": "2026-12-01T09:00:00Z",
        "provision": {
            "type": kind,
            "actor": [
                {
                    "role": {
                        "coding": [{"system": "urn:concord:role", "code": "probation-officer"}]
                    },
                    "reference": {"display": "probation"},
                }
            ],
            "code": [
                {
                    "coding": [
                        {"system": "urn:concord:disclosure-category", "code": "appointment-times"}
                    ]
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("kind", "status", "denies"),
    [("deny", "active", True), ("permit", "active", False), ("permit", "inactive", False)],
)
def test_only_an_active_deny_reads_as_a_deny(kind: str, status: str, denies: bool) -> None:
    read = decision_from_consent(
        consent_resource(kind, status), source="gp-Y01234", occurred_at=NOW
    )
    assert read.denies is denies
    found = denial_for(
        (read,), recipient="probation-london", role="probation-officer",
        categories=("appointment-times",), at=NOW,
    )  # fmt: skip
    assert (found is not None) is denies
    permitted = basis_for(
        (read,), recipient="probation-london", role="probation-officer",
        category="appointment-times", at=NOW,
    )  # fmt: skip
    assert (permitted is not None) is (kind == "permit" and status == "active")


def test_a_stored_deny_survives_the_table_encoding_and_old_rows_read_as_denies() -> None:
    deny = decision("appointment-times", permit=False, denies=True)
    withdrawn = decision("appointment-detail", permit=False, denies=False)
    calendar = Calendar("p-1", consents=(deny, withdrawn))
    decoded = decode_calendar(encode_calendar(calendar))
    assert decoded.consents == calendar.consents
    # A row written before denies were told apart has nine fields: disclose less.
    stored = json.loads(encode_calendar(calendar))
    stored[5] = [row[:9] for row in stored[5]]
    old = decode_calendar(json.dumps(stored).encode())
    assert [c.denies for c in old.consents] == [True, True]
