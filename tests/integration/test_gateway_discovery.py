"""The gateway over HTTP against the real broker: FHIR messaging ($process-message), the
documents that describe it, the answer's format (`_format`, `Accept`) and `Prefer`."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from connectors.gateway.app import GatewayConfig, build_app
from schemas.fhir import PARTNER_RESOURCE_TYPES
from tests.integration.test_gateway import (
    APPOINTMENT,
    FIXTURES,
    GP,
    ROOT,
    SECRETS,
    Served,
    basic,
    dead_letters,
    inbound,
)

LINK_MESSAGE = (FIXTURES / "public" / "fhir-json" / "message-request-link.json").read_bytes()
LINK_MESSAGE_XML = (FIXTURES / "public" / "fhir-xml" / "message-request-link.xml").read_bytes()
BOGUS_STATUS = json.dumps(json.loads(APPOINTMENT) | {"status": "bogus"}).encode()


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    data: bytes

    def json(self) -> Any:
        return json.loads(self.data)


class Gateway:
    """Requests to a served gateway, the body kept as bytes (answers may be XML)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Raw:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Raw(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def post(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/fhir+json",
        headers: dict[str, str] | None = None,
    ) -> Raw:
        sent = {
            "Content-Type": content_type,
            "Authorization": basic(GP, SECRETS[GP]),
            **(headers or {}),
        }
        return self.request("POST", path, body, sent)


@pytest.fixture
def gateway(topics: str) -> Iterator[Gateway]:
    """A gateway publishing to this test's fresh topics."""
    with Served(build_app(GatewayConfig())) as served:
        yield Gateway(served.port)


# --- $process-message ---------------------------------------------------------------------------


def test_process_message_publishes_a_public_message_and_answers_with_a_response_message(
    gateway: Gateway,
) -> None:
    """The FHIR example message-request-link (two Patients) through FHIR messaging: 200 with a
    response message, the caller's ids echoed, each Patient on the inbound topic with the
    caller's correlation id."""
    correlation = str(uuid.uuid4())
    reply = gateway.post(
        "/fhir/$process-message",
        LINK_MESSAGE,
        headers={"X-Request-Id": "req-77", "X-Correlation-Id": correlation},
    )

    assert reply.status == 200, reply.data
    assert reply.headers["Content-Type"].startswith("application/fhir+json")
    assert reply.headers["X-Request-Id"] == "req-77"
    assert reply.headers["X-Correlation-Id"] == correlation
    answer = reply.json()
    Bundle.model_validate(answer)
    header, outcome = (entry["resource"] for entry in answer["entry"])
    assert header["response"] == {
        "identifier": "267b18ce-3d37-4581-9baa-6fada338038b",  # the example's MessageHeader
        "code": "ok",
        "details": {"reference": answer["entry"][1]["fullUrl"]},
    }
    assert header["eventCoding"]["code"] == "patient-link"
    assert header["source"]["endpoint"] == f"http://127.0.0.1:{gateway.port}/fhir/$process-message"
    taken = outcome["issue"][0]
    assert (taken["severity"], taken["code"]) == ("information", "informational")
    assert taken["diagnostics"].startswith("Bundle: accepted 2, ignored 0; event ids: ")

    envelopes = inbound(expected=2)
    assert [e.resource_type for e in envelopes] == ["Patient", "Patient"]
    assert {e.event_type for e in envelopes} == {"identity.patient.updated"}
    assert {e.source for e in envelopes} == {GP}
    assert {str(e.correlation_id) for e in envelopes} == {correlation}
    # Each Patient is keyed by its own identifier, so the two may come back in either order.
    event_ids = taken["diagnostics"].split("event ids: ")[1].split(", ")
    assert sorted(str(e.event_id) for e in envelopes) == sorted(event_ids)


def test_process_message_in_xml_is_answered_in_xml_when_asked(gateway: Gateway) -> None:
    reply = gateway.post(
        "/fhir/$process-message?_format=xml",
        LINK_MESSAGE_XML,
        content_type="application/fhir+xml",
        headers={"X-Request-Id": "req-78"},
    )

    assert reply.status == 200, reply.data
    assert reply.headers["Content-Type"].startswith("application/fhir+xml")
    assert reply.headers["X-Request-Id"] == "req-78"
    answer = Bundle.model_validate_xml(reply.data)
    header, outcome = (entry.resource for entry in answer.entry)
    assert header.response.identifier == "267b18ce-3d37-4581-9baa-6fada338038b"
    assert outcome.issue[0].severity == "information"
    assert len(inbound(expected=2)) == 2


def test_process_message_refusal_echoes_the_ids_and_keeps_the_message(gateway: Gateway) -> None:
    bundle = json.loads(LINK_MESSAGE) | {"type": "collection"}
    reply = gateway.post(
        "/fhir/$process-message",
        json.dumps(bundle).encode(),
        headers={"X-Request-Id": "req-79"},
    )

    assert reply.status == 422
    assert reply.headers["X-Request-Id"] == "req-79"
    assert "$process-message takes a message Bundle" in reply.json()["issue"][0]["diagnostics"]
    (letter,) = dead_letters(expected=1)
    assert letter.origin == "POST /fhir/$process-message"


# --- the documents ------------------------------------------------------------------------------


def test_metadata_names_the_address_it_was_reached_at(gateway: Gateway) -> None:
    direct = gateway.request("GET", "/metadata").json()
    proxied = gateway.request(
        "GET",
        "/fhir/metadata",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hub.example.org"},
    ).json()

    CapabilityStatement.model_validate(direct)
    assert direct["implementation"]["url"] == f"http://127.0.0.1:{gateway.port}/fhir"
    assert proxied["implementation"]["url"] == "https://hub.example.org/fhir"
    assert (
        proxied["messaging"][0]["endpoint"][0]["address"]
        == "https://hub.example.org/fhir/$process-message"
    )


def test_metadata_in_fhir_xml(gateway: Gateway) -> None:
    for headers, path in (
        ({"Accept": "application/fhir+xml"}, "/metadata"),
        ({}, "/metadata?_format=application/fhir%2Bxml"),
        ({}, "/metadata?_format=xml"),
    ):
        reply = gateway.request("GET", path, headers=headers)
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("application/fhir+xml")
        statement = CapabilityStatement.model_validate_xml(reply.data)
        assert statement.kind == "instance"
        assert [r.type for r in statement.rest[0].resource] == list(PARTNER_RESOURCE_TYPES)


def test_served_openapi_names_the_address_and_is_otherwise_the_committed_one(
    gateway: Gateway,
) -> None:
    # Not a FHIR answer: JSON whatever the caller accepts.
    served = gateway.request("GET", "/openapi.json", headers={"Accept": "text/html"}).json()
    configured = build_app(GatewayConfig(public_url="https://hub.example.org"))
    committed = json.loads((ROOT / "connectors" / "gateway" / "openapi.json").read_text())

    assert served["servers"] == [{"url": f"http://127.0.0.1:{gateway.port}"}]
    assert served | {"servers": committed["servers"]} == committed
    with Served(configured) as other:
        named = Gateway(other.port).request("GET", "/openapi.json").json()
    assert named["servers"] == [{"url": "https://hub.example.org"}]


# --- format and Prefer on a create --------------------------------------------------------------


def test_a_format_the_gateway_cannot_write_is_406_and_nothing_is_published(
    gateway: Gateway,
) -> None:
    reply = gateway.post("/fhir/Appointment", APPOINTMENT, headers={"Accept": "text/turtle"})

    assert reply.status == 406
    assert reply.headers["Content-Type"].startswith("application/fhir+json")
    assert "(Accept)" in reply.json()["issue"][0]["diagnostics"]
    assert inbound() == []
    assert dead_letters() == []


def test_prefer_representation_answers_the_resource_as_published(gateway: Gateway) -> None:
    reply = gateway.post(
        "/fhir/Appointment", APPOINTMENT, headers={"Prefer": "return=representation"}
    )

    assert reply.status == 202, reply.data
    assert reply.headers["Preference-Applied"] == "return=representation"
    (envelope,) = inbound(expected=1)
    assert reply.json() == envelope.resource == json.loads(APPOINTMENT)


def test_prefer_minimal_answers_no_body(gateway: Gateway) -> None:
    reply = gateway.post("/fhir/Appointment", APPOINTMENT, headers={"Prefer": "return=minimal"})

    assert (reply.status, reply.data) == (202, b"")
    assert reply.headers["Preference-Applied"] == "return=minimal"
    assert len(inbound(expected=1)) == 1


def test_prefer_outcome_and_xml_answer_an_outcome_with_the_event_id(gateway: Gateway) -> None:
    as_outcome = gateway.post(
        "/fhir/Appointment", APPOINTMENT, headers={"Prefer": "return=OperationOutcome"}
    )
    in_xml = gateway.post(
        "/fhir/Appointment", APPOINTMENT, headers={"Accept": "application/fhir+xml"}
    )

    (envelope,) = inbound(expected=1)  # the second is a resend of the same content
    assert as_outcome.status == in_xml.status == 202
    diagnostics = as_outcome.json()["issue"][0]["diagnostics"]
    assert str(envelope.event_id) in diagnostics
    outcome = OperationOutcome.model_validate_xml(in_xml.data)
    assert outcome.issue[0].diagnostics == diagnostics


def test_a_refusal_is_an_outcome_in_the_format_asked_for(gateway: Gateway) -> None:
    reply = gateway.post("/fhir/Appointment?_format=xml", BOGUS_STATUS)

    assert reply.status == 422
    assert reply.headers["Content-Type"].startswith("application/fhir+xml")
    outcome = OperationOutcome.model_validate_xml(reply.data)
    [issue] = outcome.issue
    assert issue.expression == ["Appointment.status"]
    assert issue.diagnostics.startswith("Appointment.status: 'bogus'")
    assert len(dead_letters(expected=1)) == 1
