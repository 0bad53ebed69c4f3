"""The gateway's CSV upload without a broker: finding the file in a request, and the per-row report."""

from __future__ import annotations

import pytest

from connectors.gateway.rules import RefusedRequest
from connectors.gateway.upload import (
    UploadReport,
    csv_from_body,
    csv_from_form,
    file_name,
    row_number,
)
from connectors.publish import Encoded, Ignored, Rejected
from schemas.fhir import Problem

BOUNDARY = "----concordtest7MA4YWxkTrZu0gW"
CSV = b"Client ID,Appointment ID\r\nC-1,a-1\r\n"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body as a browser or `curl -F` writes it."""
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += b"Content-Type: text/csv\r\n\r\n" if filename else b"\r\n"
        out += data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def test_the_file_field_of_a_form_is_the_upload_with_its_name() -> None:
    body = form(("comment", None, b"November"), ("file", "appointments.csv", CSV))
    assert csv_from_form(body, FORM_TYPE) == ("appointments.csv", CSV)


def test_windows_1252_bytes_in_a_form_are_passed_on_as_sent() -> None:
    data = b"service\r\n\x93Drop-in\x94 \xa35\r\n"
    assert csv_from_form(form(("file", "x.csv", data)), FORM_TYPE) == ("x.csv", data)


def test_a_form_without_the_file_field_is_refused_naming_the_field() -> None:
    refusal = csv_from_form(form(("upload", "x.csv", CSV)), FORM_TYPE)
    assert isinstance(refusal, RefusedRequest)
    assert (refusal.status, refusal.reason()) == (
        400,
        "(file): no form field named 'file' holding the CSV file",
    )


def test_a_body_that_is_not_form_data_is_refused() -> None:
    refusal = csv_from_form(b"client_id\r\n", "multipart/form-data")
    assert isinstance(refusal, RefusedRequest)
    assert (refusal.status, refusal.reason()) == (
        400,
        "(body): not readable as multipart/form-data",
    )


@pytest.mark.parametrize("media", ["text/csv", "application/vnd.ms-excel", "text/plain"])
def test_a_csv_body_is_the_file_named_by_the_query(media: str) -> None:
    assert csv_from_body(CSV, media, media, {"filename": "nov.csv"}) == ("nov.csv", CSV)
    assert csv_from_body(CSV, media, media, {}) == ("upload.csv", CSV)


def test_another_content_type_is_refused_with_415_saying_what_to_send() -> None:
    refusal = csv_from_body(CSV, "application/json", "application/json", {})
    assert isinstance(refusal, RefusedRequest)
    assert refusal.status == 415
    assert refusal.reason() == (
        "(Content-Type): application/json is not taken: send multipart/form-data with the file "
        "in the field 'file', or the file itself as text/csv"
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("appointments.csv", "appointments.csv"),
        ("C:\\Users\\kw\\Appts (Nov).csv", "Appts _Nov_.csv"),
        ("/home/kw/nov.csv", "nov.csv"),
        ("../../etc/passwd", "passwd"),
        ("x.csv\r\nX-Injected: 1", "x.csv_X-Injected_ 1"),
        ("", "upload.csv"),
        (None, "upload.csv"),
        ("..", "upload.csv"),
        ("a" * 300 + ".csv", "a" * 100),
    ],
)
def test_file_names_are_cut_to_a_plain_last_part(given: str | None, expected: str) -> None:
    assert file_name(given) == expected


def test_row_numbers_come_from_the_records_origin() -> None:
    assert row_number("appointments.csv:7") == 7
    assert row_number("C_ 2:30.csv:12") == 12


def test_the_report_groups_outcomes_by_row_in_file_order() -> None:
    report = UploadReport("up.csv")
    report.add(Ignored("up.csv:1", "", why="column 'Notes' is not read"))
    report.add(Encoded("up.csv:2", b"k", b"v", "e-patient"))
    report.add(Encoded("up.csv:2", b"k", b"v", "e-appointment"))
    report.add(
        Rejected(
            "up.csv:4",
            "raw",
            (Problem("Date", "'12/31/2026' is not a date"), Problem("Status", "value required")),
        )
    )
    report.add(Encoded("up.csv:3", b"k", b"v", "e-3"))
    answer = report.answer()
    assert answer.status == 200
    assert answer.body == {
        "file": "up.csv",
        "accepted_rows": 2,
        "refused_rows": 1,
        "warnings": ["up.csv:1: ignored: column 'Notes' is not read"],
        "rows": [
            {"row": 2, "accepted": True, "event_ids": ["e-patient", "e-appointment"]},
            {"row": 3, "accepted": True, "event_ids": ["e-3"]},
            {
                "row": 4,
                "accepted": False,
                "problems": [
                    {"column": "Date", "reason": "'12/31/2026' is not a date"},
                    {"column": "Status", "reason": "value required"},
                ],
            },
        ],
    }


def test_a_file_with_every_row_refused_is_answered_422() -> None:
    report = UploadReport("up.csv")
    report.add(
        Rejected("up.csv:1", "raw", (Problem("(header)", "missing required column(s): date"),))
    )
    assert report.answer().status == 422


def test_a_file_of_blank_rows_only_is_answered_200_with_nothing_accepted() -> None:
    answer = UploadReport("up.csv").answer()
    assert (answer.status, answer.body["accepted_rows"], answer.body["rows"]) == (200, 0, [])
