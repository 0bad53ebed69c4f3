"""The gateway's published descriptions: its OpenAPI 3 document and its FHIR CapabilityStatement.

Both are plain data built here, served as is, and the OpenAPI document is also committed at
connectors/gateway/openapi.json (regenerate with `python -m connectors.gateway.app --openapi`).
"""

from __future__ import annotations

from typing import Any

from connectors.gateway.rules import BUNDLE_KINDS
from schemas.fhir import PARTNER_RESOURCE_TYPES

API_VERSION = "1.0.0"
CAPABILITY_DATE = "2026-11-26"  # when the capability last changed; bump with it
OPENAPI_PATH = "connectors/gateway/openapi.json"

_FHIR_JSON = "application/fhir+json"
_BODY_TYPES = ("application/fhir+json", "application/json", "application/fhir+xml")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _outcome(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {_FHIR_JSON: {"schema": _ref("OperationOutcome")}},
    }
    if headers:
        answer["headers"] = headers
    return answer


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
    return {
        "202": {
            "description": "every envelope acknowledged by Kafka (acks=all); a retry with the same Idempotency-Key, or content equal to the latest version this gateway published of each resource, replays this answer and publishes nothing new (earlier content sent again is a change, and is published)",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` when this answer is a replay of an earlier one",
                    "schema": {"type": "string"},
                }
            },
            "content": {"application/json": {"schema": _ref("Accepted")}},
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
        "404": _outcome("a resource type the gateway does not take; kept on the dead-letter topic"),
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
        "503": _outcome(
            "Kafka did not acknowledge in time; nothing is reported accepted; retry after Retry-After seconds",
            retry_after,
        ),
    }


def _post(summary: str, description: str, schema: str, bundle: bool) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "security": [{"partnerBasic": []}],
        "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": {
            "required": True,
            "content": {media: {"schema": _ref(schema)} for media in _BODY_TYPES},
        },
        "responses": _post_responses(bundle),
    }
    return operation


def _capability_get(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [],
        "responses": {
            "200": {
                "description": "the FHIR CapabilityStatement",
                "content": {_FHIR_JSON: {"schema": _ref("Resource")}},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 description of the gateway, exactly as served at /openapi.json."""
    # Imported here: the upload module builds on the app, which imports this module.
    from connectors.gateway.upload import openapi_operation

    types = list(PARTNER_RESOURCE_TYPES)
    single = _post(
        "Publish one FHIR resource",
        "The body's resourceType must match the path. It is validated (FHIR R4 and the hub's rules), "
        "wrapped in an envelope as the signed-in partner, and answered 202 only after Kafka has "
        "acknowledged it.",
        "Resource",
        bundle=False,
    )
    single["parameters"] = [
        {
            "name": "resourceType",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "enum": types},
        },
        *single["parameters"],
    ]
    bundle = _post(
        "Publish a FHIR Bundle",
        f"A Bundle of type {', '.join(BUNDLE_KINDS)}; a message Bundle starts with its MessageHeader. "
        "All or nothing: if any entry is invalid the answer is 422 listing every problem and nothing "
        "from the Bundle is published, so the partner's system retries the whole request.",
        "Bundle",
        bundle=True,
    )
    message = _post(
        "Process a FHIR message (the $process-message operation)",
        "A message Bundle (first entry a MessageHeader, whose focus names entries of the Bundle), "
        "validated and published as POST /fhir does, answered 200 with an OperationOutcome: an "
        "information issue with the event ids, and a warning per entry passed by. X-Request-Id and "
        "X-Correlation-Id are echoed; the correlation id, when given, is the envelopes' correlation "
        "instead of the MessageHeader id.",
        "Bundle",
        bundle=True,
    )
    message["parameters"] += [
        {"$ref": "#/components/parameters/RequestId"},
        {"$ref": "#/components/parameters/CorrelationId"},
    ]
    accepted = message["responses"].pop("202")
    message["responses"] = {
        "200": {
            "description": "every envelope acknowledged by Kafka (acks=all); replayed as for POST /fhir",
            "headers": accepted["headers"],
            "content": {_FHIR_JSON: {"schema": _ref("OperationOutcome")}},
        },
        **message["responses"],
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "concord HTTP ingest gateway",
            "version": API_VERSION,
            "description": "Partners publish FHIR R4 appointments, referrals, tasks, patients and consents "
            "to the concord hub. Sign in with HTTP Basic (partner id and secret). Every error is a FHIR "
            "OperationOutcome. See connectors/gateway/README.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8080", "description": "local default"}],
        "paths": {
            "/fhir/{resourceType}": {"post": single},
            "/fhir": {"post": bundle},
            "/fhir/$process-message": {"post": message},
            "/upload/csv": {"post": openapi_operation()},
            "/metadata": {"get": _capability_get("The FHIR CapabilityStatement")},
            "/fhir/metadata": {
                "get": _capability_get("The FHIR CapabilityStatement at the FHIR base")
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "the OpenAPI 3 document",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "partnerBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user: the partner id (e.g. gp-Y01234); password: the partner's secret",
                }
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "1–255 printable ASCII characters (a UUID is ideal). A retry with the same key and body gets the first answer again for 24 hours; the same key with a different body is refused (422).",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                },
                **{
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
                },
            },
            "schemas": {
                "Resource": {
                    "type": "object",
                    "required": ["resourceType"],
                    "properties": {"resourceType": {"type": "string"}},
                    "additionalProperties": True,
                    "description": "a FHIR R4 resource (JSON or XML)",
                },
                "Bundle": {
                    "type": "object",
                    "required": ["resourceType", "type", "entry"],
                    "properties": {
                        "resourceType": {"type": "string", "enum": ["Bundle"]},
                        "type": {"type": "string", "enum": list(BUNDLE_KINDS)},
                        "entry": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "properties": {
                                    "fullUrl": {"type": "string"},
                                    "resource": _ref("Resource"),
                                },
                            },
                        },
                    },
                    "additionalProperties": True,
                },
                "Accepted": {
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
                },
                "OperationOutcome": {
                    "type": "object",
                    "required": ["resourceType", "issue"],
                    "properties": {
                        "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
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
                            },
                        },
                    },
                },
            },
        },
    }


def capability_statement() -> dict[str, Any]:
    """A small FHIR R4 CapabilityStatement: create for each resource type, batch and transaction."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": CAPABILITY_DATE,
        "publisher": "concord",
        "kind": "instance",
        "software": {"name": "concord HTTP ingest gateway", "version": API_VERSION},
        "implementation": {"description": "concord hub: partner ingest"},
        "fhirVersion": "4.0.1",
        "format": ["json", "xml"],
        "rest": [
            {
                "mode": "server",
                "documentation": "POST one resource to /fhir/{resourceType}, or a message, batch, "
                "transaction or collection Bundle to /fhir. Answers are JSON. See /openapi.json.",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "Basic",
                                }
                            ]
                        }
                    ],
                    "description": "HTTP Basic: partner id and secret",
                },
                "resource": [
                    {"type": resource_type, "interaction": [{"code": "create"}]}
                    for resource_type in PARTNER_RESOURCE_TYPES
                ],
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
                "operation": [
                    {
                        "name": "process-message",
                        "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
                    }
                ],
            }
        ],
    }
