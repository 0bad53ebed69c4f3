"""The person's consent decisions, read from FHIR Consent, and the question they answer: may this
recipient, in this role, see this category of information at this time, and on what basis."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, get_args

from schemas.vocabulary import DISCLOSURE_CATEGORY_SYSTEM as CATEGORY_SYSTEM
from schemas.vocabulary import PARTNER_SYSTEM, ROLE_SYSTEM
from services.domain.instants import fhir_instant
from services.domain.kinds import AgencyKind

Category = Literal[
    "appointment-times", "appointment-detail", "referral-content", "assessment-outcome"
]
Role = Literal["probation-officer", "gp", "mht-clinician", "voluntary-worker", "commissioner"]
CATEGORIES: tuple[Category, ...] = get_args(Category)
ROLES: tuple[Role, ...] = get_args(Role)

ROLE_OF_KIND: Mapping[AgencyKind, Role] = MappingProxyType(
    {
        "probation": "probation-officer",
        "gp": "gp",
        "mht": "mht-clinician",
        "voluntary": "voluntary-worker",
        "commissioner": "commissioner",
    }
)


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    """One recorded consent decision; an empty filter set means "any"."""

    consent_id: str  # "<source partner>/<Consent.id>"
    source: str  # partner who recorded it
    permit: bool  # False for a deny and for a withdrawn (no longer active) consent
    recipients: frozenset[str]  # partner ids
    roles: frozenset[Role]
    categories: frozenset[Category]
    start: datetime | None
    end: datetime | None  # exclusive
    recorded: datetime
    # An active deny narrows below the role default; a withdrawn permit only ends the permit.
    denies: bool = False

    def __post_init__(self) -> None:
        _require_aware("start", self.start)
        _require_aware("end", self.end)
        _require_aware("recorded", self.recorded)

    def applies(self, *, recipient: str, role: Role, category: Category, at: datetime) -> bool:
        """True when this decision covers the disclosure and was known by the time of it."""
        return (
            (not self.recipients or recipient in self.recipients)
            and (not self.roles or role in self.roles)
            and (not self.categories or category in self.categories)
            and (self.start is None or self.start <= at)
            and (self.end is None or at < self.end)
            and self.recorded <= at
        )


def _instant(value: Any, element: str, *, end: bool = False) -> datetime:
    """A FHIR date or dateTime as an aware UTC datetime.

    A date-only period end covers the whole of that day, as FHIR Period says.
    """
    if not isinstance(value, str):
        raise ValueError(f"{element} must be a FHIR dateTime string")
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            first = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return first + timedelta(days=1) if end else first
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{element}: {value!r} is not a FHIR date or dateTime") from None
    if parsed.utcoffset() is None:
        raise ValueError(f"{element}: a dateTime with a time must carry a time zone")
    return parsed.astimezone(UTC)


def _list(node: Mapping[str, Any], name: str) -> list[Any]:
    value = node.get(name) or []
    if not isinstance(value, list):
        raise ValueError(f"Consent.provision.{name} must be a list")
    return value


def _codings(concept: Any) -> Iterator[Mapping[str, Any]]:
    # provision.code holds CodeableConcepts, provision.class bare Codings: accept either.
    if not isinstance(concept, Mapping):
        return
    if "coding" not in concept:
        yield concept
        return
    for coding in concept["coding"] or []:
        if isinstance(coding, Mapping):
            yield coding


def _roles(provision: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[Role]]:
    recipients: set[str] = set()
    roles: set[Role] = set()
    for index, actor in enumerate(_list(provision, "actor")):
        element = f"Consent.provision.actor[{index}]"
        if not isinstance(actor, Mapping):
            raise ValueError(f"{element} must be an object")
        named = False
        reference = actor.get("reference")
        identifier = reference.get("identifier") if isinstance(reference, Mapping) else None
        if isinstance(identifier, Mapping) and identifier.get("system") == PARTNER_SYSTEM:
            value = identifier.get("value")
            if not isinstance(value, str) or not value:
                raise ValueError(f"{element}.reference.identifier.value must name a partner")
            recipients.add(value)
            named = True
        for coding in _codings(actor.get("role")):
            if coding.get("system") != ROLE_SYSTEM:
                continue
            code = next((r for r in ROLES if r == coding.get("code")), None)
            if code is None:
                raise ValueError(f"{element}.role: unknown role code {coding.get('code')!r}")
            roles.add(code)
            named = True
        if not named:
            # Ignoring an actor the hub cannot read would widen a permit to everyone.
            raise ValueError(
                f"{element} names neither a {PARTNER_SYSTEM} identifier nor a {ROLE_SYSTEM} role"
            )
    return frozenset(recipients), frozenset(roles)


def _categories(provision: Mapping[str, Any]) -> frozenset[Category]:
    found: set[Category] = set()
    for name in ("code", "class"):
        concepts = _list(provision, name)
        here: set[Category] = set()
        for index, concept in enumerate(concepts):
            for coding in _codings(concept):
                if coding.get("system") != CATEGORY_SYSTEM:
                    continue
                code = next((c for c in CATEGORIES if c == coding.get("code")), None)
                if code is None:
                    raise ValueError(
                        f"Consent.provision.{name}[{index}]: unknown disclosure category "
                        f"{coding.get('code')!r}"
                    )
                here.add(code)
        if concepts and not here:
            # Read as "all categories" it would widen a permit the partner meant to narrow.
            raise ValueError(
                f"Consent.provision.{name} has no {CATEGORY_SYSTEM} code the hub can read"
            )
        found |= here
    return frozenset(found)


def decision_from_consent(
    resource: Mapping[str, Any], *, source: str, occurred_at: datetime
) -> ConsentDecision:
    """Map a FHIR R4 Consent recorded by partner `source`; ValueError names the element at fault.

    A consent that is not active (inactive, rejected, entered-in-error, draft, proposed)
    permits nothing: it reads as a withdrawal of whatever it covers.
    """
    local_id = resource.get("id")
    if not isinstance(local_id, str) or not local_id:
        raise ValueError("Consent.id is required: the hub tells versions of a consent apart by it")
    provision = resource.get("provision") or {}
    if not isinstance(provision, Mapping):
        raise ValueError("Consent.provision must be an object")
    if provision.get("provision"):
        # Nested exceptions are not read; ignoring one could disclose what it denies.
        raise ValueError("Consent.provision.provision: nested provisions are not supported")
    kind = provision.get("type", "permit")
    if kind not in ("permit", "deny"):
        raise ValueError(f"Consent.provision.type: {kind!r} is not permit or deny")
    recipients, roles = _roles(provision)
    period = provision.get("period") or {}
    start, end = period.get("start"), period.get("end")
    meta = resource.get("meta") or {}
    if "dateTime" in resource:
        recorded = _instant(resource["dateTime"], "Consent.dateTime")
    elif "lastUpdated" in meta:
        recorded = _instant(meta["lastUpdated"], "Consent.meta.lastUpdated")
    else:
        recorded = occurred_at
    active = resource.get("status") == "active"
    return ConsentDecision(
        consent_id=f"{source}/{local_id}",
        source=source,
        permit=active and kind == "permit",
        denies=active and kind == "deny",
        recipients=recipients,
        roles=roles,
        categories=_categories(provision),
        start=None if start is None else _instant(start, "Consent.provision.period.start"),
        end=None if end is None else _instant(end, "Consent.provision.period.end", end=True),
        recorded=recorded,
    )


def record(
    decisions: tuple[ConsentDecision, ...], new: ConsentDecision
) -> tuple[ConsentDecision, ...]:
    """Keep only the latest-recorded version of each consent; `decisions` itself if nothing changes.

    Earlier versions are forgotten, so replaying a disclosure from before a change finds
    no version of that consent at all: a replay can only disclose less, never more.
    """
    current = next((d for d in decisions if d.consent_id == new.consent_id), None)
    # An equal time is the same decision delivered again.
    if current is not None and new.recorded <= current.recorded:
        return decisions
    kept = [d for d in decisions if d.consent_id != new.consent_id]
    return tuple(sorted((*kept, new), key=lambda d: (d.recorded, d.consent_id)))


def _latest(
    decisions: tuple[ConsentDecision, ...],
    *,
    recipient: str,
    role: Role,
    category: Category,
    at: datetime,
) -> ConsentDecision | None:
    """The decision in force for this disclosure at `at`: the latest-recorded one covering it.

    A withdrawal or deny covers everything disclosed after it; at an equal time a deny beats
    a permit, whatever the order given.
    """
    applicable = [
        d for d in decisions if d.applies(recipient=recipient, role=role, category=category, at=at)
    ]
    if not applicable:
        return None
    return max(applicable, key=lambda d: (d.recorded, not d.permit, d.consent_id))


def stale_reason(decisions: tuple[ConsentDecision, ...], new: ConsentDecision) -> str | None:
    """Why `new` is not recorded: an older version of a consent the hub holds a later one of.

    None when `new` is later (it is recorded), or is the version held delivered again.
    """
    current = next((d for d in decisions if d.consent_id == new.consent_id), None)
    if current is None or new.recorded > current.recorded or new == current:
        return None
    return (
        f"Consent: recorded {fhir_instant(new.recorded)}, not later than the version of this consent "
        f"the hub holds (recorded {fhir_instant(current.recorded)}): a stale version is not applied"
    )


def basis_for(
    decisions: tuple[ConsentDecision, ...],
    *,
    recipient: str,
    role: Role,
    category: Category,
    at: datetime,
) -> str | None:
    """The consent id that permits this disclosure at `at`, or None."""
    latest = _latest(decisions, recipient=recipient, role=role, category=category, at=at)
    return latest.consent_id if latest is not None and latest.permit else None


def denial_for(
    decisions: tuple[ConsentDecision, ...],
    *,
    recipient: str,
    role: Role,
    categories: tuple[Category, ...],
    at: datetime,
) -> str | None:
    """The consent id of a deny in force at `at` for any of `categories`, or None.

    A withdrawn permit is not a deny: it returns the recipient to the role default.
    """
    for category in categories:
        latest = _latest(decisions, recipient=recipient, role=role, category=category, at=at)
        if latest is not None and latest.denies:
            return latest.consent_id
    return None
