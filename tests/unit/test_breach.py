"""Unit tests for the breach check: verdicts, minimised evidence and partner freshness."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.identifiers import NHS_NUMBER, PROBATION_CRN
from services.domain.breach import (
    NO_SUCH_APPOINTMENT,
    NO_SUCH_PERSON,
    BreachCheck,
    Evidence,
    NotAnswered,
    PartnerFreshness,
    UnknownAppointment,
    answer_breach_check,
    asked_by,
    breach_check,
    check_asker,
    own_appointment,
)
from services.domain.calendar import AgencyKind, Calendar, Slot, Version
from services.domain.decisions import Answered
from services.domain.partners import Partner
from services.domain.relationships import Relationship
from services.runtime import ROOT, partner_directory

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
HEARD = datetime(2025, 2, 28, 17, 0, tzinfo=UTC)


def slot(
    name: str,
    kind: AgencyKind = "probation",
    *,
    partner: str | None = None,
    status: str = "booked",
    at: int = 0,
    minutes: int = 60,
) -> Slot:
    partner = partner or {"probation": "probation-london", "gp": "gp-Y01234"}.get(kind, kind)
    start = T0 + timedelta(minutes=at)
    return Slot(
        appointment_id=f"{partner}/{name}",
        partner=partner,
        kind=kind,
        status=status,
        start=start,
        end=start + timedelta(minutes=minutes),
        location=None,
        version=Version(1, T0, f"e-{name}"),
        service_type="Psychiatry",
    )


MISSED = slot("p", status="noshow")


def check(
    *others: Slot,
    health_partners: Mapping[str, AgencyKind] | None = None,
    last_heard: Mapping[str, datetime] | None = None,
) -> BreachCheck:
    cal = Calendar("person-1", {s.appointment_id: s for s in (MISSED, *others)})
    return breach_check(cal, MISSED.appointment_id, health_partners or {}, last_heard or {})


def test_attended_gp_visit_at_the_time_explains_the_absence() -> None:
    result = check(slot("g", "gp", status="fulfilled", at=30))
    assert result.verdict == "explained"
    assert result.person_id == "person-1"
    assert result.appointment_id == MISSED.appointment_id
    assert [e.appointment_id for e in result.evidence] == ["gp-Y01234/g"]


def test_booked_health_appointment_is_a_possible_conflict() -> None:
    result = check(slot("m", "mht", partner="mht-nelft", status="booked", at=-60))
    assert result.verdict == "possible-conflict"
    assert result.evidence == (
        Evidence("mht-nelft/m", "mht-nelft", "mht", "booked", T0 - timedelta(hours=1), T0, T0),
    )


def test_nothing_at_that_time_is_no_known_conflict() -> None:
    result = check(slot("g", "gp", status="fulfilled", at=120))
    assert result.verdict == "no-known-conflict"
    assert result.evidence == ()


def test_attendance_outweighs_a_booking_and_only_attendance_is_evidence() -> None:
    result = check(
        slot("g", "gp", status="booked"),
        slot("m", "mht", partner="mht-nelft", status="arrived"),
    )
    assert result.verdict == "explained"
    assert [e.appointment_id for e in result.evidence] == ["mht-nelft/m"]


def test_travel_buffer_counts_towards_the_overlap() -> None:
    assert check(slot("g", "gp", status="fulfilled", at=60 + 29)).verdict == "explained"
    assert check(slot("g", "gp", status="fulfilled", at=60 + 30)).verdict == "no-known-conflict"


def test_cancelled_health_appointment_is_not_evidence() -> None:
    assert check(slot("g", "gp", status="cancelled")).verdict == "no-known-conflict"


def test_other_obligations_at_the_time_are_not_evidence() -> None:
    voluntary = slot("v", "voluntary", partner="vol-turning-point", status="fulfilled")
    assert check(voluntary).verdict == "no-known-conflict"


def test_verdict_does_not_depend_on_the_missed_appointment_status() -> None:
    booked = dataclasses.replace(MISSED, status="booked")
    gp = slot("g", "gp", status="fulfilled")
    cal = Calendar("person-1", {booked.appointment_id: booked, gp.appointment_id: gp})
    assert breach_check(cal, booked.appointment_id, {}, {}).verdict == "explained"


def test_evidence_is_minimised() -> None:
    (evidence,) = check(slot("m", "mht", partner="mht-nelft", status="fulfilled")).evidence
    names = {f.name for f in dataclasses.fields(evidence)}
    assert names == {"appointment_id", "partner", "kind", "status", "start", "end", "recorded"}


def test_every_health_partner_that_could_hold_evidence_is_listed_with_freshness() -> None:
    """Partners with a known relationship are listed even when they have sent nothing."""
    result = check(
        slot("g", "gp", status="cancelled", at=600),
        slot("v", "voluntary", partner="vol-turning-point"),
        health_partners={"mht-nelft": "mht", "gp-Y01234": "gp", "vol-turning-point": "voluntary"},
        last_heard={"gp-Y01234": HEARD, "probation-london": HEARD},
    )
    assert result.verdict == "no-known-conflict"
    assert result.partners == (
        PartnerFreshness("gp-Y01234", "gp", HEARD),
        PartnerFreshness("mht-nelft", "mht", None),
    )


def test_health_partner_seen_only_in_the_calendar_is_listed() -> None:
    result = check(slot("g", "gp", partner="gp-A81001", status="booked", at=600))
    assert result.partners == (PartnerFreshness("gp-A81001", "gp", None),)


def test_unknown_appointment_is_an_error() -> None:
    cal = Calendar("person-1", {MISSED.appointment_id: MISSED})
    with pytest.raises(UnknownAppointment):
        breach_check(cal, "probation-london/nope", {}, {})
    with pytest.raises(KeyError):
        breach_check(cal, "probation-london/nope", {}, {})


def test_a_person_under_an_identity_conflict_gets_that_verdict_and_no_evidence() -> None:
    """The attendance may be someone else's: neither it nor who could hold it is disclosed."""
    from services.domain.breach import EXPLANATIONS, breach_check_answer
    from services.runtime import ROOT, partner_directory

    attended = slot("g", "gp", status="fulfilled", at=30)
    cal = Calendar("person-1", {s.appointment_id: s for s in (MISSED, attended)})
    result = breach_check(
        cal,
        MISSED.appointment_id,
        {"gp-Y01234": "gp"},
        {"gp-Y01234": HEARD},
        identity_conflict=True,
    )
    assert (result.verdict, result.evidence, result.partners) == ("identity-conflict", (), ())

    directory = partner_directory(ROOT / "deploy" / "demo" / "partners.yaml")
    officer = directory.get("probation-london")
    assert officer is not None
    answer, basis = breach_check_answer(result, cal, officer, directory, T0)
    assert answer["verdict"] == "identity-conflict"
    assert answer["evidence"] == []
    assert answer["partners"] == []
    assert answer["explanation"] == EXPLANATIONS["identity-conflict"]
    assert "operator" in answer["explanation"]
    assert basis == "role-default"


# --- who may ask, about whom, and the answer ----------------------------------------------------


DIRECTORY = partner_directory(ROOT / "deploy" / "demo" / "partners.yaml")


def partner(partner_id: str) -> Partner:
    found = DIRECTORY.get(partner_id)
    assert found is not None
    return found


def asked(calendar: Calendar | None, asking: str, wanted: str) -> tuple[dict[str, Any], Answered]:
    return answer_breach_check(
        calendar,
        partner(asking),
        wanted,
        last_heard={"gp-Y01234": HEARD},
        buffer=timedelta(minutes=30),
        identity_conflict=False,
        directory=DIRECTORY,
        at=T0,
        disclosure_id=uuid.UUID(int=7),
    )


def related(*others: Slot) -> Calendar:
    """The person's calendar, with probation related by its case record."""
    return Calendar(
        "person-1",
        {s.appointment_id: s for s in (MISSED, *others)},
        relationships={"probation-london": Relationship("probation", "case-record", "e-1")},
    )


@pytest.mark.parametrize(
    ("partner_id", "allowed"),
    [("probation-london", True), ("vol-recovery", True), ("gp-Y01234", False), ("mht-rv5", False)],
)
def test_only_the_agencies_whose_appointments_can_be_missed_may_ask(
    partner_id: str, allowed: bool
) -> None:
    if allowed:
        check_asker(partner(partner_id))
        return
    with pytest.raises(NotAnswered) as refused:
        check_asker(partner(partner_id))
    assert (refused.value.why, refused.value.message) == (
        "not-allowed",
        "your organisation's role may not ask this",
    )


def test_a_person_is_named_by_an_identifier_of_the_askers_own_system() -> None:
    officer = partner("probation-london")
    assert asked_by(officer, f"{PROBATION_CRN}|X123456").value == "X123456"
    with pytest.raises(NotAnswered, match="identifier of your own system") as foreign:
        asked_by(officer, f"{NHS_NUMBER}|9434765919")
    assert foreign.value.why == "not-asked-so"
    with pytest.raises(NotAnswered) as invalid:
        asked_by(officer, f"{NHS_NUMBER}|9434765918")
    assert invalid.value.why == "not-asked-so"


def test_no_relationship_is_answered_exactly_as_no_such_person() -> None:
    unrelated = Calendar("person-1", {MISSED.appointment_id: MISSED})
    for calendar in (None, unrelated):
        with pytest.raises(NotAnswered) as refused:
            asked(calendar, "probation-london", "p")
        assert (refused.value.why, refused.value.message) == ("not-known", NO_SUCH_PERSON)


def test_another_partners_appointment_is_not_found_exactly_as_one_that_does_not_exist() -> None:
    gp = slot("g", "gp", status="fulfilled")
    calendar = related(gp)
    officer = partner("probation-london")
    assert own_appointment(calendar, officer, "p") == MISSED.appointment_id
    assert own_appointment(calendar, officer, MISSED.appointment_id) == MISSED.appointment_id
    for wanted in ("gp-Y01234/g", "g", "nope"):
        with pytest.raises(NotAnswered) as refused:
            asked(calendar, "probation-london", wanted)
        assert (refused.value.why, refused.value.message) == ("not-known", NO_SUCH_APPOINTMENT)


def test_the_answer_comes_with_the_disclosure_its_audit_record_is_rendered_from() -> None:
    answer, answered = asked(related(slot("g", "gp", status="fulfilled")), "probation-london", "p")
    assert answer["verdict"] == "explained"
    assert answer["evidence"][0]["organisation_type"] == "health-service"
    assert answered == Answered(
        disclosure_id=uuid.UUID(int=7),
        person_id="person-1",
        recipient="probation-london",
        role="probation-officer",
        what=f"BreachCheck/{MISSED.appointment_id}",
        basis="role-default",
    )


# --- an encounter as evidence ----------------------------------------------------------------


def stay(status: str, end: datetime | None) -> Slot:
    """A trust's inpatient stay from the day before the missed appointment, as read from an
    Encounter (services.domain.appointments.slot_from_encounter)."""
    return Slot(
        appointment_id="mht-rv5/Encounter/stay-1",
        partner="mht-rv5",
        kind="mht",
        status=status,
        start=T0 - timedelta(days=1),
        end=end,
        location="mht-rv5/Location/ward-7",
        version=Version(1, T0, "e-stay"),
        service_type="Psychiatry",
    )


def test_a_stay_over_several_days_explains_the_absence_like_an_attended_appointment() -> None:
    over = stay("fulfilled", T0 + timedelta(days=2))
    assert check(over).verdict == "explained"
    answer, _ = asked(related(over), "probation-london", "p")
    as_appointment = dataclasses.replace(over, appointment_id="mht-rv5/a", location=None)
    same, _ = asked(related(as_appointment), "probation-london", "p")
    # the same words either way: a health service attended, nothing that says it was a stay
    assert answer == same
    assert answer["evidence"] == [
        {
            "appointment_id": "evidence-1",
            "organisation_type": "health-service",
            "status": "fulfilled",
            "start": "2025-03-02T09:00:00Z",
            "end": "2025-03-05T09:00:00Z",
            "recorded": "2025-03-03T09:00:00Z",
        }
    ]


def test_a_stay_under_way_is_evidence_from_its_start_with_no_end_shown() -> None:
    answer, _ = asked(related(stay("arrived", None)), "probation-london", "p")
    assert answer["verdict"] == "explained"
    assert answer["evidence"] == [
        {
            "appointment_id": "evidence-1",
            "organisation_type": "health-service",
            "status": "arrived",
            "start": "2025-03-02T09:00:00Z",
            "recorded": "2025-03-03T09:00:00Z",
        }
    ]


def test_a_stay_that_ended_the_day_before_is_no_evidence() -> None:
    assert check(stay("fulfilled", T0 - timedelta(hours=2))).verdict == "no-known-conflict"


def test_a_cancelled_stay_is_no_evidence() -> None:
    assert check(stay("cancelled", T0 + timedelta(days=2))).verdict == "no-known-conflict"
