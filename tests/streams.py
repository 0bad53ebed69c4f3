"""The person index's step as its agent takes it (services/stream/agents.py), for tests that play
events through the stream steps without Kafka."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.domain.identity import person_of, to_linker
from services.stream.outbox import Out, routed
from services.stream.pipeline import identifiers_of
from tests.keys import KEY


def index_event(envelope: Mapping[str, Any], raw: bytes, assigned: str | None) -> list[Out]:
    """Route one inbound envelope: to the linker when it is about identity, else to its person.

    `assigned` is the person the envelope's one identifier was linked to, if any.
    """
    identifiers = identifiers_of(envelope)
    person = None if to_linker(envelope, identifiers) else person_of(identifiers, assigned, KEY)
    return routed(envelope, raw, identifiers, person)
