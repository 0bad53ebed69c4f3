"""The hub's outbound messages as HL7 v2: an ORU^R01 per envelope, for partners that speak HL7 v2.

Pure functions of the envelope (as the codec decoded it), so every byte a partner receives is
decided here and unit-tested without a socket.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from connectors.hl7v2.message import escape, hl7_timestamp
from schemas.envelope import Envelope
from schemas.identifiers import HUB_PERSON
from schemas.vocabulary import (
    EVENT_TYPE_SYSTEM,
    FHIR_PATH_SYSTEM,
    FLAGGED_RESOURCE,
    REFUSED_RESOURCE,
)

ISSUE_TYPE_SYSTEM = "http://hl7.org/fhir/issue-type"
HL7_VERSION = "2.5.1"
SENDING_APPLICATION = "CONCORD"
SENDING_FACILITY = "CONCORD-HUB"
SEGMENT_END = "\r"
# The resource's elements that name the person, in the order they are looked for.
_PERSON_ELEMENTS = ("patient", "subject", "for")


def _escape(value: str) -> str:
    # Default separators |^~\&; the text may run to several lines.
    return escape(value, keep_lines=True)


def control_id(event_id: str, sequence: int) -> str:
    """MSH-10 for one attempt: the event id (the idempotency key) and a per-attempt number.

    The number makes every attempt's control id new, so an ACK that arrives late for an
    earlier attempt can never be taken for the ACK of the current one.
    """
    return f"{event_id}.{sequence}"


def leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(FHIRPath-like path, text) of every primitive element under `value`, in document order."""
    if isinstance(value, Mapping):
        for name, child in value.items():
            yield from leaves(child, f"{path}.{name}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaves(child, f"{path}[{index}]")
    elif isinstance(value, bool):
        yield path, "true" if value else "false"
    elif value is not None:
        yield path, str(value)


def person_identifier(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    """(system, value) of the identifier the resource names its person by, if any."""
    for element in _PERSON_ELEMENTS:
        reference = resource.get(element)
        identifier = reference.get("identifier") if isinstance(reference, Mapping) else None
        if isinstance(identifier, Mapping):
            system, value = identifier.get("system"), identifier.get("value")
            if isinstance(system, str) and isinstance(value, str):
                return system, value
    return None


def _person_of(envelope: Envelope) -> tuple[str, str] | None:
    found = person_identifier(envelope.resource)
    if found is not None:
        return found
    subject = envelope.subject
    if subject is not None and subject.person_id is not None:
        return HUB_PERSON, subject.person_id
    return None


def _coding(concept: Any) -> tuple[str, str] | None:
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    if isinstance(codings, list) and codings and isinstance(codings[0], Mapping):
        code, system = codings[0].get("code"), codings[0].get("system")
        if isinstance(code, str):
            return code, system if isinstance(system, str) else ""
    return None


def _first_issue(resource: Mapping[str, Any]) -> Mapping[str, Any] | None:
    issues = resource.get("issue")
    if isinstance(issues, list) and issues and isinstance(issues[0], Mapping):
        return issues[0]
    return None


def refused_resource(resource: Mapping[str, Any]) -> str | None:
    """The partner's own resource a refusal or a data-quality flag names (`Task/mht-task-1`),
    if it is one."""
    for extension in resource.get("extension") or ():
        if isinstance(extension, Mapping) and extension.get("url") in {
            REFUSED_RESOURCE,
            FLAGGED_RESOURCE,
        }:
            value = extension.get("valueReference")
            reference = value.get("reference") if isinstance(value, Mapping) else None
            return reference if isinstance(reference, str) else None
    return None


def summary(resource: Mapping[str, Any]) -> tuple[tuple[str, str], str]:
    """The headline observation: (code, coding system) and one line of text.

    An alert's line is its DetectedIssue.detail, already written for this recipient; a
    refusal's is its OperationOutcome issue's diagnostics, under the issue type; other
    resources say their type and status.
    """
    resource_type = str(resource.get("resourceType"))
    issue = _first_issue(resource) if resource_type == "OperationOutcome" else None
    if issue is not None and isinstance(issue.get("diagnostics"), str):
        return (str(issue.get("code")), ISSUE_TYPE_SYSTEM), issue["diagnostics"]
    code = _coding(resource.get("code")) or (resource_type, FHIR_PATH_SYSTEM)
    detail = resource.get("detail")
    if isinstance(detail, str) and detail:
        return code, detail
    status = resource.get("status")
    return code, f"{resource_type} {status}" if isinstance(status, str) else resource_type


def hl7_message(envelope: Envelope, partner: str, control: str, now: datetime) -> str:
    """The envelope as an HL7 v2.5.1 ORU^R01, segments separated by carriage returns.

    PID names the person as the (already minimised) resource does; OBR names the event type;
    OBX 1 is a one-line summary (an alert's detail); then one OBX per element of the resource,
    its FHIRPath as the observation code, so nothing the recipient may see is left out.
    """
    resource = envelope.resource
    resource_type = str(resource["resourceType"])
    event_type = _escape(envelope.event_type)
    msh = "|".join(
        [
            "MSH",
            "^~\\&",
            SENDING_APPLICATION,
            SENDING_FACILITY,
            _escape(partner),
            _escape(partner),
            hl7_timestamp(now),
            "",
            "ORU^R01^ORU_R01",
            _escape(control),
            "P",
            HL7_VERSION,
        ]
    )
    person = _person_of(envelope)
    pid_3 = f"{_escape(person[1])}^^^&{_escape(person[0])}&URI" if person else ""
    filler = _escape(f"{resource_type}/{resource.get('id', '')}")
    placer = _escape(refused_resource(resource) or "")
    observed = hl7_timestamp(envelope.occurred_at)
    segments = [
        msh,
        f"PID|1||{pid_3}",
        f"OBR|1|{placer}|{filler}^{SENDING_APPLICATION}|{event_type}^{event_type}^{EVENT_TYPE_SYSTEM}"
        f"|||{observed}",
    ]
    (code, system), line = summary(resource)
    segments.append(f"OBX|1|TX|{_escape(code)}^^{_escape(system)}||{_escape(line)}||||||F")
    for number, (path, text) in enumerate(leaves(resource, resource_type), start=2):
        segments.append(
            f"OBX|{number}|ST|{_escape(path)}^^{FHIR_PATH_SYSTEM}||{_escape(text)}||||||F"
        )
    return SEGMENT_END.join(segments) + SEGMENT_END
