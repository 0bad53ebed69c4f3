"""Deciding on a process pool gives exactly what deciding one record after another gives."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from bench.population import generate
from connectors import parallel
from connectors.fhir_input import Record, read_text
from connectors.parallel import decide_all
from connectors.publish import (
    Accepted,
    Encoded,
    Ignored,
    Rejected,
    decide,
    decide_encoded,
    publish_records,
)
from schemas.codec import decode, encode, wrap_encoded
from schemas.envelope import DeadLetter
from schemas.fhir import subject_of

PARTNER = "probation-london"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def mixed_records() -> list[Record]:
    """Good Appointments and Patients with bad lines, a Bundle and a Practitioner among them."""
    resources = [resource for _, resource in generate(60, 240, seed=3)]
    lines = [orjson.dumps(resource).decode() for resource in resources]
    broken_status = dict(resources[5], status="maybe")
    broken_nhs = orjson.loads(lines[[r["resourceType"] for r in resources].index("Appointment")])
    broken_nhs["participant"][0]["actor"]["identifier"] = {"system": NHS, "value": "9434765910"}
    bad = [
        orjson.dumps(broken_status).decode(),
        orjson.dumps(broken_nhs).decode(),
        "{not json",
        "[1, 2]",
        '{"resourceType": "Practitioner", "id": "p1"}',
        '{"resourceType": "Appointment", "status": "booked"}',
    ]
    for at, line in zip((3, 50, 51, 120, 180, 239), bad, strict=True):
        lines.insert(at, line)
    records = list(read_text("\n".join(lines) + "\n", "mixed.ndjson"))
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "id": "b-1",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": resources[0]},
            {"resource": {"resourceType": "Practitioner", "id": "kw"}},
            {"resource": resources[1]},
        ],
    }
    return records + list(read_text(orjson.dumps(bundle).decode(), "bundle.json"))


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many chunks and a full in-flight window, from a small input."""
    monkeypatch.setattr(parallel, "CHUNK", 7)


def test_parallel_decisions_equal_serial_ones(small_chunks: None) -> None:
    records = mixed_records()
    serial = list(decide_all(records, PARTNER, NOW, workers=1))
    pooled = list(decide_all(records, PARTNER, NOW, workers=2))
    assert [r.origin for r, _ in pooled] == [r.origin for r in records]
    assert [outcome for _, outcome in pooled] == [outcome for _, outcome in serial]
    kinds = {type(outcome).__name__ for _, outcome in serial}
    assert kinds == {"Encoded", "Rejected", "Ignored"}
    assert sum(isinstance(outcome, Rejected) for _, outcome in serial) >= 6


def test_encoded_envelopes_are_the_codecs_bytes_of_decide() -> None:
    """The shortcut's bytes are exactly encode(wrap(...)), and the model's own rendering of the
    envelope: same event id, key, contract."""
    for record in mixed_records():
        slow, fast = decide(record, PARTNER, NOW), decide_encoded(record, PARTNER, NOW)
        if isinstance(slow, Accepted):
            assert isinstance(fast, Encoded)
            assert fast.value == encode(slow.envelope)
            assert fast.value == orjson.dumps(slow.envelope.model_dump(mode="json"))
            assert fast.key == slow.envelope.key()
            assert fast.event_id == str(slow.envelope.event_id)
            assert decode(fast.value) == slow.envelope
        else:
            assert fast == slow


def test_an_envelope_the_shortcut_cannot_vouch_for_is_still_refused() -> None:
    """A source outside the contract goes through pydantic, which refuses it as before."""
    resource = mixed_records()[0].resource
    assert resource is not None
    with pytest.raises(ValueError, match="source"):
        wrap_encoded(
            resource,
            event_type="appointment.booking.updated",
            source="Not A Partner\n",
            subject=subject_of(resource),
            now=NOW,
        )


def test_a_partner_the_directory_cannot_place_is_rejected_not_wrapped() -> None:
    """The worker could not reconcile anything it sends: the edge says so."""
    [record] = list(read_text(orjson.dumps(mixed_records()[0].resource).decode(), "a.json"))
    rejected = decide_encoded(record, "Not A Partner\n", NOW)
    assert isinstance(rejected, Rejected)
    assert "the partner directory does not list" in rejected.reason()


def test_small_inputs_stay_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*_: Any) -> None:
        raise AssertionError("a pool was started for a small input")

    monkeypatch.setattr(parallel, "_parallel", no_pool)
    assert len(list(decide_all(mixed_records(), PARTNER, NOW))) == len(mixed_records())


class RecordingPublisher:
    """Keeps what publish_records sends, in order; Kafka acknowledges everything."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []  # topic, key, event id
        self.dead: list[tuple[str, str]] = []  # origin, reason
        self.confirmed = False

    def send_encoded(self, topic: str, key: bytes, value: bytes) -> Future[Any]:
        self.sent.append((topic, key, orjson.loads(value)["event_id"]))
        return Future()

    def send_dead_letter(self, letter: DeadLetter) -> Future[Any]:
        self.dead.append((letter.origin, letter.reason))
        return Future()

    def confirm(self) -> None:
        self.confirmed = True


def test_publish_records_sends_the_same_in_the_same_order(small_chunks: None) -> None:
    records = mixed_records()
    runs = []
    for workers in (1, 2):
        publisher = RecordingPublisher()
        summary = publish_records(records, PARTNER, publisher, workers=workers)  # type: ignore[arg-type]
        assert publisher.confirmed
        runs.append((summary, publisher.sent, publisher.dead))
    (serial, sent, dead), (pooled, pooled_sent, pooled_dead) = runs
    assert pooled_sent == sent
    assert pooled_dead == dead
    assert (pooled.accepted, pooled.rejected, pooled.ignored) == (
        serial.accepted,
        serial.rejected,
        serial.ignored,
    )
    assert pooled.errors == serial.errors
    assert pooled.event_ids == serial.event_ids == [event_id for _, _, event_id in sent]
    assert serial.ignored == 1
    assert serial.rejected == len(dead) >= 6
    assert any("check digit" in reason for _, reason in dead)


def test_outcome_types_are_the_publish_ones() -> None:
    outcomes = {type(o) for _, o in decide_all(mixed_records(), PARTNER, NOW, workers=1)}
    assert outcomes <= {Encoded, Rejected, Ignored}
