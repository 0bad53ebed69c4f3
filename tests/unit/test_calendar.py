"""Unit tests for calendar reconciliation: clashes, explained absences, versions, merges."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.domain.calendar import AgencyKind, Calendar, Slot, Version, apply_change
from services.domain.reconciliation import (
    DEFAULT_TRAVEL_BUFFER,
    Alert,
    merge,
    open_alert_keys,
    overlaps,
    reconcile,
    told_on_relating,
)
from services.domain.relationships import Relationship

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
PARTNER_OF_KIND: dict[AgencyKind, str] = {
    "probation": "probation-london",
    "gp": "gp-Y01234",
    "mht": "mht-nelft",
    "voluntary": "vol-turning-point",
}


def slot(
    name: str,
    kind: AgencyKind = "probation",
    *,
    partner: str | None = None,
    status: str = "booked",
    at: int = 0,
    minutes: int = 60,
    location: str | None = None,
    version: int = 1,
) -> Slot:
    """A slot starting `at` minutes after T0, booked by the usual partner of `kind`."""
    partner = partner or PARTNER_OF_KIND[kind]
    start = T0 + timedelta(minutes=at)
    return Slot(
        appointment_id=f"{partner}/{name}",
        partner=partner,
        kind=kind,
        status=status,
        start=start,
        end=start + timedelta(minutes=minutes),
        location=location,
        version=Version(
            version, T0 - timedelta(days=1) + timedelta(minutes=version), f"e-{name}-{version}"
        ),
    )


def calendar_of(*slots: Slot, person_id: str = "person-1") -> Calendar:
    return Calendar(person_id, {s.appointment_id: s for s in slots})


def run(cal: Calendar, *changes: Slot) -> tuple[Calendar, list[Alert]]:
    alerts: list[Alert] = []
    for change in changes:
        cal, new = reconcile(cal, change)
        alerts += new
    return cal, alerts


def summary(alerts: list[Alert]) -> list[tuple[str, str, tuple[str, str]]]:
    return [(a.kind, a.action, a.appointment_ids) for a in alerts]


# --- versions -------------------------------------------------------------------------


def test_newer_version_replaces_older() -> None:
    cal = apply_change(calendar_of(slot("a", version=1)), slot("a", version=2, at=30))
    assert cal.slots["probation-london/a"].version.number == 2


def test_stale_version_does_not_overwrite_newer() -> None:
    newer = slot("a", version=2, status="cancelled")
    cal = calendar_of(newer)
    assert apply_change(cal, slot("a", version=1)) is cal
    assert cal.slots[newer.appointment_id] == newer


def test_duplicate_change_has_no_second_effect() -> None:
    gp = slot("g", "gp")
    cal, first = run(Calendar("person-1"), slot("p"), gp)
    again, second = reconcile(cal, gp)
    assert summary(first) == [("clash", "raised", ("gp-Y01234/g", "probation-london/p"))]
    assert again is cal
    assert second == []


def test_version_ties_are_broken_by_event_id() -> None:
    a = slot("a")
    b = replace(a, version=Version(1, a.version.updated, "z"), status="noshow")
    assert apply_change(apply_change(Calendar("p"), a), b) == apply_change(
        apply_change(Calendar("p"), b), a
    )


def test_naive_datetimes_are_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Slot("p/a", "p", "gp", "booked", datetime(2025, 1, 1), None, None, Version(1, T0, "e"))


# --- clashes --------------------------------------------------------------------------


def test_overlapping_appointments_of_different_agencies_clash() -> None:
    _, alerts = run(Calendar("person-1"), slot("p", at=0), slot("g", "gp", at=30))
    (alert,) = alerts
    assert alert.kind == "clash"
    assert alert.action == "raised"
    assert alert.person_id == "person-1"
    assert alert.appointment_ids == ("gp-Y01234/g", "probation-london/p")
    assert alert.recipients == ("gp-Y01234", "probation-london")
    assert [s.appointment_id for s in alert.slots] == list(alert.appointment_ids)


def test_gap_of_exactly_the_buffer_is_not_a_clash() -> None:
    probation = slot("p", at=0, minutes=60, location="office")
    gp = slot("g", "gp", at=60 + 30, location="surgery")
    assert open_alert_keys(calendar_of(probation, gp), DEFAULT_TRAVEL_BUFFER) == frozenset()


def test_gap_shorter_than_the_buffer_is_a_clash() -> None:
    probation = slot("p", at=0, minutes=60, location="office")
    gp = slot("g", "gp", at=60 + 29, location="surgery")
    assert open_alert_keys(calendar_of(probation, gp)) == {
        ("clash", "gp-Y01234/g", "probation-london/p")
    }


def test_unknown_location_needs_the_buffer() -> None:
    probation = slot("p", at=0, minutes=60, location="office")
    gp = slot("g", "gp", at=70, location=None)
    assert overlaps(probation, gp)


def test_same_known_location_needs_no_buffer() -> None:
    probation = slot("p", at=0, minutes=60, location="hub-1")
    voluntary = slot("v", "voluntary", at=60, location="hub-1")
    assert not overlaps(probation, voluntary)
    assert overlaps(probation, slot("v", "voluntary", at=59, location="hub-1"))


def test_configured_buffer_is_used() -> None:
    cal = calendar_of(slot("p", at=0, minutes=60), slot("g", "gp", at=100))
    assert open_alert_keys(cal, timedelta(minutes=30)) == frozenset()
    assert len(open_alert_keys(cal, timedelta(minutes=45))) == 1


def test_same_partner_appointments_never_clash() -> None:
    cal = calendar_of(slot("p1", at=0), slot("p2", at=15))
    assert open_alert_keys(cal) == frozenset()


def test_slots_without_times_never_clash() -> None:
    untimed = replace(slot("g", "gp"), start=None, end=None)
    assert open_alert_keys(calendar_of(slot("p"), untimed)) == frozenset()


def test_only_live_appointments_clash() -> None:
    for status in ("cancelled", "fulfilled", "noshow", "entered-in-error", "proposed"):
        cal = calendar_of(slot("p"), slot("g", "gp", status=status))
        assert open_alert_keys(cal) == frozenset(), status


def test_cancelling_one_side_resolves_the_clash() -> None:
    cal, _ = run(Calendar("person-1"), slot("p"), slot("g", "gp"))
    _, alerts = reconcile(cal, slot("g", "gp", status="cancelled", version=2))
    (alert,) = alerts
    assert (alert.kind, alert.action) == ("clash", "resolved")
    assert alert.slots[0].status == "cancelled"
    assert alert.recipients == ("gp-Y01234", "probation-london")


def test_moving_an_appointment_resolves_old_clash_and_raises_new_one() -> None:
    cal, _ = run(
        Calendar("person-1"),
        slot("p"),
        slot("m", "mht", at=300),
        slot("g", "gp", at=0),
    )
    _, alerts = reconcile(cal, slot("g", "gp", at=300, version=2))
    assert summary(alerts) == [
        ("clash", "resolved", ("gp-Y01234/g", "probation-london/p")),
        ("clash", "raised", ("gp-Y01234/g", "mht-nelft/m")),
    ]


# --- explained absences ---------------------------------------------------------------


CASE_RECORD = Relationship("probation", "case-record", "e-case")


def test_noshow_during_attended_gp_visit_is_explained() -> None:
    officer = Calendar("person-1", relationships={"probation-london": CASE_RECORD})
    cal, _ = run(officer, slot("p"), slot("g", "gp", status="fulfilled"))
    _, alerts = reconcile(cal, slot("p", status="noshow", version=2))
    (alert,) = alerts
    assert (alert.kind, alert.action) == ("explained-absence", "raised")
    assert alert.appointment_ids == ("probation-london/p", "gp-Y01234/g")
    assert alert.recipients == ("probation-london",)


def test_explained_absence_goes_to_a_booker_without_a_relationship_only_via_officers() -> None:
    """Booking an appointment is no relationship: the attendance elsewhere goes to officers only."""
    officer = Calendar("person-1", relationships={"probation-london": CASE_RECORD})
    _, alerts = run(
        officer,
        slot("m", "mht", status="fulfilled"),
        slot("v", "voluntary", status="noshow", at=15),
    )
    (alert,) = alerts
    assert alert.recipients == ("probation-london",)


def test_a_partner_related_after_an_absence_was_explained_is_told_of_it_then() -> None:
    before, _ = run(
        Calendar("person-1"),
        slot("m", "mht", status="fulfilled"),
        slot("v", "voluntary", status="noshow", at=15),
    )
    referred = Relationship("voluntary", "referral", "probation-london/sr-1")
    after = replace(
        before, relationships={"vol-turning-point": referred, "probation-london": CASE_RECORD}
    )
    (alert,) = told_on_relating(before, after)
    assert (alert.kind, alert.action) == ("explained-absence", "raised")
    assert alert.appointment_ids == ("vol-turning-point/v", "mht-nelft/m")
    assert alert.recipients == ("vol-turning-point", "probation-london")
    assert told_on_relating(after, after) == [], "nobody is told twice"
    only_officer = replace(before, relationships={"probation-london": CASE_RECORD})
    (again,) = told_on_relating(only_officer, after)
    assert again.recipients == ("vol-turning-point",)


def test_officers_are_the_related_probation_partners_not_everyone_who_sent_something() -> None:
    claimed = Calendar("person-1", partners={"probation-elsewhere": "probation"})
    _, alerts = run(claimed, slot("g", "gp", status="fulfilled"), slot("p", status="noshow", at=15))
    (alert,) = alerts
    assert alert.kind == "explained-absence"
    assert alert.recipients == ()


def test_gp_outcome_after_noshow_raises_explained_absence_then() -> None:
    cal, first = run(Calendar("person-1"), slot("p"), slot("g", "gp"))
    cal, second = reconcile(cal, slot("p", status="noshow", version=2))
    _, third = reconcile(cal, slot("g", "gp", status="arrived", version=2))
    assert summary(first) == [("clash", "raised", ("gp-Y01234/g", "probation-london/p"))]
    assert summary(second) == [("clash", "resolved", ("gp-Y01234/g", "probation-london/p"))]
    assert summary(third) == [
        ("explained-absence", "raised", ("probation-london/p", "gp-Y01234/g"))
    ]


def test_treatment_noshow_explained_by_mht_attendance() -> None:
    cal = calendar_of(
        slot("v", "voluntary", status="noshow"), slot("m", "mht", status="checked-in", at=45)
    )
    assert open_alert_keys(cal) == {("explained-absence", "vol-turning-point/v", "mht-nelft/m")}


def test_health_noshow_is_not_explained_by_other_attendance() -> None:
    cal = calendar_of(slot("g", "gp", status="noshow"), slot("m", "mht", status="fulfilled"))
    assert open_alert_keys(cal) == frozenset()


def test_evidence_entered_in_error_resolves_explained_absence() -> None:
    cal, _ = run(
        Calendar("person-1"), slot("p", status="noshow"), slot("g", "gp", status="fulfilled")
    )
    _, alerts = reconcile(cal, slot("g", "gp", status="entered-in-error", version=2))
    assert summary(alerts) == [
        ("explained-absence", "resolved", ("probation-london/p", "gp-Y01234/g"))
    ]


def test_booked_health_appointment_does_not_explain_a_noshow() -> None:
    cal = calendar_of(slot("p", status="noshow"), slot("g", "gp", status="booked"))
    assert open_alert_keys(cal) == frozenset()


# --- merge ----------------------------------------------------------------------------


def test_merge_raises_clash_across_provisional_people() -> None:
    a = calendar_of(slot("p"), person_id="provisional-a")
    b = calendar_of(slot("g", "gp", at=20), person_id="provisional-b")
    merged, alerts = merge(a, b, "person-1")
    assert merged.person_id == "person-1"
    assert set(merged.slots) == {"probation-london/p", "gp-Y01234/g"}
    (alert,) = alerts
    assert (alert.kind, alert.action, alert.person_id) == ("clash", "raised", "person-1")


def test_merge_does_not_raise_again_what_was_already_open() -> None:
    a = calendar_of(slot("p"), slot("g", "gp"), person_id="provisional-a")
    b = calendar_of(slot("v", "voluntary", at=600), person_id="provisional-b")
    _, alerts = merge(a, b, "person-1")
    assert alerts == []


def test_merge_keeps_the_newer_version_and_resolves_what_it_closes() -> None:
    a = calendar_of(slot("p"), slot("g", "gp"), person_id="provisional-a")
    b = calendar_of(slot("g", "gp", status="cancelled", version=2), person_id="provisional-b")
    merged, alerts = merge(a, b, "person-1")
    assert merged.slots["gp-Y01234/g"].status == "cancelled"
    assert summary(alerts) == [("clash", "resolved", ("gp-Y01234/g", "probation-london/p"))]
    assert alerts[0].person_id == "person-1"


def test_merge_keeps_the_relationships_of_both_people() -> None:
    referred = Relationship("voluntary", "referral", "probation-london/sr-1")
    a = Calendar("p-a", relationships={"probation-london": CASE_RECORD})
    b = Calendar("p-b", relationships={"vol-turning-point": referred})
    merged, _ = merge(a, b, "p-a")
    assert merged.relationships == {"probation-london": CASE_RECORD, "vol-turning-point": referred}
