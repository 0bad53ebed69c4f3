"""Voluntary-sector CSV uploads: columns mapped to FHIR Appointments, London time to UTC, bad rows named by line."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.feeds.csv_feed import (
    ATTENDANCE_HINT,
    COLUMNS,
    records_from_csv_file,
    records_from_csv_text,
)
from connectors.feeds.spreadsheet import DATE_HINT, TIME_HINT
from connectors.fhir_input import Record, read_text
from connectors.publish import Accepted, decide
from schemas.fhir import CARRIED, problems_in

FIXTURES = Path(__file__).parents[1] / "fixtures" / "voluntary"
PARTNER = "vol-recovery"
HEADER = "client_id,appointment_id,date,start_time,end_time,status"
CLIENT = {"system": "urn:concord:id:local:vol-recovery", "value": "C-1"}
CRN = {"system": "urn:concord:id:probation-crn", "value": "X123456"}


def upload(*lines: str, header: str = HEADER) -> list[Record]:
    return list(records_from_csv_text("\n".join([header, *lines]) + "\n", "up.csv", PARTNER))


def errors(records: list[Record]) -> list[str]:
    return [f"{r.origin}: {p}" for r in records for p in r.problems]


def resources(records: list[Record]) -> list[dict[str, Any]]:
    found = [r.resource for r in records if r.resource is not None]
    for resource in found:
        assert problems_in(resource) == [], resource
    return found


def one_appointment(row: str, header: str = HEADER) -> dict[str, Any]:
    records = upload(row, header=header)
    assert errors(records) == []
    [appointment] = resources(records)
    return appointment


def test_row_is_an_appointment_naming_the_client_by_the_partners_local_id() -> None:
    appointment = one_appointment("C-1,va-1,2026-12-03,10:00,10:45,booked")
    assert appointment == {
        "resourceType": "Appointment",
        "id": "va-1",
        "status": "booked",
        "start": "2026-12-03T10:00:00Z",
        "end": "2026-12-03T10:45:00Z",
        "participant": [{"actor": {"identifier": CLIENT}, "status": "accepted"}],
    }


@pytest.mark.parametrize(
    ("status", "fhir"),
    [
        ("booked", "booked"),
        ("attended", "fulfilled"),
        ("did-not-attend", "noshow"),
        ("cancelled", "cancelled"),
        ("Attended", "fulfilled"),
    ],
)
def test_status_is_mapped(status: str, fhir: str) -> None:
    appointment = one_appointment(f"C-1,va-1,2026-12-03,10:00,10:45,{status}")
    assert appointment["status"] == fhir


def test_both_date_formats_give_the_same_appointment() -> None:
    iso = one_appointment("C-1,va-1,2026-12-03,10:00,10:45,booked")
    uk = one_appointment("C-1,va-1,03/12/2026,10:00,10:45,booked")
    short = one_appointment("C-1,va-1,3/12/2026,10:00,10:45,booked")
    assert iso == uk == short


def test_london_summer_time_is_converted_to_utc() -> None:
    appointment = one_appointment("C-1,va-1,14/07/2026,10:00,11:30,booked")
    assert (appointment["start"], appointment["end"]) == (
        "2026-07-14T09:00:00Z",
        "2026-07-14T10:30:00Z",
    )


def test_time_on_the_morning_the_clocks_go_forward_that_does_not_exist_is_an_error() -> None:
    records = upload("C-1,va-1,2026-03-29,01:30,03:00,booked")
    assert errors(records) == [
        "up.csv:2: start_time: 01:30 does not exist on 2026-03-29 in Europe/London (clocks go forward)"
    ]


def test_time_in_the_hour_that_happens_twice_reads_as_summer_time() -> None:
    appointment = one_appointment("C-1,va-1,2026-10-25,01:15,01:45,booked")
    assert appointment["start"] == "2026-10-25T00:15:00Z"


def test_optional_columns_are_mapped() -> None:
    header = HEADER + ",location,service,version"
    appointment = one_appointment(
        'C-1,va-1,2026-12-03,10:00,10:45,attended,"Recovery Hub, Walworth Road",Group recovery,4',
        header=header,
    )
    assert appointment["meta"] == {"versionId": "4"}
    assert appointment["serviceType"] == [{"text": "Group recovery"}]
    assert appointment["participant"][1] == {
        "actor": {
            "reference": "Location/recovery-hub-walworth-road",
            "display": "Recovery Hub, Walworth Road",
        },
        "status": "accepted",
    }


def test_blank_optional_values_are_left_out() -> None:
    header = HEADER + ",crn,location,service,version"
    appointment = one_appointment("C-1,va-1,2026-12-03,10:00,10:45,booked, , ,,", header=header)
    assert set(appointment) == {"resourceType", "id", "status", "start", "end", "participant"}


def test_crn_names_the_person_and_links_the_client_once_per_file() -> None:
    header = HEADER + ",crn"
    records = upload(
        "C-1,va-1,2026-12-03,10:00,10:45,booked,X123456",
        "C-1,va-2,2026-12-10,10:00,10:45,booked,X123456",
        header=header,
    )
    assert errors(records) == []
    patient, first, second = resources(records)
    assert patient == {"resourceType": "Patient", "identifier": [CLIENT, CRN]}
    assert first["participant"][0]["actor"] == {"identifier": CRN}
    assert second["participant"][0]["actor"] == {"identifier": CRN}
    assert [r.origin for r in records] == ["up.csv:2", "up.csv:2", "up.csv:3"]


def test_a_crn_listed_as_a_placeholder_links_nothing_and_the_client_id_names_the_person(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONCORD_PLACEHOLDER_IDENTIFIERS", "urn:concord:id:probation-crn|X000000")
    [appointment] = resources(
        upload("C-1,va-1,2026-12-03,10:00,10:45,booked,X000000", header=HEADER + ",crn")
    )
    assert appointment["participant"][0]["actor"] == {"identifier": CLIENT}


def test_header_is_matched_ignoring_case_spaces_and_order() -> None:
    header = " Status ,END_TIME,start_time,date,appointment_id,Client_ID"
    appointment = one_appointment("booked,10:45,10:00,2026-12-03,va-1,C-1", header=header)
    assert appointment["start"] == "2026-12-03T10:00:00Z"


def test_bad_rows_are_named_by_line_and_column_and_good_rows_still_map() -> None:
    records = upload(
        "C-1,va-1,2026-12-03,10:00,10:45,booked",
        "",
        "C-1,va-2,31/02/2026,10:00,10:45,booked",
        "C-1,va-3,2026-12-03,10:00,09:45,booked",
        "C-1,va-4,2026-12-04,10:00,10:45,maybe",
        "C-1,va-5,2026-12-05,10:00,10:45,attended",
    )
    assert errors(records) == [
        f"up.csv:4: date: '31/02/2026' is not a date ({DATE_HINT})",
        "up.csv:5: end_time: must be later than the start time",
        f"up.csv:6: status: 'maybe' is not an attendance value ({ATTENDANCE_HINT})",
    ]
    assert [a["id"] for a in resources(records)] == ["va-1", "va-5"]


def test_every_problem_of_a_row_is_reported() -> None:
    records = upload("C 1,va/1,2026-13-01,25:00,1045,")
    assert errors(records) == [
        "up.csv:2: client_id: local identifier value must be 1-64 letters, digits or ._/-",
        "up.csv:2: appointment_id: 'va/1' is not a valid id (1-64 letters, digits, '-' or '.')",
        f"up.csv:2: date: '2026-13-01' is not a date ({DATE_HINT})",
        f"up.csv:2: start_time: '25:00' is not a time ({TIME_HINT})",
        f"up.csv:2: end_time: '1045' is not a time ({TIME_HINT})",
        "up.csv:2: status: value required",
    ]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "C-1,va-1,2026/12/03,10:00,10:45,booked,,1",
            f"date: '2026/12/03' is not a date ({DATE_HINT})",
        ),
        ("C-1,va-1,2026-12-03,10:00,10:45,booked,X12,1", "crn: probation CRN must be a letter"),
        ("C-1,va-1,2026-12-03,10:00,10:45,booked,,v1", "version: 'v1' is not a whole number"),
        (",va-1,2026-12-03,10:00,10:45,booked,,1", "(row): one of client_id, crn is required"),
    ],
)
def test_bad_value_is_named_by_column(row: str, expected: str) -> None:
    records = upload(row, header=HEADER + ",crn,version")
    [message] = errors(records)
    assert message.startswith(f"up.csv:2: {expected}"), message


def test_row_with_the_wrong_number_of_values_is_an_error() -> None:
    records = upload("C-1,va-1,2026-12-03,10:00,10:45", "C-1,va-2,2026-12-03,10:00,10:45,booked,x")
    assert errors(records) == [
        "up.csv:2: (row): has 5 values, the header has 6 columns",
        "up.csv:3: (row): has 7 values, the header has 6 columns",
    ]


def test_a_quoted_value_over_two_lines_keeps_later_line_numbers_right() -> None:
    header = HEADER + ",location"
    records = upload(
        'C-1,va-1,2026-12-03,10:00,10:45,booked,"Recovery Hub\nWalworth Road"',
        "C-1,va-2,2026-12-03,10:00,10:45,soon,",
        header=header,
    )
    assert errors(records) == [
        f"up.csv:4: status: 'soon' is not an attendance value ({ATTENDANCE_HINT})"
    ]


def test_bad_row_keeps_the_header_and_the_row_for_the_dead_letter() -> None:
    [record] = upload("C-1,va-2,31/02/2026,10:00,10:45,booked")
    assert record.raw == HEADER + "\nC-1,va-2,31/02/2026,10:00,10:45,booked\n"


def test_unknown_columns_are_each_reported_once_per_file_and_not_read() -> None:
    records = upload(
        "C-1,va-1,2026-12-03,10:00,10:45,booked,x,Prefers mornings",
        "C-1,va-2,2026-12-04,10:00,10:45,booked,y,",
        header=HEADER + ",room,Notes",
    )
    notices = [(r.origin, r.ignored_because) for r in records if r.ignored_because is not None]
    assert notices == [
        (
            "up.csv:1",
            f"column 'room' is not read: the hub has no column of that name (it reads {', '.join(COLUMNS)} and their usual names)",
        ),
        (
            "up.csv:1",
            f"column 'Notes' is not read: the hub has no column of that name (it reads {', '.join(COLUMNS)} and their usual names)",
        ),
    ]
    assert errors(records) == []
    assert [a["id"] for a in resources(records)] == ["va-1", "va-2"]
    assert "Prefers mornings" not in orjson.dumps(resources(records)).decode()


def test_missing_required_column_rejects_the_whole_file_as_one_record() -> None:
    header = "client_id,appointment_id,date,start_time,status"
    records = upload(
        "C-1,va-1,2026-12-03,10:00,booked", "C-1,va-2,2026-12-03,11:00,booked", header=header
    )
    assert errors(records) == [
        "up.csv:1: (header): missing required column(s): end_time or duration"
    ]
    assert "va-2" in records[0].raw, "the whole file is kept for the dead letter"


def test_repeated_and_unnamed_columns_are_header_errors() -> None:
    records = upload("C-1,va-1,2026-12-03,10:00,10:45,booked,x,y", header=HEADER + ",date,")
    assert errors(records) == [
        "up.csv:1: (header): column(s) without a name: 8",
        "up.csv:1: (header): column 'date' is given twice",
    ]


def test_empty_file_needs_a_header() -> None:
    [record] = records_from_csv_text("", "up.csv", PARTNER)
    assert str(record.problems[0]).startswith("(header): a header row is required")


def test_spreadsheet_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "up.csv"
    path.write_bytes(("\ufeff" + HEADER + "\nC-1,va-1,2026-12-03,10:00,10:45,booked\n").encode())
    [record] = records_from_csv_file(path, PARTNER)
    assert record.ok


def test_windows_1252_export_reads_its_pound_sign_and_smart_quotes(tmp_path: Path) -> None:
    path = tmp_path / "up.csv"
    text = (
        HEADER
        + ",service\nC-1,va-1,2026-12-03,10:00,10:45,booked,\u201cCaf\xe9\u201d \xa35 voucher\n"
    )
    path.write_bytes(text.encode("cp1252"))
    [appointment] = resources(list(records_from_csv_file(path, PARTNER)))
    assert appointment["serviceType"] == [{"text": "\u201cCaf\xe9\u201d \xa35 voucher"}]


def test_text_in_no_encoding_a_spreadsheet_writes_is_one_problem_naming_the_byte(
    tmp_path: Path,
) -> None:
    path = tmp_path / "up.csv"
    before = HEADER.encode() + b"\nC-1,va-1,2026-12-03,10:00,10:45,bo"
    path.write_bytes(before + b"\x81ked\n")
    [record] = records_from_csv_file(path, PARTNER)
    assert [str(p) for p in record.problems] == [
        f"(file): neither UTF-8 nor Windows-1252 text (byte 0x81 at offset {len(before)}); "
        "save the sheet as CSV UTF-8"
    ]


def test_partner_must_be_a_partner_id() -> None:
    with pytest.raises(ValueError, match="not a partner id"):
        list(records_from_csv_text(HEADER + "\n", "up.csv", "Recovery Hub"))


def test_small_fixture_maps_both_date_formats_and_the_link() -> None:
    records = list(records_from_csv_file(FIXTURES / "small.csv", "vol-housing"))
    assert errors(records) == []
    patient, summer, winter, noshow, cancelled = resources(records)
    assert patient["resourceType"] == "Patient"
    assert (summer["status"], summer["start"]) == ("fulfilled", "2026-07-14T09:00:00Z")
    assert (winter["status"], winter["start"]) == ("booked", "2026-12-03T09:30:00Z")
    assert noshow["participant"][0]["actor"]["identifier"] == {
        "system": "urn:concord:id:local:vol-housing",
        "value": "C-1043",
    }
    assert cancelled["status"] == "cancelled"


def test_hundred_row_fixture_has_exactly_three_bad_rows_on_known_lines() -> None:
    records = list(records_from_csv_file(FIXTURES / "appointments.csv", PARTNER))
    assert errors(records) == [
        f"appointments.csv:7: date: '31/02/2026' is not a date ({DATE_HINT})",
        f"appointments.csv:42: status: 'rescheduled' is not an attendance value ({ATTENDANCE_HINT})",
        "appointments.csv:88: end_time: must be later than the start time",
    ]
    assert len(resources(records)) == 97
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert all(isinstance(decide(r, PARTNER, now), Accepted) for r in records if r.ok)


def test_mapped_resources_round_trip_through_json_and_the_fhir_models() -> None:
    mapped = resources(list(records_from_csv_file(FIXTURES / "small.csv", "vol-housing")))
    ndjson = "\n".join(orjson.dumps(resource).decode() for resource in mapped)
    assert [r.resource for r in read_text(ndjson, "out.ndjson")] == mapped
    for resource in mapped:
        module = importlib.import_module(
            f"fhir.resources.R4B.{CARRIED[resource['resourceType']][0]}"
        )
        model = getattr(module, resource["resourceType"]).model_validate(resource)
        assert orjson.loads(model.model_dump_json()) == resource
