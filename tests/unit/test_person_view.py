"""Unit tests for the person page's answer: the timeline, clashes and verdicts an asking partner
may see, compared element by element with what the disclosure policy allows its role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.domain.breach import NotAnswered
from services.domain.calendar import AgencyKind, Calendar, Slot, Version
from services.domain.consent import ROLE_OF_KIND, ConsentDecision
from services.domain.disclosure import BREACH_EVIDENCE, POLICY
from services.domain.partners import Partner
from services.domain.person_view import person_view, spoken_time, verdict_sentence
from services.domain.relationships import Relationship
from services.runtime import ROOT, partner_directory

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
DIRECTORY = partner_directory(ROOT / "deploy" / "demo" / "partners.yaml")
# What a page adds to each appointment to lay it out: whose it is, and the organisation's kind
LAYOUT = {"own", "organisation_label"}


def partner(partner_id: str) -> Partner:
    found = DIRECTORY.get(partner_id)
    assert found is not None
    return found


def slot(
    name: str, partner_id: str, kind: AgencyKind, status: str, *, at: int = 0, recorded: int = 0
) -> Slot:
    start = T0 + timedelta(minutes=at)
    return Slot(
        appointment_id=f"{partner_id}/{name}",
        partner=partner_id,
        kind=kind,
        status=status,
        start=start,
        end=start + timedelta(minutes=30),
        location=None,
        version=Version(1, T0 + timedelta(minutes=recorded), f"e-{name}"),
        service_type="Psychiatry: psychosis follow-up",
    )


def calendar(*slots: Slot, consents: tuple[ConsentDecision, ...] = ()) -> Calendar:
    return Calendar(
        "person-1",
        {s.appointment_id: s for s in slots},
        {s.partner: s.kind for s in slots},
        consents,
        relationships={
            "probation-london": Relationship("probation", "case-record", "e-1"),
            "mht-rv5": Relationship("mht", "referral", "e-2"),
        },
    )


def view(
    cal: Calendar | None, asking: str = "probation-london", **overrides: Any
) -> dict[str, Any]:
    answer, _ = person_view(
        cal,
        partner(asking),
        last_heard={"mht-rv5": T0 - timedelta(minutes=48)},
        buffer=timedelta(minutes=30),
        identity_conflict=overrides.get("identity_conflict", False),
        directory=DIRECTORY,
        at=T0,
        disclosure_id=uuid.UUID(int=1),
        user="officer.adeyemi",
    )
    return answer


SUPERVISION = slot("sup-1", "probation-london", "probation", "noshow", at=-15)
MHT_VISIT = slot("mht-1", "mht-rv5", "mht", "fulfilled", recorded=42)  # recorded at 10:42


def test_a_missed_appointment_gets_the_breach_checks_verdict_in_a_sentence() -> None:
    shown = view(calendar(SUPERVISION, MHT_VISIT))
    (missed,) = shown["missed"]
    assert missed["verdict"] == "explained"
    assert missed["sentence"] == (
        "Explained: the person attended a health service appointment 10:00–10:30 on "
        "3 December, confirmed by the service at 10:42 on 3 December."
    )
    assert shown["partners"] == [
        {"organisation_label": "Health service", "last_heard": "2026-12-03T09:12:00Z"}
    ]


def test_a_clash_with_another_agency_is_shown_with_what_to_do() -> None:
    booked = slot("sup-2", "probation-london", "probation", "booked", at=15)
    mht = slot("mht-2", "mht-rv5", "mht", "booked")
    (clash,) = view(calendar(booked, mht))["clashes"]
    assert clash["yours"]["appointment_id"] == "sup-2"
    assert clash["other"]["organisation_type"] == "health-service"
    assert "rebook" in clash["advice"]


def test_no_relationship_reads_exactly_as_no_such_person() -> None:
    with pytest.raises(NotAnswered) as unrelated:
        view(calendar(SUPERVISION, MHT_VISIT), asking="vol-recovery")
    with pytest.raises(NotAnswered) as unknown:
        view(None, asking="vol-recovery")
    assert (unrelated.value.why, unrelated.value.message) == (
        unknown.value.why,
        unknown.value.message,
    )


def test_under_an_identity_conflict_only_the_partners_own_appointments_are_shown() -> None:
    shown = view(calendar(SUPERVISION, MHT_VISIT), identity_conflict=True)
    assert [a["own"] for a in shown["appointments"]] == [True]
    assert shown["missed"][0]["verdict"] == "identity-conflict"
    assert "identity" in shown["notice"]


def test_the_audit_names_the_individual_as_well_as_the_partner() -> None:
    _, answered = person_view(
        calendar(SUPERVISION, MHT_VISIT),
        partner("probation-london"),
        last_heard={},
        buffer=timedelta(minutes=30),
        identity_conflict=False,
        directory=DIRECTORY,
        at=T0,
        disclosure_id=uuid.UUID(int=1),
        user="officer.adeyemi",
    )
    assert (answered.recipient, answered.user) == ("probation-london", "officer.adeyemi")
    assert answered.what == "PersonView/person-1"


KINDS: list[tuple[str, AgencyKind]] = [
    ("probation-london", "probation"),
    ("gp-Y01234", "gp"),
    ("mht-rv5", "mht"),
    ("vol-recovery", "voluntary"),
]
STATUSES = ["booked", "arrived", "fulfilled", "noshow", "cancelled"]


@given(
    st.lists(
        st.tuples(st.sampled_from(KINDS), st.sampled_from(STATUSES), st.integers(-90, 90)),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["probation-london", "mht-rv5"]),
)
def test_the_page_shows_no_more_of_another_agency_than_the_policy_allows(
    appointments: list[tuple[tuple[str, AgencyKind], str, int]], asking: str
) -> None:
    """Without consent, another agency's appointment shows only the role's default elements:
    never its service, its organisation's name or its partner id."""
    slots = [
        slot(f"a{n}", partner_id, kind, status, at=at)
        for n, ((partner_id, kind), status, at) in enumerate(appointments)
    ]
    role = ROLE_OF_KIND[partner(asking).kind]
    assert POLICY[(role, "BreachEvidence")] is BREACH_EVIDENCE
    shown = view(calendar(*slots), asking=asking)
    others = [a for a in shown["appointments"] if not a["own"]]
    others += [c["other"] for c in shown["clashes"]]
    for entry in others:
        assert set(entry) - LAYOUT <= BREACH_EVIDENCE.default
        assert entry["appointment_id"].startswith("other-")
    evidence = [e for check in shown["missed"] for e in check["evidence"]]
    text = repr([others, evidence, shown["partners"]])
    assert "Psychiatry" not in text
    for partner_id, _ in KINDS:
        if partner_id != asking:
            assert partner_id not in text
            assert partner(partner_id).name not in text


def test_times_are_spoken_in_local_time() -> None:
    assert spoken_time("2026-07-01T09:00:00Z", "2026-07-01T09:30:00Z") == "10:00–10:30 on 1 July"
    assert spoken_time(None, None) == "at a time not known"


def test_each_verdict_reads_as_a_sentence() -> None:
    booked = {"organisation_type": "health-service", "start": "2026-12-03T10:00:00Z"}
    assert verdict_sentence({"verdict": "possible-conflict", "evidence": [booked]}) == (
        "Possible conflict: a health service appointment was booked from 10:00 on 3 December, "
        "but attendance is not yet confirmed."
    )
    assert verdict_sentence({"verdict": "no-known-conflict", "evidence": []}).startswith(
        "No known conflict"
    )
    withheld = {"verdict": "withheld", "explanation": "ask the person"}
    assert verdict_sentence(withheld) == "ask the person"
