"""What outbound delivery puts on the wire: FHIR message Bundles, HL7 v2 ORU^R01 messages, MLLP frames.

Pure functions of the envelope (as the codec decoded it), so every byte a partner receives is
decided here and unit-tested without a socket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from connectors.hl7v2.message import END_BLOCK, START_BLOCK
from schemas.envelope import Envelope
from schemas.identifiers import HUB_PERSON
from schemas.vocabulary import (
    EVENT_TYPE_SYSTEM,
    FHIR_PATH_SYSTEM,
    HUB_ENDPOINT,
    PARTNER_SYSTEM,
    REFUSED_RESOURCE,
)
from services.domain.instants import fhir_instant

ISSUE_TYPE_SYSTEM = "http://hl7.org/fhir/issue-type"
BUNDLE_NAMESPACE = uuid.UUID("0c6f3f7e-8a59-5d62-b1f4-5e0d3c2a9b71")

HL7_VERSION = "2.5.1"
SENDING_APPLICATION = "CONCORD"
SENDING_FACILITY = "CONCORD-HUB"
SEGMENT_END = "\r"
# The resource's elements that name the person, in the order they are looked for.
_PERSON_ELEMENTS = ("patient", "subject", "for")


# --- FHIR messaging -------------------------------------------------------------------------


def message_bundle(envelope: Envelope, partner: str, endpoint: str) -> dict[str, Any]:
    """A FHIR R4 message Bundle carrying the envelope's resource to `partner`.

    Bundle.id is the envelope's event id: FHIR messaging receivers drop a Bundle whose id they
    have already processed, which makes a redelivery harmless.
    """
    event_id = str(envelope.event_id)
    header_id = str(uuid.uuid5(BUNDLE_NAMESPACE, f"{event_id}\nheader"))
    focus_url = "urn:uuid:" + str(uuid.uuid5(BUNDLE_NAMESPACE, f"{event_id}\nfocus"))
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {"system": EVENT_TYPE_SYSTEM, "code": envelope.event_type},
        "destination": [
            {
                "endpoint": endpoint,
                "receiver": {"identifier": {"system": PARTNER_SYSTEM, "value": partner}},
            }
        ],
        "sender": {"identifier": {"system": PARTNER_SYSTEM, "value": envelope.source}},
        "source": {"name": "concord", "endpoint": HUB_ENDPOINT},
        "focus": [{"reference": focus_url}],
    }
    return {
        "resourceType": "Bundle",
        "id": event_id,
        "type": "message",
        "timestamp": fhir_instant(envelope.recorded_at),
        "entry": [
            {"fullUrl": f"urn:uuid:{header_id}", "resource": header},
            {"fullUrl": focus_url, "resource": envelope.resource},
        ],
    }


# --- HL7 v2 ---------------------------------------------------------------------------------


def escape(value: str) -> str:
    """Text made safe for an HL7 v2 field with the default separators |^~\\&."""
    escaped = (
        value.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("~", "\\R\\")
        .replace("&", "\\T\\")
    )
    # A raw carriage return would end the segment.
    return escaped.replace("\r\n", "\\.br\\").replace("\r", "\\.br\\").replace("\n", "\\.br\\")


def hl7_timestamp(moment: datetime) -> str:
    """An HL7 v2 DTM in UTC with an explicit offset (YYYYMMDDHHMMSS+0000)."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def control_id(event_id: str, sequence: int) -> str:
    """MSH-10 for one attempt: the event id (the idempotency key) and a per-attempt number.

    The number makes every attempt's control id new, so an ACK that arrives late for an
    earlier attempt can never be taken for the ACK of the current one.
    """
    return f"{event_id}.{sequence}"


def event_id_of_control(control: str) -> str:
    """The event id in a control id made by control_id: what a partner drops duplicates by."""
    return control.rsplit(".", 1)[0]


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
    """The partner's own resource a refusal names (`Task/mht-task-1`), if it is one."""
    for extension in resource.get("extension") or ():
        if isinstance(extension, Mapping) and extension.get("url") == REFUSED_RESOURCE:
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
    event_type = escape(envelope.event_type)
    msh = "|".join(
        [
            "MSH",
            "^~\\&",
            SENDING_APPLICATION,
            SENDING_FACILITY,
            escape(partner),
            escape(partner),
            hl7_timestamp(now),
            "",
            "ORU^R01^ORU_R01",
            escape(control),
            "P",
            HL7_VERSION,
        ]
    )
    person = _person_of(envelope)
    pid_3 = f"{escape(person[1])}^^^&{escape(person[0])}&URI" if person else ""
    filler = escape(f"{resource_type}/{resource.get('id', '')}")
    placer = escape(refused_resource(resource) or "")
    observed = hl7_timestamp(envelope.occurred_at)
    segments = [
        msh,
        f"PID|1||{pid_3}",
        f"OBR|1|{placer}|{filler}^{SENDING_APPLICATION}|{event_type}^{event_type}^{EVENT_TYPE_SYSTEM}"
        f"|||{observed}",
    ]
    (code, system), line = summary(resource)
    segments.append(f"OBX|1|TX|{escape(code)}^^{escape(system)}||{escape(line)}||||||F")
    for number, (path, text) in enumerate(leaves(resource, resource_type), start=2):
        segments.append(
            f"OBX|{number}|ST|{escape(path)}^^{FHIR_PATH_SYSTEM}||{escape(text)}||||||F"
        )
    return SEGMENT_END.join(segments) + SEGMENT_END


# --- MLLP and ACKs --------------------------------------------------------------------------


def unframe(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete frames at the start of `buffer` and the unfinished rest.

    Bytes before a start block are noise between frames and are skipped.
    """
    frames: list[bytes] = []
    while True:
        start = buffer.find(START_BLOCK)
        if start < 0:
            return frames, b""
        end = buffer.find(END_BLOCK, start + 1)
        if end < 0:
            return frames, buffer[start:]
        frames.append(buffer[start + 1 : end])
        buffer = buffer[end + len(END_BLOCK) :]


AckCode = Literal["AA", "AE", "AR", "CA", "CE", "CR"]
ACK_CODES: frozenset[str] = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})


class AckError(ValueError):
    """A frame that is not an HL7 acknowledgement."""


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement: MSA-1 code, MSA-2 the control id it answers, MSA-3 text."""

    code: AckCode
    control_id: str
    text: str


def parse_ack(data: bytes) -> Ack:
    """Read the MSA segment of an ACK frame; raise AckError naming what is missing."""
    text = data.decode("utf-8", errors="replace")
    segments = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 4:
        raise AckError("no MSH segment")
    separator = segments[0][3]
    for segment in segments[1:]:
        fields = segment.split(separator)
        if fields[0] != "MSA":
            continue
        code = fields[1] if len(fields) > 1 else ""
        if code not in ACK_CODES:
            raise AckError(f"MSA-1 is {code!r}, not an acknowledgement code")
        answered = fields[2] if len(fields) > 2 else ""
        if not answered:
            raise AckError("MSA-2 (the control id acknowledged) is empty")
        return Ack(code, answered, fields[3] if len(fields) > 3 else "")  # type: ignore[arg-type]  # checked against ACK_CODES above
    raise AckError("no MSA segment")


AckVerdict = Literal["delivered", "retry", "refused", "not-ours"]


def judge_ack(ack: Ack, expected_control_id: str) -> AckVerdict:
    """What an ACK means for the attempt whose MSH-10 was `expected_control_id`.

    Only an ACK naming this attempt's control id counts; any other is a late answer to an
    earlier attempt ("not-ours"). AE is the partner's "try again", AR its refusal.
    """
    if ack.control_id != expected_control_id:
        return "not-ours"
    if ack.code in ("AA", "CA"):
        return "delivered"
    if ack.code in ("AE", "CE"):
        return "retry"
    return "refused"
