"""Reading the audit trail: every disclosure about one person, and every partner that became
related to them, newest first.

A person's audit events are keyed by the hub person id the person had when each
disclosure happened; merges rename people, so every id the person has had counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from connectors.kafka_io import read_topic
from schemas import topics
from schemas.identifiers import PersonIdentifier
from schemas.keys import REFERRAL, PersonKey, person_id_for
from services.runtime import person_key


def person_ids(
    identifier: PersonIdentifier,
    assignments: Iterable[tuple[bytes | None, bytes]],
    key: PersonKey,
) -> set[str]:
    """Every hub person id the person named by `identifier` has had."""
    latest = {key.decode(): value.decode() for key, value in assignments if key is not None}
    current = latest.get(identifier.token(), person_id_for(identifier, key))
    tokens = [token for token, person in latest.items() if person == current]
    # Every provisional or earlier id was person_id_for of one of the person's identifiers.
    ids = {current, person_id_for(identifier, key)}
    for token in tokens:
        system, _, value = token.rpartition("|")
        if system != REFERRAL:  # a referral filed under the person never named anyone
            ids.add(person_id_for(PersonIdentifier(system, value), key))
    return ids


def audit_trail(identifier: PersonIdentifier, idle_timeout_s: float = 3.0) -> list[dict[str, Any]]:
    """The AuditEvent envelopes about a person, newest first."""
    assignments = read_topic(topics.ASSIGNMENTS.name, idle_timeout_s=idle_timeout_s)
    ids = person_ids(identifier, assignments, person_key())
    found = [
        orjson.loads(value)
        for key, value in read_topic(topics.AUDIT.name, idle_timeout_s=idle_timeout_s)
        if key is not None and key.decode() in ids
    ]
    return sorted(found, key=lambda e: (e["resource"]["recorded"], e["event_id"]), reverse=True)


def audit_line(envelope: dict[str, Any]) -> str:
    """One readable line: when, to whom (or, for a new relationship, who), in which role, what,
    and on what basis."""
    event = envelope["resource"]
    agent = event["agent"][0]
    recipient = agent["who"]["identifier"]["value"]
    role = agent["type"]["coding"][0]["code"]
    what = event["entity"][-1]["what"].get("reference", "?")
    basis = agent.get("policy", ["?"])[0].removeprefix("urn:concord:")
    subtype = (event.get("subtype") or [{}])[0].get("code")
    who = "related" if subtype == "relationship" else "to"
    return f"{event['recorded']}  {who} {recipient:<17} ({role})  {what}  basis: {basis}"
