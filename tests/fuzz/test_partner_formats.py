"""Every partner-format entry point answers any input with records and decisions, never an exception.

Each input goes the way a partner's file goes through `concord publish` (read, decide,
dead-letter what is rejected) and the way a request goes through the gateway or a message
through the MLLP listener.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

from connectors.feeds.csv_feed import records_from_csv_bytes
from connectors.feeds.probation import records_from_probation_text
from connectors.fhir_input import Record, read_partner_bytes, read_text
from connectors.gateway.rules import RefusedRequest, assess
from connectors.hl7v2.ack import acknowledgement
from connectors.hl7v2.framing import FrameDecoder, decode_text, frame
from connectors.hl7v2.listener import reply_to
from connectors.hl7v2.message import read_header
from connectors.hl7v2.to_fhir import records_from_hl7_bytes
from connectors.parallel import decide_all
from connectors.publish import Encoded, Ignored, Rejected, rejection_letter
from tests.fuzz.conftest import Fuzz
from tests.fuzz.corpus import FORMAT_SEEDS

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)


def published(records: Iterator[Record], partner: str) -> None:
    """What `concord publish` does with a file's records, short of sending them."""
    for _record, outcome in decide_all(records, partner, NOW, workers=1):
        assert isinstance(outcome, Encoded | Rejected | Ignored)
        if isinstance(outcome, Rejected):
            assert outcome.problems, "a rejection names its problem"
            rejection_letter(outcome, partner)


def posted(data: bytes, content_type: str, route: str | None, partner: str) -> None:
    """What the gateway decides about a POST of these bytes."""
    verdict = assess(data, content_type, route, partner, NOW)
    if isinstance(verdict, RefusedRequest):
        assert 400 <= verdict.status < 500, verdict
        assert verdict.issues
        assert verdict.outcome()["resourceType"] == "OperationOutcome"


def test_fhir_json(fuzz: Fuzz) -> None:
    def entry_point(data: bytes) -> None:
        published(read_partner_bytes(data, "input.json", read_text), "gp-Y01234")
        published(read_partner_bytes(data, "input.ndjson", read_text), "gp-Y01234")
        posted(data, "application/fhir+json", None, "gp-Y01234")
        posted(data, "application/fhir+json", "Appointment", "gp-Y01234")

    fuzz.run("fhir-json", FORMAT_SEEDS["fhir-json"](), "json", 400, entry_point)


def test_fhir_xml(fuzz: Fuzz) -> None:
    def entry_point(data: bytes) -> None:
        published(read_partner_bytes(data, "input.xml", read_text), "mht-rv5")
        posted(data, "application/fhir+xml", None, "mht-rv5")
        posted(data, "application/fhir+xml", "Appointment", "mht-rv5")

    fuzz.run("fhir-xml", FORMAT_SEEDS["fhir-xml"](), "xml", 200, entry_point)


def test_hl7v2(fuzz: Fuzz) -> None:
    """A file for `concord publish`, or a message over MLLP: framed, answered and acknowledged."""
    rng = random.Random(0)

    def entry_point(data: bytes) -> None:
        if rng.random() < 0.5:
            published(records_from_hl7_bytes(data, "input.hl7", "mht-rv5"), "mht-rv5")
            return
        decoder, frames = FrameDecoder(max_bytes=64 * 1024), []
        stream = frame(decode_text(data)) + data[: rng.randrange(len(data) + 1)]
        for start in range(0, len(stream), 4096):
            frames += decoder.feed(stream[start : start + 4096])
        text = decode_text(data)
        reply = reply_to(text, "mht-rv5", "mllp:127.0.0.1", NOW)
        assert reply.code in ("AA", "AE", "AR")
        assert reply.code == "AA" or (reply.errors and reply.letter is not None)
        acknowledgement(read_header(text), reply.code, reply.errors, ack_control_id="A1", now=NOW)

    fuzz.run("hl7v2", FORMAT_SEEDS["hl7v2"](), "hl7", 40, entry_point)


def test_probation_json(fuzz: Fuzz) -> None:
    def entry_point(data: bytes) -> None:
        for origin in ("input.ndjson", "input.json"):
            published(
                read_partner_bytes(data, origin, records_from_probation_text), "probation-london"
            )

    fuzz.run("probation", FORMAT_SEEDS["probation"](), "json", 150, entry_point)


def test_csv(fuzz: Fuzz) -> None:
    def entry_point(data: bytes) -> None:
        published(records_from_csv_bytes(data, "input.csv", "vol-recovery"), "vol-recovery")

    fuzz.run("csv", FORMAT_SEEDS["csv"](), "csv", 100, entry_point)
