"""The AsyncAPI document of the hub's topics: committed as generated, valid AsyncAPI 3.0, every
catalogue topic present, every reference and payload schema resolvable, every example valid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic_asyncapi import AsyncAPIV3
from referencing import Registry
from referencing.jsonschema import DRAFT7

from schemas import asyncapi
from schemas.export import INTERNAL
from schemas.topics import CATALOGUE

SCHEMAS = Path(asyncapi.__file__).parent


def document() -> dict[str, Any]:
    return asyncapi.document()


def pointer(root: Any, ref: str) -> Any:
    """The node a local reference (`#/a/b`) names; KeyError when there is none."""
    node = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def schema_registry() -> Registry:
    """Every JSON Schema file under schemas/, by its path relative to the AsyncAPI document (as
    the document refers to it) and by its own $id (as its inner references do)."""
    resources = []
    for path in SCHEMAS.rglob("*.schema.json"):
        resource = DRAFT7.create_resource(json.loads(path.read_text()))
        resources.append((path.relative_to(SCHEMAS).as_posix(), resource))
        resources.append((resource.id() or "", resource))
    return Registry().with_resources(resources)


def test_committed_asyncapi_document_is_what_the_generator_writes() -> None:
    committed = asyncapi.ASYNCAPI_PATH.read_text(encoding="utf-8")
    assert committed == asyncapi.render(), (
        "schemas/asyncapi.yaml is stale: run `.venv/bin/python -m schemas.asyncapi > "
        "schemas/asyncapi.yaml`"
    )
    assert yaml.safe_load(committed) == document()


def test_document_is_valid_asyncapi_3() -> None:
    parsed = AsyncAPIV3.model_validate(document())
    assert parsed.asyncapi == "3.0.0"
    assert parsed.channels is not None
    assert parsed.operations is not None


def test_every_catalogue_topic_is_a_channel_with_its_layout() -> None:
    channels = document()["channels"]
    assert list(channels) == [topic.short_name for topic in CATALOGUE]
    for topic in CATALOGUE:
        channel = channels[topic.short_name]
        assert channel["address"] == "{prefix}" + topic.short_name
        assert channel["messages"], topic.short_name
        kafka = channel["bindings"]["kafka"]
        assert kafka["partitions"] == topic.partitions
        assert kafka["topicConfiguration"]["cleanup.policy"] == [topic.cleanup]


def test_each_topic_has_a_send_and_a_receive_operation_on_its_messages() -> None:
    doc = document()
    for topic in CATALOGUE:
        name = "".join(part.capitalize() for part in topic.short_name.split("-"))
        for action in ("send", "receive"):
            operation = doc["operations"][f"{action}{name}"]
            assert operation["action"] == action
            assert operation["channel"] == {"$ref": f"#/channels/{topic.short_name}"}
            assert len(operation["messages"]) == len(doc["channels"][topic.short_name]["messages"])


def test_every_local_reference_resolves() -> None:
    doc = document()
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in doc.items() if k != "components"} | {"c": doc["components"]})
    assert len(refs) > len(CATALOGUE)
    for ref in refs:
        pointer(doc, ref)


def payload_schemas() -> list[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
    return [
        (name, message["payload"], [e["payload"] for e in message.get("examples", ())])
        for name, message in document()["components"]["messages"].items()
    ]


@pytest.mark.parametrize(("name", "payload", "examples"), payload_schemas())
def test_every_payload_schema_resolves_and_its_examples_obey_it(
    name: str, payload: dict[str, Any], examples: list[dict[str, Any]]
) -> None:
    schema = payload.get("schema", payload)
    registry = schema_registry()
    for ref in _file_refs(schema):
        registry.resolver().lookup(ref)  # a missing file or pointer raises
    validator = Draft7Validator(schema, registry=registry)
    for example in examples:
        errors = [error.message for error in validator.iter_errors(example)]
        assert errors == [], (name, errors)


def _file_refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["$ref"]] if isinstance(schema.get("$ref"), str) else []
        return own + [ref for value in schema.values() for ref in _file_refs(value)]
    if isinstance(schema, list):
        return [ref for value in schema for ref in _file_refs(value)]
    return []


def test_an_example_breaking_its_schema_is_caught() -> None:
    """The payload check is real: an envelope of the wrong event type fails it."""
    message = document()["components"]["messages"]["appointment.booking.updated"]
    example = message["examples"][0]["payload"] | {"event_type": "referral.task.updated"}
    validator = Draft7Validator(message["payload"]["schema"], registry=schema_registry())
    assert not validator.is_valid(example)


def test_every_example_and_internal_message_is_on_a_channel() -> None:
    doc = document()
    placed = {name for channel in doc["channels"].values() for name in channel["messages"]}
    examples = {path.stem for path in (SCHEMAS / "examples").glob("*.json")}
    assert examples <= placed
    assert {model.__name__ for model in INTERNAL} <= placed
    assert {"assignment", "dead-letter"} <= placed
    assert set(doc["components"]["messages"]) == placed
