"""The one codec: envelopes and dead letters to Kafka bytes and back.

Faust topics carry raw bytes; every producer and consumer goes through here so
the wire format is decided in one place.
"""

from __future__ import annotations

from typing import TypeVar

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
