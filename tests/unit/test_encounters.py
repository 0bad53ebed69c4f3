"""Unit tests for reading a FHIR Encounter into the calendar's Slot (attendance evidence)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.fhir import problems_in
from services.domain.appointments import ENCOUNTER_STATUSES, slot_from_encounter
from services.domain.calendar import Slot, Version
from services.domain.intake import unusable
from services.domain.reconciliation import ATTENDED_STATUSES, LIVE_STATUSES

EXAMPLE = Path(__file__).parents[2] / "schemas" / "examples" / "encounter.attendance.updated.json"
OCCURRED = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def encounter(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "stay-1",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {
            "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}
        },
        "period": {"start": "2026-12-02T14:00:00Z"},
        **fields,
    }


def to_slot(resource: dict[str, Any]) -> Slot:
    return slot_from_encounter(
        resource, source="mht-rv5", kind="mht", event_id="event-1", occurred_at=OCCURRED
    )


def test_the_example_inpatient_stay_maps_to_an_attended_slot_over_several_days() -> None:
    envelope = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    slot = slot_from_encounter(
        envelope["resource"],
        source="mht-rv5",
        kind="mht",
        event_id=envelope["event_id"],
        occurred_at=OCCURRED,
    )
    assert slot == Slot(
        appointment_id="mht-rv5/Encounter/mht-stay-2040",
        partner="mht-rv5",
        kind="mht",
        status="fulfilled",
        start=datetime(2026, 12, 2, 14, 0, tzinfo=UTC),
        end=datetime(2026, 12, 5, 11, 0, tzinfo=UTC),
        location="mht-rv5/Location/ward-7",
        version=Version(2, datetime(2026, 12, 5, 11, 30, tzinfo=UTC), envelope["event_id"]),
    )


@pytest.mark.parametrize(
    ("status", "attended"),
    [
        ("arrived", True),
        ("triaged", True),
        ("in-progress", True),
        ("finished", True),
        ("planned", False),
        ("onleave", False),
        ("unknown", False),
        ("cancelled", False),
        ("entered-in-error", False),
    ],
)
def test_only_a_visit_or_stay_the_person_is_or_was_at_is_attendance(
    status: str, attended: bool
) -> None:
    slot = to_slot(encounter(status=status, period={"start": "2026-12-02T14:00:00Z"}))
    assert (slot.status in ATTENDED_STATUSES) is attended
    assert slot.status == ENCOUNTER_STATUSES[status]


def test_a_planned_stay_is_neither_evidence_nor_a_clash() -> None:
    slot = to_slot(encounter(status="planned"))
    assert slot.status not in ATTENDED_STATUSES | LIVE_STATUSES


def test_a_stay_under_way_with_no_end_lasts_until_a_later_version_ends_it() -> None:
    slot = to_slot(encounter())
    assert (slot.start, slot.end) == (datetime(2026, 12, 2, 14, 0, tzinfo=UTC), None)


def test_a_finished_encounter_with_no_end_is_evidence_of_its_start_alone() -> None:
    slot = to_slot(encounter(status="finished"))
    assert slot.start == slot.end == datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def test_times_in_another_zone_are_kept_as_utc() -> None:
    slot = to_slot(encounter(period={"start": "2017-02-01T07:15:00+10:00"}))
    assert slot.start == datetime(2017, 1, 31, 21, 15, tzinfo=UTC)


def test_encounter_ids_are_kept_apart_from_the_partners_appointment_ids() -> None:
    assert to_slot(encounter(id="1")).appointment_id == "mht-rv5/Encounter/1"


def test_the_service_type_is_held_for_consented_disclosure_only() -> None:
    concept = {"coding": [{"display": "Psychiatry"}]}
    assert to_slot(encounter(serviceType=concept)).service_type == "Psychiatry"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": None}, "Encounter.id: field required"),
        ({"period": None}, "Encounter.period.start: field required to place a in-progress"),
        ({"period": {"end": "2026-12-03T10:00:00Z"}}, "Encounter.period.start: field required"),
        (
            {"period": {"start": "2026-12-03T10:00:00Z", "end": "2026-12-02T10:00:00Z"}},
            "Encounter.period.end: must not be earlier",
        ),
        ({"period": {"start": "2026-12-02"}}, "Encounter.period.start: '2026-12-02' has no"),
    ],
)
def test_what_cannot_be_placed_is_refused_naming_the_element(
    changes: dict[str, Any], message: str
) -> None:
    resource = {k: v for k, v in encounter(**changes).items() if v is not None}
    with pytest.raises(ValueError, match=message):
        to_slot(resource)
    assert unusable(resource, source="mht-rv5", kind="mht", occurred_at=OCCURRED) is not None


def test_a_withdrawal_needs_no_period() -> None:
    for status in ("cancelled", "entered-in-error", "planned"):
        resource = {k: v for k, v in encounter(status=status).items() if k != "period"}
        assert to_slot(resource).start is None
        assert unusable(resource, source="mht-rv5", kind="mht", occurred_at=OCCURRED) is None


def test_the_edge_checks_the_encounter_status_and_subject() -> None:
    [problem] = problems_in(encounter(status="done"))
    assert problem.path == "Encounter.status"
    assert problems_in(encounter()) == []
