"""The hub's outbound messages as HL7 v2.5.1, for partners that speak HL7 v2.

Pure functions of the envelope (as the codec decoded it), so every byte a partner receives is
decided here and unit-tested without a socket. The message type follows what is sent:

- a referral delivered to its service (`ServiceRequest`): `REF^I12`, the referral request a
  trust's patient administration system takes as its own referrals come;
- an alert (`DetectedIssue`): `MDM^T02`, a text document filed against the person, which
  trusts' engines already route to the record for every letter they receive;
- anything else (a Task update, a refusal, a data-quality flag): `ORU^R01`, its first OBX the
  line a person reads and one OBX per element of the resource.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from connectors.hl7v2.datatypes import SEX, ce, components, cx, dt, repeat, xad, xpn, xtn
from connectors.hl7v2.message import escape, hl7_timestamp
from schemas.envelope import Envelope
from schemas.identifiers import HUB_PERSON
from schemas.vocabulary import (
    EVENT_TYPE_SYSTEM,
    FHIR_PATH_SYSTEM,
    FLAGGED_RESOURCE,
    REFUSED_RESOURCE,
)
from services.domain.instants import read_instant

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


def control_id(event_id: str) -> str:
    """MSH-10 of every attempt at one message: its event id, the idempotency key a partner
    drops a repeat by. An ACK naming it answers this message, whichever attempt it answers."""
    return event_id


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
    """The envelope as an HL7 v2.5.1 message (REF^I12, MDM^T02 or ORU^R01, by what it carries),
    segments separated by carriage returns. `control` is MSH-10; `now` is MSH-7."""
    resource_type = envelope.resource["resourceType"]
    if resource_type == "ServiceRequest":
        segments = ref_i12(envelope, partner, control, now)
    elif resource_type == "DetectedIssue":
        segments = mdm_t02(envelope, partner, control, now)
    else:
        segments = oru_r01(envelope, partner, control, now)
    return SEGMENT_END.join(segments) + SEGMENT_END


def segment(name: str, *fields: str) -> str:
    """One segment from its fields (already escaped), trailing empty fields left off."""
    return "|".join((name, *fields)).rstrip("|")


def _msh(partner: str, now: datetime, message_type: str, control: str) -> str:
    return "|".join(
        [
            "MSH",
            "^~\\&",
            SENDING_APPLICATION,
            SENDING_FACILITY,
            _escape(partner),
            _escape(partner),
            hl7_timestamp(now),
            "",
            message_type,
            _escape(control),
            "P",
            HL7_VERSION,
        ]
    )


# --- the person ---------------------------------------------------------------------------


def contained(resource: Mapping[str, Any], reference: Any) -> Mapping[str, Any] | None:
    """The contained resource a local reference (`{"reference": "#patient"}`) names, if any."""
    target = reference.get("reference") if isinstance(reference, Mapping) else None
    if not isinstance(target, str) or not target.startswith("#"):
        return None
    for item in resource.get("contained") or ():
        if isinstance(item, Mapping) and item.get("id") == target[1:]:
            return item
    return None


def _patient_of(resource: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Patient the resource contains and names as its person, if it does."""
    for element in _PERSON_ELEMENTS:
        found = contained(resource, resource.get(element))
        if found is not None and found.get("resourceType") == "Patient":
            return found
    return None


def pid(envelope: Envelope) -> str:
    """PID as the (already minimised) resource names the person.

    With a contained Patient: its identifiers (PID-3: an NHS number as `^^^NHS^NH`), names,
    date of birth, sex, addresses and telephone numbers, as far as it carries them. Otherwise
    PID-3 alone: the identifier the resource names the person by, else the hub person id.
    PID-5 is then left empty: the hub sends no name it was not given to send.
    """
    patient = _patient_of(envelope.resource)
    if patient is None:
        person = _person_of(envelope)
        # PID-3 is written even when empty: the person is required, and absent on purpose.
        return "PID|1||" + (cx({"system": person[0], "value": person[1]}) if person else "")
    telecom = [t for t in patient.get("telecom") or () if isinstance(t, Mapping)]
    return segment(
        "PID",
        "1",
        "",
        repeat(cx(i) for i in patient.get("identifier") or () if isinstance(i, Mapping)),
        "",
        repeat(xpn(n) for n in patient.get("name") or () if isinstance(n, Mapping)),
        "",
        dt(patient.get("birthDate")),
        SEX.get(str(patient.get("gender")), ""),
        "",
        "",
        repeat(xad(a) for a in patient.get("address") or () if isinstance(a, Mapping)),
        "",
        repeat(xtn(t) for t in telecom if t.get("use") != "work"),
        repeat(xtn(t) for t in telecom if t.get("use") == "work"),
    )


# --- a referral: REF^I12 ------------------------------------------------------------------

# HL7 table 0283 (referral status): the service has yet to answer a live referral.
_REFERRAL_STATUS = {
    "draft": "P^Pending^HL70283",
    "active": "P^Pending^HL70283",
    "on-hold": "P^Pending^HL70283",
    "completed": "A^Accepted^HL70283",
    "revoked": "E^Expired^HL70283",
}
# HL7 table 0280 (referral priority); the hub reads S and A back as urgent.
_REFERRAL_PRIORITY = {
    "routine": "R^Routine^HL70280",
    "urgent": "A^ASAP^HL70280",
    "asap": "A^ASAP^HL70280",
    "stat": "S^STAT^HL70280",
}
REFERRING_PROVIDER = "RP^Referring Provider^HL70286"


def ref_i12(envelope: Envelope, partner: str, control: str, now: datetime) -> list[str]:
    """A delivered referral as REF^I12: RF1 (status, priority, category, id, when, reason),
    PRD the referrer, PID the person, NTE the notes: only what the resource carries."""
    request = envelope.resource
    categories = [c for c in request.get("category") or () if isinstance(c, Mapping)]
    rf1 = segment(
        "RF1",
        _REFERRAL_STATUS.get(str(request.get("status")), ""),
        _REFERRAL_PRIORITY.get(str(request.get("priority")), ""),
        ce(categories[0]) if categories else "",
        "",
        "",
        _escape(str(request.get("id", ""))),
        _when(request.get("authoredOn")),
        "",
        "",
        _reason(request.get("reasonCode")),
    )
    notes = [
        n["text"]
        for n in request.get("note") or ()
        if isinstance(n, Mapping) and isinstance(n.get("text"), str)
    ]
    return [
        _msh(partner, now, "REF^I12^REF_I12", control),
        rf1,
        prd(request),
        pid(envelope),
        *(segment("NTE", str(n), "", _escape(note)) for n, note in enumerate(notes, start=1)),
    ]


def _when(value: Any) -> str:
    """A FHIR dateTime as an HL7 DTM in UTC; a date alone as a date."""
    if not isinstance(value, str):
        return ""
    return hl7_timestamp(read_instant(value)) if "T" in value else dt(value)


def _reason(reasons: Any) -> str:
    """RF1-10: the one reason as a coded element; several as one text, joined by "; "."""
    concepts = [r for r in reasons or () if isinstance(r, Mapping)]
    if len(concepts) == 1:
        return ce(concepts[0])
    texts = [t for c in concepts if (t := c.get("text") or _display(c))]
    return components("", escape("; ".join(texts))) if texts else ""


def _display(concept: Mapping[str, Any]) -> str:
    for coding in concept.get("coding") or ():
        if isinstance(coding, Mapping) and isinstance(coding.get("display"), str):
            return str(coding["display"])
    return ""


def prd(request: Mapping[str, Any]) -> str:
    """PRD for the referrer (role RP): the requester's name, address, team (PRD-4 location
    description) and telephone and email, from the contained PractitionerRole or Practitioner
    the request names; its identifiers (PRD-7); or, without one, the reference's own
    identifier and display."""
    reference = request.get("requester")
    requester = contained(request, reference) or {}
    practitioner: Mapping[str, Any] = requester
    if requester.get("resourceType") == "PractitionerRole":
        role_practitioner = requester.get("practitioner")
        practitioner = contained(request, role_practitioner) or {}
        if not practitioner and isinstance(role_practitioner, Mapping):
            display = role_practitioner.get("display")
            practitioner = {"name": [{"text": display}]} if isinstance(display, str) else {}
    names = [n for n in practitioner.get("name") or () if isinstance(n, Mapping)]
    telecom = [
        t
        for holder in (requester, practitioner)
        for t in holder.get("telecom") or ()
        if isinstance(t, Mapping)
    ]
    identifiers = [
        i
        for holder in (requester, practitioner)
        for i in holder.get("identifier") or ()
        if isinstance(i, Mapping)
    ]
    if (
        not requester
        and isinstance(reference, Mapping)
        and isinstance(reference.get("identifier"), Mapping)
    ):
        identifiers = [reference["identifier"]]
    return segment(
        "PRD",
        REFERRING_PROVIDER,
        repeat(xpn(n) for n in names),
        repeat(xad(a) for a in practitioner.get("address") or () if isinstance(a, Mapping)),
        _team(requester, reference),
        repeat(xtn(t) for t in _unique(telecom)),
        "",
        repeat(_pln(i) for i in _unique(identifiers)),
    )


def _team(requester: Mapping[str, Any], reference: Any) -> str:
    """PRD-4 (PL) with only its location description (PL.9): the requester's team — the
    PractitionerRole's service or organisation — or the reference's display."""
    for element in ("healthcareService", "organization", "location"):
        value = requester.get(element)
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, Mapping) and isinstance(first.get("display"), str):
            return "^" * 8 + escape(first["display"])
    if requester.get("resourceType") == "Organization" and isinstance(requester.get("name"), str):
        return "^" * 8 + escape(requester["name"])
    if (
        not requester
        and isinstance(reference, Mapping)
        and isinstance(reference.get("display"), str)
    ):
        return "^" * 8 + escape(reference["display"])
    return ""


def _pln(identifier: Mapping[str, Any]) -> str:
    """PLN: the identifier's value, its system as the qualifying information (PLN.3)."""
    value, system = identifier.get("value"), identifier.get("system")
    if not isinstance(value, str):
        return ""
    return components(escape(value), "", escape(system) if isinstance(system, str) else "")


def _unique(items: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    seen: list[Mapping[str, Any]] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


# --- an alert: MDM^T02 --------------------------------------------------------------------

# LOINC 34109-9 "Note": the document's content, a note for a person to read.
NOTE = "34109-9^Note^LN"


def mdm_t02(envelope: Envelope, partner: str, control: str, now: datetime) -> list[str]:
    """An alert as MDM^T02 (original document notification and content): a text note filed
    against the person. TXA-2, the document type (HL7's user-defined table 0270), is the
    alert's code (`appointment-clash`); TXA-12, the document number, is the event id, the same
    on every attempt, so a repeat is the same document. OBX 1 is the alert's text."""
    issue = envelope.resource
    (code, _system), line = summary(issue)
    identified = issue.get("identifiedDateTime")
    when = _when(identified) if isinstance(identified, str) else hl7_timestamp(envelope.occurred_at)
    txa = segment(
        "TXA",
        "1",
        escape(code),
        "TX",
        when,
        *([""] * 7),
        f"{escape(str(envelope.event_id))}^{SENDING_APPLICATION}",
        *([""] * 4),
        "AU",
        "",
        "AV",
    )
    return [
        _msh(partner, now, "MDM^T02^MDM_T02", control),
        segment("EVN", "T02", hl7_timestamp(envelope.recorded_at)),
        pid(envelope),
        segment("PV1", "1", "N"),
        txa,
        segment("OBX", "1", "TX", NOTE, "", _escape(line), *([""] * 5), "F"),
    ]


# --- anything else: ORU^R01 ---------------------------------------------------------------


def oru_r01(envelope: Envelope, partner: str, control: str, now: datetime) -> list[str]:
    """The envelope as an ORU^R01.

    PID names the person as the (already minimised) resource does; OBR names the event type;
    OBX 1 is a one-line summary (a refusal's reason); then one OBX per element of the resource,
    its FHIRPath as the observation code, so nothing the recipient may see is left out.
    """
    resource = envelope.resource
    resource_type = str(resource["resourceType"])
    event_type = _escape(envelope.event_type)
    filler = _escape(f"{resource_type}/{resource.get('id', '')}")
    placer = _escape(refused_resource(resource) or "")
    observed = hl7_timestamp(envelope.occurred_at)
    segments = [
        _msh(partner, now, "ORU^R01^ORU_R01", control),
        pid(envelope),
        f"OBR|1|{placer}|{filler}^{SENDING_APPLICATION}|{event_type}^{event_type}^{EVENT_TYPE_SYSTEM}"
        f"|||{observed}",
    ]
    (code, system), line = summary(resource)
    segments.append(f"OBX|1|TX|{_escape(code)}^^{_escape(system)}||{_escape(line)}||||||F")
    for number, (path, text) in enumerate(leaves(resource, resource_type), start=2):
        segments.append(
            f"OBX|{number}|ST|{_escape(path)}^^{FHIR_PATH_SYSTEM}||{_escape(text)}||||||F"
        )
    return segments
