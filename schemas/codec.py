"""The one codec: envelopes and dead letters to Kafka bytes and back.

Faust topics carry raw bytes; every producer and consumer goes through here so
the wire format is decided in one place.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.envelope import DeadLetter, Envelope

_Model = TypeVar("_Model", bound=BaseModel)


class CodecError(ValueError):
    """Bytes that are not a valid message of the expected kind."""


def encode(message: BaseModel) -> bytes:
    """Serialise an envelope (or dead letter) as compact JSON bytes."""
    return orjson.dumps(message.model_dump(mode="json", exclude_none=False))


def _decode(data: bytes, model: type[_Model]) -> _Model:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or model.__name__
        raise CodecError(f"not a valid {model.__name__}: {where}: {first['msg']}") from exc


def decode(data: bytes) -> Envelope:
    """Parse and validate envelope bytes; raise CodecError naming the first problem."""
    return _decode(data, Envelope)


def decode_dead_letter(data: bytes) -> DeadLetter:
    """Parse and validate dead-letter bytes."""
    return _decode(data, DeadLetter)


# The hub's own hot path reads validated envelopes as plain dicts: validation
# happened once, at the edge, and is not repeated inside the hub.


def peek(data: bytes) -> dict[str, Any]:
    """The JSON object of a message already validated at the edge, without re-validating it."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CodecError("not a JSON object")
    return value


def dumps(value: dict[str, Any]) -> bytes:
    """Serialise a message dict (an envelope with its person resolved, or a hub command)."""
    return orjson.dumps(value)


def with_person(envelope: dict[str, Any], person_id: str) -> bytes:
    """The envelope's bytes with its subject resolved to a hub person id."""
    return orjson.dumps(resolved(envelope, person_id))


def resolved(envelope: dict[str, Any], person_id: str) -> dict[str, Any]:
    """A copy of an envelope dict with its subject resolved to a hub person id."""
    subject = dict(envelope.get("subject") or {})
    subject["person_id"] = person_id
    return {**envelope, "subject": subject}


# The envelope fields the hub's own steps read, with the JSON type each must have: checked
# on every message a worker takes, so a record that did not pass the edge (another
# producer) is refused by name instead of failing somewhere inside a step.
_READ_FIELDS: dict[str, type] = {
    "event_id": str,
    "event_type": str,
    "source": str,
    "occurred_at": str,
    "recorded_at": str,
    "resource": dict,
}


def peek_envelope(data: bytes) -> dict[str, Any]:
    """`peek` for an envelope: CodecError unless every field the hub reads has its JSON type."""
    return checked_envelope(peek(data))


def checked_envelope(value: dict[str, Any]) -> dict[str, Any]:
    """The envelope dict, once every field the hub reads has its JSON type; else CodecError.

    The subject's identifiers are (system, value) strings, its person id a string or null,
    and the resource an object with a `resourceType`. Values are never quoted in the error.
    """
    for name, kind in _READ_FIELDS.items():
        if not isinstance(value.get(name), kind):
            raise CodecError(f"not an envelope: {name} is missing or not a {kind.__name__}")
    if not isinstance(value["resource"].get("resourceType"), str):
        raise CodecError("not an envelope: resource.resourceType is missing or not a str")
    subject = value.get("subject")
    if subject is None:
        return value
    if not isinstance(subject, dict):
        raise CodecError("not an envelope: subject is not an object")
    identifiers = subject.get("identifiers", [])
    if not isinstance(identifiers, list) or not all(
        isinstance(i, dict) and isinstance(i.get("system"), str) and isinstance(i.get("value"), str)
        for i in identifiers
    ):
        raise CodecError("not an envelope: subject.identifiers are not (system, value) strings")
    if not isinstance(subject.get("person_id"), str | None):
        raise CodecError("not an envelope: subject.person_id is not a str")
    return value
