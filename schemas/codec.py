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
