"""The gateway's published descriptions: its OpenAPI 3 document and its FHIR CapabilityStatement,
both derived from the gateway's own table of what it takes (`schemas.fhir.PARTNER_RESOURCE_TYPES`)
and served with the address the caller reached it at.

The OpenAPI document is also committed at connectors/gateway/openapi.json with a relative server
(`/`): regenerate it with `python -m connectors.gateway.app --openapi`.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.capabilitystatement import (
    CapabilityStatement,
    CapabilityStatementImplementation,
    CapabilityStatementMessaging,
    CapabilityStatementMessagingEndpoint,
    CapabilityStatementMessagingSupportedMessage,
    CapabilityStatementRest,
    CapabilityStatementRestInteraction,
    CapabilityStatementRestResource,
    CapabilityStatementRestResourceInteraction,
    CapabilityStatementRestResourceOperation,
    CapabilityStatementRestSecurity,
    CapabilityStatementSoftware,
)
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding

from connectors.gateway.negotiation import FHIR_JSON, FHIR_XML, PREFER_RETURNS
from connectors.gateway.rules import BUNDLE_KINDS
from schemas.fhir import PARTNER_RESOURCE_TYPES, event_type_for
from schemas.vocabulary import EVENT_TYPE_SYSTEM

API_VERSION = "1.1.0"
CAPABILITY_DATE = "2026-11-30"  # when the capability last changed; bump with it
OPENAPI_PATH = "connectors/gateway/openapi.json"
RELATIVE_SERVER = "/"  # the committed document's server: wherever it is served from

# The published FHIR R4 JSON Schema: request bodies refer to its definition of each resource.
FHIR_R4_SCHEMA = "https://hl7.org/fhir/R4/fhir.schema.json"
# UK Core (R4) profiles of the resources the gateway takes; a resource type without one is
# taken as base FHIR R4. The gateway validates R4 and the hub's rules, not the profiles.
UK_CORE_PROFILES = {
    resource_type: f"https://fhir.hl7.org.uk/StructureDefinition/UKCore-{resource_type}"
    for resource_type in (
        "Appointment",
        "Encounter",
        "ServiceRequest",
        "Task",
        "Patient",
        "Consent",
    )
}
PROCESS_MESSAGE = "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message"

_BODY_TYPES = ("application/fhir+json", "application/json", "application/fhir+xml")
_XML_TEXT = {
    "type": "string",
    "description": "the same resource as FHIR XML (namespace http://hl7.org/fhir)",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _fhir(schema: str) -> dict[str, Any]:
    """A FHIR answer's content: JSON by the schema, or XML (`_format=xml` or `Accept`)."""
    return {FHIR_JSON: {"schema": _ref(schema)}, FHIR_XML: {"schema": _XML_TEXT}}


def _outcome(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": _fhir("OperationOutcome")}
    if headers:
        answer["headers"] = headers
    return answer


_NOT_ACCEPTABLE = _outcome(
    "`_format` or `Accept` names only formats the gateway cannot write (it writes FHIR JSON and "
    "FHIR XML); nothing was read or published"
)


def _post_responses(bundle: bool) -> dict[str, Any]:
    retry_after = {
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "schema": {"type": "integer"},
        }
    }
    www_authenticate = {
        "WWW-Authenticate": {
            "description": 'always `Basic realm="concord"`',
            "schema": {"type": "string"},
        }
    }
    mismatch = (
        "the body's resourceType is not the path's" if not bundle else "the body is not a Bundle"
    )
    responses = {
        "202": {
            "description": "every envelope acknowledged by Kafka (acks=all); a retry with the same Idempotency-Key, or content equal to the latest version this gateway published of each resource, replays this answer and publishes nothing new (earlier content sent again is a change, and is published). JSON: the summary; asked for XML (or `Prefer: return=OperationOutcome` on a create): an OperationOutcome with the event ids",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this answer is a replay of an earlier one",
                    "schema": {"type": "string"},
                }
            },
            "content": {
                "application/json": {"schema": _ref("Accepted")},
                **_fhir("OperationOutcome"),
            },
        },
        "400": _outcome(
            f"malformed JSON or XML, nesting deeper than 32 levels, not UTF-8, or {mismatch}; kept on the dead-letter topic"
        ),
        "401": _outcome(
            "no credential, or a wrong one (not dead-lettered: the sender is unknown)",
            www_authenticate,
        ),
        "403": _outcome(
            "a message Bundle's MessageHeader.sender names another partner (not dead-lettered)"
        ),
        "406": _NOT_ACCEPTABLE,
        "409": _outcome(
            "the Idempotency-Key's first request is still being answered (retry after Retry-After seconds); or a resource is an older version (meta.versionId, then meta.lastUpdated) than the latest this gateway published of it: nothing is published, kept on the dead-letter topic, do not retry",
            retry_after,
        ),
        "413": _outcome(
            "the body is over the size limit (default 1 MiB), or one resource would be an event over the broker's 1 MiB message limit; do not retry; kept on the dead-letter topic"
        ),
        "415": _outcome(
            "a Content-Type other than application/fhir+json, application/json or application/fhir+xml (UTF-8); kept on the dead-letter topic"
        ),
        "422": _outcome(
            "FHIR validation failed, or a resource is one the hub could not act on (an Appointment or Task without an id, a Task whose focus is not ServiceRequest/<id>, a Consent the hub cannot read, a referral from a partner that is not probation): every problem listed, nothing from the request is published; or the Idempotency-Key was used for a different request; kept on the dead-letter topic"
        ),
        "408": _outcome(
            "the body did not all arrive within the read timeout (default 30 s); nothing was read or published; the connection is closed"
        ),
        "429": _outcome(
            "too many requests from this source address or partner, or too many refused sign-ins from this address (then the secret is not checked); nothing was read; retry after Retry-After seconds",
            retry_after,
        ),
        "503": _outcome(
            "Kafka did not acknowledge in time, or too many sign-ins wait to be checked; nothing is reported accepted; retry after Retry-After seconds",
            retry_after,
        ),
    }
    if not bundle:  # only a message names its sender
        del responses["403"]
    return responses


def _post(
    operation_id: str, summary: str, description: str, schema: str, bundle: bool
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "security": [{"partnerBasic": []}],
        "parameters": [
            {"$ref": "#/components/parameters/IdempotencyKey"},
            {"$ref": "#/components/parameters/Format"},
        ],
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": _XML_TEXT if media == FHIR_XML else _ref(schema)}
                for media in _BODY_TYPES
            },
        },
        "responses": _post_responses(bundle),
    }


def _create(resource_type: str) -> dict[str, Any]:
    """POST /fhir/{resourceType} for one type the gateway takes."""
    operation = _post(
        f"create{resource_type}",
        f"Publish one {resource_type}",
        f"The body is a FHIR R4 {resource_type}. It is validated (FHIR R4 and the hub's rules), "
        "wrapped in an envelope as the signed-in partner, and answered 202 only after Kafka has "
        "acknowledged it. `Prefer: return=minimal | representation | OperationOutcome` chooses "
        "the answer's body: none, the resource as published, or an OperationOutcome.",
        resource_type,
        bundle=False,
    )
    operation["parameters"].append({"$ref": "#/components/parameters/Prefer"})
    accepted = operation["responses"]["202"]
    accepted["headers"]["Preference-Applied"] = {
        "description": "the `return` preference honoured, when one was asked for",
        "schema": {"type": "string"},
    }
    accepted["content"][FHIR_JSON] = {
        "schema": {"oneOf": [_ref(resource_type), _ref("OperationOutcome")]}
    }
    return operation


def _get(
    operation_id: str, summary: str, description: str, content: dict[str, Any]
) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": [],
        "responses": {"200": {"description": description, "content": content}},
    }


def _capability_get(operation_id: str, summary: str) -> dict[str, Any]:
    operation = _get(
        operation_id, summary, "the FHIR CapabilityStatement", _fhir("CapabilityStatement")
    )
    operation["parameters"] = [{"$ref": "#/components/parameters/Format"}]
    operation["responses"]["406"] = _NOT_ACCEPTABLE
    return operation


def _resource_schema(resource_type: str) -> dict[str, Any]:
    """A resource as FHIR R4 defines it (the published JSON Schema), its type pinned."""
    profile = UK_CORE_PROFILES.get(resource_type)
    taken = f"; UK Core profile {profile} is taken" if profile else ""
    return {
        "description": f"a FHIR R4 {resource_type}{taken}",
        "allOf": [
            {
                "type": "object",
                "required": ["resourceType"],
                "properties": {"resourceType": {"type": "string", "enum": [resource_type]}},
            },
            {"$ref": f"{FHIR_R4_SCHEMA}#/definitions/{resource_type}"},
        ],
        "externalDocs": {"url": f"https://hl7.org/fhir/R4/{resource_type.lower()}.html"},
    }


def openapi_document(server: str = RELATIVE_SERVER) -> dict[str, Any]:
    """The OpenAPI 3 description of the gateway; `server` is the address it is reached at
    (the committed document names the relative `/`)."""
    # Imported here: the upload module builds on the app, which imports this module.
    from connectors.gateway.upload import openapi_operation

    bundle = _post(
        "postBundle",
        "Publish a FHIR Bundle",
        f"A Bundle of type {', '.join(BUNDLE_KINDS)}; a message Bundle starts with its MessageHeader. "
        "All or nothing: if any entry is invalid the answer is 422 listing every problem and nothing "
        "from the Bundle is published, so the partner's system retries the whole request.",
        "Bundle",
        bundle=True,
    )
    message = _post(
        "processMessage",
        "Process a FHIR message (the $process-message operation)",
        "A message Bundle (first entry a MessageHeader, whose focus names entries of the Bundle), "
        "validated and published as POST /fhir does, answered 200 with a FHIR response message "
        "(synchronous messaging): a message Bundle whose MessageHeader repeats the request's event "
        "and answers its id (response.code ok), and whose response.details is an OperationOutcome: "
        "an information issue with the event ids, and a warning per entry passed by. X-Request-Id "
        "and X-Correlation-Id are echoed; the correlation id, when given, is the envelopes' "
        "correlation instead of the MessageHeader id. Refusals are OperationOutcomes, as for "
        "POST /fhir.",
        "Bundle",
        bundle=True,
    )
    message["parameters"] += [
        {"$ref": "#/components/parameters/RequestId"},
        {"$ref": "#/components/parameters/CorrelationId"},
    ]
    accepted = message["responses"].pop("202")
    echoed = {
        name: {"description": "as sent, when sent", "schema": {"type": "string"}}
        for name in ("X-Request-Id", "X-Correlation-Id")
    }
    message["responses"] = {
        "200": {
            "description": "every envelope acknowledged by Kafka (acks=all): the response message; replayed as for POST /fhir",
            "headers": {**accepted["headers"], **echoed},
            "content": _fhir("ResponseMessage"),
        },
        **message["responses"],
    }
    openapi = _get(
        "openapi",
        "This document",
        "the OpenAPI 3 document, its server the address this request reached",
        {"application/json": {"schema": {"type": "object"}}},
    )
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "concord HTTP ingest gateway",
            "version": API_VERSION,
            "description": "Partners publish FHIR R4 appointments, encounters, referrals, tasks, "
            "patients and consents to the concord hub. Sign in with HTTP Basic (partner id and "
            "secret). Every error is a FHIR OperationOutcome; answers are FHIR JSON, or FHIR XML "
            "when asked (`_format`, `Accept`). See connectors/gateway/README.md.",
        },
        "servers": [{"url": server}],
        "paths": {
            **{f"/fhir/{t}": {"post": _create(t)} for t in PARTNER_RESOURCE_TYPES},
            "/fhir": {"post": bundle},
            "/fhir/$process-message": {"post": message},
            "/upload/csv": {"post": openapi_operation()},
            "/metadata": {"get": _capability_get("capabilities", "The FHIR CapabilityStatement")},
            "/fhir/metadata": {
                "get": _capability_get(
                    "capabilitiesAtFhirBase", "The FHIR CapabilityStatement at the FHIR base"
                )
            },
            "/openapi.json": {"get": openapi},
        },
        "components": {
            "securitySchemes": {
                "partnerBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user: the partner id (e.g. gp-Y01234); password: the partner's secret",
                }
            },
            "parameters": _parameters(),
            "schemas": {
                **{t: _resource_schema(t) for t in PARTNER_RESOURCE_TYPES},
                "Bundle": _bundle_schema(),
                "CapabilityStatement": _resource_schema("CapabilityStatement"),
                "Accepted": _accepted_schema(),
                "ResponseMessage": _response_message_schema(),
                "OperationOutcome": _operation_outcome_schema(),
            },
        },
    }


def _parameters() -> dict[str, Any]:
    ids = {
        name.replace("-", "").removeprefix("X"): {
            "name": name,
            "in": "header",
            "required": False,
            "description": f"1–255 printable ASCII characters, echoed on the answer{also}",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }
        for name, also in (
            ("X-Request-Id", ""),
            ("X-Correlation-Id", "; the envelopes' correlation"),
        )
    }
    return {
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "1–255 printable ASCII characters (a UUID is ideal). A retry with the same key and body gets the first answer again for 24 hours; the same key with a different body is refused (422).",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        },
        "Format": {
            "name": "_format",
            "in": "query",
            "required": False,
            "description": "the answer's format, over `Accept`: json or xml (or their media types); any other is 406",
            "schema": {
                "type": "string",
                "enum": ["json", "xml", FHIR_JSON, FHIR_XML, "application/json", "application/xml"],
            },
        },
        "Prefer": {
            "name": "Prefer",
            "in": "header",
            "required": False,
            "description": "`return=minimal` (no body), `return=representation` (the resource as published) or `return=OperationOutcome`; without it, the JSON summary",
            "schema": {"type": "string", "enum": [f"return={r}" for r in PREFER_RETURNS]},
        },
        **ids,
    }


def _bundle_schema() -> dict[str, Any]:
    return {
        "description": "a FHIR R4 Bundle",
        "allOf": [
            {
                "type": "object",
                "required": ["resourceType", "type", "entry"],
                "properties": {
                    "resourceType": {"type": "string", "enum": ["Bundle"]},
                    "type": {"type": "string", "enum": list(BUNDLE_KINDS)},
                    "entry": {"type": "array", "minItems": 1},
                },
            },
            {"$ref": f"{FHIR_R4_SCHEMA}#/definitions/Bundle"},
        ],
        "externalDocs": {"url": "https://hl7.org/fhir/R4/bundle.html"},
    }


def _response_message_schema() -> dict[str, Any]:
    """Exactly the response message $process-message writes (rules.response_message)."""
    header = {
        "type": "object",
        "required": ["resourceType", "id", "source"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["MessageHeader"]},
            "id": {"type": "string"},
            "eventCoding": {"type": "object", "description": "the request's, repeated"},
            "eventUri": {"type": "string", "description": "the request's, repeated"},
            "source": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": ["concord"]},
                    "endpoint": {"type": "string", "description": "the gateway's $process-message"},
                },
            },
            "response": {
                "type": "object",
                "required": ["identifier", "code", "details"],
                "properties": {
                    "identifier": {
                        "type": "string",
                        "description": "the request's MessageHeader.id",
                    },
                    "code": {"type": "string", "enum": ["ok"]},
                    "details": {
                        "type": "object",
                        "properties": {"reference": {"type": "string"}},
                        "description": "urn:uuid of the OperationOutcome entry",
                    },
                },
                "description": "when the request's MessageHeader has an id (else focus names the OperationOutcome)",
            },
        },
    }
    return {
        "type": "object",
        "required": ["resourceType", "id", "type", "timestamp", "entry"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]},
            "id": {"type": "string"},
            "type": {"type": "string", "enum": ["message"]},
            "timestamp": {"type": "string", "format": "date-time"},
            "entry": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "items": {
                    "type": "object",
                    "required": ["fullUrl", "resource"],
                    "properties": {
                        "fullUrl": {"type": "string"},
                        "resource": {"oneOf": [header, _ref("OperationOutcome")]},
                    },
                },
                "description": "the MessageHeader, then the OperationOutcome",
            },
        },
    }


def _accepted_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["event_ids", "accepted", "ignored"],
        "properties": {
            "event_ids": {
                "type": "array",
                "items": {"type": "string", "format": "uuid"},
                "description": "content-derived: the same resource from the same partner always has the same event id",
            },
            "accepted": {"type": "integer", "description": "envelopes published"},
            "ignored": {
                "type": "integer",
                "description": "Bundle entries passed by: resources the hub does not route (Slot, Practitioner, Observation, …) and requests it does not take (GET, DELETE)",
            },
            "outcome": _ref("OperationOutcome"),  # when entries were passed by
        },
        "additionalProperties": False,
    }


def _operation_outcome_schema() -> dict[str, Any]:
    """Exactly the OperationOutcomes the gateway writes (rules.operation_outcome)."""
    return {
        "type": "object",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "id": {"type": "string", "description": "inside a response message"},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code", "diagnostics"],
                    "properties": {
                        "severity": {
                            "type": "string",
                            "enum": ["error", "warning", "information"],
                        },
                        "code": {
                            "type": "string",
                            "description": "FHIR issue type: structure, invalid, security, too-long, not-supported, processing, conflict, transient, exception or informational",
                        },
                        "diagnostics": {
                            "type": "string",
                            "example": "Appointment.participant[0].actor: field required",
                        },
                        "expression": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "FHIRPath of the element at fault, when there is one",
                        },
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    }


# --- the CapabilityStatement --------------------------------------------------------------------


def _coding(system: str, code: str) -> Coding:
    return Coding(system=system, code=code)


def capability_statement(base: str, reliable_cache_min: int) -> dict[str, Any]:
    """The gateway's FHIR R4 CapabilityStatement, built and validated by the R4B model: create
    for each resource type it takes (with its UK Core profile), batch and transaction, and FHIR
    messaging at `base`/fhir/$process-message. `base` is the address the gateway is reached at;
    `reliable_cache_min` how long a retry is recognised (the Idempotency-Key memory)."""
    fhir_base = f"{base}/fhir"
    resources = [
        CapabilityStatementRestResource(
            type=resource_type,
            profile=f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
            supportedProfile=[UK_CORE_PROFILES[resource_type]]
            if resource_type in UK_CORE_PROFILES
            else None,
            interaction=[CapabilityStatementRestResourceInteraction(code="create")],
            documentation=f"POST {fhir_base}/{resource_type}, or an entry of a Bundle; published as "
            f"{event_type_for(resource_type)}",
        )
        for resource_type in PARTNER_RESOURCE_TYPES
    ]
    rest = CapabilityStatementRest(
        mode="server",
        documentation="POST one resource to /fhir/{resourceType}, a message, batch, transaction or "
        "collection Bundle to /fhir, a message Bundle to /fhir/$process-message. Answers are FHIR "
        "JSON, or FHIR XML when asked (_format, Accept). A batch or transaction is answered as "
        "any Bundle (202 with the event ids), not with a response Bundle. See /openapi.json.",
        security=CapabilityStatementRestSecurity(
            service=[
                CodeableConcept(
                    coding=[
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "Basic",
                        )
                    ]
                )
            ],
            description="HTTP Basic: partner id and secret",
        ),
        resource=resources,
        interaction=[
            CapabilityStatementRestInteraction(code="batch"),
            CapabilityStatementRestInteraction(code="transaction"),
        ],
        operation=[
            CapabilityStatementRestResourceOperation(
                name="process-message", definition=PROCESS_MESSAGE
            )
        ],
    )
    messaging = CapabilityStatementMessaging(
        endpoint=[
            CapabilityStatementMessagingEndpoint(
                protocol=_coding("http://terminology.hl7.org/CodeSystem/message-transport", "http"),
                address=f"{fhir_base}/$process-message",
            )
        ],
        reliableCache=reliable_cache_min,
        documentation="Any MessageHeader.event is taken: the hub routes a message by its entries. "
        f"Each supported message is named {EVENT_TYPE_SYSTEM}:<event type>, the hub event an "
        "entry of that resource type is published as; other entries are passed by with a warning.",
        supportedMessage=[
            CapabilityStatementMessagingSupportedMessage(
                mode="receiver",
                definition=f"{EVENT_TYPE_SYSTEM}:{event_type_for(resource_type)}",
            )
            for resource_type in PARTNER_RESOURCE_TYPES
        ],
    )
    statement = CapabilityStatement(
        status="active",
        date=CAPABILITY_DATE,  # type: ignore[arg-type]  # a FHIR dateTime may be a date alone
        publisher="concord",
        kind="instance",
        software=CapabilityStatementSoftware(
            name="concord HTTP ingest gateway", version=API_VERSION
        ),
        implementation=CapabilityStatementImplementation(
            description="concord hub: partner ingest", url=fhir_base
        ),
        fhirVersion="4.0.1",
        format=["json", "xml"],
        rest=[rest],
        messaging=[messaging],
    )
    return dict(statement.model_dump(mode="json"))
