"""Unit tests for the calendars table encoding: exact round trips, small values, corrupt input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from services.domain.calendar import Calendar, Slot, Version
from services.domain.referral_parties import ReferralParties
from services.domain.referrals import Referral
from services.domain.relationships import Relationship
from services.stream.state import (
    calendar_of,
    decode_calendar,
    encode_calendar,
    upcast_v1_v2,
    upcast_v2_v3,
)

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def slot(n: int, **fields: object) -> Slot:
    values: dict[str, object] = {
        "appointment_id": f"gp-Y01234/appt-{n:04d}",
        "partner": "gp-Y01234",
        "kind": "gp",
        "status": "booked",
        "start": T0 + timedelta(days=n),
        "end": T0 + timedelta(days=n, minutes=30),
        "location": "gp-Y01234/Location/surgery-main",
        "version": Version(
            3, T0 - timedelta(days=2, microseconds=123_457), f"{n:08d}-4433-5ab2-aff3-82c830d540ba"
        ),
        "service_type": "Community mental health team review",
        "based_on": "ServiceRequest/ref-2001",
    }
    values.update(fields)
    return Slot(**values)  # type: ignore[arg-type]


FIVE = Calendar("p-0a1b2c3d4e5f60718293", {s.appointment_id: s for s in map(slot, range(5))})


def test_calendar_round_trips_exactly() -> None:
    assert decode_calendar(encode_calendar(FIVE)) == FIVE


def test_datetimes_come_back_aware_utc_to_the_microsecond() -> None:
    decoded = decode_calendar(encode_calendar(FIVE))
    first = decoded.slots["gp-Y01234/appt-0000"]
    assert first.start is not None
    assert first.start.tzinfo is UTC
    assert first.version.updated == T0 - timedelta(days=2, microseconds=123_457)
    assert isinstance(first.version, Version)


def test_absent_fields_stay_none() -> None:
    bare = slot(
        1, start=None, end=None, location=None, service_type=None, based_on=None, status="cancelled"
    )
    cal = Calendar("p-1", {bare.appointment_id: bare})
    assert decode_calendar(encode_calendar(cal)) == cal


def test_times_in_another_offset_come_back_as_the_same_instant_in_utc() -> None:
    plus_one = timezone(timedelta(hours=1))
    moved = slot(
        1,
        start=datetime(2026, 7, 3, 11, 0, tzinfo=plus_one),
        end=datetime(2026, 7, 3, 12, 0, tzinfo=plus_one),
    )
    decoded = decode_calendar(encode_calendar(Calendar("p-1", {moved.appointment_id: moved})))
    start = decoded.slots[moved.appointment_id].start
    assert start == datetime(2026, 7, 3, 10, 0, tzinfo=UTC)
    assert start is not None
    assert start.tzinfo is UTC


def test_merged_person_tombstone_round_trips() -> None:
    tombstone = encode_calendar(Calendar("p-absorbed", merged_into="p-survivor"))
    assert decode_calendar(tombstone) == Calendar("p-absorbed", merged_into="p-survivor")


def test_empty_calendar_round_trips() -> None:
    assert decode_calendar(encode_calendar(Calendar("p-1"))) == Calendar("p-1")


def test_five_appointments_encode_well_under_two_kilobytes() -> None:
    assert len(encode_calendar(FIVE)) < 2048


def test_encoding_survives_being_embedded_in_another_json_message() -> None:
    """A merge moves a calendar inside a JSON command; parse and dump must not change it."""
    wrapped = orjson.dumps({"calendar": orjson.Fragment(encode_calendar(FIVE))})
    assert decode_calendar(orjson.dumps(orjson.loads(wrapped)["calendar"])) == FIVE
    assert calendar_of(orjson.loads(wrapped)["calendar"]) == FIVE


@pytest.mark.parametrize(
    "data",
    [b"not json", b"{}", b'[2, "p-1", null, []]', b'[1, "p-1", null, [["too", "short"]]]'],
)
def test_corrupt_value_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match=r".+"):
        decode_calendar(data)


RELATED = Calendar(
    "p-1",
    relationships={
        "probation-london": Relationship("probation", "case-record", "e-1"),
        "vol-recovery": Relationship("voluntary", "consent", "probation-london/c-1"),
    },
)


def test_relationships_round_trip() -> None:
    assert decode_calendar(encode_calendar(RELATED)) == RELATED


def test_a_format_1_value_is_upcast_with_no_relationships() -> None:
    """Format 1 kept only who had sent anything: no relationship survives the upgrade."""
    v1 = [1, "p-1", None, [], {"vol-recovery": "voluntary"}, [], []]
    assert upcast_v1_v2(v1) == [2, "p-1", None, [], {"vol-recovery": "voluntary"}, [], [], {}]
    calendar = decode_calendar(orjson.dumps(v1))
    assert calendar == Calendar("p-1", partners={"vol-recovery": "voluntary"})
    assert calendar.merged_into is None
    tombstone = [1, "p-old", "p-new", [], {}, [], []]
    assert decode_calendar(orjson.dumps(tombstone)) == Calendar("p-old", merged_into="p-new")


def test_a_format_1_calendar_with_slots_decodes_them_as_before() -> None:
    v2 = orjson.loads(encode_calendar(FIVE))
    v1 = [1, *v2[1:7]]
    assert decode_calendar(orjson.dumps(v1)) == FIVE


NAMED = Calendar(
    "p-1",
    known_as={
        "gp-Y01234": frozenset(
            {"urn:concord:id:local:gp-Y01234|G-77", "https://fhir.nhs.uk/Id/nhs-number|9434765919"}
        ),
        "probation-london": frozenset({"urn:concord:id:probation-crn|X123456"}),
    },
)


def test_each_partners_identifiers_round_trip() -> None:
    assert decode_calendar(encode_calendar(NAMED)) == NAMED


def test_a_format_2_value_is_upcast_knowing_no_partners_identifiers() -> None:
    """Format 2 did not keep them: each partner's are learnt again from its next event."""
    v2 = [2, "p-1", None, [], {"gp-Y01234": "gp"}, [], [], {}]
    assert upcast_v2_v3(v2) == [3, *v2[1:], {}]
    assert decode_calendar(orjson.dumps(v2)) == Calendar("p-1", partners={"gp-Y01234": "gp"})


PARTIES = ReferralParties(
    person={
        "name": [{"family": "Smith", "given": ["Jo"]}],
        "birthDate": "1990-04-01",
        "address": [{"line": ["1 High Street"], "postalCode": "SE11 5AB"}],
    },
    requester=(
        {
            "resourceType": "PractitionerRole",
            "id": "requester",
            "practitioner": {"reference": "#practitioner"},
            "telecom": [{"system": "phone", "value": "020 7946 0000"}],
        },
        {"resourceType": "Practitioner", "id": "practitioner", "name": [{"text": "Sam Patel"}]},
    ),
)
REFERRAL = Referral(
    referral_id="probation-london/ref-1",
    fhir_id="ref-1",
    referrer="probation-london",
    recipient="mht-rv5",
    status="requested",
    category="crisis-support",
    urgency="urgent",
    requested=T0,
    deadline=T0 + timedelta(days=1),
    event_id="e-1",
    parties=PARTIES,
)


def test_a_referrals_parties_round_trip() -> None:
    cal = Calendar("p-1", referrals={REFERRAL.referral_id: REFERRAL})
    assert decode_calendar(encode_calendar(cal)) == cal
    bare = replace(REFERRAL, parties=None)
    cal = Calendar("p-1", referrals={bare.referral_id: bare})
    assert decode_calendar(encode_calendar(cal)) == cal


def test_a_referral_stored_before_it_kept_its_parties_reads_with_none() -> None:
    value = orjson.loads(encode_calendar(Calendar("p-1", referrals={"r": REFERRAL})))
    value[6][0] = value[6][0][:14]
    (read,) = decode_calendar(orjson.dumps(value)).referrals.values()
    assert read == replace(REFERRAL, parties=None)


def test_stored_parties_of_another_shape_are_corrupt() -> None:
    value = orjson.loads(encode_calendar(Calendar("p-1", referrals={"r": REFERRAL})))
    value[6][0][14] = {"person": "Jo Smith"}
    with pytest.raises(ValueError, match="stored referral parties"):
        decode_calendar(orjson.dumps(value))
