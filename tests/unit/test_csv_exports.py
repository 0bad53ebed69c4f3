"""CSV as spreadsheets export it: usual header names, a partner's own names, attendance words,
UK dates and times, separators, line ends and the rows spreadsheets leave behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.feeds.csv_feed import (
    ATTENDANCE,
    COLUMNS,
    SYNONYMS,
    attendance_status,
    header_key,
    read_header,
    records_from_csv_bytes,
    records_from_csv_file,
    records_from_csv_text,
)
from connectors.fhir_input import Record
from connectors.parallel import decide_all
from connectors.publish import Ignored, decide, reader_for
from schemas.fhir import problems_in

FIXTURES = Path(__file__).parents[1] / "fixtures" / "voluntary"
PARTNER = "vol-recovery"
CLIENT = {"system": "urn:concord:id:local:vol-recovery", "value": "C-1"}
NHS = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}


def upload(text: str, columns: dict[str, str] | None = None) -> list[Record]:
    return list(records_from_csv_text(text, "up.csv", PARTNER, columns))


def errors(records: list[Record]) -> list[str]:
    return [f"{r.origin}: {p}" for r in records for p in r.problems]


def notices(records: list[Record]) -> list[str]:
    return [f"{r.origin}: {r.ignored_because}" for r in records if r.ignored_because is not None]


def resources(records: list[Record]) -> list[dict[str, Any]]:
    found = [r.resource for r in records if r.resource is not None]
    for resource in found:
        assert problems_in(resource) == [], resource
    return found


def appointments(records: list[Record]) -> list[dict[str, Any]]:
    return [r for r in resources(records) if r["resourceType"] == "Appointment"]


# --- header names --------------------------------------------------------------------------------


def test_a_typical_export_with_spreadsheet_headers_maps_every_column() -> None:
    records = upload(
        "Client ID,NHS No,Appointment Ref,Appointment Date,Start Time,Duration (mins),"
        "Attendance,Venue,Appointment Type\n"
        "C-1,943 476 5919,a-1,14/07/2026,10:00,45,Attended,Recovery Hub,Key work\n"
    )
    assert errors(records) == []
    assert notices(records) == []
    patient, appointment = resources(records)
    assert patient == {"resourceType": "Patient", "identifier": [CLIENT, NHS]}
    assert appointment["status"] == "fulfilled"
    assert (appointment["start"], appointment["end"]) == (
        "2026-07-14T09:00:00Z",
        "2026-07-14T09:45:00Z",
    )
    assert appointment["participant"][0]["actor"] == {"identifier": NHS}
    assert appointment["participant"][1]["actor"]["display"] == "Recovery Hub"
    assert appointment["serviceType"] == [{"text": "Key work"}]


@pytest.mark.parametrize(
    ("written", "column"),
    [
        ("NHS No", "nhs_number"),
        ("NHS Number", "nhs_number"),
        ("nhs_no.", "nhs_number"),
        ("Client ID", "client_id"),
        ("  CLIENT   id ", "client_id"),
        ("client-id", "client_id"),
        ("Appointment Date", "date"),
        ("Date", "date"),
        ("Start Time", "start_time"),
        ("Time", "start_time"),
        ("Duration (mins)", "duration"),
        ("Status", "status"),
        ("Outcome", "status"),
        ("Attendance", "status"),
        ("End Time", "end_time"),
    ],
)
def test_usual_header_names_are_matched_ignoring_case_spaces_and_punctuation(
    written: str, column: str
) -> None:
    header = read_header([written])
    assert header.positions == {column: 0}
    assert header.names == {column: written.strip()}


def test_every_synonym_names_a_column_and_no_name_names_two() -> None:
    seen: dict[str, str] = {}
    for column, names in SYNONYMS.items():
        assert column in COLUMNS
        for name in names:
            assert header_key(name) == name, "synonyms are written as they are compared"
            assert seen.setdefault(name, column) == column, f"{name!r} names two columns"


def test_a_partners_own_header_names_are_read_before_the_usual_ones() -> None:
    records = upload(
        "Ref No,Visit ID,When,Start,Finish,Seen?\nC-1,a-1,03/12/2026,10:00,10:30,Seen\n",
        columns={
            "Ref No": "client_id",
            "visit id": "appointment_id",
            "WHEN": "date",
            "Start": "start_time",
            "Seen?": "status",
        },
    )
    assert errors(records) == []
    assert notices(records) == []
    [appointment] = resources(records)
    assert appointment["participant"][0]["actor"] == {"identifier": CLIENT}
    assert (appointment["id"], appointment["status"]) == ("a-1", "fulfilled")


def test_a_partner_mapping_to_no_column_stops_the_file_naming_the_setting() -> None:
    records = upload(
        "client_id,appointment_id,date,start_time,end_time,status\n",
        columns={"Seen?": "attended"},
    )
    assert errors(records) == [
        "up.csv:1: (header): the partner's csv_columns setting maps 'Seen?' to 'attended', "
        f"which is not a column (the columns are: {', '.join(COLUMNS)})"
    ]


def test_an_ambiguous_header_is_reported_once_naming_what_it_could_be() -> None:
    records = upload(
        "Client ID,ID,Appointment ID,Date,Time,End,Status\n"
        "C-1,77,a-1,03/12/2026,10:00,10:30,booked\n"
        "C-1,78,a-2,04/12/2026,10:00,10:30,booked\n"
    )
    assert notices(records) == [
        "up.csv:1: column 'ID' is not read: it could be client_id or appointment_id; "
        "name it in the partner's csv_columns setting to have it read"
    ]
    assert [a["id"] for a in appointments(records)] == ["a-1", "a-2"]


def test_two_headers_giving_one_column_stop_the_file_naming_both() -> None:
    records = upload(
        "Client ID,Appointment ID,Date,Time,End,Status,Outcome\n"
        "C-1,a-1,03/12/2026,10:00,10:30,booked,DNA\n"
    )
    assert errors(records) == [
        "up.csv:1: (header): columns 'Status' and 'Outcome' both give status: keep one, or map "
        "one elsewhere in the partner's csv_columns setting"
    ]


def test_a_file_without_any_person_column_is_refused_at_the_header() -> None:
    records = upload("Appointment ID,Date,Time,End,Status\na-1,03/12/2026,10:00,10:30,booked\n")
    assert errors(records) == [
        "up.csv:1: (header): missing required column(s): client_id or nhs_number or crn"
    ]


def test_errors_name_the_column_as_the_file_calls_it() -> None:
    records = upload(
        "Client ID,Appointment ID,Appointment Date,Start Time,End Time,Attendance\n"
        "C-1,a-1,12/31/2026,10:00,10:30,maybe\n"
    )
    assert [e.split(" (")[0] for e in errors(records)] == [
        "up.csv:2: Appointment Date: '12/31/2026' is not a date",
        "up.csv:2: Attendance: 'maybe' is not an attendance value",
    ]


# --- attendance ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "status"),
    [
        ("DNA", "noshow"),
        ("dna", "noshow"),
        ("Did not attend", "noshow"),
        ("did-not-attend", "noshow"),
        ("No show", "noshow"),
        ("no-show", "noshow"),
        ("Not attended", "noshow"),
        ("Failed to attend", "noshow"),
        ("Attended", "fulfilled"),
        ("seen", "fulfilled"),
        ("YES", "fulfilled"),
        ("Arrived", "fulfilled"),
        ("  attended  ", "fulfilled"),
        ("Cancelled", "cancelled"),
        ("Cancelled by client", "cancelled"),
        ("cancelled  by  Patient", "cancelled"),
        ("Cancelled by service", "cancelled"),
        ("Booked", "booked"),
    ],
)
def test_attendance_words_are_read_ignoring_case_and_spacing(written: str, status: str) -> None:
    assert attendance_status(written)[0] == status


def test_cancelled_by_whom_is_kept_as_the_cancelation_reason() -> None:
    assert attendance_status("Cancelled by patient") == ("cancelled", "cancelled by the client")
    assert attendance_status("cancelled by service") == ("cancelled", "cancelled by the service")
    assert attendance_status("cancelled") == ("cancelled", None)
    [appointment] = appointments(
        upload(
            "Client ID,Appointment ID,Date,Time,End,Outcome\n"
            "C-1,a-1,03/12/2026,10:00,10:30,Cancelled by service\n"
        )
    )
    assert appointment["cancelationReason"] == {"text": "cancelled by the service"}


def test_an_unknown_attendance_word_is_refused_naming_it_and_every_accepted_word() -> None:
    with pytest.raises(ValueError, match=r"^'Rescheduled' is not an attendance value") as refused:
        attendance_status("Rescheduled")
    message = str(refused.value)
    assert message.startswith("'Rescheduled' is not an attendance value (booked; attended, seen")
    assert all(word in message for word in ATTENDANCE)


# --- dates and times in rows ----------------------------------------------------------------------

HEADER = "Client ID,Appointment ID,Date,Start Time,End Time,Status\n"


def starts(*rows: str, header: str = HEADER) -> list[str]:
    records = upload(header + "".join(f"{row}\n" for row in rows))
    assert errors(records) == []
    return [a["start"] for a in appointments(records)]


def test_uk_dates_in_rows_are_day_first_and_london_time() -> None:
    assert starts(
        "C-1,a-1,01/02/2026,09:30,10:00,booked",
        "C-1,a-2,1/2/26,9.30am,10:00,booked",
        "C-1,a-3,01-02-2026,09:30:00,10:00,booked",
        "C-1,a-4,1 Feb 2026,9:30,10:00,booked",
        "C-1,a-5,2026-02-01,09:30,10:00,booked",
        "C-1,a-6,1/7/2026,09:30,10:00,booked",
    ) == ["2026-02-01T09:30:00Z"] * 5 + ["2026-07-01T08:30:00Z"]


def test_the_time_may_be_written_in_the_date_cell() -> None:
    header = "Client ID,Appointment ID,Appointment Date,Duration (mins),Status\n"
    assert starts("C-1,a-1,01/07/2026 09:30,30,booked", header=header) == ["2026-07-01T08:30:00Z"]


def test_a_date_cell_showing_midnight_beside_a_start_time_takes_the_start_time() -> None:
    assert starts("C-1,a-1,01/07/2026 00:00,09:30,10:00,booked") == ["2026-07-01T08:30:00Z"]


def test_a_date_cell_time_that_is_not_the_start_time_is_refused() -> None:
    records = upload(HEADER + "C-1,a-1,01/07/2026 11:00,09:30,10:00,booked\n")
    assert errors(records) == ["up.csv:2: Date: its time 11:00 is not start_time 09:30"]


def test_a_date_alone_with_no_start_time_is_refused() -> None:
    header = "Client ID,Appointment ID,Date,Duration,Status\n"
    records = upload(header + "C-1,a-1,01/07/2026,30,booked\nC-1,a-2,01/07/2026 00:00,30,booked\n")
    message = "a start time is required (09:30 in start_time, or 31/12/2026 09:30 in date)"
    assert errors(records) == [f"up.csv:2: Date: {message}", f"up.csv:3: Date: {message}"]


def test_a_month_first_date_is_refused_naming_the_column_and_value() -> None:
    records = upload(HEADER + "C-1,a-1,12/31/2026,09:30,10:00,booked\n")
    assert errors(records)[0].startswith("up.csv:2: Date: '12/31/2026' is not a date (day first")


def test_duration_gives_the_end_and_must_agree_with_an_end_time() -> None:
    header = "Client ID,Appointment ID,Date,Start Time,End Time,Duration (mins),Status\n"
    records = upload(
        header
        + "C-1,a-1,03/12/2026,10:00,,45,booked\n"
        + "C-1,a-2,03/12/2026,10:00,10:45,45,booked\n"
        + "C-1,a-3,03/12/2026,10:00,10:30,45,booked\n"
        + "C-1,a-4,03/12/2026,10:00,,0,booked\n"
        + "C-1,a-5,03/12/2026,10:00,,,booked\n"
    )
    assert errors(records) == [
        "up.csv:4: Duration (mins): is not the 30 minutes from the start time to end_time",
        "up.csv:5: Duration (mins): '0' is not a whole number of minutes (1-1440)",
        "up.csv:6: End Time: value required (or give duration)",
    ]
    assert [a["end"] for a in appointments(records)] == ["2026-12-03T10:45:00Z"] * 2


def test_a_duration_over_the_night_the_clocks_go_back_is_elapsed_time() -> None:
    header = "Client ID,Appointment ID,Date,Start Time,Duration,Status\n"
    records = upload(header + "C-1,a-1,25/10/2026,00:30,120,booked\n")
    [appointment] = appointments(records)
    assert (appointment["start"], appointment["end"]) == (
        "2026-10-24T23:30:00Z",
        "2026-10-25T01:30:00Z",
    )


# --- people -------------------------------------------------------------------------------------


def test_an_nhs_number_alone_names_the_person() -> None:
    records = upload(
        "NHS Number,Appointment ID,Date,Time,End,Status\n"
        "9434765919,a-1,03/12/2026,10:00,10:30,DNA\n"
    )
    [appointment] = resources(records)
    assert appointment["participant"][0]["actor"] == {"identifier": NHS}


def test_a_placeholder_nhs_number_alone_names_no_one() -> None:
    records = upload(
        "NHS Number,Appointment ID,Date,Time,End,Status\n"
        "9999999999,a-1,03/12/2026,10:00,10:30,DNA\n"
    )
    assert errors(records) == [
        "up.csv:2: NHS Number: a placeholder identifier names no one: give client_id too"
    ]


def test_a_placeholder_nhs_number_beside_a_client_id_links_nothing() -> None:
    records = upload(
        "Client ID,NHS Number,Appointment ID,Date,Time,End,Status\n"
        "C-1,9999999999,a-1,03/12/2026,10:00,10:30,DNA\n"
    )
    [appointment] = resources(records)
    assert appointment["participant"][0]["actor"] == {"identifier": CLIENT}


def test_a_bad_nhs_number_is_refused_without_repeating_it() -> None:
    records = upload(
        "Client ID,NHS No,Appointment ID,Date,Time,End,Status\n"
        "C-1,9434765918,a-1,03/12/2026,10:00,10:30,DNA\n"
    )
    assert errors(records) == [
        "up.csv:2: NHS No: NHS number is not ten digits with a valid mod-11 check digit"
    ]


# --- the file -----------------------------------------------------------------------------------


def test_a_semicolon_separated_export_with_crlf_bom_and_blank_rows_at_the_end() -> None:
    text = (
        "\ufeffClient ID;Appointment ID;Date;Start Time;End Time;Status;Venue\r\n"
        'C-1;a-1;03/12/2026;10:00;10:30;Seen;"Hub; Walworth Road"\r\n'
        "C-1;a-2;04/12/2026;10:00;10:30;DNA;\r\n"
        ";;;;;;\r\n"
        ";;;;;;\r\n"
    )
    records = list(records_from_csv_bytes(text.encode("utf-8"), "up.csv", PARTNER))
    assert errors(records) == []
    assert notices(records) == []
    first, second = appointments(records)
    assert first["participant"][1]["actor"]["display"] == "Hub; Walworth Road"
    assert (first["status"], second["status"]) == ("fulfilled", "noshow")


def test_a_tab_separated_utf16_export_reads_as_excel_unicode_text() -> None:
    text = "Client ID\tAppointment ID\tDate\tTime\tEnd\tStatus\r\nC-1\ta-1\t03/12/2026\t10:00\t10:30\tbooked\r\n"
    [appointment] = appointments(
        list(records_from_csv_bytes(text.encode("utf-16"), "up.txt", PARTNER))
    )
    assert appointment["id"] == "a-1"


def test_the_spreadsheet_fixture_reads_like_the_plain_one() -> None:
    """The same appointments exported by a spreadsheet (Windows-1252, CRLF, usual headers,
    attendance words, UK dates, a notes column) and written plainly give the same resources."""
    plain = resources(list(records_from_csv_file(FIXTURES / "small.csv", "vol-housing")))
    exported_records = list(records_from_csv_file(FIXTURES / "small-excel.csv", "vol-housing"))
    assert errors(exported_records) == []
    assert notices(exported_records) == [
        "small-excel.csv:1: column 'Notes' is not read: the hub has no column of that name "
        f"(it reads {', '.join(COLUMNS)} and their usual names)"
    ]
    assert resources(exported_records) == plain


def test_concord_publish_reads_a_csv_with_the_partners_own_header_names(tmp_path: Path) -> None:
    """vol-recovery's csv_columns (deploy/demo/partners.yaml) name its Session column; another
    partner's upload of the same file has no appointment_id column."""
    path = tmp_path / "sessions.csv"
    path.write_text(
        "Service User No,Session,Date,Time,End,Status\nC-1,s-1,03/12/2026,10:00,10:30,seen\n"
    )
    [appointment] = resources(list(reader_for(path, PARTNER, "csv")))
    assert (appointment["id"], appointment["participant"][0]["actor"]) == (
        "s-1",
        {"identifier": CLIENT},
    )
    housing = list(reader_for(path, "vol-housing", "csv"))
    assert errors(housing) == [
        "sessions.csv:1: (header): missing required column(s): appointment_id, "
        "client_id or nhs_number or crn"
    ]
    assert [n.split(": the hub")[0] for n in notices(housing)] == [
        "sessions.csv:1: column 'Service User No' is not read",
        "sessions.csv:1: column 'Session' is not read",
    ]


def test_a_column_not_read_is_a_warning_of_the_publish_path_never_a_rejection() -> None:
    """publish_records counts it as ignored and prints it; it is not dead-lettered."""
    [notice] = [
        r
        for r in upload("Client ID,Appointment ID,Date,Time,End,Status,Key worker\n")
        if r.ignored_because
    ]
    decision = decide(notice, PARTNER)
    assert isinstance(decision, Ignored)
    assert decision.warning() == (
        "up.csv:1: ignored: column 'Key worker' is not read: the hub has no column of that name "
        f"(it reads {', '.join(COLUMNS)} and their usual names)"
    )
    [(_, outcome)] = list(decide_all([notice], PARTNER, workers=1))
    assert outcome == decision
