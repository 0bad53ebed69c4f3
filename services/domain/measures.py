"""What the commissioners' figures count: each countable fact a change to a person's record makes,
and the aggregate cells those facts add up to.

A fact (`Counted`) is derived from the record before and after one message, and from what was
decided on it, so it is counted where the person's record already is: no second store of
people. It carries no identifier, only a deterministic id (a hash of what was counted), so a
change handled twice, or replayed, counts once (`add_to_cells`). Cells hold counts and
histograms of working days, never people; `suppression.py` decides what of them may be shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Final

from services.domain.calendar import Calendar
from services.domain.decisions import ConflictChanged, Decision, Disclose
from services.domain.referrals import Referral

# Fixed, so a fact derived again (a redelivery, a replay) gets the same id.
COUNTED_NAMESPACE: Final = uuid.UUID("0b6f3c1e-9d2a-5e47-8a31-6c5d4e2f7a90")
ASSESSMENT: Final = "mental-health-assessment"
UNKNOWN_AREA: Final = "unknown"

# Coded reasons a service may give for rejecting a referral (Task.statusReason); any other
# text counts as "other", so no free text (which could name someone) reaches a figure.
REJECTION_REASONS: Final = frozenset(
    {"not-eligible", "no-capacity", "out-of-area", "declined-by-person", "duplicate", "other"}
)
UNSENT: Final = {"held": "referrals-held", "no-service": "referrals-unrouted"}
UNSENT_INCOMPLETE: Final = "incomplete"
LIFECYCLE: Final = {
    "accepted": "referrals-accepted",
    "rejected": "referrals-rejected",
    "completed": "referrals-completed",
    "cancelled": "referrals-cancelled",
}
DISTRIBUTIONS: Final = frozenset({"days-to-acceptance", "days-to-first-appointment"})


@dataclass(frozen=True, slots=True)
class Counted:
    """One fact to count once: which figure, in which cell, and (for a distribution) its days."""

    counted_id: str  # deterministic; never an identifier
    figure: str
    month: str  # "2026-11"
    area: str  # a local authority code, or "unknown"
    category: str | None = None
    urgency: str | None = None
    reason: str | None = None  # a rejection's coded reason
    days: int | None = None  # working days, for the distribution figures


def month_of(at: datetime | date) -> str:
    """The calendar month a moment falls in, as "YYYY-MM"."""
    return f"{at.year:04d}-{at.month:02d}"


def working_days(start: datetime, end: datetime, holidays: frozenset[date]) -> int:
    """Working days after `start`'s date up to `end`'s date: weekends and bank holidays out,
    so a referral accepted the day it was made took 0 days, and the next working day 1."""
    days, day = 0, start.date()
    while day < end.date():
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in holidays:
            days += 1
    return days


def _id(*parts: str) -> str:
    return uuid.uuid5(COUNTED_NAMESPACE, "|".join(parts)).hex


def rejection_reason(text: str | None) -> str:
    """A rejection's reason as one of REJECTION_REASONS: the code when the service sent one."""
    code = (text or "").strip().lower()
    return code if code in REJECTION_REASONS else "other"


def _fact(referral: Referral, figure: str, at: datetime, **more: Any) -> Counted:
    return Counted(
        counted_id=_id(figure, referral.referral_id),
        figure=figure,
        month=month_of(at),
        area=referral.area or UNKNOWN_AREA,
        category=referral.category,
        urgency=referral.urgency,
        **more,
    )


def referral_facts(
    before: Referral | None,
    after: Referral,
    when: datetime,
    record: Calendar,
    holidays: frozenset[date],
) -> list[Counted]:
    """What one referral's change counts: made and how routed, each lifecycle step, the first
    appointment, a missed deadline. `when` is when the change happened (the event's time)."""
    facts: list[Counted] = []
    old = before.status if before is not None else None
    if before is None:
        facts.append(_fact(after, "referrals-made", after.requested))
    if after.status != old:
        if after.status == "requested" and (
            old is None or old in UNSENT or old == UNSENT_INCOMPLETE
        ):
            facts.append(_fact(after, "referrals-routed", when if before else after.requested))
        elif after.status in UNSENT or after.status == UNSENT_INCOMPLETE:
            figure = UNSENT.get(after.status, "referrals-unrouted")
            facts.append(_fact(after, figure, when if before else after.requested))
        elif after.status in LIFECYCLE:
            reason = rejection_reason(after.reason) if after.status == "rejected" else None
            facts.append(_fact(after, LIFECYCLE[after.status], when, reason=reason))
            if after.status == "accepted":
                days = working_days(after.requested, when, holidays)
                facts.append(_fact(after, "days-to-acceptance", when, days=days))
            if after.status == "completed" and after.category == ASSESSMENT:
                facts.append(_fact(after, "assessments-completed", when))
                facts.append(_person_assessed(record.person_id, after, when))
    if after.first_appointment and (before is None or not before.first_appointment):
        slot = record.slots.get(after.first_appointment)
        if slot is not None and slot.start is not None:
            days = working_days(after.requested, slot.start, holidays)
            facts.append(_fact(after, "days-to-first-appointment", when, days=days))
    if after.escalated and (before is None or not before.escalated):
        facts.append(_fact(after, "deadlines-missed", after.deadline or when))
    return facts


def _person_assessed(person_id: str, referral: Referral, when: datetime) -> Counted:
    """A person with an assessment this month: the id names the person and the month, so the
    cell counts each person once however many assessments they had (people, not referrals)."""
    month = month_of(when)
    return Counted(
        counted_id=_id("people-assessed", person_id, month),
        figure="people-assessed",
        month=month,
        area=referral.area or UNKNOWN_AREA,
    )


def area_of(record: Calendar) -> str:
    """The area a person's figures other than referrals fall in: their latest referral's."""
    referrals = sorted(record.referrals.values(), key=lambda r: (r.requested, r.referral_id))
    areas = [r.area for r in referrals if r.area]
    return areas[-1] if areas else UNKNOWN_AREA


def alert_facts(
    before: Calendar, after: Calendar, decisions: Iterable[Decision], when: datetime
) -> list[Counted]:
    """Clashes raised, clashes resolved before the appointment, absences explained.

    An alert goes to each of its recipients under one DetectedIssue id, so its id counts it
    once. A clash counts as resolved before the appointment when the change that resolved it
    came before the changed appointment's (earlier) start.
    """
    area, month = area_of(after), month_of(when)
    facts: list[Counted] = []
    changed_starts = [
        slot.start
        for key, slot in before.slots.items()
        if slot.start is not None and after.slots.get(key) != slot
    ]
    for decision in decisions:
        if not isinstance(decision, Disclose):
            continue
        if decision.event_type == "alert.clash.raised":
            figure = "clashes-detected"
        elif decision.event_type == "alert.absence.explained":
            figure = "absences-explained"
        elif decision.event_type == "alert.clash.resolved" and any(
            when < start for start in changed_starts
        ):
            figure = "clashes-resolved-before"
        else:
            continue
        facts.append(Counted(_id(figure, decision.what), figure, month, area))
    return facts


def record_facts(
    before: Calendar,
    after: Calendar,
    decisions: Iterable[Decision],
    when: datetime,
    holidays: frozenset[date],
    *,
    handed_over: bool = False,
) -> list[Counted]:
    """Everything one change to a person's record counts. A record `handed_over` (another
    person's, joined to this one) brings referrals counted where they began: only the alerts
    the joined record raises count."""
    decisions = list(decisions)
    facts = [
        fact
        for referral_id, referral in after.referrals.items()
        if not handed_over and before.referrals.get(referral_id) != referral
        for fact in referral_facts(
            before.referrals.get(referral_id), referral, when, after, holidays
        )
    ]
    return facts + alert_facts(before, after, decisions, when)


def conflict_facts(decisions: Iterable[Decision]) -> list[Counted]:
    """Identity conflicts raised, by the month they were raised (no person, so no area)."""
    return [
        Counted(
            _id("identity-conflicts", d.conflict.conflict_id),
            "identity-conflicts",
            month_of(d.conflict.raised_at),
            UNKNOWN_AREA,
        )
        for d in decisions
        if isinstance(d, ConflictChanged) and d.conflict.status == "open"
    ]


# --- the aggregate cells ----------------------------------------------------------------------


CellKey = tuple[str, str, str, str, str, str]  # figure, month, area, category, urgency, reason


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell's count, its distribution of working days, and the ids counted into it.

    The ids are kept only while the month is open (`close_months`), to recognise a fact
    delivered again; they are hashes, and a closed month's cells hold counts alone.
    """

    count: int = 0
    days: Mapping[int, int] = field(default_factory=dict)  # working days -> how many
    seen: frozenset[str] = frozenset()


def cell_key(fact: Counted) -> CellKey:
    """Where a fact is counted."""
    return (
        fact.figure,
        fact.month,
        fact.area,
        fact.category or "",
        fact.urgency or "",
        fact.reason or "",
    )


def add_fact(cell: Cell | None, fact: Counted) -> Cell | None:
    """The cell with the fact counted; None when the cell has counted it already."""
    cell = cell or Cell()
    if fact.counted_id in cell.seen:
        return None
    days = dict(cell.days)
    if fact.days is not None:
        days[fact.days] = days.get(fact.days, 0) + 1
    return Cell(cell.count + 1, days, cell.seen | {fact.counted_id})


def add_to_cells(cells: Mapping[CellKey, Cell], facts: Iterable[Counted]) -> dict[CellKey, Cell]:
    """The cells with each fact counted once (a fact seen before adds nothing)."""
    updated = dict(cells)
    for fact in facts:
        key = cell_key(fact)
        cell = add_fact(updated.get(key), fact)
        if cell is not None:
            updated[key] = cell
    return updated


def closed(cell: Cell) -> Cell:
    """A cell of a closed month: its counts only."""
    return replace(cell, seen=frozenset()) if cell.seen else cell


def previous_month(month: str) -> str:
    """The month before "YYYY-MM"."""
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"


def open_months(latest: str) -> frozenset[str]:
    """The months whose cells still keep their ids: the latest month counted and the one before
    (a fact arrives late by minutes or days, not by months)."""
    return frozenset({latest, previous_month(latest)})


def encode_cell(cell: Cell) -> dict[str, Any]:
    """A cell as JSON-ready data."""
    return {
        "count": cell.count,
        "days": {str(d): n for d, n in sorted(cell.days.items())},
        "seen": sorted(cell.seen),
    }


def decode_cell(data: Mapping[str, Any]) -> Cell:
    """A cell from `encode_cell`'s data; ValueError if it is not one."""
    try:
        return Cell(
            int(data["count"]),
            {int(d): int(n) for d, n in data["days"].items()},
            frozenset(str(s) for s in data["seen"]),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"stored measure cell is malformed: {exc}") from exc
