"""Validation of the FHIR R4 resources the hub carries, and who each one is about.

fhir.resources' R4B models check structure and datatypes; they accept codes
outside their value sets and empty required lists, so the hub's own rules
(value sets, cardinalities, appointment times, identifier checks) follow here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.identifiers import (
    IdentifierError,
    PersonIdentifier,
    check_identifier,
    is_person_system,
    without_placeholders,
)

# resourceType -> (fhir.resources.R4B module, event type published for it)
CARRIED: dict[str, tuple[str, str]] = {
    "Appointment": ("appointment", "appointment.booking.updated"),
    "Encounter": ("encounter", "encounter.attendance.updated"),
    "ServiceRequest": ("servicerequest", "referral.request.updated"),
    "Task": ("task", "referral.task.updated"),
    "Patient": ("patient", "identity.patient.updated"),
    "Consent": ("consent", "governance.consent.recorded"),
    "DetectedIssue": ("detectedissue", "alert.issue.raised"),
    "AuditEvent": ("auditevent", "audit.disclosure.recorded"),
    "MeasureReport": ("measurereport", "stats.measure.reported"),
    "MessageHeader": ("messageheader", ""),
    # The hub's refusals: the event type is the refused event's, `<domain>.<entity>.refused`.
    "OperationOutcome": ("operationoutcome", ""),
}


def codes(words: str) -> frozenset[str]:
    """A value set written as space-separated codes."""
    return frozenset(words.split())


# What partners publish; DetectedIssue, AuditEvent and MeasureReport are the hub's own output.
PARTNER_RESOURCE_TYPES = (
    "Appointment",
    "Encounter",
    "ServiceRequest",
    "Task",
    "Patient",
    "Consent",
)


# Value sets (required bindings) the R4B models do not enforce: (type, element path) -> codes.
REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Appointment", "status"): codes(
        "proposed pending booked arrived fulfilled cancelled noshow entered-in-error checked-in waitlist"
    ),
    ("Appointment", "participant.status"): codes("accepted declined tentative needs-action"),
    ("Appointment", "participant.required"): codes("required optional information-only"),
    ("Encounter", "status"): codes(
        "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"
    ),
    ("ServiceRequest", "status"): codes(
        "draft active on-hold revoked completed entered-in-error unknown"
    ),
    ("ServiceRequest", "intent"): codes(
        "proposal plan directive order original-order reflex-order filler-order instance-order option"
    ),
    ("ServiceRequest", "priority"): codes("routine urgent asap stat"),
    ("Task", "status"): codes(
        "draft requested received accepted rejected ready cancelled in-progress on-hold failed completed entered-in-error"
    ),
    ("Task", "intent"): codes(
        "unknown proposal plan order original-order reflex-order filler-order instance-order option"
    ),
    ("Task", "priority"): codes("routine urgent asap stat"),
    ("Patient", "gender"): codes("male female other unknown"),
    ("Consent", "status"): codes("draft proposed active rejected inactive entered-in-error"),
    ("Consent", "provision.type"): codes("deny permit"),
    ("DetectedIssue", "status"): codes(
        "registered preliminary final amended corrected cancelled entered-in-error unknown"
    ),
    ("DetectedIssue", "severity"): codes("high moderate low"),
    ("AuditEvent", "action"): codes("C R U D E"),
    ("AuditEvent", "outcome"): codes("0 4 8 12"),
    ("MeasureReport", "status"): codes("complete pending error"),
    ("OperationOutcome", "issue.severity"): codes("fatal error warning information"),
    ("OperationOutcome", "issue.code"): codes(
        "invalid structure required value invariant security login unknown expired forbidden "
        "suppressed processing not-supported duplicate multiple-matches not-found deleted "
        "too-long code-invalid extension too-costly business-rule conflict transient "
        "lock-error no-store exception timeout incomplete throttled informational"
    ),
    ("MeasureReport", "type"): frozenset(
        {"individual", "subject-list", "summary", "data-collection"}
    ),
}

# Elements FHIR requires at least once that the models accept as empty lists.
REQUIRED_LISTS: dict[str, tuple[str, ...]] = {
    "Appointment": ("participant",),
    "Consent": ("category",),
    "AuditEvent": ("agent",),
}

# Appointment statuses that may lack start and end (FHIR invariant app-3).
UNTIMED_APPOINTMENT_STATUSES = codes("proposed cancelled waitlist")

# Where each resource type names its person; a Patient names itself by its identifiers.
PERSON_REFERENCES: dict[str, str] = {
    "Appointment": "participant.actor",
    "Encounter": "subject",
    "ServiceRequest": "subject",
    "Task": "for",
    "Consent": "patient",
    "DetectedIssue": "patient",
}
NEEDS_PERSON = codes("Appointment Encounter ServiceRequest Task Consent Patient")

BUNDLE_TYPES = codes(
    "document message transaction transaction-response batch batch-response history searchset collection"
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: where (a FHIR element path) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidResource(ValueError):  # noqa: N818 -- reads as the verdict it carries
    """A resource the hub cannot accept; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def event_type_for(resource_type: str) -> str:
    """The envelope event_type for a carried resource type."""
    return CARRIED[resource_type][1]


def _model(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{CARRIED[resource_type][0]}")
    return getattr(module, resource_type)


def _walk(node: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any]]:
    """Yield (path, value) for every value at a dotted element path, through lists."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, parts, f"{path}[{index}]")
        return
    if not parts:
        yield path, node
        return
    if isinstance(node, dict) and parts[0] in node:
        yield from _walk(node[parts[0]], parts[1:], f"{path}.{parts[0]}")


def values_at(resource: Mapping[str, Any], element: str) -> Iterator[tuple[str, Any]]:
    """(FHIR path, value) pairs for an element such as "participant.status"."""
    yield from _walk(dict(resource), element.split("."), str(resource.get("resourceType")))


def _model_problems(resource_type: str, resource: Mapping[str, Any]) -> list[Problem]:
    try:
        _model(resource_type).model_validate(resource)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path = resource_type
            for part in error["loc"]:
                path += f"[{part}]" if isinstance(part, int) else f".{part}"
            message = str(error["msg"])
            if error["type"] in ("missing", "model_field_validation.missing"):
                message = "field required"
            problems.append(Problem(path, message))
        return problems
    return []


def _code_problems(resource_type: str, resource: Mapping[str, Any]) -> list[Problem]:
    problems = []
    for (rtype, element), codes in REQUIRED_CODES.items():
        if rtype != resource_type:
            continue
        for path, value in values_at(resource, element):
            if str(value) not in codes:
                allowed = ", ".join(sorted(codes))
                problems.append(Problem(path, f"{value!r} is not one of: {allowed}"))
    for element in REQUIRED_LISTS.get(resource_type, ()):
        if not resource.get(element):
            problems.append(Problem(f"{resource_type}.{element}", "at least one is required"))
    return problems


def _parse_instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None  # the model has already reported the malformed instant
    # A date, or a time without its offset, is no instant (the model reports it either way);
    # it cannot be put in order with one that is.
    return parsed if parsed.tzinfo is not None else None


def _appointment_time_problems(resource: Mapping[str, Any]) -> list[Problem]:
    start, end = resource.get("start"), resource.get("end")
    status = resource.get("status")
    if (start is None) != (end is None):
        missing = "end" if end is None else "start"
        return [Problem(f"Appointment.{missing}", "start and end must both be given, or neither")]
    if start is None:
        if status not in UNTIMED_APPOINTMENT_STATUSES:
            return [Problem("Appointment.start", f"field required when status is {status!r}")]
        return []
    start_at, end_at = _parse_instant(start), _parse_instant(end)
    if start_at is not None and end_at is not None and end_at <= start_at:
        return [Problem("Appointment.end", "must be later than start")]
    return []


def _identifier_problems(node: Any, path: str) -> Iterator[Problem]:
    """Check every person identifier anywhere in the resource (NHS check digit, CRN form)."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _identifier_problems(item, f"{path}[{index}]")
    elif isinstance(node, dict):
        system, value = node.get("system"), node.get("value")
        if isinstance(system, str) and isinstance(value, str) and is_person_system(system):
            try:
                check_identifier(system, value)
            except IdentifierError as exc:
                yield Problem(f"{path}.value", str(exc))
        for key, child in node.items():
            if isinstance(child, dict | list):
                yield from _identifier_problems(child, f"{path}.{key}")


def problems_in(resource: Mapping[str, Any]) -> list[Problem]:
    """Every problem with a resource the hub would carry; empty when it is acceptable."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return [Problem("resourceType", "field required")]
    if resource_type not in CARRIED:
        carried = ", ".join(sorted(CARRIED))
        return [
            Problem(resource_type, f"resource type not carried by the hub (carried: {carried})")
        ]
    problems = _model_problems(resource_type, resource)
    problems += _code_problems(resource_type, resource)
    if resource_type == "Appointment":
        problems += _appointment_time_problems(resource)
    problems += _identifier_problems(dict(resource), resource_type)
    return problems


def validate(resource: Mapping[str, Any]) -> None:
    """Raise InvalidResource listing every problem, or return when the resource is acceptable."""
    problems = problems_in(resource)
    if problems:
        raise InvalidResource(problems)


def _person_identifiers(resource: Mapping[str, Any]) -> tuple[PersonIdentifier, ...]:
    found = []
    for identifier in resource.get("identifier", ()):
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and is_person_system(system):
            found.append(check_identifier(system, value))
    return tuple(found)


def subject_of(
    resource: Mapping[str, Any], bundled_patients: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[PersonIdentifier, ...]:
    """The identifiers of the one person a resource is about; () when it names nobody.

    `bundled_patients` maps the references a Bundle resolves ("urn:uuid:…",
    "Patient/123") to the Patient resources it carries. Placeholder identifiers are
    left out: they never link or find a person. Raises InvalidResource when a resource
    that must name a person does not, names more than one, or names one by placeholders only.
    """
    resource_type = str(resource.get("resourceType"))
    if resource_type == "Patient":
        people = [_person_identifiers(resource)]
    elif resource_type in PERSON_REFERENCES:
        people = []
        for _path, reference in values_at(resource, PERSON_REFERENCES[resource_type]):
            person = _resolve_reference(reference, bundled_patients or {})
            if person and person not in people:
                people.append(person)
    else:
        return ()
    where = f"{resource_type}.{PERSON_REFERENCES.get(resource_type, 'identifier')}"
    if len(people) > 1:
        raise InvalidResource([Problem(where, "names more than one person")])
    if not people or not people[0]:
        if resource_type in NEEDS_PERSON:
            raise InvalidResource(
                [Problem(where, "no reference names the person by an identifier the hub knows")]
            )
        return ()
    try:
        return without_placeholders(people[0])
    except IdentifierError as exc:
        raise InvalidResource([Problem(where, str(exc))]) from None


def _resolve_reference(
    reference: Any, bundled_patients: Mapping[str, Mapping[str, Any]]
) -> tuple[PersonIdentifier, ...]:
    if not isinstance(reference, dict):
        return ()
    identifier = reference.get("identifier")
    if isinstance(identifier, dict):
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and is_person_system(system):
            return (check_identifier(system, value),)
    literal = reference.get("reference")
    if isinstance(literal, str) and literal in bundled_patients:
        return _person_identifiers(bundled_patients[literal])
    return ()


# FHIR STU3 (3.0) content often parses as R4 (the same resource names, most elements alike), so
# reading it as R4 would quietly take the wrong meaning (GP Connect and CareConnect are STU3).
# It is told by what R4 does not have: a resource type, a profile, or an element renamed in R4.
STU3 = "this is FHIR STU3; send R4"
STU3_ONLY_TYPES = codes(
    "ReferralRequest ProcedureRequest ProcessRequest ProcessResponse EligibilityRequest "
    "EligibilityResponse DeviceComponent ImagingManifest DataElement ServiceDefinition BodySite "
    "Sequence DiagnosticOrder DeviceUseRequest Order OrderResponse Conformance"
)
STU3_PROFILE_MARKERS = ("/stu3/", "/structuredefinition/careconnect-")
STU3_ONLY_ELEMENTS: dict[str, frozenset[str]] = {
    "Appointment": codes("incomingReferral indication reason"),
    "Encounter": codes("incomingReferral reason"),
    "Task": codes("context definitionReference definitionUri"),
    "Consent": codes("consentingParty actor action except purpose dataPeriod data period"),
}


def stu3_problem(resource: Mapping[str, Any]) -> Problem | None:
    """A problem naming what marks `resource` as FHIR STU3 (or earlier); None when nothing does."""
    resource_type = str(resource.get("resourceType"))
    if resource_type in STU3_ONLY_TYPES:
        return Problem(resource_type, STU3)
    meta = resource.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    for index, profile in enumerate(profiles if isinstance(profiles, list) else ()):
        if isinstance(profile, str) and any(m in profile.lower() for m in STU3_PROFILE_MARKERS):
            return Problem(f"{resource_type}.meta.profile[{index}]", STU3)
    renamed = sorted(STU3_ONLY_ELEMENTS.get(resource_type, frozenset()) & set(resource))
    return Problem(f"{resource_type}.{renamed[0]}", STU3) if renamed else None
