"""Turn reconciliation alerts into minimised FHIR DetectedIssue resources, one per recipient.

This is the disclosure boundary for alerts: a resource is built only from the slot fields
named here (time, status, booking organisation), never from the partner's original resource.
Each recipient is told the person by the identifiers it holds, and its own appointment by the
id it gave it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from schemas.vocabulary import (
    ALERT_SYSTEM,
    ORGANISATION_TYPE_SYSTEM,
    PARTNER_SYSTEM,
    RECIPIENT_EXTENSION,
    RECORD_PREFIX,
)
from schemas.vocabulary import UK_TIME as PARTNER_TIME_ZONE
from services.domain.calendar import Slot
from services.domain.consent import ROLE_OF_KIND, ConsentDecision, Role
from services.domain.disclosure import (
    Disclosure,
    Organisation,
    detail_consent,
    disclose,
    identifiers_known_to,
    organisation_shown,
    person_as_known,
    reference_to,
    withholding_consent,
)
from services.domain.instants import fhir_instant
from services.domain.partners import PartnerDirectory
from services.domain.reconciliation import Alert, AlertAction, AlertKind, overlaps

# Fixed, so an alert reprocessed after a restart gets the same id.
ALERT_NAMESPACE: Final = uuid.UUID("6f1c2f5e-3a7b-5d0e-9c41-2b8e7d6a1f30")

EVENT_TYPES: Final[dict[tuple[AlertKind, AlertAction], str]] = {
    ("clash", "raised"): "alert.clash.raised",
    ("clash", "resolved"): "alert.clash.resolved",
    ("explained-absence", "raised"): "alert.absence.explained",
    ("explained-absence", "resolved"): "alert.absence.withdrawn",
}
_CODES: Final[dict[AlertKind, str]] = {
    "clash": "appointment-clash",
    "explained-absence": "explained-absence",
}
_SEVERITIES: Final[dict[AlertKind, str]] = {"clash": "moderate", "explained-absence": "high"}
_STATUSES: Final[dict[AlertAction, str]] = {"raised": "final", "resolved": "cancelled"}


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One minimised DetectedIssue for one recipient partner."""

    recipient: str
    event_type: str
    resource: dict[str, Any]
    alert_id: str
    role: Role
    basis: str  # "role-default", or the consent id that allowed more
    # One event per recipient; the DetectedIssue id (`alert_id`) names the alert they share.
    event_id: uuid.UUID


def alert_id(alert: Alert) -> str:
    """A deterministic id: the same decision over the same versions always gets the same id.

    A version is its whole order key, not the event id alone: earlier content sent again (an
    appointment moved back) has its old event id but is a later version, and raises anew.
    """
    parts = [alert.person_id, alert.kind, *alert.appointment_ids, alert.action]
    for slot in alert.slots:
        number, updated, event_id = slot.version
        parts += [str(number), updated.isoformat(), event_id]
    return str(uuid.uuid5(ALERT_NAMESPACE, "\n".join(parts)))


@dataclass(frozen=True, slots=True)
class Audience:
    """Who an alert is disclosed to, and what the disclosure policy needs to know about them."""

    recipient: str
    role: Role
    consents: tuple[ConsentDecision, ...]
    at: datetime
    identifiers: tuple[str, ...] = ()  # the person as the recipient knows them (tokens)

    def sees(self, slot: Slot, directory: PartnerDirectory) -> Organisation:
        """The agency behind `slot` as this recipient may see it."""
        partner = directory.get(slot.partner)
        detail = detail_consent(
            self.consents,
            recipient=self.recipient,
            role=self.role,
            agency_kind=slot.kind,
            at=self.at,
        )
        return organisation_shown(
            slot.kind,
            slot.partner,
            partner.name if partner else None,
            own=slot.partner == self.recipient,
            detail=detail is not None,
        )


def own_record(slot: Slot) -> dict[str, str]:
    """A partner's own appointment (or encounter) as an Identifier: the id it gave it, in the
    system of that partner's records of that type."""
    local = slot.appointment_id.removeprefix(f"{slot.partner}/")
    resource_type, _, fhir_id = local.rpartition("/")
    system = f"{RECORD_PREFIX}{slot.partner}:{resource_type or 'Appointment'}"
    return {"system": system, "value": fhir_id}


def _contained(
    slot: Slot, local_id: str, directory: PartnerDirectory, to: Audience
) -> dict[str, Any]:
    """The appointment as the recipient may see it: built field by field from the slot.

    Another agency's appointment shows a generic organisation type ("Health service"), not
    which kind of service or which organisation, unless the person's consent allows more.
    """
    shown = to.sees(slot, directory)
    appointment: dict[str, Any] = {"resourceType": "Appointment", "id": local_id}
    if slot.partner == to.recipient:  # its own: by the id it sent, to find it by
        appointment["identifier"] = [own_record(slot)]
    appointment["status"] = slot.status
    if slot.start is not None and slot.end is not None:
        appointment["start"] = fhir_instant(slot.start)
        appointment["end"] = fhir_instant(slot.end)
    # A stay still under way has no end, which an Appointment with a start must have
    # (app-3): its times are in the detail sentence alone.
    appointment["serviceCategory"] = [
        {
            "coding": [
                {
                    "system": ORGANISATION_TYPE_SYSTEM,
                    "code": shown.type_code,
                    "display": shown.type_label,
                }
            ]
        }
    ]
    actor: dict[str, Any] = {"display": shown.name or shown.type_label}
    if shown.partner is not None:
        actor = {"identifier": {"system": PARTNER_SYSTEM, "value": shown.partner}, **actor}
    appointment["participant"] = [{"actor": actor, "status": "accepted"}]
    if slot.service_type and slot.partner != to.recipient:
        # Offered to the disclosure policy, which keeps it only under the person's consent;
        # a booker is never sent its own detail back.
        appointment["specialty"] = [{"text": slot.service_type}]
    return appointment


def _disclosed(slot: Slot, local_id: str, directory: PartnerDirectory, to: Audience) -> Disclosure:
    return disclose(
        _contained(slot, local_id, directory, to),
        resource_type="Appointment",
        role=to.role,
        own=slot.partner == to.recipient,
        agency_kind=slot.kind,
        consents=to.consents,
        recipient=to.recipient,
        at=to.at,
    )


def _org_type(shown: Organisation) -> str:
    label = shown.type_label
    return label if label.startswith("GP") else label[0].lower() + label[1:]


def _times(slot: Slot) -> str:
    """'10:00-10:30 on 2026-12-03' (with an en dash) in UK time; 'from 10:00 on 2026-12-03, still
    under way' for a stay with no end yet; 'at an unknown time' if untimed."""
    if slot.start is None:
        return "at an unknown time"
    start = slot.start.astimezone(PARTNER_TIME_ZONE)
    if slot.end is None:
        return f"from {start:%H:%M} on {start:%Y-%m-%d}, still under way"
    end = slot.end.astimezone(PARTNER_TIME_ZONE)
    if start.date() == end.date():
        return f"{start:%H:%M}–{end:%H:%M} on {start:%Y-%m-%d}"
    return f"{start:%H:%M} on {start:%Y-%m-%d} to {end:%H:%M} on {end:%Y-%m-%d}"


def _truly_overlap(a: Slot, b: Slot) -> bool:
    return overlaps(a, b, timedelta(0))


def _detail(alert: Alert, directory: PartnerDirectory, to: Audience) -> str:
    """One plain sentence for the recipient: organisation types, times, attendance; nothing clinical."""
    first, second = alert.slots
    if alert.kind == "clash":
        mine, other = (first, second) if first.partner == to.recipient else (second, first)
        yours = f"your appointment {_times(mine)}"
        theirs = f"a {_org_type(to.sees(other, directory))} appointment {_times(other)}"
        if alert.action == "resolved":
            return f"Appointment clash resolved: {yours} and {theirs} no longer clash."
        if _truly_overlap(first, second):
            return f"Appointment clash: {yours} overlaps {theirs}."
        return f"Appointment clash: {yours} leaves too little travel time to or from {theirs}."
    missed, evidence = first, second
    kind = _org_type(to.sees(evidence, directory))
    if alert.action == "resolved":
        return (
            f"Explained absence withdrawn: the appointment {_times(missed)} is no longer "
            f"explained by an attended {kind} appointment."
        )
    return (
        f"Explained absence: the missed appointment {_times(missed)} overlaps a "
        f"{kind} appointment that was attended ({evidence.status})."
    )


def _issue(alert: Alert, issue_id: str, directory: PartnerDirectory, to: Audience) -> Disclosure:
    first, second = alert.slots
    contained = [_disclosed(first, "a1", directory, to), _disclosed(second, "a2", directory, to)]
    consent_bases = [c.basis for c in contained if c.basis not in ("role-default", "own-record")]
    patient = person_as_known(to.identifiers, alert.person_id)
    issue = {
        "resourceType": "DetectedIssue",
        "id": issue_id,
        "contained": [*(c.resource for c in contained), patient],
        "extension": [{"url": RECIPIENT_EXTENSION, "valueString": to.recipient}],
        "status": _STATUSES[alert.action],
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": _CODES[alert.kind]}]},
        "severity": _SEVERITIES[alert.kind],
        "patient": reference_to(patient),
        "identifiedDateTime": fhir_instant(to.at),
        "implicated": [{"reference": "#a1"}, {"reference": "#a2"}],
        "detail": _detail(alert, directory, to),
    }
    outer = disclose(
        issue,
        resource_type="DetectedIssue",
        role=to.role,
        own=False,
        agency_kind=None,
        consents=to.consents,
        recipient=to.recipient,
        at=to.at,
    )
    return Disclosure(outer.resource, consent_bases[0] if consent_bases else "role-default")


def alert_messages(
    alert: Alert,
    directory: PartnerDirectory,
    now: datetime,
    consents: tuple[ConsentDecision, ...] = (),
    known_as: Mapping[str, Iterable[str]] | None = None,
) -> list[AlertMessage]:
    """The DetectedIssue for each of the alert's recipients, as the disclosure policy allows.

    `known_as` holds the identifiers each partner named the person by (Calendar.known_as): each
    recipient is told the person by those `identifiers_known_to` lets it see, and the hub
    person id. Every alert involves at least one appointment the recipient did not book, so a
    recipient the person denies other agencies' appointments gets none.
    """
    issue_id = alert_id(alert)
    event_type = EVENT_TYPES[(alert.kind, alert.action)]
    messages = []
    for recipient in alert.recipients:
        kind = directory.kind_of(recipient)
        role = ROLE_OF_KIND[kind]
        if withholding_consent(consents, recipient=recipient, role=role, at=now) is not None:
            continue  # the person denies this recipient other agencies' appointments: tell nothing
        identifiers = identifiers_known_to(known_as or {}, recipient, kind)
        audience = Audience(recipient, role, consents, now, identifiers)
        disclosed = _issue(alert, issue_id, directory, audience)
        event_id = uuid.uuid5(uuid.UUID(issue_id), recipient)
        messages.append(
            AlertMessage(
                recipient, event_type, disclosed.resource, issue_id, role, disclosed.basis, event_id
            )
        )
    return messages
