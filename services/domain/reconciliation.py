"""The reconciliation rules: when two agencies' appointments clash, when a missed appointment
is explained by attendance at a health appointment, and which alerts a change raises or
resolves, for whom."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from itertools import combinations
from typing import Literal, TypeAlias

from services.domain.calendar import Calendar, Slot, apply_change, join
from services.domain.kinds import HEALTH_KINDS, OBLIGATION_KINDS
from services.domain.relationships import officers

AlertKind = Literal["clash", "explained-absence"]
AlertAction = Literal["raised", "resolved"]
# (kind, id_a, id_b): clash ids sorted; explained-absence ids are (missed, evidence).
AlertKey: TypeAlias = tuple[AlertKind, str, str]

LIVE_STATUSES: frozenset[str] = frozenset({"booked", "arrived", "checked-in"})
ATTENDED_STATUSES: frozenset[str] = frozenset({"arrived", "checked-in", "fulfilled"})
DEFAULT_TRAVEL_BUFFER = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Alert:
    """A decision to tell partners that a condition opened or closed."""

    kind: AlertKind
    action: AlertAction
    person_id: str
    appointment_ids: tuple[str, str]  # clash: the pair sorted; explained: (missed, evidence)
    recipients: tuple[str, ...]  # partner ids
    slots: tuple[Slot, Slot]  # in appointment_ids order


def overlaps(a: Slot, b: Slot, buffer: timedelta = DEFAULT_TRAVEL_BUFFER) -> bool:
    """True if `a` and `b` overlap once travel time between them is counted.

    No travel is needed between two appointments at the same known location; a gap of
    exactly the buffer is enough to get from one to the other. A slot with a start and no end
    (a stay still under way) lasts from its start on; one with no start is never placed.
    """
    if a.start is None or b.start is None:
        return False
    same_place = a.location is not None and a.location == b.location
    buf = timedelta(0) if same_place else buffer
    return (b.end is None or a.start < b.end + buf) and (a.end is None or b.start < a.end + buf)


def is_explained_absence(missed: Slot, evidence: Slot) -> bool:
    """True when `missed` is a probation or treatment appointment the person did not attend, and
    `evidence` a health appointment (or encounter) they attended (the caller checks the two
    overlap)."""
    return (
        missed.kind in OBLIGATION_KINDS
        and missed.status == "noshow"
        and evidence.kind in HEALTH_KINDS
        and evidence.status in ATTENDED_STATUSES
    )


def is_clash(a: Slot, b: Slot) -> bool:
    """True when both appointments still stand (booked, arrived, checked in): attending one
    rules out the other (the caller checks they are another agency's and overlap)."""
    return a.status in LIVE_STATUSES and b.status in LIVE_STATUSES


def _pair_keys(a: Slot, b: Slot, buffer: timedelta) -> Iterator[AlertKey]:
    if a.partner == b.partner or not overlaps(a, b, buffer):
        return
    if is_clash(a, b):
        first, second = sorted((a.appointment_id, b.appointment_id))
        yield ("clash", first, second)
    for missed, evidence in ((a, b), (b, a)):
        if is_explained_absence(missed, evidence):
            yield ("explained-absence", missed.appointment_id, evidence.appointment_id)


def open_alert_keys(
    calendar: Calendar, buffer: timedelta = DEFAULT_TRAVEL_BUFFER
) -> frozenset[AlertKey]:
    """Every condition open in `calendar`: a function of its slots alone, not of history."""
    return frozenset(
        key for a, b in combinations(calendar.slots.values(), 2) for key in _pair_keys(a, b, buffer)
    )


def _keys_involving(calendar: Calendar, slot: Slot, buffer: timedelta) -> frozenset[AlertKey]:
    # Only pairs that include the changed slot can open or close, so a change costs
    # O(n) rather than the O(n^2) of open_alert_keys.
    return frozenset(
        key
        for other in calendar.slots.values()
        if other.appointment_id != slot.appointment_id
        for key in _pair_keys(slot, other, buffer)
    )


def _alert(calendar: Calendar, key: AlertKey, action: AlertAction) -> Alert:
    kind, first_id, second_id = key
    first, second = calendar.slots[first_id], calendar.slots[second_id]
    if kind == "clash":
        recipients = tuple(sorted({first.partner, second.partner}))
    else:
        # The booker of the missed appointment and the person's probation officers: each only
        # with a relationship with the person, since the alert discloses attendance elsewhere.
        related = calendar.relationships
        booker = (first.partner,) if first.partner in related else ()
        recipients = (*booker, *sorted(officers(related) - {first.partner}))
    return Alert(
        kind=kind,
        action=action,
        person_id=calendar.person_id,
        appointment_ids=(first_id, second_id),
        recipients=recipients,
        slots=(first, second),
    )


def told_on_relating(
    before: Calendar, after: Calendar, buffer: timedelta = DEFAULT_TRAVEL_BUFFER
) -> list[Alert]:
    """The explained absences open in `before` (and still in `after`), raised again to each
    partner related in `after` but not in `before`: those it would have been told of, had it
    been related when they opened."""
    new = after.relationships.keys() - before.relationships.keys()
    if not new:
        return []
    alerts = []
    for key in sorted(open_alert_keys(before, buffer) & open_alert_keys(after, buffer)):
        if key[0] != "explained-absence":
            continue
        alert = _alert(after, key, "raised")
        told = tuple(r for r in alert.recipients if r in new)
        if told:
            alerts.append(replace(alert, recipients=told))
    return alerts


def _diff(
    calendar: Calendar, before: frozenset[AlertKey], after: frozenset[AlertKey]
) -> list[Alert]:
    # Resolutions first, so a moved appointment's old clash clears before its new one.
    return [_alert(calendar, key, "resolved") for key in sorted(before - after)] + [
        _alert(calendar, key, "raised") for key in sorted(after - before)
    ]


def reconcile(
    calendar: Calendar, slot: Slot, buffer: timedelta = DEFAULT_TRAVEL_BUFFER
) -> tuple[Calendar, list[Alert]]:
    """Apply one change and decide which alerts it raises or resolves."""
    updated = apply_change(calendar, slot)
    if updated is calendar:
        return calendar, []
    previous = calendar.slots.get(slot.appointment_id)
    before = frozenset() if previous is None else _keys_involving(calendar, previous, buffer)
    after = _keys_involving(updated, slot, buffer)
    return updated, _diff(updated, before, after)


def merge(
    a: Calendar, b: Calendar, person_id: str, buffer: timedelta = DEFAULT_TRAVEL_BUFFER
) -> tuple[Calendar, list[Alert]]:
    """Join the calendars of two provisional people found to be one person.

    Alerts already open under either person are not raised again; conditions that only
    appear once both calendars are seen together are raised under `person_id`.
    """
    merged = join(a, b, person_id)
    before = open_alert_keys(a, buffer) | open_alert_keys(b, buffer)
    return merged, _diff(merged, before, open_alert_keys(merged, buffer))
