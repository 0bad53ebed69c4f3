"""Contradictions in what one partner tells the hub about its own appointments: the rules that find
them (`contradictions`), the state the calendar keeps when one is found, and the data-quality
message its sender is told.

A contradiction is not an error at the edge: each message is valid alone, and only the record
shows it disagrees with what the same partner said before. The hub keeps the defensible state
(the cancellation stands; the first content of a version stands; a booking never received is
created; two bookings of one partner both stand) and tells the sender, in the shape it already
reads refusals in, a FHIR OperationOutcome naming its own resource and event. Appointments
only: an Encounter reports what happened, so it has no booking to contradict.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal

from schemas.vocabulary import DATA_QUALITY_SYSTEM, EVENT_ID_SYSTEM, FLAGGED_EVENT, FLAGGED_RESOURCE
from services.domain.calendar import Calendar, Slot
from services.domain.refusals import IssueType, Sender, answer_event_type, resource_reference
from services.domain.versions import described

FLAG_NAMESPACE: Final = uuid.UUID("9b6e2d41-0c7a-5f38-8e15-4a2f7c9d1b63")

Rule = Literal[
    "outcome-after-cancellation",
    "update-without-booking",
    "appointment-id-reused",
    "double-booking",
]

# What an appointment's first message may say: it is being booked (FHIR's statuses before and at
# booking). Anything else reports on a booking the hub should already hold.
BOOKING_STATUSES: Final = frozenset({"proposed", "pending", "booked", "waitlist"})
# What only a held appointment can come to: the person came, or did not.
OUTCOME_STATUSES: Final = frozenset({"arrived", "checked-in", "fulfilled", "noshow"})
# The appointments a person can be expected at: two of one partner at once are a double booking.
STANDING_STATUSES: Final = frozenset({"booked", "arrived", "checked-in"})
# What the calendar keeps of an appointment besides its version, by the element it is read from.
CONTENT: Final = (
    ("status", "status"),
    ("start", "start"),
    ("end", "end"),
    ("location", "participant (Location)"),
    ("service_type", "serviceType"),
    ("based_on", "basedOn"),
)


@dataclass(frozen=True, slots=True)
class DataQualityIssue:
    """One contradiction found in a partner's change, and whether the change was applied."""

    rule: Rule
    code: IssueType  # the FHIR issue type
    expression: str  # the element it concerns (FHIRPath)
    detail: str  # the sentence for the sender: their own resources only, no values of the person
    applied: bool  # False: the calendar kept what it held


def _fhir_id(slot: Slot) -> str:
    return slot.appointment_id.partition("/")[2]


# --- the rules, one function each ----------------------------------------------------------------


def outcome_after_cancellation(calendar: Calendar, slot: Slot) -> DataQualityIssue | None:
    """A newer version reporting an outcome (attended, missed) of an appointment its partner
    cancelled: a cancelled appointment cannot be attended or missed, so the cancellation stands.

    A later version that books it again reinstates it, and outcomes after that apply; an older
    version than the cancellation is stale, refused as any stale version is.
    """
    held = calendar.slots.get(slot.appointment_id)
    if held is None or held.status != "cancelled" or slot.status not in OUTCOME_STATUSES:
        return None
    if slot.version <= held.version:
        return None
    return DataQualityIssue(
        rule="outcome-after-cancellation",
        code="business-rule",
        expression="Appointment.status",
        detail=(
            f"Appointment.status: {slot.status} for an appointment you cancelled "
            f"({described(held.version)}): a cancelled appointment cannot be attended or missed, "
            "so the cancellation stands and this update is not applied; to reinstate the "
            "appointment, send it as booked in a later version first"
        ),
        applied=False,
    )


def update_without_booking(calendar: Calendar, slot: Slot) -> DataQualityIssue | None:
    """An update (a version after the first, or a status only a booking can come to) for an
    appointment the hub never held: created from it, since it is the partner's latest word."""
    if slot.appointment_id in calendar.slots:
        return None
    if slot.version.number <= 1 and slot.status in BOOKING_STATUSES:
        return None
    what = f"status {slot.status}" if slot.status not in BOOKING_STATUSES else "a booking"
    return DataQualityIssue(
        rule="update-without-booking",
        code="not-found",
        expression="Appointment",
        detail=(
            f"Appointment: created from an update ({what}, {described(slot.version)}); the "
            "booking was never received"
        ),
        applied=True,
    )


def appointment_id_reused(calendar: Calendar, slot: Slot) -> DataQualityIssue | None:
    """The same version (meta.versionId and meta.lastUpdated) of an appointment sent again with
    other content: an id or version reused. The first received stands; which is meant only the
    partner knows, and the first is what the hub has acted on."""
    held = calendar.slots.get(slot.appointment_id)
    if held is None or held.version.event_id == slot.version.event_id:
        return None
    if held.version[:2] != slot.version[:2]:
        return None
    differs = [name for field, name in CONTENT if getattr(slot, field) != getattr(held, field)]
    if not differs:
        return None  # the same content again, under another event id: no contradiction
    return DataQualityIssue(
        rule="appointment-id-reused",
        code="conflict",
        expression="Appointment.meta",
        detail=(
            f"Appointment.meta: {described(slot.version)} was already received with another "
            f"{', '.join(differs)}: the first received is kept and this one is not applied; "
            "send a change as a later version"
        ),
        applied=False,
    )


def _at_once(a: Slot, b: Slot) -> bool:
    # Strict overlap, no travel buffer: the partner's own scheduling between its sites is its
    # business. A booking without an end is taken to be its start.
    if a.start is None or b.start is None:
        return False
    a_end, b_end = a.end or a.start, b.end or b.start
    return a.start == b.start or (a.start < b_end and b.start < a_end)


def _booked_against(calendar: Calendar, slot: Slot) -> set[str]:
    """The ids of the partner's other standing appointments `slot` overlaps."""
    if slot.status not in STANDING_STATUSES:
        return set()
    return {
        other.appointment_id
        for other in calendar.slots.values()
        if other.partner == slot.partner
        and other.appointment_id != slot.appointment_id
        and other.status in STANDING_STATUSES
        and _at_once(slot, other)
    }


def double_bookings(calendar: Calendar, slot: Slot) -> tuple[DataQualityIssue, ...]:
    """The partner's other appointments for the person that `slot` now overlaps and did not
    before: both stand (the person may really have two), and the partner is told once, when the
    double booking begins. Overlaps across partners are clashes (services/domain/reconciliation.py)."""
    previous = calendar.slots.get(slot.appointment_id)
    before = _booked_against(calendar, previous) if previous is not None else set()
    return tuple(
        DataQualityIssue(
            rule="double-booking",
            code="business-rule",
            expression="Appointment.start",
            detail=(
                f"Appointment.start: overlaps your appointment "
                f"Appointment/{_fhir_id(calendar.slots[other])} for the same person; both are kept"
            ),
            applied=True,
        )
        for other in sorted(_booked_against(calendar, slot) - before)
    )


def contradictions(calendar: Calendar, slot: Slot) -> tuple[DataQualityIssue, ...]:
    """What `slot`, a partner's change to an Appointment, contradicts in `calendar`.

    A contradiction that keeps the held state (an outcome over a cancellation, a version reused)
    comes alone: the change is not applied, so nothing else about it holds. Otherwise the change
    is applied as any is, and the issues say what the partner should know about it.
    """
    kept = appointment_id_reused(calendar, slot) or outcome_after_cancellation(calendar, slot)
    if kept is not None:
        return (kept,)
    created = update_without_booking(calendar, slot)
    return (*((created,) if created else ()), *double_bookings(calendar, slot))


# --- what the sender is told ---------------------------------------------------------------------


def flagged_event_type(event_type: str) -> str:
    """`<domain>.<entity>.flagged` for a `<domain>.<entity>.<past-tense>` event found to
    contradict what its sender said before."""
    return answer_event_type(event_type, "flagged")


def flag_id(sender: Sender) -> uuid.UUID:
    """A deterministic id: the same event flagged again on reprocessing is a recognisable
    duplicate."""
    return uuid.uuid5(FLAG_NAMESPACE, f"{sender.partner}\n{sender.event_id}")


def data_quality_outcome(sender: Sender, issues: tuple[DataQualityIssue, ...]) -> dict[str, Any]:
    """The OperationOutcome telling `sender` what their event contradicts: one issue per rule
    that fired, a warning when the change was applied, an error when the hub kept what it held."""
    return {
        "resourceType": "OperationOutcome",
        "id": str(flag_id(sender)),
        "extension": [
            {"url": FLAGGED_RESOURCE, "valueReference": resource_reference(sender)},
            {
                "url": FLAGGED_EVENT,
                "valueIdentifier": {"system": EVENT_ID_SYSTEM, "value": sender.event_id},
            },
        ],
        "issue": [
            {
                "severity": "warning" if issue.applied else "error",
                "code": issue.code,
                "details": {"coding": [{"system": DATA_QUALITY_SYSTEM, "code": issue.rule}]},
                "diagnostics": issue.detail,
                "expression": [issue.expression],
            }
            for issue in issues
        ],
    }
