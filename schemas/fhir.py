"""Validation of the FHIR R4 resources the hub carries, and who each one is about.

fhir.resources' R4B models check structure and datatypes; they accept codes
outside their value sets and empty required lists, so the hub's own rules
(value sets, cardinalities, appointment times, identifier checks) follow here.
"""

from __future__ import annotations

import importlib
import re
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
    local_system,
    without_placeholders,
)
from schemas.keys import referral_named

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
# Resource types whose person element also names others (practitioners, locations): there a
# reference to another resource type is passed over; elsewhere it is refused.
SHARED_REFERENCES = codes("Appointment")

# A literal reference, relative or absolute, to a type and id (an optional version after it).
_LITERAL = re.compile(r"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[^/]*)(?:/_history/[^/]*)?$")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

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


def patient_identifiers(
    patient: Mapping[str, Any], partner: str | None = None
) -> tuple[PersonIdentifier, ...]:
    """Who a Patient resource from `partner` names: its person identifiers, and its id as the
    partner's local id (`Patient/123` from P is P's patient 123).

    The id is left out when the Patient already names the partner's own local id: a person
    holds one value per system, and the partner has said which it uses. It is left out too
    when it cannot be a local id (such as one starting with "-"): the Patient is then named
    by its identifiers alone.
    """
    found = _person_identifiers(patient)
    patient_id = patient.get("id")
    if partner is None or not isinstance(patient_id, str):
        return found
    own = local_system(partner)
    if any(identifier.system == own for identifier in found):
        return found
    try:
        return (*found, check_identifier(own, patient_id))
    except IdentifierError:
        return found


def subject_of(
    resource: Mapping[str, Any],
    bundled_patients: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    partner: str | None = None,
) -> tuple[PersonIdentifier, ...]:
    """The identifiers of the one person a resource is about; () when it names nobody.

    A reference names the person by any of (README "message formats" of connectors/gateway):
    an identifier; a Patient the Bundle carries (`bundled_patients` maps the names a Bundle
    resolves, "urn:uuid:…" and "Patient/123", to its Patients); a contained Patient ("#p1",
    by its identifiers: a contained id means nothing outside its resource); or, from
    `partner`, a literal `Patient/123` or `https://…/Patient/123`, which is the partner's own
    patient 123 (its local id). A Patient names itself the same way (`patient_identifiers`).
    Placeholder identifiers are left out: they never link or find a person. Raises
    InvalidResource when a resource that must name a person does not, names more than one,
    names one by placeholders only, refers to something other than a Patient where its
    person must be, or gives a `Patient/` reference whose id is no FHIR id. A referral's Task
    (naming its ServiceRequest in focus or basedOn) may name no one: it is found by its referral.
    """
    resource_type = str(resource.get("resourceType"))
    if resource_type == "Patient":
        people = [patient_identifiers(resource, partner)]
    elif resource_type in PERSON_REFERENCES:
        people = _referenced_people(resource, resource_type, bundled_patients or {}, partner)
    else:
        return ()
    where = f"{resource_type}.{PERSON_REFERENCES.get(resource_type, 'identifier')}"
    if len(people) > 1:
        raise InvalidResource([Problem(where, "names more than one person")])
    if not people or not people[0]:
        # A referral's Task may name no one: the hub finds the person by its referral.
        if resource_type in NEEDS_PERSON and referral_named(resource) is None:
            raise InvalidResource(
                [Problem(where, "no reference names the person by an identifier the hub knows")]
            )
        return ()
    try:
        return without_placeholders(people[0])
    except IdentifierError as exc:
        raise InvalidResource([Problem(where, str(exc))]) from None


class _UnusableReferenceError(ValueError):
    """A reference that cannot name the person: where and why. `other_type` when it refers
    to another resource type, which an element naming others too passes over."""

    def __init__(self, problem: Problem, *, other_type: bool = False) -> None:
        self.problem, self.other_type = problem, other_type
        super().__init__(str(problem))


def _referenced_people(
    resource: Mapping[str, Any],
    resource_type: str,
    bundled_patients: Mapping[str, Mapping[str, Any]],
    partner: str | None,
) -> list[tuple[PersonIdentifier, ...]]:
    """The distinct people a resource's person references name; InvalidResource listing every
    reference that cannot name one."""
    people: list[tuple[PersonIdentifier, ...]] = []
    problems = []
    for path, reference in values_at(resource, PERSON_REFERENCES[resource_type]):
        try:
            person = _resolve_reference(reference, resource, bundled_patients, partner, path)
        except _UnusableReferenceError as exc:
            if not (exc.other_type and resource_type in SHARED_REFERENCES):
                problems.append(exc.problem)
            continue
        if person and person not in people:
            people.append(person)
    if problems:
        raise InvalidResource(problems)
    return people


def _resolve_reference(
    reference: Any,
    resource: Mapping[str, Any],
    bundled_patients: Mapping[str, Mapping[str, Any]],
    partner: str | None,
    path: str,
) -> tuple[PersonIdentifier, ...]:
    """The identifiers one Reference at `path` names its Patient by; () when it names none
    the hub can use; _UnusableReferenceError when it cannot name one."""
    if not isinstance(reference, dict):
        return ()
    declared = reference.get("type")
    if isinstance(declared, str) and declared.rpartition("/")[2] not in ("", "Patient"):
        raise _UnusableReferenceError(
            _not_a_patient(path, declared.rpartition("/")[2]), other_type=True
        )
    identifier = reference.get("identifier")
    if isinstance(identifier, dict):
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and is_person_system(system):
            return (check_identifier(system, value),)
    literal = reference.get("reference")
    if not isinstance(literal, str):
        return ()
    return _resolve_literal(literal, resource, bundled_patients, partner, path)


def _resolve_literal(
    literal: str,
    resource: Mapping[str, Any],
    bundled_patients: Mapping[str, Mapping[str, Any]],
    partner: str | None,
    path: str,
) -> tuple[PersonIdentifier, ...]:
    """`_resolve_reference` for a literal reference: in the Bundle, contained, or the partner's own."""
    if literal in bundled_patients:
        return patient_identifiers(bundled_patients[literal], partner)
    if literal.startswith("#"):
        return _contained_patient(resource, literal[1:], path)
    target = _LITERAL.search(literal)
    if target is None:
        return ()  # a urn:uuid the Bundle does not resolve, or a reference the hub cannot read
    if target["type"] != "Patient":
        raise _UnusableReferenceError(_not_a_patient(path, target["type"]), other_type=True)
    where = f"{path}.reference"
    if not _FHIR_ID.fullmatch(target["id"]):
        message = "the Patient's id is not a FHIR id (1-64 of A-Z a-z 0-9 - .)"
        raise _UnusableReferenceError(Problem(where, message))
    if partner is None:
        return ()  # whose patient it is depends on who sent it
    try:
        return (check_identifier(local_system(partner), target["id"]),)
    except IdentifierError as exc:
        raise _UnusableReferenceError(Problem(where, str(exc))) from None


def _contained_patient(
    resource: Mapping[str, Any], local_id: str, path: str
) -> tuple[PersonIdentifier, ...]:
    """A contained Patient's identifiers; its id is the resource's own, so it is not one."""
    for contained in resource.get("contained") or ():
        if isinstance(contained, dict) and contained.get("id") == local_id:
            kind = contained.get("resourceType")
            if kind != "Patient":
                raise _UnusableReferenceError(_not_a_patient(path, str(kind)), other_type=True)
            return _person_identifiers(contained)
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


def _not_a_patient(path: str, resource_type: str) -> Problem:
    return Problem(
        path,
        f"refers to a {resource_type}, not a Patient: the hub carries events about one person, "
        "named by a Patient reference or identifier",
    )
