"""Unit tests for the disclosure policy, element by element: what each role sees of each resource
type, by default and with consent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.domain.calendar import AgencyKind
from services.domain.consent import ROLES, Category, ConsentDecision, Role
from services.domain.disclosure import NEVER_DISCLOSED, POLICY, Disclosure, disclose

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
RECORDED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
AGENCY_ROLES: tuple[Role, ...] = ("probation-officer", "gp", "mht-clinician", "voluntary-worker")
TYPES = (
    "Appointment",
    "ServiceRequest",
    "Task",
    "DetectedIssue",
    "BreachEvidence",
    "Patient",
    "PractitionerRole",
    "Practitioner",
)
RECIPIENT = {
    "probation-officer": "probation-london",
    "gp": "gp-Y01234",
    "mht-clinician": "mht-rv5",
    "voluntary-worker": "vol-recovery",
    "commissioner": "icb-london",
}

# The policy restated by hand, so a change to it has to be made twice.
APPOINTMENT = {"resourceType", "id", "status", "start", "end", "serviceCategory", "participant"}
APPOINTMENT_DETAIL = {"specialty", "serviceType", "appointmentType", "description"}
REFERRAL = {
    "resourceType",
    "id",
    "status",
    "intent",
    "priority",
    "category",
    "subject",
    "authoredOn",
    "requester",
    "performer",
}
REFERRAL_CONTENT = {"reasonCode", "note", "supportingInfo"}
TASK = {
    "resourceType",
    "id",
    "status",
    "intent",
    "businessStatus",
    "statusReason",
    "focus",
    "for",
    "owner",
    "requester",
    "authoredOn",
    "lastModified",
}
DETECTED_ISSUE = {
    "resourceType",
    "id",
    "status",
    "code",
    "severity",
    "patient",
    "identifiedDateTime",
    "implicated",
    "detail",
    "contained",
    "extension",
}
BREACH_EVIDENCE = {"appointment_id", "organisation_type", "status", "start", "end"}
# A referral's person and referrer, contained in the ServiceRequest the service is sent; an
# officer is never sent them.
REFERRED_PERSON = {"resourceType", "id", "identifier", "name", "birthDate", "address"}
REFERRER_ROLE = {"resourceType", "id", "practitioner", "organization", "code", "telecom"}
REFERRER = {"resourceType", "id", "name", "telecom"}
DEFAULTS = {
    "Appointment": APPOINTMENT,
    "ServiceRequest": REFERRAL,
    "Task": TASK,
    "DetectedIssue": DETECTED_ISSUE,
    "BreachEvidence": BREACH_EVIDENCE,
    "Patient": REFERRED_PERSON,
    "PractitionerRole": REFERRER_ROLE,
    "Practitioner": REFERRER,
}
OFFICER_DEFAULTS = {
    **DEFAULTS,
    "Patient": set(),
    "PractitionerRole": set(),
    "Practitioner": set(),
}


def default(role: Role, resource_type: str) -> set[str]:
    """What `role` sees of `resource_type` without consent."""
    return (OFFICER_DEFAULTS if role == "probation-officer" else DEFAULTS)[resource_type]


WITH_CONSENT: dict[str, tuple[Category, set[str]]] = {
    "Appointment": ("appointment-detail", APPOINTMENT_DETAIL),
    "ServiceRequest": ("referral-content", REFERRAL_CONTENT),
    "BreachEvidence": ("appointment-detail", {"service_type"}),
}
EVERY_ELEMENT = (
    set().union(*DEFAULTS.values(), *(extra for _, extra in WITH_CONSENT.values()))
    | NEVER_DISCLOSED
    | {"meta", "basedOn", "location", "implicit", "service_type", "unknown", "gender"}
)


def full(resource_type: str) -> dict[str, Any]:
    """A resource holding every element named anywhere in the policy, and more."""
    resource: dict[str, Any] = {name: {"value": f"secret {name}"} for name in EVERY_ELEMENT}
    return {**resource, "resourceType": resource_type, "id": "r1"}


def permit(category: Category | None = None, recipient: str | None = None) -> ConsentDecision:
    return ConsentDecision(
        consent_id="probation-london/consent-1",
        source="probation-london",
        permit=True,
        recipients=frozenset({recipient} if recipient else ()),
        roles=frozenset(),
        categories=frozenset({category} if category else ()),
        start=None,
        end=None,
        recorded=RECORDED,
    )


def seen(
    resource_type: str,
    role: Role,
    *,
    kind: AgencyKind | None = "gp",
    consents: tuple[ConsentDecision, ...] = (),
    own: bool = False,
    resource: dict[str, Any] | None = None,
) -> Disclosure:
    return disclose(
        resource if resource is not None else full(resource_type),
        resource_type=resource_type,
        role=role,
        own=own,
        agency_kind=kind,
        consents=consents,
        recipient=RECIPIENT[role],
        at=AT,
    )


@pytest.mark.parametrize("role", AGENCY_ROLES)
@pytest.mark.parametrize("resource_type", TYPES)
def test_without_consent_each_role_sees_exactly_the_default(role: Role, resource_type: str) -> None:
    disclosure = seen(resource_type, role)
    assert set(disclosure.resource) == default(role, resource_type)
    assert disclosure.basis == "role-default"


@pytest.mark.parametrize("role", AGENCY_ROLES)
@pytest.mark.parametrize("resource_type", sorted(WITH_CONSENT))
def test_consent_adds_exactly_its_category_for_a_health_record(
    role: Role, resource_type: str
) -> None:
    category, extra = WITH_CONSENT[resource_type]
    disclosure = seen(resource_type, role, kind="mht", consents=(permit(category),))
    assert set(disclosure.resource) == default(role, resource_type) | extra
    assert disclosure.basis == "probation-london/consent-1"


@pytest.mark.parametrize("resource_type", ["Task", "DetectedIssue"])
def test_no_consent_enriches_tasks_or_alerts(resource_type: str) -> None:
    disclosure = seen(resource_type, "probation-officer", consents=(permit(),))
    assert set(disclosure.resource) == DEFAULTS[resource_type]
    assert disclosure.basis == "role-default"


@pytest.mark.parametrize("kind", ["gp", "mht"])
def test_an_officer_sees_the_specialty_of_a_health_appointment_only_with_consent(
    kind: AgencyKind,
) -> None:
    assert "specialty" not in seen("Appointment", "probation-officer", kind=kind).resource
    consented = seen(
        "Appointment", "probation-officer", kind=kind, consents=(permit("appointment-detail"),)
    )
    assert consented.resource["specialty"] == {"value": "secret specialty"}


@pytest.mark.parametrize("role", ["gp", "mht-clinician"])
def test_a_clinician_sees_only_the_time_of_a_probation_appointment_whatever_the_consent(
    role: Role,
) -> None:
    disclosure = seen("Appointment", role, kind="probation", consents=(permit(),))
    assert set(disclosure.resource) == APPOINTMENT
    assert disclosure.basis == "role-default"


@pytest.mark.parametrize("kind", ["voluntary", None])
def test_consent_does_not_enrich_appointments_of_other_or_unknown_kinds(
    kind: AgencyKind | None,
) -> None:
    disclosure = seen("Appointment", "probation-officer", kind=kind, consents=(permit(),))
    assert set(disclosure.resource) == APPOINTMENT


def test_a_consent_for_another_recipient_or_category_adds_nothing() -> None:
    elsewhere = permit("appointment-detail", recipient="probation-kent")
    wrong_category = permit("referral-content")
    for consent in (elsewhere, wrong_category):
        disclosure = seen("Appointment", "probation-officer", consents=(consent,))
        assert set(disclosure.resource) == APPOINTMENT
        assert disclosure.basis == "role-default"


def test_a_consent_that_lets_nothing_more_through_is_not_named_as_the_basis() -> None:
    resource = {"resourceType": "Appointment", "id": "a1", "status": "booked"}
    disclosure = seen("Appointment", "probation-officer", consents=(permit(),), resource=resource)
    assert disclosure == Disclosure(resource, "role-default")


@pytest.mark.parametrize("resource_type", TYPES)
def test_a_commissioner_gets_nothing_person_level(resource_type: str) -> None:
    disclosure = seen(resource_type, "commissioner", consents=(permit(),))
    assert disclosure.resource == {}


def test_an_own_record_is_returned_whole_and_not_shared() -> None:
    resource = full("Appointment")
    disclosure = seen("Appointment", "gp", own=True, resource=resource)
    assert disclosure == Disclosure(resource, "own-record")
    disclosure.resource["note"]["value"] = "changed"
    assert resource["note"] == {"value": "secret note"}


def test_what_is_disclosed_is_a_copy() -> None:
    resource = full("Task")
    seen("Task", "gp", resource=resource).resource["for"]["value"] = "changed"
    assert resource["for"] == {"value": "secret for"}


def test_an_unknown_pair_fails_closed() -> None:
    disclosure = seen("Consent", "gp", consents=(permit(),))
    assert disclosure == Disclosure({"resourceType": "Consent", "id": "r1"}, "role-default")


def test_the_policy_covers_every_role_and_type() -> None:
    assert set(POLICY) == {(role, t) for role in ROLES for t in TYPES}


@pytest.mark.parametrize("role", ROLES)
def test_no_rule_ever_lets_an_appointments_free_text_through(role: Role) -> None:
    for resource_type in ("Appointment", "BreachEvidence"):
        assert POLICY[(role, resource_type)].allowed() & NEVER_DISCLOSED == frozenset()


def test_never_disclosed_names_the_clinical_and_free_text_elements() -> None:
    assert {
        "reasonCode",
        "reasonReference",
        "comment",
        "patientInstruction",
        "supportingInformation",
        "text",
        "contained",
        "extension",
        "note",
    } == NEVER_DISCLOSED
