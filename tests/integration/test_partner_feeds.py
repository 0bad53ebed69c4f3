"""Partner feeds through the real publish path and broker: a voluntary-sector CSV upload and the probation case feed."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from connectors.feeds.csv_feed import ATTENDANCE_HINT, records_from_csv_file
from connectors.feeds.probation import records_from_probation_file
from connectors.feeds.spreadsheet import DATE_HINT
from connectors.fhir_input import Record
from connectors.kafka_io import Publisher, read_topic
from connectors.publish import PublishSummary, publish_records
from schemas import topics as catalogue
from schemas.codec import decode, decode_dead_letter
from schemas.envelope import DeadLetter, Envelope

FIXTURES = Path(__file__).parents[1] / "fixtures"
IDLE_S = 3.0  # everything was acknowledged before reading; this only ends the read


def publish(records: Iterable[Record], partner: str) -> PublishSummary:
    publisher = Publisher()
    try:
        return publish_records(records, partner, publisher)
    finally:
        publisher.close()


def inbound() -> list[Envelope]:
    return [
        decode(value) for _key, value in read_topic(catalogue.INBOUND.name, idle_timeout_s=IDLE_S)
    ]


def dead_letters() -> list[DeadLetter]:
    return [
        decode_dead_letter(value)
        for _key, value in read_topic(catalogue.DEADLETTER.name, idle_timeout_s=IDLE_S)
    ]


def test_csv_upload_publishes_97_rows_and_dead_letters_the_3_bad_ones_by_line(topics: str) -> None:
    path = FIXTURES / "voluntary" / "appointments.csv"
    summary = publish(records_from_csv_file(path, "vol-recovery"), "vol-recovery")

    assert (summary.accepted, summary.rejected) == (97, 3)
    assert summary.errors == [
        f"appointments.csv:7: date: '31/02/2026' is not a date ({DATE_HINT})",
        f"appointments.csv:42: status: 'rescheduled' is not an attendance value ({ATTENDANCE_HINT})",
        "appointments.csv:88: end_time: must be later than the start time",
    ]
    envelopes = inbound()
    assert len(envelopes) == 97
    assert sorted(str(e.event_id) for e in envelopes) == sorted(summary.event_ids)
    assert {(e.source, e.event_type) for e in envelopes} == {
        ("vol-recovery", "appointment.booking.updated")
    }
    letters = sorted(dead_letters(), key=lambda letter: int(letter.origin.split(":")[1]))
    assert [letter.origin for letter in letters] == [
        "appointments.csv:7",
        "appointments.csv:42",
        "appointments.csv:88",
    ]
    assert [letter.reason.split(":")[0] for letter in letters] == ["date", "status", "end_time"]
    header = path.read_text().splitlines()[0]
    assert all(letter.raw.startswith(header + "\n") for letter in letters), "replayable as CSV"
    assert "vr-2006,31/02/2026" in letters[0].raw


def test_probation_feed_publishes_every_event_type_and_dead_letters_the_bad_line(
    topics: str,
) -> None:
    path = FIXTURES / "probation" / "case-feed.ndjson"
    summary = publish(records_from_probation_file(path), "probation-london")

    assert (summary.accepted, summary.rejected) == (11, 1)
    envelopes = inbound()
    assert len(envelopes) == 11
    by_type: dict[str, list[Envelope]] = {}
    for envelope in envelopes:
        by_type.setdefault(envelope.event_type, []).append(envelope)
    assert {t: len(e) for t, e in by_type.items()} == {
        "identity.patient.updated": 2,
        "appointment.booking.updated": 7,
        "referral.request.updated": 2,
    }
    statuses = {e.resource["status"] for e in by_type["appointment.booking.updated"]}
    assert statuses == {"booked", "fulfilled", "noshow", "cancelled"}
    links = {
        tuple(i.value for i in e.subject.identifiers)
        for e in by_type["identity.patient.updated"]
        if e.subject
    }
    # A case record's Patient id is probation's own id for the person, linked with the rest.
    assert links == {
        ("X123456", "9434765919", "case-X123456"),
        ("X654321", "9434765870", "case-X654321"),
    }

    [letter] = dead_letters()
    assert letter.origin == "case-feed.ndjson:4"
    assert letter.source == "probation-london"
    assert letter.reason == "start: not an ISO 8601 date-time: '2026-12-10 25:00'"
    assert letter.raw == path.read_text().splitlines()[3]
