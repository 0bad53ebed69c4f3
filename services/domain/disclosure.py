"""The disclosure policy, in one table: for each recipient role and resource type, the top-level
elements that may leave the hub, by default and with consent; and which of the person's
identifiers each partner may be told. Everything sent to a partner passes here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PROBATION_CRN, local_system
from services.domain.consent import Category, ConsentDecision, Role, basis_for, denial_for
from services.domain.kinds import HEALTH_KINDS, AgencyKind
from services.domain.partners import ORGANISATION_TYPE_LABELS
from services.domain.relationships import systems_to_ask_by

ROLE_DEFAULT = "role-default"
OWN_RECORD = "own-record"
# The lawful basis a referral's recipient is told who the person is and who referred them on.
DIRECT_CARE = "direct-care"


def elements(words: str) -> frozenset[str]:
    """A set of element names written as space-separated words."""
    return frozenset(words.split())


@dataclass(frozen=True, slots=True)
class Rule:
    """The elements one role may see of one resource type."""

    default: frozenset[str]
    by_consent: Mapping[Category, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # Consent enriches only records from these agency kinds (None: any kind).
    enrich_kinds: frozenset[str] | None = None

    def allowed(self) -> frozenset[str]:
        """Every element this rule can ever let through."""
        return self.default.union(*self.by_consent.values())


# Another agency's appointment: free text, reasons and anything unrecognised stay in the hub.
NEVER_DISCLOSED = elements(
    "reasonCode reasonReference comment patientInstruction supportingInformation "
    "text contained extension note"
)

NOTHING = Rule(frozenset())  # commissioners get aggregates only, never person-level records
APPOINTMENT = Rule(
    # time, attendance, organisation type (the builder reduces participant to the organisation)
    default=elements("resourceType id status start end serviceCategory participant"),
    by_consent=MappingProxyType(
        {"appointment-detail": elements("specialty serviceType appointmentType description")}
    ),
    # A probation appointment says nothing more to a clinician, whatever the consent.
    enrich_kinds=HEALTH_KINDS,
)
REFERRAL = Rule(
    default=elements(
        "resourceType id status intent priority category subject authoredOn requester performer"
    ),
    by_consent=MappingProxyType({"referral-content": elements("reasonCode note supportingInfo")}),
)
# The service a referral is sent to is told, for direct care, who the person is and who referred
# them: a Patient and the requester, contained in the ServiceRequest, each through its own rule
# below (the referrer's own contained resources never pass: `contained` is not in REFERRAL).
# The person as probation holds them; identifiers are chosen by `identifiers_known_to`.
REFERRED_PERSON = Rule(elements("resourceType id identifier name birthDate address"))
# The referring officer: name, team, how to reach them.
REFERRER_ROLE = Rule(elements("resourceType id practitioner organization code telecom"))
REFERRER = Rule(elements("resourceType id name telecom"))
TASK = Rule(
    elements(
        "resourceType id status intent businessStatus statusReason focus for owner requester "
        "authoredOn lastModified"
    )
)
# Its contained appointments have been through the Appointment rule before being contained.
DETECTED_ISSUE = Rule(
    elements(
        "resourceType id status code severity patient identifiedDateTime implicated detail "
        "contained extension"
    )
)
# The evidence shows the type of organisation; its name and the service come with consent.
BREACH_EVIDENCE = Rule(
    default=elements("appointment_id organisation_type status start end recorded"),
    by_consent=MappingProxyType({"appointment-detail": elements("organisation service_type")}),
    enrich_kinds=HEALTH_KINDS,
)

# (recipient role, resource type) -> rule. "Appointment" is another agency's appointment;
# a "ServiceRequest" goes to the organisation it is referred to.
POLICY: Mapping[tuple[Role, str], Rule] = MappingProxyType(
    {
        ("probation-officer", "Appointment"): APPOINTMENT,
        ("probation-officer", "ServiceRequest"): REFERRAL,
        ("probation-officer", "Task"): TASK,
        ("probation-officer", "DetectedIssue"): DETECTED_ISSUE,
        ("probation-officer", "BreachEvidence"): BREACH_EVIDENCE,
        # An officer is told the person by the identifiers it holds, never the demographics.
        ("probation-officer", "Patient"): NOTHING,
        ("probation-officer", "PractitionerRole"): NOTHING,
        ("probation-officer", "Practitioner"): NOTHING,
        ("gp", "Appointment"): APPOINTMENT,
        ("gp", "ServiceRequest"): REFERRAL,
        ("gp", "Patient"): REFERRED_PERSON,
        ("gp", "PractitionerRole"): REFERRER_ROLE,
        ("gp", "Practitioner"): REFERRER,
        ("gp", "Task"): TASK,
        ("gp", "DetectedIssue"): DETECTED_ISSUE,
        ("gp", "BreachEvidence"): BREACH_EVIDENCE,
        ("mht-clinician", "Appointment"): APPOINTMENT,
        ("mht-clinician", "ServiceRequest"): REFERRAL,
        ("mht-clinician", "Patient"): REFERRED_PERSON,
        ("mht-clinician", "PractitionerRole"): REFERRER_ROLE,
        ("mht-clinician", "Practitioner"): REFERRER,
        ("mht-clinician", "Task"): TASK,
        ("mht-clinician", "DetectedIssue"): DETECTED_ISSUE,
        ("mht-clinician", "BreachEvidence"): BREACH_EVIDENCE,
        ("voluntary-worker", "Appointment"): APPOINTMENT,
        ("voluntary-worker", "ServiceRequest"): REFERRAL,
        ("voluntary-worker", "Patient"): REFERRED_PERSON,
        ("voluntary-worker", "PractitionerRole"): REFERRER_ROLE,
        ("voluntary-worker", "Practitioner"): REFERRER,
        ("voluntary-worker", "Task"): TASK,
        ("voluntary-worker", "DetectedIssue"): DETECTED_ISSUE,
        ("voluntary-worker", "BreachEvidence"): BREACH_EVIDENCE,
        ("commissioner", "Appointment"): NOTHING,
        ("commissioner", "ServiceRequest"): NOTHING,
        ("commissioner", "Task"): NOTHING,
        ("commissioner", "DetectedIssue"): NOTHING,
        ("commissioner", "BreachEvidence"): NOTHING,
        ("commissioner", "Patient"): NOTHING,
        ("commissioner", "PractitionerRole"): NOTHING,
        ("commissioner", "Practitioner"): NOTHING,
    }
)
# An unknown (role, type) pair discloses only that a resource exists.
FAIL_CLOSED = Rule(elements("resourceType id"))

# While the person denies a recipient either of these, it is told nothing of other agencies'
# appointments: no alert about them, and one fixed breach-check verdict, so that not even the
# verdict reveals what the hub holds.
WITHHOLDING_CATEGORIES: tuple[Category, ...] = ("appointment-times", "appointment-detail")

# How another agency is named by default: the kind of care alone can be sensitive (a mental
# health trust, an addiction service), so the finer type, the name and the partner id need
# appointment-detail consent.
GENERIC_ORGANISATION_TYPES: Mapping[AgencyKind, tuple[str, str]] = MappingProxyType(
    {
        "gp": ("health-service", "Health service"),
        "mht": ("health-service", "Health service"),
        "voluntary": ("support-service", "Support service"),
        "probation": ("probation", "Probation service"),
    }
)


def identifiers_known_to(
    known_as: Mapping[str, Iterable[str]], recipient: str, kind: AgencyKind
) -> tuple[str, ...]:
    """The identifiers (`system|value` tokens) `recipient`, of `kind`, may be told the person by.

    `known_as` holds what each partner named the person by. A partner may be told what it sent
    itself (telling it back discloses nothing), and of what others sent only identifiers of
    the systems it knows people by (`systems_to_ask_by`): its own local ids, the NHS number for
    a health service, the CRN for probation. Never another partner's local id, a CRN to a
    clinician or an NHS number to probation or a voluntary service that did not send it.

    Its own local id comes first, then the NHS number and the CRN: the first is the one a
    recipient reading a single identifier (an HL7 PID) matches on.
    """
    entitled = systems_to_ask_by(recipient, kind)
    tokens = set(known_as.get(recipient, ()))
    for sent in known_as.values():
        tokens |= {token for token in sent if token.rpartition("|")[0] in entitled}
    order = {local_system(recipient): 0, NHS_NUMBER: 1, PROBATION_CRN: 2}
    return tuple(sorted(tokens, key=lambda t: (order.get(t.rpartition("|")[0], 3), t)))


def person_as_known(identifiers: Iterable[str], person_id: str) -> dict[str, Any]:
    """The person as a contained Patient (`#patient`) named by `identifiers` (from
    `identifiers_known_to`), and last by the hub person id, by which a partner answers about them."""
    named = [*identifiers, f"{HUB_PERSON}|{person_id}"]
    return {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [
            {"system": token.rpartition("|")[0], "value": token.rpartition("|")[2]}
            for token in named
        ],
    }


def reference_to(patient: Mapping[str, Any]) -> dict[str, Any]:
    """The reference to a contained `person_as_known` Patient, with its first identifier: what a
    reader that takes one identifier, not the contained resource, names the person by."""
    return {"reference": f"#{patient['id']}", "identifier": dict(patient["identifier"][0])}


@dataclass(frozen=True, slots=True)
class Organisation:
    """An agency as one recipient may see it: the type always, who it is only when allowed."""

    type_code: str
    type_label: str
    partner: str | None  # partner id; None when hidden
    name: str | None  # organisation name; None when hidden


def organisation_shown(
    kind: AgencyKind, partner: str, name: str | None, *, own: bool, detail: bool
) -> Organisation:
    """The agency behind a record: whole for its own recipient or with detail consent, else generic."""
    if own or detail:
        return Organisation(kind, ORGANISATION_TYPE_LABELS[kind], partner, name or partner)
    code, label = GENERIC_ORGANISATION_TYPES[kind]
    return Organisation(code, label, None, None)


def detail_consent(
    consents: tuple[ConsentDecision, ...],
    *,
    recipient: str,
    role: Role,
    agency_kind: AgencyKind,
    at: datetime,
) -> str | None:
    """The consent id letting `recipient` see the detail of a record from `agency_kind`, or None."""
    if agency_kind not in (APPOINTMENT.enrich_kinds or ()):
        return None
    return basis_for(consents, recipient=recipient, role=role, category="appointment-detail", at=at)


def withholding_consent(
    consents: tuple[ConsentDecision, ...], *, recipient: str, role: Role, at: datetime
) -> str | None:
    """The consent id of a deny that keeps other agencies' appointments from `recipient`, or None."""
    return denial_for(
        consents, recipient=recipient, role=role, categories=WITHHOLDING_CATEGORIES, at=at
    )


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A resource as one recipient may see it, and the basis it is disclosed on."""

    resource: dict[str, Any]
    basis: str  # "own-record", "role-default" or the consent id that enriched it


def disclose(
    resource: Mapping[str, Any],
    *,
    resource_type: str,
    role: Role,
    own: bool,
    agency_kind: AgencyKind | None,
    consents: tuple[ConsentDecision, ...],
    recipient: str,
    at: datetime,
) -> Disclosure:
    """Keep only the elements the policy lets `recipient` see at `at`.

    `own` is the recipient's own record, returned whole; `agency_kind` is the kind of agency
    the record comes from (None when unknown: then no consent enriches it).
    """
    if own:
        return Disclosure(_copied(dict(resource)), OWN_RECORD)
    rule = POLICY.get((role, resource_type), FAIL_CLOSED)
    if rule.enrich_kinds is not None:  # another agency's appointment: a deny narrows it
        denied = withholding_consent(consents, recipient=recipient, role=role, at=at)
        if denied is not None:
            kept = {n: _copied(v) for n, v in resource.items() if n in FAIL_CLOSED.default}
            return Disclosure(kept, denied)
    allowed = set(rule.default)
    basis = ROLE_DEFAULT
    if rule.enrich_kinds is not None and agency_kind not in rule.enrich_kinds:
        consented: Mapping[Category, frozenset[str]] = {}
    else:
        consented = rule.by_consent
    for category, extra in sorted(consented.items()):
        consent_id = basis_for(consents, recipient=recipient, role=role, category=category, at=at)
        if consent_id is None:
            continue
        allowed |= extra
        # The audit names a consent only when it let something through.
        if basis == ROLE_DEFAULT and extra & resource.keys():
            basis = consent_id
    kept = {name: _copied(value) for name, value in resource.items() if name in allowed}
    return Disclosure(kept, basis)


def _copied(value: Any) -> Any:
    """A copy of JSON-shaped data, so a disclosure never shares structure with its source.

    Resources are only dicts, lists and scalars: copy.deepcopy's memo and dispatch made
    copying cost more than the rest of an alert.
    """
    if isinstance(value, dict):
        return {name: _copied(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value
