"""The envelope, the codec and the exported JSON Schema."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import export
from schemas.codec import CodecError, decode, decode_dead_letter, encode
from schemas.envelope import DeadLetter, Envelope, wrap
from schemas.fhir import problems_in

EXAMPLES = sorted((Path(export.__file__).parent / "examples").glob("*.json"))
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
APPOINTMENT = {
    "resourceType": "Appointment",
    "status": "booked",
    "start": "2026-12-03T10:00:00Z",
    "end": "2026-12-03T10:30:00Z",
    "participant": [{"status": "accepted"}],
}
NHS = ("https://fhir.nhs.uk/Id/nhs-number", "9434765919")


def envelope() -> Envelope:
    return wrap(
        APPOINTMENT,
        event_type="appointment.booking.updated",
        source="gp-Y01234",
        subject=(NHS,),
        now=NOW,
    )


def test_envelope_round_trips_through_the_codec() -> None:
    original = envelope()
    assert decode(encode(original)) == original


def test_unknown_envelope_field_is_rejected() -> None:
    data = json.loads(encode(envelope()))
    data["priority"] = "high"
    with pytest.raises(CodecError, match="priority"):
        decode(json.dumps(data).encode())


def test_envelope_without_timezone_is_rejected() -> None:
    data = json.loads(encode(envelope()))
    data["occurred_at"] = "2026-12-01T09:00:00"
    with pytest.raises(CodecError, match="occurred_at"):
        decode(json.dumps(data).encode())


def test_envelope_is_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        envelope().source = "someone-else"  # type: ignore[misc]


def test_event_type_must_read_domain_entity_past_tense() -> None:
    data = json.loads(encode(envelope()))
    data["event_type"] = "AppointmentUpdated"
    with pytest.raises(CodecError, match="event_type"):
        decode(json.dumps(data).encode())


def test_same_content_from_same_source_gets_the_same_event_id() -> None:
    """A resend is recognisable as a duplicate by its event id."""
    assert envelope().event_id == envelope().event_id
    other = wrap(
        APPOINTMENT, event_type="appointment.booking.updated", source="gp-A99999", subject=(NHS,)
    )
    assert other.event_id != envelope().event_id


def test_key_is_the_subject_token_until_resolved() -> None:
    assert envelope().key() == b"https://fhir.nhs.uk/Id/nhs-number|9434765919"


def test_meta_last_updated_sets_occurred_at() -> None:
    resource = dict(APPOINTMENT, meta={"lastUpdated": "2026-11-30T08:00:00Z"})
    wrapped = wrap(
        resource,
        event_type="appointment.booking.updated",
        source="gp-Y01234",
        subject=(NHS,),
        now=NOW,
    )
    assert wrapped.occurred_at == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert wrapped.recorded_at == NOW


def test_dead_letter_round_trips() -> None:
    letter = DeadLetter(
        reason="x: y",
        source="gp-Y01234",
        origin="a.json",
        received_at=NOW,
        raw="{}",
        event_id=uuid.uuid4(),
    )
    assert decode_dead_letter(encode(letter)) == letter


def test_garbage_bytes_are_a_codec_error() -> None:
    with pytest.raises(CodecError):
        decode(b"\x00not json")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_event_type_example_is_a_valid_envelope(path: Path) -> None:
    """The examples under schemas/examples document the contract and must obey it."""
    example = decode(path.read_bytes())
    assert example.event_type == path.stem
    assert problems_in(example.resource) == []


def test_there_is_an_example_for_every_carried_resource_type() -> None:
    from schemas.fhir import CARRIED, event_type_for, is_carried

    expected = {event_type_for(t) for t in CARRIED if is_carried(t)}
    assert {p.stem for p in EXAMPLES} >= expected


@pytest.mark.parametrize("name", sorted(export.EXPORTS))
def test_committed_json_schema_is_current(name: str) -> None:
    """Fails when the envelope changed without `python -m schemas.export`."""
    committed = (Path(export.__file__).parent / name).read_text(encoding="utf-8")
    assert committed == export.render(export.EXPORTS[name]), "run: python -m schemas.export"
