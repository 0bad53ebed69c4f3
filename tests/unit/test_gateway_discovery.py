"""What the gateway says about itself and how it answers, with no broker: the CapabilityStatement,
the OpenAPI document, the answer's format (`_format`, `Accept`), `Prefer`, and the address it
names."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from hypothesis import given
from hypothesis import strategies as st
from jsonschema_path import SchemaPath
from openapi_spec_validator import OpenAPIV30SpecValidator

from connectors.gateway.app import openapi_text
from connectors.gateway.negotiation import (
    accepted_form,
    answer_format,
    prefer_return,
    public_base,
    public_url_setting,
    render,
)
from connectors.gateway.rules import (
    Admitted,
    RefusedRequest,
    assess,
    operation_outcome,
    refuse,
    response_message,
)
from connectors.gateway.spec import (
    FHIR_R4_SCHEMA,
    OPENAPI_PATH,
    UK_CORE_PROFILES,
    capability_statement,
    openapi_document,
)
from schemas.fhir import PARTNER_RESOURCE_TYPES, event_type_for

ROOT = Path(__file__).parents[2]
PUBLIC = ROOT / "tests" / "fixtures" / "public"
BASE = "https://hub.example.org"
ENDPOINT = BASE + "/fhir/$process-message"
NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


# --- the answer's format ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format_param", "accept", "expected"),
    [
        (None, None, "json"),
        (None, "", "json"),
        (None, "*/*", "json"),
        (None, "application/fhir+xml", "xml"),
        (None, "application/fhir+json; fhirVersion=4.0", "json"),
        (None, "text/html, application/xml;q=0.9, */*;q=0.8", "xml"),
        (None, "application/fhir+xml;q=0.5, application/fhir+json", "json"),
        (None, "application/fhir+json;q=0, application/fhir+xml", "xml"),
        ("xml", "application/fhir+json", "xml"),  # _format wins over Accept
        ("json", "application/fhir+xml", "json"),
        ("application/fhir+xml", None, "xml"),
        ("application/fhir xml", None, "xml"),  # an unescaped + in the query string
        ("APPLICATION/FHIR+JSON", None, "json"),
    ],
)
def test_answer_format_follows_format_then_accept(
    format_param: str | None, accept: str | None, expected: str
) -> None:
    assert answer_format(format_param, accept) == expected


@pytest.mark.parametrize(
    ("format_param", "accept", "where"),
    [
        ("ttl", None, "(_format)"),
        ("text/turtle", "application/fhir+json", "(_format)"),
        (None, "text/turtle", "(Accept)"),
        (None, "text/html, image/png;q=0.9", "(Accept)"),
        (None, "application/fhir+json;q=0", "(Accept)"),
    ],
)
def test_a_format_the_gateway_cannot_write_is_406_and_not_dead_lettered(
    format_param: str | None, accept: str | None, where: str
) -> None:
    refusal = answer_format(format_param, accept)
    assert isinstance(refusal, RefusedRequest)
    assert refusal.status == 406
    assert not refusal.dead_letter
    assert refusal.issues[0].where == where
    assert "application/fhir+json or application/fhir+xml" in refusal.reason()


MEDIA = st.sampled_from(["application/fhir+json", "application/fhir+xml", "text/html", "image/png"])


@given(st.lists(st.tuples(MEDIA, st.integers(min_value=0, max_value=10)), min_size=1, max_size=4))
def test_accept_picks_the_highest_quality_format_the_gateway_writes(
    ranges: list[tuple[str, int]],
) -> None:
    accept = ", ".join(f"{media};q={q / 10}" for media, q in ranges)
    writable = [(q, -i, media) for i, (media, q) in enumerate(ranges) if "fhir" in media and q > 0]
    chosen = answer_format(None, accept)
    if not writable:
        assert isinstance(chosen, RefusedRequest)
    else:
        assert chosen == max(writable)[2].removeprefix("application/fhir+")


# --- Prefer -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("return=minimal", "minimal"),
        ("return=representation", "representation"),
        ("return=OperationOutcome", "OperationOutcome"),
        ('respond-async, return="operationoutcome"', "OperationOutcome"),
        ("handling=strict; return=minimal", "minimal"),
        ("return=everything", None),  # not a preference FHIR defines: ignored (RFC 7240)
        ("handling=lenient", None),
    ],
)
def test_prefer_return_is_read_as_rfc_7240_says(header: str | None, expected: str | None) -> None:
    assert prefer_return(header) == expected


def test_prefer_applies_to_a_create_and_xml_gets_the_outcome() -> None:
    assert accepted_form(None, "json", create=True) == "summary"
    assert accepted_form("minimal", "json", create=True) == "minimal"
    assert accepted_form("representation", "xml", create=True) == "representation"
    assert accepted_form("OperationOutcome", "json", create=True) == "outcome"
    assert accepted_form(None, "xml", create=True) == "outcome"
    # A Bundle post is not a create: Prefer does not change it.
    assert accepted_form("minimal", "json", create=False) == "summary"
    assert accepted_form("minimal", "xml", create=False) == "outcome"


# --- the address the gateway names --------------------------------------------------------------


def test_the_configured_public_url_wins_over_what_the_request_says() -> None:
    assert public_base(BASE + "/", "http", "10.0.0.5:8080", "http", "evil.example") == BASE


def test_a_proxys_forwarded_proto_and_host_name_the_address() -> None:
    assert public_base(None, "http", "10.0.0.5:8080") == "http://10.0.0.5:8080"
    assert (
        public_base(None, "http", "10.0.0.5:8080", "https", "hub.example.org, proxy2")
        == "https://hub.example.org"
    )
    assert public_base(None, "http", "[::1]:8080") == "http://[::1]:8080"


def test_a_forwarded_host_that_is_not_a_host_is_not_echoed() -> None:
    shown = public_base(None, "http", "hub:8080", "javascript", 'x"><script>')
    assert shown == "http://hub:8080"


def test_public_url_setting_must_be_an_absolute_http_url() -> None:
    assert public_url_setting(None) is None
    assert public_url_setting("https://hub.example.org/gateway/") == BASE + "/gateway"
    with pytest.raises(ValueError, match="CONCORD_GATEWAY_PUBLIC_URL"):
        public_url_setting("hub.example.org")


# --- rendering ----------------------------------------------------------------------------------


def test_an_outcome_in_xml_reads_back_as_the_same_outcome() -> None:
    outcome = refuse(422, "invalid", "Appointment.status", "'bogus' < 'booked' & more").outcome()
    data, media = render(outcome, "xml")
    assert media == "application/fhir+xml"
    assert data.startswith(b"<?xml")
    assert b'xmlns="http://hl7.org/fhir"' in data
    back = OperationOutcome.model_validate_xml(data)
    assert back.model_dump(mode="json") == outcome


def test_json_answers_are_fhir_json_and_a_summary_is_plain_json() -> None:
    outcome = operation_outcome([])
    assert render(outcome, "json")[1] == "application/fhir+json"
    assert render({"event_ids": [], "accepted": 0, "ignored": 0}, "xml")[1] == "application/json"


# --- the CapabilityStatement --------------------------------------------------------------------


def statement() -> dict[str, Any]:
    return capability_statement(BASE, 1440)


def test_capability_statement_is_a_valid_r4_instance_statement() -> None:
    built = statement()
    model = CapabilityStatement.model_validate(built)
    assert (model.kind, model.fhirVersion, model.format) == ("instance", "4.0.1", ["json", "xml"])
    assert built["implementation"]["url"] == BASE + "/fhir"
    xml = model.model_dump_xml()
    assert CapabilityStatement.model_validate_xml(xml).model_dump(mode="json") == built


def test_capability_statement_lists_every_type_the_gateway_takes_with_its_uk_core_profile() -> None:
    rest = statement()["rest"][0]
    assert rest["mode"] == "server"
    assert [r["type"] for r in rest["resource"]] == list(PARTNER_RESOURCE_TYPES)
    for resource in rest["resource"]:
        assert resource["interaction"] == [{"code": "create"}]
        assert resource["supportedProfile"] == [
            f"https://fhir.hl7.org.uk/StructureDefinition/UKCore-{resource['type']}"
        ]
    assert {r["code"] for r in rest["interaction"]} == {"batch", "transaction"}
    assert rest["operation"] == [
        {
            "name": "process-message",
            "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
        }
    ]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "Basic"


def test_capability_statement_messaging_names_the_endpoint_and_the_events_taken() -> None:
    messaging = statement()["messaging"][0]
    assert messaging["endpoint"] == [
        {
            "protocol": {
                "system": "http://terminology.hl7.org/CodeSystem/message-transport",
                "code": "http",
            },
            "address": BASE + "/fhir/$process-message",
        }
    ]
    assert messaging["reliableCache"] == 1440
    assert [m["definition"] for m in messaging["supportedMessage"]] == [
        f"urn:concord:event-type:{event_type_for(t)}" for t in PARTNER_RESOURCE_TYPES
    ]
    assert {m["mode"] for m in messaging["supportedMessage"]} == {"receiver"}


# --- the OpenAPI document -----------------------------------------------------------------------


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_committed_openapi_document_is_what_the_generator_writes() -> None:
    committed = (ROOT / OPENAPI_PATH).read_text()
    assert committed == openapi_text(), (
        "connectors/gateway/openapi.json is stale: run "
        "`.venv/bin/python -m connectors.gateway.app --openapi > connectors/gateway/openapi.json`"
    )
    assert json.loads(committed)["servers"] == [{"url": "/"}]


def test_document_is_valid_openapi_3_0() -> None:
    """Checked by openapi-spec-validator, offline: FHIR's published schema, which the resource
    schemas refer to, stands in as an object schema per definition named."""
    document = openapi_document()
    named = {
        ref.rsplit("/", 1)[1]
        for ref in local_and_remote_refs(document)
        if ref.startswith(FHIR_R4_SCHEMA + "#/definitions/")
    }
    assert named == {*PARTNER_RESOURCE_TYPES, "Bundle", "CapabilityStatement"}

    def fhir_schema(uri: str) -> dict[str, Any]:
        assert uri == FHIR_R4_SCHEMA
        return {"definitions": {name: {"type": "object"} for name in named}}

    path = SchemaPath.from_dict(document, handlers={"https": fhir_schema})
    errors = [str(error).splitlines()[0] for error in OpenAPIV30SpecValidator(path).iter_errors()]
    assert errors == []


def local_and_remote_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in local_and_remote_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in local_and_remote_refs(value)]
    return []


def test_every_operation_has_its_own_operation_id() -> None:
    ids = [operation["operationId"] for _, _, operation in operations(openapi_document())]
    assert len(ids) == len(set(ids))
    assert {f"create{t}" for t in PARTNER_RESOURCE_TYPES} <= set(ids)
    assert {"postBundle", "processMessage", "capabilities", "openapi"} <= set(ids)


def test_each_resource_route_takes_its_own_fhir_r4_schema() -> None:
    document = openapi_document()
    for resource_type in PARTNER_RESOURCE_TYPES:
        operation = document["paths"][f"/fhir/{resource_type}"]["post"]
        body = operation["requestBody"]["content"]["application/fhir+json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{resource_type}"}
        schema = document["components"]["schemas"][resource_type]
        pinned, published = schema["allOf"]
        assert pinned["properties"]["resourceType"]["enum"] == [resource_type]
        assert published == {
            "$ref": f"https://hl7.org/fhir/R4/fhir.schema.json#/definitions/{resource_type}"
        }
        assert UK_CORE_PROFILES[resource_type] in schema["description"]


def test_every_local_reference_resolves() -> None:
    document = openapi_document()
    found = [ref for ref in local_and_remote_refs(document) if ref.startswith("#/")]
    assert found
    for ref in found:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


def test_every_fhir_answer_is_offered_as_json_and_xml_and_errors_as_outcomes() -> None:
    for path, _, operation in operations(openapi_document()):
        if path == "/openapi.json":
            continue
        for status, response in operation["responses"].items():
            content = response["content"]
            # A CSV upload is answered by a JSON report of its rows (422: none published).
            if path == "/upload/csv" and status in {"200", "422"}:
                assert "application/json" in content
                continue
            if path != "/upload/csv":
                assert "application/fhir+xml" in content, (path, status)
            if int(status) >= 400:
                assert content["application/fhir+json"]["schema"] == {
                    "$ref": "#/components/schemas/OperationOutcome"
                }


def test_sign_in_is_http_basic_on_posts_and_none_on_the_documents() -> None:
    document = openapi_document()
    assert document["components"]["securitySchemes"]["partnerBasic"] == {
        "type": "http",
        "scheme": "basic",
        "description": "user: the partner id (e.g. gp-Y01234); password: the partner's secret",
    }
    for _, method, operation in operations(document):
        expected = [{"partnerBasic": []}] if method == "post" else []
        assert operation["security"] == expected


def test_the_served_document_names_the_address_it_was_reached_at() -> None:
    assert openapi_document(BASE)["servers"] == [{"url": BASE}]


# --- the response message of $process-message ---------------------------------------------------


def processed(path: Path, content_type: str) -> Admitted:
    verdict = assess(path.read_bytes(), content_type, None, "gp-Y01234", message=True)
    assert isinstance(verdict, Admitted), verdict
    return verdict


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        (PUBLIC / "fhir-json" / "message-request-link.json", "application/fhir+json"),
        (PUBLIC / "fhir-xml" / "message-request-link.xml", "application/fhir+xml"),
    ],
)
def test_a_processed_message_is_answered_by_a_response_message(
    path: Path, content_type: str
) -> None:
    """FHIR synchronous messaging: a message Bundle answering the request's MessageHeader, its
    event repeated, the OperationOutcome of what was taken as the response's details."""
    admitted = processed(path, content_type)
    answer = response_message(admitted, ENDPOINT, NOW)

    Bundle.model_validate(answer)
    assert (answer["type"], answer["timestamp"]) == ("message", "2026-11-30T09:15:00+00:00")
    header, outcome = (entry["resource"] for entry in answer["entry"])
    assert header["resourceType"] == "MessageHeader"
    assert header["eventCoding"] == {
        "system": "http://example.org/fhir/message-events",
        "code": "patient-link",
    }
    assert header["source"] == {"name": "concord", "endpoint": ENDPOINT}
    assert header["response"] == {
        "identifier": "267b18ce-3d37-4581-9baa-6fada338038b",
        "code": "ok",
        "details": {"reference": answer["entry"][1]["fullUrl"]},
    }
    assert outcome == {"id": outcome["id"]} | admitted.message_outcome()
    assert answer["entry"][1]["fullUrl"] == f"urn:uuid:{outcome['id']}"
    assert len({answer["id"], header["id"], outcome["id"]}) == 3


def test_a_message_whose_header_has_no_id_is_answered_with_the_outcome_as_focus() -> None:
    bundle = json.loads((PUBLIC / "fhir-json" / "message-request-link.json").read_text())
    del bundle["entry"][0]["resource"]["id"]
    verdict = assess(
        json.dumps(bundle).encode(), "application/json", None, "gp-Y01234", message=True
    )
    assert isinstance(verdict, Admitted)

    answer = response_message(verdict, ENDPOINT, NOW)

    Bundle.model_validate(answer)
    header = answer["entry"][0]["resource"]
    assert "response" not in header
    assert header["focus"] == [{"reference": answer["entry"][1]["fullUrl"]}]


def test_a_response_message_reads_back_from_fhir_xml() -> None:
    answer = response_message(
        processed(PUBLIC / "fhir-json" / "message-request-link.json", "application/json"),
        ENDPOINT,
        NOW,
    )
    data, media = render(answer, "xml")
    assert media == "application/fhir+xml"
    back = Bundle.model_validate_xml(data).model_dump(mode="json")
    assert back == Bundle.model_validate(answer).model_dump(mode="json")
