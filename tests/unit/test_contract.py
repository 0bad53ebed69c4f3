"""The envelope, the internal messages, the codec and the exported JSON Schemas."""

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import orjson
import pytest
from pydantic import BaseModel

from schemas import export
from schemas.codec import (
    CodecError,
    decode,
    decode_dead_letter,
    decode_internal,
    encode,
    encode_internal,
    wrap_encoded,
)
from schemas.envelope import DeadLetter, Envelope, Subject, wrap
from schemas.fhir import problems_in
from schemas.identifiers import PersonIdentifier
from schemas.internal import InternalMessage

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
    from schemas.fhir import CARRIED, event_type_for

    expected = {event_type_for(t) for t in CARRIED if CARRIED[t][1]}
    assert {p.stem for p in EXAMPLES} >= expected


@pytest.mark.parametrize("name", sorted(export.EXPORTS))
def test_committed_json_schema_is_current(name: str) -> None:
    """Fails when a model changed without `python -m schemas.export`."""
    committed = (Path(export.__file__).parent / name).read_text(encoding="utf-8")
    assert committed == export.render(export.EXPORTS[name]), "run: python -m schemas.export"


# --- the one envelope writer ----------------------------------------------------------------

PERSON = PersonIdentifier(*NHS)
ZONES = [
    UTC,
    timezone(timedelta(hours=1)),
    timezone(timedelta(hours=-3, minutes=-30)),
    ZoneInfo("Europe/London"),
]
PARTS: dict[str, Any] = {"event_type": "appointment.booking.updated", "source": "gp-Y01234"}


@pytest.mark.parametrize("zone", ZONES, ids=str)
@pytest.mark.parametrize("micro", [0, 120000, 1])
def test_an_envelope_is_written_as_the_model_renders_it(zone: tzinfo, micro: int) -> None:
    """encode writes an envelope's fields without a pydantic pass: the same bytes as the model's
    own JSON, so the exported schema describes them, whatever the clock's zone."""
    now = datetime(2026, 7, 1, 9, 0, 0, micro, tzinfo=zone)
    resource = dict(APPOINTMENT, meta={"lastUpdated": "2026-06-30T08:00:00.5+01:00"})
    for subject in ((PERSON,), ()):
        wrapped = wrap(resource, subject=subject, now=now, **PARTS)
        rendered = orjson.dumps(wrapped.model_dump(mode="json"))
        assert encode(wrapped) == rendered
        assert encode(decode(rendered)) == rendered
        resolved = wrapped.model_copy(update={"subject": Subject(person_id="p-1")})
        assert encode(resolved) == orjson.dumps(resolved.model_dump(mode="json"))
        encoded = wrap_encoded(resource, subject=subject, now=now, **PARTS)
        assert encoded == (wrapped.key(), rendered, str(wrapped.event_id))


def test_an_offset_of_seconds_is_left_to_the_model() -> None:
    """orjson and pydantic write such an offset differently: the model's rendering is kept."""
    now = datetime(2026, 7, 1, 9, 0, tzinfo=timezone(timedelta(seconds=30)))
    wrapped = wrap(APPOINTMENT, subject=(PERSON,), now=now, **PARTS)
    rendered = orjson.dumps(wrapped.model_dump(mode="json"))
    assert encode(wrapped) == rendered
    assert wrap_encoded(APPOINTMENT, subject=(PERSON,), now=now, **PARTS)[1] == rendered


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"event_type": "Appointment"}, "event_type"),
        ({"source": "Not A Partner"}, "source"),
        ({"now": NOW.replace(tzinfo=None)}, "occurred_at"),
    ],
    ids=["event-type", "source", "naive-clock"],
)
def test_wrap_encoded_refuses_what_wrap_refuses(bad: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        wrap_encoded(APPOINTMENT, subject=(PERSON,), **({**PARTS, "now": NOW} | bad))


# --- internal messages: schema files and examples -----------------------------------------------


@pytest.mark.parametrize("model", export.INTERNAL, ids=lambda m: m.__name__)
def test_each_internal_message_has_an_example_that_obeys_its_model(model: type[BaseModel]) -> None:
    """schemas/examples/internal-messages/ documents each internal message: the example decodes
    as its model, and the codec writes it back field for field, in the same order."""
    text = export.example_path(model).read_bytes()
    message = decode_internal(text, model)
    assert encode_internal(message) == orjson.dumps(orjson.loads(text))


@pytest.mark.parametrize("model", export.INTERNAL, ids=lambda m: m.__name__)
def test_each_internal_message_is_written_as_its_model_renders_it(model: type[BaseModel]) -> None:
    """encode_internal skips pydantic's serialiser; its bytes are still the model's JSON."""
    message = decode_internal(export.example_path(model).read_bytes(), model)
    written = encode_internal(message)
    assert written == message.model_dump_json().encode()
    assert decode_internal(written, model) == message


def test_every_internal_model_is_exported_with_a_schema_file() -> None:
    exported = {model for name, model in export.EXPORTS.items() if name.startswith("internal-")}
    assert exported == set(export.INTERNAL) == set(get_args(InternalMessage))
