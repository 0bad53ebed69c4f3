"""What outbound delivery puts on the wire for FHIR partners: a FHIR message Bundle.

Pure functions of the envelope (as the codec decoded it), so every byte a partner receives is
decided here and unit-tested without a socket. Three shapes, by what the envelope carries:

- a referral delivered to its service (`ServiceRequest`): the NHS Booking and Referral
  Standard (BaRS) referral request — the BaRS event code, the ServiceRequest in focus, its
  contained resources (the person, the requester) as entries of their own, and a Task;
- a hub answer (`OperationOutcome`: a refusal, a data-quality flag): a FHIR response message;
- anything else (alerts' `DetectedIssue`, Task updates): a message whose focus is the resource.

HL7 v2 partners' messages and ACKs are `connectors.hl7v2.from_fhir` and `connectors.hl7v2.ack`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from schemas.envelope import Envelope
from schemas.vocabulary import (
    EVENT_TYPE_SYSTEM,
    FLAGGED_EVENT,
    HUB_ENDPOINT,
    PARTNER_SYSTEM,
    REFUSED_EVENT,
)
from services.domain.instants import fhir_instant

BUNDLE_NAMESPACE = uuid.UUID("0c6f3f7e-8a59-5d62-b1f4-5e0d3c2a9b71")
BARS_EVENT_SYSTEM = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
BARS_REASON_SYSTEM = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
BARS_REFERRAL_EVENT = "servicerequest-request"
REFERRAL_DELIVERED = "referral.request.delivered"
# OperationOutcome issue codes that say "try again later" (FHIR issue-type, under `transient`).
TRANSIENT_ISSUES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled"}
)

Json = dict[str, Any]


def message_bundle(envelope: Envelope, partner: str, endpoint: str) -> Json:
    """A FHIR R4 message Bundle carrying the envelope's resource to `partner`.

    Bundle.id is the envelope's event id: FHIR messaging receivers drop a Bundle whose id they
    have already processed, which makes a redelivery harmless. Every other id is derived from
    it, so the Bundle is the same bytes on every attempt.
    """
    resource = envelope.resource
    if envelope.event_type == REFERRAL_DELIVERED and resource["resourceType"] == "ServiceRequest":
        return _referral_bundle(envelope, partner, endpoint)
    header = _header(envelope, partner, endpoint, _concord_event(envelope))
    focus_url = _urn(envelope, "focus")
    header["focus"] = [{"reference": focus_url}]
    if resource["resourceType"] == "OperationOutcome":
        response = _response(envelope, focus_url)
        if response is not None:
            header["response"] = response
    return _bundle(envelope, [(_urn(envelope, "header"), header), (focus_url, resource)])


# --- the parts every message shares -------------------------------------------------------


def _urn(envelope: Envelope, name: str) -> str:
    """A urn:uuid fullUrl for one entry, derived from the event id and the entry's name."""
    return "urn:uuid:" + str(uuid.uuid5(BUNDLE_NAMESPACE, f"{envelope.event_id}\n{name}"))


def _concord_event(envelope: Envelope) -> Json:
    return {"system": EVENT_TYPE_SYSTEM, "code": envelope.event_type}


def _header(envelope: Envelope, partner: str, endpoint: str, event: Json) -> Json:
    return {
        "resourceType": "MessageHeader",
        "id": _urn(envelope, "header").removeprefix("urn:uuid:"),
        "eventCoding": event,
        "destination": [
            {
                "endpoint": endpoint,
                "receiver": {"identifier": {"system": PARTNER_SYSTEM, "value": partner}},
            }
        ],
        "sender": {"identifier": {"system": PARTNER_SYSTEM, "value": envelope.source}},
        "source": {"name": "concord", "endpoint": HUB_ENDPOINT},
    }


def _bundle(envelope: Envelope, entries: list[tuple[str, Json]]) -> Json:
    return {
        "resourceType": "Bundle",
        "id": str(envelope.event_id),
        "type": "message",
        "timestamp": fhir_instant(envelope.recorded_at),
        "entry": [{"fullUrl": url, "resource": resource} for url, resource in entries],
    }


# --- a referral, in the BaRS pattern ------------------------------------------------------


def _referral_bundle(envelope: Envelope, partner: str, endpoint: str) -> Json:
    """BaRS referral request: header (event `servicerequest-request`, reason `new`), the
    ServiceRequest in focus, its contained resources lifted to entries, and the referral's Task.

    The BaRS profiles (meta.profile, MessageHeader.definition) are not claimed: the hub sends
    only what the disclosure policy lets this recipient see, which is less than they require.
    """
    request = dict(envelope.resource)
    request_url = _urn(envelope, f"ServiceRequest/{request.get('id', '')}")
    request, lifted = lift_contained(
        request, request_url, lambda local: _urn(envelope, f"contained/{local}")
    )
    task_url = _urn(envelope, "Task")
    header = _header(
        envelope, partner, endpoint, {"system": BARS_EVENT_SYSTEM, "code": BARS_REFERRAL_EVENT}
    )
    header["reason"] = {"coding": [{"system": BARS_REASON_SYSTEM, "code": "new"}]}
    header["focus"] = [{"reference": request_url}]
    return _bundle(
        envelope,
        [
            (_urn(envelope, "header"), header),
            (request_url, request),
            *lifted,
            (task_url, referral_task(request, request_url, partner)),
        ],
    )


def referral_task(request: Mapping[str, Any], request_url: str, owner: str) -> Json:
    """The referral's workflow state as the receiving service takes it up: requested, owned by
    it. Its id is the one the hub gives the referral's Task (`referral-<ServiceRequest.id>`),
    so the service's Task updates name the same Task; every other element is the request's."""
    task: Json = {"resourceType": "Task"}
    if isinstance(request.get("id"), str):
        task["id"] = f"referral-{request['id']}"
    task |= {"status": "requested", "intent": "order", "focus": {"reference": request_url}}
    if "subject" in request:
        task["for"] = request["subject"]
    for element in ("authoredOn", "requester"):
        if element in request:
            task[element] = request[element]
    task["owner"] = {"identifier": {"system": PARTNER_SYSTEM, "value": owner}}
    return task


def lift_contained(
    resource: Mapping[str, Any], resource_url: str, url_of: Callable[[str], str]
) -> tuple[Json, list[tuple[str, Json]]]:
    """The resource without its contained resources, and those resources as (fullUrl, resource)
    entries; every local reference (`#patient`, and `#` for the container) in any of them is
    rewritten to the fullUrl it now has. `url_of(local_id)` gives a lifted resource's fullUrl.

    A lifted resource's id is its fullUrl's uuid, as in the BaRS examples; a resource with
    nothing contained comes back unchanged.
    """
    contained = [r for r in resource.get("contained") or () if isinstance(r, Mapping)]
    urls = {"#": resource_url}
    for item in contained:
        if isinstance(item.get("id"), str):
            urls["#" + item["id"]] = url_of(item["id"])
    outer = {name: value for name, value in resource.items() if name != "contained"}
    lifted = []
    for item in contained:
        if not isinstance(item.get("id"), str):
            continue  # nothing can refer to a contained resource without an id
        url = urls["#" + item["id"]]
        entry = {**_rewritten(item, urls), "id": url.removeprefix("urn:uuid:")}
        lifted.append((url, {"resourceType": entry.pop("resourceType"), **entry}))
    return _rewritten(outer, urls), lifted


def _rewritten(value: Any, urls: Mapping[str, str]) -> Any:
    """`value` with every `reference` found in `urls` replaced by its new fullUrl."""
    if isinstance(value, Mapping):
        return {
            name: urls.get(child, child)
            if name == "reference" and isinstance(child, str)
            else _rewritten(child, urls)
            for name, child in value.items()
        }
    if isinstance(value, list):
        return [_rewritten(child, urls) for child in value]
    return value


# --- a hub answer, as a FHIR response message ---------------------------------------------


def _response(envelope: Envelope, outcome_url: str) -> Json | None:
    """MessageHeader.response for an OperationOutcome answering a partner's message, when the
    hub knows that message's id; None when it does not (R4 requires the identifier)."""
    answered = answered_message_id(envelope)
    if answered is None:
        return None
    return {
        "identifier": answered,
        "code": response_code(envelope.resource),
        "details": {"reference": outcome_url},
    }


def answered_message_id(envelope: Envelope) -> str | None:
    """The partner's own id of the message the outcome answers, where the hub knows it.

    The outcome names the answered event by the hub's event id; the envelope's correlation id
    is the partner's message id (its MessageHeader.id, or its X-Correlation-Id) when the
    partner gave one, and that same event id when it did not.
    """
    event = None
    for extension in envelope.resource.get("extension") or ():
        if isinstance(extension, Mapping) and extension.get("url") in {
            REFUSED_EVENT,
            FLAGGED_EVENT,
        }:
            value = extension.get("valueIdentifier")
            event = value.get("value") if isinstance(value, Mapping) else None
    correlation = str(envelope.correlation_id)
    return correlation if isinstance(event, str) and event != correlation else None


def response_code(outcome: Mapping[str, Any]) -> str:
    """`ok` when nothing went wrong (warnings and information only, e.g. a data-quality flag
    on a change the hub applied); `transient-error` when every error says try again later;
    else `fatal-error`: resending the same message will not help."""
    errors = [
        issue
        for issue in outcome.get("issue") or ()
        if isinstance(issue, Mapping) and issue.get("severity") in {"error", "fatal"}
    ]
    if not errors:
        return "ok"
    if all(issue.get("code") in TRANSIENT_ISSUES for issue in errors):
        return "transient-error"
    return "fatal-error"
