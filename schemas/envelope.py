"""The envelope every Kafka message value carries: one FHIR resource plus routing facts.

Frozen and strict: a field the contract does not name is an error, so a
producer's typo is caught at the edge rather than silently dropped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.identifiers import PARTNER_ID, PersonIdentifier
from schemas.keys import inbound_key

SCHEMA_VERSION = 1
EVENT_TYPE_PATTERN = r"^[a-z]+(\.[a-z][a-z-]*){2}$"

# Stable namespace for content-derived event ids, so a re-sent identical input is a duplicate.
EVENT_NAMESPACE = uuid.UUID("1b45611e-98f3-5e32-9212-8ca9976da8e8")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class SubjectIdentifier(_Frozen):
    """An identifier of the person as the source knows them (FHIR Identifier.system/value)."""

    system: str = Field(min_length=1)
    value: str = Field(min_length=1)

    def as_tuple(self) -> PersonIdentifier:
        """The identifier as the domain's PersonIdentifier."""
        return PersonIdentifier(self.system, self.value)


class Subject(_Frozen):
    """Who the event is about: identifiers from the source, and the hub person id once resolved."""

    identifiers: tuple[SubjectIdentifier, ...] = ()
    person_id: str | None = None

    @model_validator(mode="after")
    def _names_someone(self) -> Subject:
        if not self.identifiers and self.person_id is None:
            raise ValueError("subject needs identifiers or a person_id")
        return self

    def key(self) -> str:
        """The Kafka key: the hub person id when resolved, else the first identifier token."""
        if self.person_id is not None:
            return self.person_id
        return self.identifiers[0].as_tuple().token()


class Envelope(_Frozen):
    """One event: who sent it, about whom, when, and the FHIR resource itself."""

    event_id: uuid.UUID
    event_type: str = Field(pattern=EVENT_TYPE_PATTERN)
    source: str = Field(pattern=PARTNER_ID.pattern)
    subject: Subject | None
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    schema_version: Literal[1] = 1  # SCHEMA_VERSION; bump with an upcaster
    correlation_id: uuid.UUID
    resource: dict[str, Any]

    @model_validator(mode="after")
    def _resource_is_typed(self) -> Envelope:
        if not isinstance(self.resource.get("resourceType"), str):
            raise ValueError("resource must be a FHIR resource with a resourceType")
        return self

    @property
    def resource_type(self) -> str:
        """The FHIR resource type carried."""
        return str(self.resource["resourceType"])

    def key(self) -> bytes:
        """The Kafka message key for this envelope (schemas/keys.py `inbound_key` until resolved)."""
        if self.subject is not None and self.subject.person_id is not None:
            return self.subject.person_id.encode()
        named = tuple(i.as_tuple() for i in self.subject.identifiers) if self.subject else ()
        return inbound_key(self.resource, self.source, named).encode()


class DeadLetter(_Frozen):
    """Rejected input, kept whole with the reason, so an operator can fix and replay it."""

    reason: str
    source: str
    origin: str  # where the input came from: a file name, an HTTP route, an MLLP peer
    received_at: AwareDatetime
    raw: str
    event_id: uuid.UUID | None = None


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def content_event_id(source: str, resource: dict[str, Any]) -> uuid.UUID:
    """An event id derived from the source and the exact content, so a resend is a duplicate."""
    import orjson

    body = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    return uuid.uuid5(EVENT_NAMESPACE, source + "\n" + body.decode())


def last_updated(resource: dict[str, Any]) -> datetime | None:
    """The resource's meta.lastUpdated, when it carries one."""
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(stamp, str):
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def correlation_uuid(source: str, correlation: str | None, event_id: uuid.UUID) -> uuid.UUID:
    """The correlation id: the partner's own (a UUID, or one derived from it), else the event id."""
    if not correlation:
        return event_id
    try:
        return uuid.UUID(correlation)
    except ValueError:
        return uuid.uuid5(EVENT_NAMESPACE, f"{source}\n{correlation}")


def derived_fields(
    resource: dict[str, Any], source: str, correlation: str | None, now: datetime
) -> tuple[uuid.UUID, uuid.UUID, datetime]:
    """What an envelope derives from its resource: event id, correlation id, when it occurred."""
    event_id = content_event_id(source, resource)
    return event_id, correlation_uuid(source, correlation, event_id), last_updated(resource) or now


def wrap(
    resource: dict[str, Any],
    *,
    event_type: str,
    source: str,
    subject: tuple[PersonIdentifier, ...],
    correlation: str | None = None,
    now: datetime | None = None,
) -> Envelope:
    """Wrap a validated FHIR resource in an envelope; its content fixes the event id."""
    now = now or utc_now()
    event_id, correlation_id, occurred_at = derived_fields(resource, source, correlation, now)
    who = None
    if subject:
        who = Subject(identifiers=tuple(SubjectIdentifier(system=s, value=v) for s, v in subject))
    return Envelope(
        event_id=event_id,
        event_type=event_type,
        source=source,
        subject=who,
        occurred_at=occurred_at,
        recorded_at=now,
        correlation_id=correlation_id,
        resource=resource,
    )
