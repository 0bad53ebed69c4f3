"""The one codec: envelopes, dead letters and the hub's internal messages to Kafka bytes and back.

Faust topics carry raw bytes; every producer and consumer goes through here so
the wire format is decided in one place.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from schemas.envelope import (
    EVENT_TYPE_PATTERN,
    DeadLetter,
    Envelope,
    Subject,
    derived_fields,
    utc_now,
    wrap,
)
from schemas.fhir import PARTNER_RESOURCE_TYPES, event_type_for
from schemas.identifiers import PARTNER_ID, PersonIdentifier, parse_token
from schemas.internal import (
    PERSON_COMMANDS,
    InternalMessage,
    PersonCommand,
    ResolveConflictCommand,
)
from schemas.keys import REFERRAL, checked_referral_token, inbound_key
from schemas.vocabulary import HUB_SOURCE

_Model = TypeVar("_Model", bound=BaseModel)


class CodecError(ValueError):
    """Bytes that are not a valid message of the expected kind."""


TOMBSTONE = "a tombstone: the record has no value"


def record_value(data: bytes | None) -> bytes:
    """A record's value as bytes; CodecError for a tombstone (a record with no value), which
    no topic the hub reads as messages carries, or for a value that is not bytes."""
    if data is None:
        raise CodecError(TOMBSTONE)
    if not isinstance(data, bytes):
        raise CodecError(f"a record value must be bytes, not {type(data).__name__}")
    return data


def _decode(data: bytes | None, model: type[_Model]) -> _Model:
    if data is None:
        raise CodecError(f"not a valid {model.__name__}: {TOMBSTONE}")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or model.__name__
        raise CodecError(f"not a valid {model.__name__}: {where}: {first['msg']}") from exc


# --- envelopes and dead letters ---------------------------------------------------------------


def encode(message: BaseModel) -> bytes:
    """Serialise an envelope (or dead letter) as compact JSON bytes."""
    if isinstance(message, Envelope) and _whole_minutes(message.occurred_at, message.recorded_at):
        subject = message.subject
        who = None
        if subject is not None:
            identifiers = [{"system": i.system, "value": i.value} for i in subject.identifiers]
            who = {"identifiers": identifiers, "person_id": subject.person_id}
        return _envelope_bytes(
            event_id=str(message.event_id),
            event_type=message.event_type,
            source=message.source,
            subject=who,
            occurred_at=message.occurred_at,
            recorded_at=message.recorded_at,
            correlation_id=str(message.correlation_id),
            resource=message.resource,
        )
    return orjson.dumps(message.model_dump(mode="json", exclude_none=False))


def _envelope_bytes(
    *,
    event_id: str,
    event_type: str,
    source: str,
    subject: dict[str, Any] | None,
    occurred_at: datetime,
    recorded_at: datetime,
    correlation_id: str,
    resource: dict[str, Any],
) -> bytes:
    """The one writer of an envelope's bytes: the model's field order, its times as pydantic
    writes them (orjson's OPT_UTC_Z). A test holds it to the model's own rendering."""
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "source": source,
            "subject": subject,
            "occurred_at": occurred_at,
            "recorded_at": recorded_at,
            "schema_version": 1,
            "correlation_id": correlation_id,
            "resource": resource,
        },
        option=orjson.OPT_UTC_Z,
    )


def _whole_minutes(first: datetime, second: datetime) -> bool:
    """True when both times are aware, their offsets whole minutes: pydantic writes an offset
    of seconds cut short, so such a time (never a FHIR instant) is left to the model to write."""
    one, other = first.utcoffset(), second.utcoffset()
    return (
        one is not None
        and other is not None
        and not (one.seconds % 60 or other.seconds % 60 or one.microseconds or other.microseconds)
    )


def encode_hub_envelope(
    event_id: uuid.UUID,
    event_type: str,
    *,
    person_id: str | None,
    resource: dict[str, Any],
    now: datetime,
    correlation_id: uuid.UUID,
) -> bytes:
    """An envelope the hub itself writes (source `concord-hub`, the person named by hub person id
    only, or nobody), straight to its bytes: equal to `encode` of the same Envelope, without
    building the model on the hot path of every alert."""
    if not _whole_minutes(now, now):
        return encode(
            Envelope(
                event_id=event_id,
                event_type=event_type,
                source=HUB_SOURCE,
                subject=None if person_id is None else Subject(person_id=person_id),
                occurred_at=now,
                recorded_at=now,
                correlation_id=correlation_id,
                resource=resource,
            )
        )
    return _envelope_bytes(
        event_id=str(event_id),
        event_type=event_type,
        source=HUB_SOURCE,
        subject=None if person_id is None else {"identifiers": [], "person_id": person_id},
        occurred_at=now,
        recorded_at=now,
        correlation_id=str(correlation_id),
        resource=resource,
    )


# An envelope as Kafka gets it: (key, value, event id). A plain tuple: it is made per record
# on the publish path and sent back from the parallel workers.
EncodedEnvelope = tuple[bytes, bytes, str]


_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN.removeprefix("^").removesuffix("$"))


def wrap_encoded(
    resource: dict[str, Any],
    *,
    event_type: str,
    source: str,
    subject: tuple[PersonIdentifier, ...],
    correlation: str | None = None,
    now: datetime | None = None,
) -> EncodedEnvelope:
    """The envelope `wrap(...)` would build, straight to its bytes: equal to `encode(wrap(...))`.

    The resource has passed the edge's checks; the envelope's own fields are checked here
    against the contract, and anything this path does not vouch for (an odd source, a naive
    clock) goes through `wrap` and `encode`, which raise as they always have.
    """
    now = now or utc_now()
    event_id, correlation_id, occurred_at = derived_fields(resource, source, correlation, now)
    if not (
        _plain_parts(resource, event_type, source, subject) and _whole_minutes(occurred_at, now)
    ):
        envelope = wrap(
            resource,
            event_type=event_type,
            source=source,
            subject=subject,
            correlation=correlation,
            now=now,
        )
        return envelope.key(), encode(envelope), str(envelope.event_id)
    who = None
    if subject:
        who = {"identifiers": [{"system": s, "value": v} for s, v in subject], "person_id": None}
    value = _envelope_bytes(
        event_id=str(event_id),
        event_type=event_type,
        source=source,
        subject=who,
        occurred_at=occurred_at,
        recorded_at=now,
        correlation_id=str(correlation_id),
        resource=resource,
    )
    return inbound_key(resource, source, subject).encode(), value, str(event_id)


def _plain_parts(
    resource: dict[str, Any], event_type: str, source: str, subject: tuple[PersonIdentifier, ...]
) -> bool:
    """True when the Envelope model would accept these parts as they are (its times aside)."""
    return (
        isinstance(resource.get("resourceType"), str)
        and _EVENT_TYPE.fullmatch(event_type) is not None
        and PARTNER_ID.fullmatch(source) is not None
        and all(
            type(s) is str and type(v) is str and s and v  # strict types: no subclasses
            for s, v in subject
        )
    )


def decode(data: bytes | None) -> Envelope:
    """Parse and validate envelope bytes; raise CodecError naming the first problem."""
    return _decode(data, Envelope)


# A dead letter keeps the refused record whole up to this many characters, so the letter itself
# stays well under the broker's 1 MiB message limit (an oversize record is a reason to refuse).
DEAD_LETTER_RAW_CHARS = 512 * 1024


def letter_text(raw: bytes | None) -> str:
    """A refused record's bytes as a dead letter keeps them: UTF-8 text (bytes that are not are
    replaced), cut short with a note when huge, and empty for a tombstone."""
    text = (raw or b"").decode("utf-8", errors="replace")
    if len(text) > DEAD_LETTER_RAW_CHARS:
        return text[:DEAD_LETTER_RAW_CHARS] + f"\n…[truncated from {len(text)} characters]"
    return text


def decode_dead_letter(data: bytes | None) -> DeadLetter:
    """Parse and validate dead-letter bytes."""
    return _decode(data, DeadLetter)


# The hub's own hot path reads validated envelopes as plain dicts: validation
# happened once, at the edge, and is not repeated inside the hub.


def peek(data: bytes | None) -> dict[str, Any]:
    """The JSON object of a message already validated at the edge, without re-validating it."""
    try:
        value = orjson.loads(record_value(data))
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CodecError("not a JSON object")
    return value


def dumps(value: dict[str, Any]) -> bytes:
    """Serialise a message dict (an envelope with its person resolved)."""
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


def peek_envelope(data: bytes | None) -> dict[str, Any]:
    """`peek` for an envelope: CodecError unless every field the hub reads has its JSON type."""
    return checked_envelope(peek(data))


def decode_inbound(data: bytes | None) -> dict[str, Any]:
    """An inbound record as the person index takes it: an envelope (`peek_envelope`) carrying a
    resource partners send, under that resource's event type; else CodecError naming which.

    The edge sets the event type from the resource (schemas/fhir.py CARRIED); any other pairing
    comes from a producer that bypassed the edge, and the hub would not know what it means.
    """
    value = peek_envelope(data)
    resource_type = value["resource"]["resourceType"]
    if resource_type not in PARTNER_RESOURCE_TYPES:
        raise CodecError(
            "not an event the hub takes: resource.resourceType is not one partners send"
        )
    if value["event_type"] != event_type_for(resource_type):
        raise CodecError(
            f"not an event the hub takes: event_type is not {event_type_for(resource_type)}, "
            f"the event type of a {resource_type}"
        )
    return value


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


# --- the hub's internal messages (schemas/internal.py) -----------------------------------------


def encode_internal(message: InternalMessage) -> bytes:
    """An internal message's bytes: its fields in order, as its exported JSON Schema says.

    Straight from the frozen model's fields, without a pydantic pass: these are written on
    the worker's hot path. A TransferCommand's calendar (stored JSON text) is embedded as is.
    """
    return orjson.dumps(message, default=_json_fields, option=orjson.OPT_UTC_Z)


def _json_fields(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.__dict__
    if isinstance(value, bytes):  # only a StoredCalendar is bytes in an internal message
        return orjson.Fragment(value)
    raise TypeError(f"{type(value).__name__} is not part of an internal message")


def decode_internal(data: bytes | None, kind: type[_Model]) -> _Model:
    """Parse and validate an internal message of `kind`; CodecError naming the first problem."""
    return _decode(data, kind)


def decode_command(data: bytes | None) -> PersonCommand:
    """A hub command on person-events, as the model its `command` names; else CodecError."""
    return _person_command(peek(data), data)


def _person_command(value: dict[str, Any], data: bytes | None) -> PersonCommand:
    command = value.get("command")
    kind = PERSON_COMMANDS.get(command) if isinstance(command, str) else None
    if kind is None:
        raise CodecError("not a hub command: unknown command")
    # Validated from the bytes, not the parsed dict: strict JSON mode reads a time or an id
    # from its text, as it is on the wire. Commands are small; this costs a few microseconds.
    return _decode(data, kind)


def decode_person_message(data: bytes | None) -> dict[str, Any] | PersonCommand:
    """A person-events record: a hub command, or an envelope (a dict) resolved to a person;
    CodecError naming what is wrong."""
    value = peek(data)
    if value.get("command") is not None:
        return _person_command(value, data)
    checked_envelope(value)
    subject = value.get("subject") or {}
    if not isinstance(value.get("person_id") or subject.get("person_id"), str):
        raise CodecError("not resolved to a person: subject.person_id is missing")
    return value


def decode_link_message(data: bytes | None) -> dict[str, Any] | ResolveConflictCommand:
    """A links record: an operator's decision on a conflict, or an envelope (a dict) for the
    identity linker; CodecError naming what is wrong."""
    value = peek(data)
    if value.get("command") == "resolve-conflict":
        return _decode(data, ResolveConflictCommand)
    return checked_envelope(value)


# Assignments: who each identifier token belongs to (assignments topic), keyed by the token,
# the hub person id as plain UTF-8 text, or no value when the token is forgotten.


def encode_assignment(token: str, person_id: str) -> tuple[bytes, bytes]:
    """(key, value) of the assignment of an identifier (or referral) token to a hub person."""
    return token.encode(), person_id.encode()


def decode_assignment(key: bytes | None, value: bytes | None) -> tuple[str, bytes | None]:
    """(token, person id as stored) of an assignments record, the person None when the token
    is forgotten; CodecError when the record is not one the linker would write."""
    try:
        text = (key or b"").decode()
        # A referral's token names the referral's person too (services/domain/referral_steps.py).
        token = checked_referral_token(text) if text.startswith(f"{REFERRAL}|") else None
        token = token or parse_token(text).token()
        person = None if value is None else value.decode()
    except (UnicodeDecodeError, ValueError) as exc:
        raise CodecError(f"not an assignment: {type(exc).__name__}") from exc
    if person is not None and (not person.isprintable() or not person or " " in person):
        raise CodecError("not an assignment: the person id is not a printable word")
    return token, value
