"""The AsyncAPI 3.0 document of the hub's Kafka topics, generated from the topic catalogue
(schemas/topics.py), the exported JSON Schemas and the examples beside them.

`python -m schemas.asyncapi > schemas/asyncapi.yaml` after changing a topic, a model or an
example; a test fails while the committed file is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from schemas.envelope import SCHEMA_VERSION
from schemas.export import example_path
from schemas.fhir import PARTNER_RESOURCE_TYPES, event_type_for
from schemas.internal import (
    DeadlinesCommand,
    IdentityConflictRecord,
    IdentityFlagsCommand,
    MeasureFact,
    MergeCommand,
    PartnerActivity,
    ReferralInboxEntry,
    ResolveConflictCommand,
    TransferCommand,
)
from schemas.topics import (
    ALERTS,
    ASSIGNMENTS,
    AUDIT,
    CATALOGUE,
    DEADLETTER,
    IDENTITY_CONFLICTS,
    INBOUND,
    LINKS,
    MEASURE_EVENTS,
    MEASURES,
    OUTBOUND,
    PARTNER_ACTIVITY,
    PERSON_EVENTS,
    REFERRALS,
    Topic,
)
from schemas.vocabulary import HUB_SOURCE

HERE = Path(__file__).parent
ASYNCAPI_PATH = HERE / "asyncapi.yaml"
EXAMPLES = HERE / "examples"
DEFAULT_PREFIX = "concord."
JSON_SCHEMA = "application/schema+json;version=draft-07"

# Partner events (one per resource type partners send) travel inbound, then re-keyed by person;
# those that join identifiers also go to the linker.
PARTNER_EVENT_TOPICS = (INBOUND, PERSON_EVENTS, LINKS)
# The hub's internal messages by topic (schemas/README.md, "Internal messages").
INTERNAL_ON: dict[str, tuple[type[BaseModel], ...]] = {
    PERSON_EVENTS.short_name: (
        MergeCommand,
        TransferCommand,
        DeadlinesCommand,
        IdentityFlagsCommand,
    ),
    LINKS.short_name: (ResolveConflictCommand,),
    PARTNER_ACTIVITY.short_name: (PartnerActivity,),
    REFERRALS.short_name: (ReferralInboxEntry,),
    IDENTITY_CONFLICTS.short_name: (IdentityConflictRecord,),
    MEASURE_EVENTS.short_name: (MeasureFact,),
}
ASSIGNMENT = "assignment"  # the person id as text (schemas.codec encode_assignment)
DEAD_LETTER = "dead-letter"


def hub_topic(resource_type: str) -> Topic:
    """Where the hub's own envelope goes, as the hub sends it: an alert (DetectedIssue) to alerts,
    an AuditEvent to audit, a commissioners' MeasureReport to measures, any other to outbound."""
    if resource_type == "DetectedIssue":
        return ALERTS
    if resource_type == "AuditEvent":
        return AUDIT
    if resource_type == "MeasureReport":
        return MEASURES
    return OUTBOUND


def _example(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _envelope_message(event_type: str, resource_type: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": event_type,
        "title": event_type,
        "summary": f"an envelope carrying one FHIR R4 {resource_type}",
        "contentType": "application/json",
        "correlationId": {"location": "$message.payload#/correlation_id"},
        "payload": {
            "schemaFormat": JSON_SCHEMA,
            "schema": {
                "allOf": [
                    {"$ref": "envelope.schema.json"},
                    {
                        "properties": {
                            "event_type": {"const": event_type},
                            "resource": {"properties": {"resourceType": {"const": resource_type}}},
                        }
                    },
                ]
            },
        },
    }
    example = _example(EXAMPLES / f"{event_type}.json")
    if example is not None:
        message["examples"] = [{"name": event_type, "payload": example}]
    return message


def _internal_message(model: type[BaseModel]) -> dict[str, Any]:
    name = model.__name__.lower()
    message: dict[str, Any] = {
        "name": model.__name__,
        "title": model.__name__,
        "summary": " ".join((model.__doc__ or "").split()),
        "contentType": "application/json",
        "payload": {
            "schemaFormat": JSON_SCHEMA,
            "schema": {"$ref": f"internal-messages/{name}.schema.json"},
        },
    }
    example = _example(example_path(model))
    if example is not None:
        message["examples"] = [{"name": name, "payload": example}]
    return message


_ASSIGNMENT_MESSAGE = {
    "name": ASSIGNMENT,
    "title": "identifier assignment",
    "summary": "the hub person id an identifier token now belongs to, as UTF-8 text; no value "
    "(a tombstone) when the token is forgotten",
    "contentType": "text/plain",
    "payload": {"type": "string"},
}
_DEAD_LETTER_MESSAGE = {
    "name": DEAD_LETTER,
    "title": "dead letter",
    "summary": "rejected input, raw, with the reason it was rejected",
    "contentType": "application/json",
    "payload": {"schemaFormat": JSON_SCHEMA, "schema": {"$ref": "deadletter.schema.json"}},
}


def placed_messages() -> Iterator[tuple[str, dict[str, Any], Topic]]:
    """Every message the hub writes and a topic it goes on: (name, AsyncAPI message, topic).

    Partner events from the resource types partners send; the hub's own events from their
    examples (an example per event type, checked by tests/unit/test_contract.py).
    """
    for resource_type in PARTNER_RESOURCE_TYPES:
        event_type = event_type_for(resource_type)
        for topic in PARTNER_EVENT_TOPICS:
            yield event_type, _envelope_message(event_type, resource_type), topic
    for path in sorted(EXAMPLES.glob("*.json")):
        example = json.loads(path.read_text(encoding="utf-8"))
        if example["source"] == HUB_SOURCE:
            event_type, resource_type = example["event_type"], example["resource"]["resourceType"]
            yield event_type, _envelope_message(event_type, resource_type), hub_topic(resource_type)
    for topic in CATALOGUE:
        for model in INTERNAL_ON.get(topic.short_name, ()):
            yield model.__name__, _internal_message(model), topic
    yield ASSIGNMENT, _ASSIGNMENT_MESSAGE, ASSIGNMENTS
    yield DEAD_LETTER, _DEAD_LETTER_MESSAGE, DEADLETTER


def _channel(topic: Topic, names: list[str]) -> dict[str, Any]:
    return {
        "address": "{prefix}" + topic.short_name,
        "title": topic.short_name,
        "summary": topic.purpose,
        "description": f"Key: {topic.key}. Produced by {topic.produced_by}; consumed by "
        f"{topic.consumed_by}.",
        "parameters": {"prefix": {"$ref": "#/components/parameters/prefix"}},
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
        "bindings": {
            "kafka": {
                "partitions": topic.partitions,
                "topicConfiguration": {
                    "cleanup.policy": [topic.cleanup],
                    "retention.ms": topic.retention_ms,
                },
                "bindingVersion": "0.5.0",
            }
        },
    }


def _camel(short_name: str) -> str:
    return "".join(part.capitalize() for part in short_name.split("-"))


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, as committed at schemas/asyncapi.yaml."""
    every: dict[str, dict[str, Any]] = {}
    on: dict[str, list[str]] = {topic.short_name: [] for topic in CATALOGUE}
    for name, message, topic in placed_messages():
        every.setdefault(name, message)
        if name not in on[topic.short_name]:
            on[topic.short_name].append(name)
    operations: dict[str, Any] = {}
    for topic in CATALOGUE:
        refs = [
            {"$ref": f"#/channels/{topic.short_name}/messages/{n}"} for n in on[topic.short_name]
        ]
        channel = {"$ref": f"#/channels/{topic.short_name}"}
        operations[f"send{_camel(topic.short_name)}"] = {
            "action": "send",
            "channel": channel,
            "summary": f"written by {topic.produced_by}",
            "messages": refs,
        }
        operations[f"receive{_camel(topic.short_name)}"] = {
            "action": "receive",
            "channel": channel,
            "summary": f"read by {topic.consumed_by}",
            "messages": refs,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "concord event hub",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": "The Kafka topics of the concord hub and the messages on each: "
            "envelopes (schemas/envelope.py) carrying one FHIR R4 resource, the hub's internal "
            "messages (schemas/internal.py) and dead letters. Generated by "
            "`python -m schemas.asyncapi` from schemas/topics.py, the JSON Schemas and the "
            "examples in schemas/; see schemas/README.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the broker named by KAFKA_BOOTSTRAP_SERVERS (the local broker "
                "`concord kafka start` runs by default)",
            }
        },
        "channels": {
            topic.short_name: _channel(topic, on[topic.short_name]) for topic in CATALOGUE
        },
        "operations": operations,
        "components": {
            "parameters": {
                "prefix": {
                    "default": DEFAULT_PREFIX,
                    "description": "CONCORD_TOPIC_PREFIX: keeps environments sharing a "
                    "cluster apart",
                }
            },
            "messages": every,
        },
    }


def render() -> str:
    """The document as YAML, in a stable order."""
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)


def main() -> int:
    """Print the document (redirect it to schemas/asyncapi.yaml)."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
