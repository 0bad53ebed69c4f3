"""POST /upload/csv over real HTTP on 127.0.0.1, publishing to the real broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.feeds.csv_feed import records_from_csv_file
from connectors.gateway.app import GatewayConfig, build_app
from connectors.publish import Encoded, decide_encoded
from tests.integration.test_gateway import (
    FIXTURES,
    SECRETS,
    Client,
    Served,
    dead_letters,
    inbound,
)

BOUNDARY = "----concordupload0c1d2e3f"
HOUSING, RECOVERY = "vol-housing", "vol-recovery"


def form(filename: str, data: bytes) -> bytes:
    """A multipart/form-data body holding one file, as `curl -F file=@...` sends it."""
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/vnd.ms-excel\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


@pytest.fixture
def client(topics: str) -> Iterator[Client]:
    """A client of a gateway publishing to this test's fresh topics."""
    with Served(build_app(GatewayConfig())) as served:
        yield Client(served.port)


def test_a_spreadsheet_export_posted_as_a_form_is_published_row_by_row(client: Client) -> None:
    path = FIXTURES / "voluntary" / "small-excel.csv"
    reply = client.post(
        "/upload/csv",
        form("small-excel.csv", path.read_bytes()),
        partner=HOUSING,
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )

    assert reply.status == 200, reply.body
    assert reply.body["accepted_rows"] == 4
    assert reply.body["refused_rows"] == 0
    assert [row["row"] for row in reply.body["rows"]] == [2, 3, 4, 5]
    assert reply.body["warnings"] == [
        "small-excel.csv:1: ignored: column 'Notes' is not read: the hub has no column of that "
        "name (it reads client_id, nhs_number, crn, appointment_id, date, start_time, end_time, "
        "duration, status, location, service, version and their usual names)"
    ]
    event_ids = [e for row in reply.body["rows"] for e in row["event_ids"]]
    envelopes = inbound(len(event_ids))  # by partition, so not in file order
    assert sorted(str(e.event_id) for e in envelopes) == sorted(event_ids)
    assert {e.source for e in envelopes} == {HOUSING}
    statuses = {e.resource.get("id"): e.resource.get("status") for e in envelopes}
    assert statuses == {
        None: None,  # the Patient linking client id and CRN
        "vh-501": "fulfilled",
        "vh-502": "booked",
        "vh-503": "noshow",
        "vh-504": "cancelled",
    }
    # The same reader and decisions as `concord publish --format csv`: the same event ids.
    published = [decide_encoded(r, HOUSING) for r in records_from_csv_file(path, HOUSING)]
    assert [o.event_id for o in published if isinstance(o, Encoded)] == event_ids
    assert dead_letters() == []


def test_a_refused_row_is_reported_by_row_and_column_and_dead_lettered(client: Client) -> None:
    """Posted as text/csv by vol-recovery, whose own header names are in the partner directory."""
    body = (
        b"Service User No;Session;Appointment Date;Start Time;Duration (mins);Attendance\r\n"
        b"C-2001;vr-1;02/03/2026;09:30;45;DNA\r\n"
        b"C-2002;vr-2;03/31/2026;10:00;30;Seen\r\n"
        b"C-2003;vr-3;4 Mar 2026;2pm;60;Cancelled by client\r\n"
        b";;;;;\r\n"
    )
    reply = client.post(
        "/upload/csv?filename=march.csv", body, partner=RECOVERY, content_type="text/csv"
    )

    assert reply.status == 200, reply.body
    assert (reply.body["accepted_rows"], reply.body["refused_rows"]) == (2, 1)
    refused = reply.body["rows"][1]
    assert refused["row"] == 3
    assert refused["accepted"] is False
    [problem] = refused["problems"]
    assert problem["column"] == "Appointment Date"
    assert problem["reason"].startswith("'03/31/2026' is not a date (day first")
    starts = {e.resource["id"]: e.resource["start"] for e in inbound(2)}
    assert starts == {"vr-1": "2026-03-02T09:30:00Z", "vr-3": "2026-03-04T14:00:00Z"}
    [letter] = dead_letters(1)
    assert (letter.source, letter.origin) == (RECOVERY, "march.csv:3")
    assert letter.reason == f"Appointment Date: {problem['reason']}"
    assert letter.raw.endswith("C-2002;vr-2;03/31/2026;10:00;30;Seen\r\n")
    assert letter.raw.startswith("Service User No;Session;")


def test_a_file_whose_header_cannot_be_read_is_422_and_dead_lettered_whole(
    client: Client,
) -> None:
    body = b"Client ID,Status,Outcome\r\nC-1,booked,DNA\r\n"
    reply = client.post("/upload/csv", body, partner=RECOVERY, content_type="text/csv")

    assert reply.status == 422
    [row] = reply.body["rows"]
    assert row["row"] == 1
    assert [p["column"] for p in row["problems"]] == ["(header)", "(header)"]
    assert "columns 'Status' and 'Outcome' both give status" in row["problems"][0]["reason"]
    [letter] = dead_letters(1)
    assert letter.raw == body.decode()
    assert inbound() == []


def test_an_upload_over_the_size_limit_is_413_and_kept_in_part(client: Client) -> None:
    body = b"Client ID,Appointment ID\r\n" + b"C-1,a-1\r\n" * 150_000
    reply = client.post("/upload/csv", body, partner=RECOVERY, content_type="text/csv")

    assert reply.status == 413
    assert f"{len(body)} bytes is over the limit of 1048576 bytes" in reply.diagnostics()
    [letter] = dead_letters(1)
    assert (letter.source, letter.origin) == (RECOVERY, "POST /upload/csv")
    assert letter.raw.startswith("Client ID,Appointment ID")
    assert inbound() == []


def test_a_chunked_upload_over_the_size_limit_is_413_while_reading(client: Client) -> None:
    chunks = [b"Client ID,Appointment ID\r\n"] + [b"C-1,a-1\r\n" * 8192] * 20
    reply = client.post("/upload/csv", iter(chunks), partner=RECOVERY, content_type="text/csv")

    assert reply.status == 413
    assert "more than that is over the limit of 1048576 bytes" in reply.diagnostics()
    [letter] = dead_letters(1)
    assert letter.raw.startswith("Client ID,Appointment ID")
    assert len(letter.raw) == 64 * 1024
    assert inbound() == []


def test_an_upload_without_the_partners_secret_is_401_and_not_kept(client: Client) -> None:
    reply = client.post(
        "/upload/csv",
        b"Client ID\r\n",
        partner=RECOVERY,
        secret=SECRETS[HOUSING],
        content_type="text/csv",
    )

    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="concord"'
    assert dead_letters() == []
