"""The commissioners' figures of a generated population equal the counts worked out from that
population's own plan, before suppression; delivered twice, or replayed into empty state, the
figures are the same.

The population is seeded. Its ground truth is computed here in plain Python from the plan (which
referrals were made where, what happened to each and when), never by the code under test; the
figures come from the hub's own steps (services/stream/pipeline.py person_event) and cells.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import holidays
import yaml

from schemas.codec import peek
from schemas.envelope import wrap
from schemas.fhir import event_type_for, subject_of
from schemas.identifiers import PROBATION_CRN
from schemas.internal import DeadlinesCommand
from schemas.referrals import CATEGORIES
from services.domain.decisions import Rules
from services.domain.measures import Cell, add_to_cells
from services.domain.referrals import ServiceDirectory
from services.runtime import ROOT, partner_directory
from services.stream.pipeline import counted_person_event, fact_of

SEED = 20261130
AREAS = ("E09000022", "E09000028", "E09000032")
RECIPIENT_OUTCOMES = ("accepted", "completed", "rejected", "cancelled", "pending")
REASONS = ("no-capacity", "not-eligible", "out-of-area", "the team is full this month")
SERVICES = yaml.safe_load((ROOT / "deploy" / "services.yaml").read_text())
RULES = Rules(
    directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
    now=datetime(2026, 12, 1, tzinfo=UTC),
    services=ServiceDirectory.from_dict(SERVICES),
)
CHECKED = datetime(2027, 1, 4, 9, tzinfo=UTC)
# England's bank holidays, from the package, not from the hub's runtime.
BANK_HOLIDAYS = set(holidays.country_holidays("GB", subdiv="ENG", years=[2026, 2027]))


def offered() -> dict[tuple[str, str], str]:
    """(category, area) -> the partner offering it, first by partner id (as the directory says)."""
    found: dict[tuple[str, str], str] = {}
    for org in sorted(SERVICES["organisations"], key=lambda o: o["partner"]):
        for offer in org["services"]:
            for area in offer["areas"]:
                found.setdefault((offer["category"], str(area)), org["partner"])
    return found


def days_between(start: date, end: date) -> int:
    """Working days after `start` up to `end`, counted one day at a time."""
    return sum(
        1
        for n in range(1, (end - start).days + 1)
        if (start + timedelta(days=n)).weekday() < 5
        and (start + timedelta(days=n)) not in BANK_HOLIDAYS
    )


@dataclass
class Planned:
    """One referral as planned: where, what, and what happens to it when."""

    ref_id: str
    area: str
    category: str
    urgency: str
    made: datetime
    held: bool
    recipient: str | None
    outcome: str
    reason: str | None = None
    decided: datetime | None = None
    first_appointment: datetime | None = None
    completed: datetime | None = None


@dataclass
class Person:
    crn: str
    person_id: str
    referrals: list[Planned] = field(default_factory=list)
    clash: bool = False
    clash_resolved: bool = False
    absence_explained: bool = False


def plan(seed: int = SEED, people: int = 70) -> list[Person]:
    rnd = random.Random(seed)
    services = offered()
    population = []
    for number in range(people):
        person = Person(f"X{number:06d}", f"p-pop-{number:04d}")
        for r in range(rnd.randint(1, 3)):
            area, category = rnd.choice(AREAS), rnd.choice(list(CATEGORIES))
            made = datetime(2026, 11, rnd.randint(2, 20), rnd.randint(8, 16), tzinfo=UTC)
            recipient = services.get((category, area))
            held = recipient is not None and rnd.random() < 0.1
            outcome = rnd.choice(RECIPIENT_OUTCOMES) if recipient and not held else "none"
            p = Planned(
                f"ref-{number}-{r}",
                area,
                category,
                rnd.choice(["routine", "urgent"]),
                made,
                held,
                recipient,
                outcome,
            )
            if outcome in ("accepted", "completed", "rejected", "cancelled"):
                p.decided = made + timedelta(days=rnd.randint(0, 9), hours=1)
            if outcome == "rejected":
                p.reason = rnd.choice(REASONS)
            if outcome in ("accepted", "completed") and rnd.random() < 0.7:
                p.first_appointment = p.decided + timedelta(days=rnd.randint(1, 12))  # type: ignore[operator]
            if outcome == "completed":
                p.completed = p.decided + timedelta(days=rnd.randint(1, 5))  # type: ignore[operator]
            person.referrals.append(p)
        person.clash = rnd.random() < 0.25
        person.clash_resolved = person.clash and rnd.random() < 0.5
        person.absence_explained = not person.clash and rnd.random() < 0.2
        population.append(person)
    return population


# --- ground truth: the plan's own counts ------------------------------------------------------


def month(at: datetime) -> str:
    return at.strftime("%Y-%m")


def truth(population: list[Person]) -> tuple[Counter, dict]:
    """Counts per (figure, month, area, category, urgency, reason), and days per cell."""
    counts: Counter = Counter()
    days: dict = defaultdict(list)
    for person in population:
        assessed_months: set[tuple[str, str]] = set()
        for p in person.referrals:
            cell = (p.area, p.category, p.urgency, "")
            counts[("referrals-made", month(p.made), *cell)] += 1
            if p.recipient is None:
                counts[("referrals-unrouted", month(p.made), *cell)] += 1
            elif p.held:
                counts[("referrals-held", month(p.made), *cell)] += 1
            else:
                counts[("referrals-routed", month(p.made), *cell)] += 1
            if p.outcome in ("accepted", "completed"):
                assert p.decided is not None
                key = ("days-to-acceptance", month(p.decided), *cell)
                counts[("referrals-accepted", month(p.decided), *cell)] += 1
                counts[key] += 1
                days[key].append(days_between(p.made.date(), p.decided.date()))
            if p.first_appointment is not None:
                key = ("days-to-first-appointment", month(p.decided), *cell)  # type: ignore[arg-type]
                counts[key] += 1
                days[key].append(days_between(p.made.date(), p.first_appointment.date()))
            if p.outcome == "rejected":
                code = (
                    p.reason
                    if p.reason in ("no-capacity", "not-eligible", "out-of-area")
                    else "other"
                )
                counts[
                    ("referrals-rejected", month(p.decided), p.area, p.category, p.urgency, code)
                ] += 1  # type: ignore[arg-type]
            if p.outcome == "pending":  # still awaiting acceptance when deadlines are checked
                due = deadline(p.made, {"routine": 5, "urgent": 1}[p.urgency])
                counts[("deadlines-missed", month(due), *cell)] += 1
            if p.outcome == "cancelled":
                counts[("referrals-cancelled", month(p.decided), *cell)] += 1  # type: ignore[arg-type]
            if p.outcome == "completed":
                assert p.completed is not None
                counts[("referrals-completed", month(p.completed), *cell)] += 1
                if p.category == "mental-health-assessment":
                    counts[("assessments-completed", month(p.completed), *cell)] += 1
                    assessed_months.add((month(p.completed), p.area))
        for when, area in assessed_months:
            counts[("people-assessed", when, area, "", "", "")] += 1
        latest_area = max(person.referrals, key=lambda p: (p.made, p.ref_id)).area
        if person.clash:
            counts[("clashes-detected", "2026-12", latest_area, "", "", "")] += 1
        if person.clash_resolved:
            counts[("clashes-resolved-before", "2026-12", latest_area, "", "", "")] += 1
        if person.absence_explained:
            counts[("absences-explained", "2026-12", latest_area, "", "", "")] += 1
    return counts, days


def deadline(made: datetime, working: int) -> datetime:
    """The SLA deadline: so many weekdays on, a weekend deadline moved to Monday."""
    day = made
    while working:
        day += timedelta(days=1)
        working -= day.weekday() < 5
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


# --- the population's events, as partners send them ---------------------------------------------


def message(partner: str, resource: dict, person: Person, at: datetime) -> dict:
    wrapped = wrap(
        resource,
        event_type=event_type_for(resource["resourceType"]),
        source=partner,
        subject=subject_of(resource),
        now=at,
    )
    envelope = peek(wrapped.model_dump_json().encode())
    envelope["subject"]["person_id"] = person.person_id
    return envelope


def _who(person: Person) -> dict:
    return {"identifier": {"system": PROBATION_CRN, "value": person.crn}}


def service_request(p: Planned, person: Person) -> dict:
    resource = {
        "resourceType": "ServiceRequest",
        "id": p.ref_id,
        "status": "active",
        "intent": "order",
        "priority": p.urgency,
        "category": [{"coding": [{"system": "urn:concord:referral-category", "code": p.category}]}],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": p.area}]}],
        "subject": _who(person),
        "authoredOn": p.made.isoformat().replace("+00:00", "Z"),
    }
    if p.held:
        resource["note"] = [{"text": "needs consent to share"}]
    return resource


def task(p: Planned, person: Person, status: str, reason: str | None = None) -> dict:
    resource = {
        "resourceType": "Task",
        "id": f"task-{p.ref_id}-{status}",
        "status": status,
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{p.ref_id}"},
        "for": {"identifier": {"system": "urn:concord:id:person", "value": person.person_id}},
    }
    if reason:
        resource["statusReason"] = {"text": reason}
    return resource


def appointment(
    appointment_id: str,
    status: str,
    start: datetime,
    person: Person,
    *,
    version: int = 1,
    based_on: str | None = None,
) -> dict:
    resource = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "meta": {"versionId": str(version)},
        "status": status,
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + timedelta(minutes=45)).isoformat().replace("+00:00", "Z"),
        "participant": [{"actor": _who(person), "status": "accepted"}],
    }
    if based_on:
        resource["basedOn"] = [{"reference": f"ServiceRequest/{based_on}"}]
    return resource


def events(person: Person) -> list[tuple[datetime, str, dict]]:
    """(when, partner, resource) of everything the person's partners send, in time order."""
    sent: list[tuple[datetime, str, dict]] = []
    for p in person.referrals:
        sent.append((p.made, "probation-london", service_request(p, person)))
        if p.decided is None:
            continue
        if p.outcome == "cancelled":
            sent.append((p.decided, "probation-london", task(p, person, "cancelled")))
            continue
        status = "rejected" if p.outcome == "rejected" else "accepted"
        sent.append((p.decided, p.recipient, task(p, person, status, p.reason)))  # type: ignore[arg-type]
        if p.first_appointment is not None:
            booked = appointment(
                f"appt-{p.ref_id}", "booked", p.first_appointment, person, based_on=p.ref_id
            )
            sent.append((p.decided + timedelta(minutes=5), p.recipient, booked))  # type: ignore[arg-type, operator]
        if p.completed is not None:
            sent.append((p.completed, p.recipient, task(p, person, "completed")))  # type: ignore[arg-type]
    sent.sort(key=lambda e: e[0])
    day = datetime(2026, 12, 10, 10, tzinfo=UTC)
    after = datetime(2026, 12, 1, 9, tzinfo=UTC)
    if person.clash:
        sent.append((after, "probation-london", appointment("prob-1", "booked", day, person)))
        sent.append(
            (after + timedelta(hours=1), "gp-Y01234", appointment("gp-1", "booked", day, person))
        )
        if person.clash_resolved:
            moved = appointment("gp-1", "booked", day + timedelta(hours=4), person, version=2)
            sent.append((after + timedelta(days=2), "gp-Y01234", moved))
    if person.absence_explained:
        sent.append((after, "probation-london", appointment("prob-2", "booked", day, person)))
        sent.append(
            (day + timedelta(hours=2), "gp-Y01234", appointment("gp-2", "fulfilled", day, person))
        )
        sent.append(
            (
                day + timedelta(hours=3),
                "probation-london",
                appointment("prob-2", "noshow", day, person, version=2),
            )
        )
    return sent


def figures(population: list[Person], *, twice: bool = False) -> dict:
    """The aggregate cells the hub's own steps count from the population's events."""
    cells: dict = {}
    for person in population:
        stored = None
        for when, partner, resource in events(person):
            msg = message(partner, resource, person, when)
            rules = replace(RULES, now=when)
            for _ in range(2 if twice else 1):
                step, counted = counted_person_event(stored, msg, rules)
                stored = step.stored if step.stored is not None else stored
                cells = add_to_cells(cells, [fact_of(out.value) for out in counted])
        # The escalation timer's command, once every deadline has passed.
        check = DeadlinesCommand(person_id=person.person_id, now=CHECKED)
        step, counted = counted_person_event(stored, check, replace(RULES, now=CHECKED))
        cells = add_to_cells(cells, [fact_of(out.value) for out in counted])
    return cells


def as_counts(cells: dict) -> tuple[Counter, dict]:
    counts: Counter = Counter()
    days: dict = {}
    for (figure, when, area, category, urgency, reason), cell in cells.items():
        key = (figure, when, area, category, urgency, reason)
        counts[key] += cell.count
        if cell.days:
            days[key] = sorted(d for d, n in cell.days.items() for _ in range(n))
    return +counts, days


def test_the_figures_of_a_generated_population_equal_its_ground_truth() -> None:
    population = plan()
    expected, expected_days = truth(population)
    counts, days = as_counts(figures(population))
    assert counts == +expected
    assert days == {k: sorted(v) for k, v in expected_days.items()}
    # The population exercises every figure a person's record counts, in every area.
    assert {k[0] for k in counts} >= {
        "referrals-made", "referrals-routed", "referrals-held", "referrals-unrouted",
        "referrals-accepted", "referrals-rejected", "referrals-completed", "referrals-cancelled",
        "days-to-acceptance", "days-to-first-appointment", "assessments-completed",
        "people-assessed", "clashes-detected", "deadlines-missed", "clashes-resolved-before", "absences-explained",
    }  # fmt: skip
    assert {k[2] for k in counts} == set(AREAS)


def test_each_event_delivered_twice_counts_once() -> None:
    population = plan(seed=SEED + 1, people=30)
    assert as_counts(figures(population, twice=True)) == as_counts(figures(population))


def test_replaying_the_counted_facts_into_empty_cells_gives_the_same_figures() -> None:
    """The cells are a fold of the measure-events topic: replayed from the start, with the
    redeliveries a crash leaves in it, they come out the same."""
    population = plan(seed=SEED + 2, people=30)
    facts = []
    for person in population:
        stored = None
        for when, partner, resource in events(person):
            step, counted = counted_person_event(
                stored, message(partner, resource, person, when), replace(RULES, now=when)
            )
            stored = step.stored if step.stored is not None else stored
            facts += [fact_of(out.value) for out in counted]
    live = add_to_cells({}, facts)
    replayed = add_to_cells({}, facts + facts[: len(facts) // 3])
    assert replayed == live
    assert all(isinstance(cell, Cell) and cell.count > 0 for cell in live.values())
