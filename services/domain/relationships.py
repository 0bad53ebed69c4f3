"""Who has a relationship with a person: derived from trusted facts only, never claimed.

A partner with a relationship may ask the breach check about the person and is told of the
person's explained absences. Publishing an appointment is not a relationship: any partner can
name any NHS number in one. The facts that are:

- **case record**: a probation partner publishing about the person under a CRN (its case);
- **referral**: a referral routed to the partner (it is the referral's recipient);
- **consent**: the person's consent naming the partner as a permitted recipient, recorded by a
  partner with a case record or referral of its own (a partner cannot consent for itself), for as
  long as the latest decision naming the partner is a permit.

A case record or referral outlasts a consent: it replaces a consent as the basis, and a withdrawn
consent ends only a relationship that rested on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PROBATION_CRN, local_system
from services.domain.consent import ConsentDecision
from services.domain.kinds import HEALTH_KINDS, AgencyKind
from services.domain.partners import PartnerDirectory, UnknownPartner
from services.domain.referrals import Referral

Basis = Literal["case-record", "referral", "consent"]
Relationships = Mapping[str, "Relationship"]
# A referral not yet sent anywhere gives its intended recipient nothing.
UNSENT_REFERRAL_STATUSES = frozenset({"held", "no-service", "incomplete"})
_DURABLE: frozenset[Basis] = frozenset({"case-record", "referral"})


@dataclass(frozen=True, slots=True)
class Relationship:
    """A partner's relationship with the person, and the fact it rests on."""

    kind: AgencyKind
    basis: Basis
    evidence: str  # the case event's id, the referral id or the consent id


def relate(current: Relationships, partner: str, relationship: Relationship) -> Relationships:
    """`current` with `partner` related on `relationship`'s basis; `current` itself if unchanged."""
    held = current.get(partner)
    if held is not None and (held.basis in _DURABLE or relationship.basis == "consent"):
        return current
    return {**current, partner: relationship}


def from_case_record(
    current: Relationships,
    *,
    source: str,
    kind: AgencyKind,
    systems: Iterable[str],
    event_id: str,
) -> Relationships:
    """A probation partner's event naming the person by CRN: its case record of the person."""
    if kind != "probation" or PROBATION_CRN not in set(systems):
        return current
    return relate(current, source, Relationship(kind, "case-record", event_id))


def _kind(directory: PartnerDirectory, partner: str) -> AgencyKind | None:
    try:
        return directory.kind_of(partner)
    except UnknownPartner:
        return None  # a partner the hub cannot place cannot sign in either


def from_referrals(
    current: Relationships, referrals: Iterable[Referral], directory: PartnerDirectory
) -> Relationships:
    """Every referral routed to a partner relates that partner to the person."""
    for referral in sorted(referrals, key=lambda r: r.referral_id):
        recipient = referral.recipient
        if recipient is None or referral.status in UNSENT_REFERRAL_STATUSES:
            continue
        kind = _kind(directory, recipient)
        if kind is not None:
            current = relate(
                current, recipient, Relationship(kind, "referral", referral.referral_id)
            )
    return current


def from_consents(
    current: Relationships, consents: Iterable[ConsentDecision], directory: PartnerDirectory
) -> Relationships:
    """Consent relationships as the latest decision naming each partner has them.

    Only a decision recorded by a partner related by case record or referral counts.
    """
    latest: dict[str, ConsentDecision] = {}
    # Ascending, so the last one kept per partner is the latest; at an equal time a deny wins.
    for decision in sorted(consents, key=lambda d: (d.recorded, not d.permit, d.consent_id)):
        recorder = current.get(decision.source)
        if recorder is None or recorder.basis not in _DURABLE:
            continue
        for partner in decision.recipients:
            latest[partner] = decision
    updated = {
        partner: relationship
        for partner, relationship in current.items()
        if relationship.basis != "consent" or (partner in latest and latest[partner].permit)
    }
    for partner, decision in sorted(latest.items()):
        kind = _kind(directory, partner)
        if decision.permit and kind is not None:
            updated = dict(
                relate(updated, partner, Relationship(kind, "consent", decision.consent_id))
            )
    return current if updated == current else updated


def new_relationships(
    before: Relationships, after: Relationships
) -> list[tuple[str, Relationship]]:
    """The partners related in `after` that were not in `before`, with their relationship."""
    return [(p, r) for p, r in sorted(after.items()) if p not in before]


def officers(current: Relationships) -> frozenset[str]:
    """The person's probation officers: the probation partners related to the person."""
    return frozenset(p for p, r in current.items() if r.kind == "probation")


def audit_terms(relationship: Relationship) -> tuple[str, str]:
    """What a relationship's audit record names as its cause, and its basis.

    A consent is the basis itself, by its id, as in a disclosure made under it.
    """
    # Referral and consent ids are "<recording partner>/<FHIR id>".
    fhir_id = relationship.evidence.partition("/")[2]
    if relationship.basis == "consent":
        return f"Consent/{fhir_id}", relationship.evidence
    if relationship.basis == "referral":
        return f"ServiceRequest/{fhir_id}", "referral"
    return f"urn:uuid:{relationship.evidence}", "case-record"


def systems_to_ask_by(partner: str, kind: AgencyKind) -> frozenset[str]:
    """The identifier systems a partner may name a person by when it asks about them: its own.

    Asked by another agency's identifier, the hub would tell the partner whose it is (that an
    NHS number belongs to someone on probation, that a CRN and an NHS number are one person).
    The hub person id is the hub's own, given to the partner in referrals and answers.
    """
    own = {local_system(partner), HUB_PERSON}
    if kind == "probation":
        own.add(PROBATION_CRN)
    if kind in HEALTH_KINDS:
        own.add(NHS_NUMBER)
    return frozenset(own)
