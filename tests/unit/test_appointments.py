"""Unit tests for mapping a FHIR Appointment to the calendar's Slot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.domain.appointments import slot_from_appointment
from services.domain.calendar import Slot, Version

EXAMPLE = Path(__file__).parents[2] / "schemas" / "examples" / "appointment.booking.updated.json"
OCCURRED = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def appointment(**fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": "kw-1",
        "status": "booked",
        "start": "2026-12-03T10:15:00Z",
        "end": "2026-12-03T11:00:00Z",
        "participant": [
            {
                "actor": {
                    "identifier": {"system": "urn:concord:id:probation-crn", "value": "X123456"}
                },
                "status": "accepted",
            }
        ],
        **fields,
    }


def to_slot(resource: dict[str, Any], source: str = "vol-recovery") -> Slot:
    return slot_from_appointment(
        resource, source=source, kind="voluntary", event_id="event-1", occurred_at=OCCURRED
    )


def test_example_gp_appointment_maps_to_a_slot() -> None:
    envelope = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    slot = slot_from_appointment(
        envelope["resource"],
        source="gp-Y01234",
        kind="gp",
        event_id=envelope["event_id"],
        occurred_at=OCCURRED,
    )
    assert slot == Slot(
        appointment_id="gp-Y01234/gp-appt-1001",
        partner="gp-Y01234",
        kind="gp",
        status="booked",
        start=datetime(2026, 12, 3, 10, 0, tzinfo=UTC),
        end=datetime(2026, 12, 3, 10, 30, tzinfo=UTC),
        location="gp-Y01234/Location/surgery-main",
        version=Version(1, datetime(2026, 12, 1, 8, 0, tzinfo=UTC), envelope["event_id"]),
        service_type="General practice",
        based_on=None,
    )


def test_times_with_offsets_become_utc() -> None:
    slot = to_slot(
        appointment(start="2026-07-03T10:15:00+01:00", end="2026-07-03T11:00:00.250+01:00")
    )
    assert slot.start == datetime(2026, 7, 3, 9, 15, tzinfo=UTC)
    assert slot.end == datetime(2026, 7, 3, 10, 0, 0, 250_000, tzinfo=UTC)
    assert slot.start is not None
    assert slot.start.tzinfo is UTC


def test_appointment_without_times_has_none() -> None:
    resource = appointment(status="cancelled")
    del resource["start"], resource["end"]
    slot = to_slot(resource)
    assert (slot.start, slot.end) == (None, None)


def test_missing_id_is_rejected() -> None:
    resource = appointment()
    del resource["id"]
    with pytest.raises(ValueError, match=r"^Appointment\.id: field required"):
        to_slot(resource)


def test_instant_without_timezone_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"Appointment\.start: .* has no timezone"):
        to_slot(appointment(start="2026-12-03T10:15:00"))


def test_appointment_id_is_scoped_by_the_source_partner() -> None:
    assert to_slot(appointment(id="7"), source="gp-A99999").appointment_id == "gp-A99999/7"


def test_location_is_the_first_location_participant_scoped_by_partner() -> None:
    resource = appointment()
    resource["participant"] += [
        {"actor": {"reference": "Practitioner/dr-1"}, "status": "accepted"},
        {"actor": {"reference": "Location/hub", "display": "Recovery Hub"}, "status": "accepted"},
        {"actor": {"reference": "Location/annex"}, "status": "accepted"},
    ]
    assert to_slot(resource).location == "vol-recovery/Location/hub"


def test_no_location_participant_means_unknown_location() -> None:
    assert to_slot(appointment()).location is None


def test_numeric_version_id_and_last_updated_make_the_version() -> None:
    slot = to_slot(
        appointment(meta={"versionId": "12", "lastUpdated": "2026-12-01T10:00:00+01:00"})
    )
    assert slot.version == Version(12, datetime(2026, 12, 1, 9, 0, tzinfo=UTC), "event-1")


def test_non_numeric_version_id_counts_as_zero() -> None:
    slot = to_slot(appointment(meta={"versionId": "W/abc"}))
    assert slot.version.number == 0


@pytest.mark.parametrize("version_id", ["W/abc", "²", "1" * 19])
def test_version_id_that_is_no_storable_number_counts_as_zero(version_id: str) -> None:
    assert to_slot(appointment(meta={"versionId": version_id})).version.number == 0


def test_without_meta_the_version_time_is_when_the_event_occurred() -> None:
    assert to_slot(appointment()).version == Version(0, OCCURRED, "event-1")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {
                "specialty": [{"text": "Spec text", "coding": [{"display": "Spec display"}]}],
                "serviceType": [{"text": "Type text", "coding": [{"display": "Type display"}]}],
            },
            "Spec display",
        ),
        (
            {
                "specialty": [{"text": "Spec text"}],
                "serviceType": [{"coding": [{"display": "Type display"}]}],
            },
            "Spec text",
        ),
        (
            {
                "serviceType": [
                    {"text": "Type text", "coding": [{"code": "x"}, {"display": "Type display"}]}
                ]
            },
            "Type display",
        ),
        (
            {"serviceType": [{"text": "Substance misuse key-work session"}]},
            "Substance misuse key-work session",
        ),
        ({}, None),
    ],
)
def test_service_type_is_the_first_display_or_text(
    fields: dict[str, Any], expected: str | None
) -> None:
    assert to_slot(appointment(**fields)).service_type == expected


def test_based_on_is_the_first_referral_reference() -> None:
    resource = appointment(
        basedOn=[{"reference": "ServiceRequest/ref-2001"}, {"reference": "ServiceRequest/ref-9"}]
    )
    assert to_slot(resource).based_on == "ServiceRequest/ref-2001"
    assert to_slot(appointment()).based_on is None
