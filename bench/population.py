"""A deterministic synthetic population for benchmarks: people on probation, the agencies that
see them, and their appointment events as (partner, FHIR resource) pairs in recorded-time order.

Pure: a seeded `random.Random` and the identifier systems from schemas/, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from schemas.identifiers import NHS_NUMBER, PROBATION_CRN

PROBATION = "probation-london"
GP = "gp-Y01234"
MHT = "mht-rv5"
VOLUNTARY = "vol-recovery"
HEALTH = frozenset({GP, MHT})
OBLIGATIONS = frozenset({PROBATION, VOLUNTARY})

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday; every time below is seconds after it
MINUTE, HOUR, DAY = 60, 3600, 86400
WINDOW_DAYS = 90  # appointments start within this many days (after a first week of bookings)

LINKED_SHARE = 0.6  # people whose NHS number probation has recorded (a linking Patient)
LATE_LINK_SHARE = 0.1  # of those, linked only after a health partner has already published
GP_SHARE, MHT_SHARE, VOLUNTARY_SHARE = 0.9, 0.3, 0.4  # who else sees a person
CLASH_SHARE = 0.08  # bookings made on top of another agency's appointment
RESCHEDULE_SHARE = 0.15
CANCEL_SHARE = 0.08
NOSHOW_SHARE = 0.12
NOSHOW_IF_AT_HEALTH = 0.5  # a clash with a health appointment makes a no-show likelier
LATENCY_PAIR_NUMBER = 9_000_000  # appointment numbers of clash_pairs, clear of generate's

_CRN_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class Person:
    """One synthetic person: a probation CRN and, when probation has recorded it, an NHS number."""

    index: int
    crn: str
    nhs: str | None


@dataclass(frozen=True, slots=True)
class Service:
    """What an agency books: codes and the free text that makes Appointments their real size."""

    category: tuple[str, str]
    service_type: tuple[str, str]
    specialty: tuple[str, str]
    appointment_type: tuple[str, str]
    description: str
    instruction: str


@dataclass(frozen=True, slots=True)
class Agency:
    """One partner's way of booking: id prefix, identifier used, services, places and staff."""

    prefix: str
    by_nhs: bool  # health partners name the person by NHS number, the others by CRN
    weight: float  # how often it books, relative to the others
    system: str  # code system of its local service codes
    services: tuple[Service, ...]
    locations: tuple[tuple[str, str], ...]
    staff: tuple[tuple[str, str], ...]


def _agencies() -> dict[str, Agency]:
    follow_up = ("FOLLOWUP", "A follow up visit from a previous appointment")
    routine = ("ROUTINE", "Routine appointment - default if not valued")
    check_up = ("CHECKUP", "A routine check-up, such as an annual physical")
    return {
        PROBATION: Agency(
            "sup",
            by_nhs=False,
            weight=2.0,
            system="https://probation-london.example.org/CodeSystem/contact-type",
            services=(
                Service(
                    ("supervision", "Offender management"),
                    ("COSR", "Supervision appointment with probation practitioner"),
                    ("offender-management", "Offender management"),
                    routine,
                    "Planned supervision contact to review the sentence plan and licence conditions",
                    "Bring proof of address and any letters from other services; arrive ten minutes early.",
                ),
                Service(
                    ("programme", "Accredited programmes"),
                    ("CRSAPT", "Accredited programme session"),
                    ("interventions", "Interventions"),
                    follow_up,
                    "Building Choices group session, module three: managing risk and relationships",
                    "Sessions start promptly; missing a session must be explained to the case manager.",
                ),
            ),
            locations=(
                ("pdu-southwark", "Southwark probation office, Blackfriars Road"),
                ("pdu-lambeth", "Lambeth probation office, Kennington Lane"),
                ("pdu-lewisham", "Lewisham probation office, Catford Road"),
            ),
            staff=(
                ("pp-1042", "Probation practitioner"),
                ("pso-2210", "Probation service officer"),
            ),
        ),
        GP: Agency(
            "gp",
            by_nhs=True,
            weight=2.0,
            system="http://snomed.info/sct",
            services=(
                Service(
                    ("17", "General Practice"),
                    ("394814009", "General practice"),
                    ("394814009", "General practice (specialty)"),
                    check_up,
                    "Medication review with the practice pharmacist, including repeat prescriptions",
                    "Please bring a list of all medicines you take; the surgery is step-free.",
                ),
                Service(
                    ("17", "General Practice"),
                    ("310112004", "General practitioner service"),
                    ("394814009", "General practice (specialty)"),
                    follow_up,
                    "Follow-up consultation with the GP about blood test results and sleep",
                    "If you cannot attend, please call the surgery so the slot can be offered to someone else.",
                ),
            ),
            locations=(
                ("surgery-main", "High Street Surgery, main building"),
                ("surgery-annex", "High Street Surgery, Station Road annex"),
            ),
            staff=(("gp-4411", "General practitioner"), ("pharm-7310", "Practice pharmacist")),
        ),
        MHT: Agency(
            "cmht",
            by_nhs=True,
            weight=1.5,
            system="http://snomed.info/sct",
            services=(
                Service(
                    ("8", "Counselling"),
                    ("310093001", "Mental health service"),
                    ("394587001", "Psychiatry"),
                    follow_up,
                    "Community mental health team review with the care coordinator",
                    "Your care coordinator may call the day before to confirm; an advocate can attend with you.",
                ),
                Service(
                    ("8", "Counselling"),
                    ("708196005", "Psychological therapy service"),
                    ("722162001", "Psychology"),
                    routine,
                    "Cognitive behavioural therapy session, course of twelve, session review",
                    "Sessions last fifty minutes; please complete the short questionnaire beforehand.",
                ),
            ),
            locations=(
                ("maudsley-op", "Maudsley Hospital outpatients, Denmark Hill"),
                ("lambeth-cmht", "Lambeth community mental health team, Stockwell"),
            ),
            staff=(("cc-5520", "Care coordinator"), ("psych-6634", "Consultant psychiatrist")),
        ),
        VOLUNTARY: Agency(
            "rec",
            by_nhs=False,
            weight=2.0,
            system="https://vol-recovery.example.org/CodeSystem/service",
            services=(
                Service(
                    ("33", "Drug and alcohol"),
                    ("keywork", "Recovery key-work session"),
                    ("substance-misuse", "Substance misuse"),
                    follow_up,
                    "One-to-one key-work session to review the recovery plan and harm reduction",
                    "Drop-in support is available before the session; refreshments are provided.",
                ),
                Service(
                    ("33", "Drug and alcohol"),
                    ("group", "Recovery group"),
                    ("substance-misuse", "Substance misuse"),
                    routine,
                    "Peer-led recovery group: relapse prevention and planning the week ahead",
                    "The group meets in the ground-floor room; please let staff know if you need a reminder call.",
                ),
            ),
            locations=(
                ("hub-peckham", "Recovery hub, Rye Lane, Peckham"),
                ("hub-brixton", "Recovery hub, Acre Lane, Brixton"),
            ),
            staff=(("kw-3307", "Recovery key worker"), ("peer-8802", "Peer mentor")),
        ),
    }


AGENCIES = _agencies()


def crn_for(index: int) -> str:
    """The CRN of person `index`: a letter and six digits, unique up to 23 million people."""
    # 7919 is prime to 10**6, so this spreads neighbours apart without ever colliding.
    number = (index * 7919 + 104_729) % 1_000_000
    return f"{_CRN_LETTERS[index // 1_000_000 % len(_CRN_LETTERS)]}{number:06d}"


def _nhs_check_digit(nine: str) -> int | None:
    total = sum(int(digit) * weight for digit, weight in zip(nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def nhs_number_for(index: int) -> str:
    """A valid NHS number for person `index`, unique per index (each owns 11 consecutive stems)."""
    base = 400_000_000 + index * 11
    for stem in range(base, base + 11):
        check = _nhs_check_digit(str(stem))
        if check is not None:
            return f"{stem}{check}"
    raise AssertionError("unreachable: one of 11 consecutive stems always has a check digit")


def person_for(index: int, linked: bool) -> Person:
    """Person `index`, with an NHS number when probation has linked one."""
    return Person(index, crn_for(index), nhs_number_for(index) if linked else None)


class _Change(NamedTuple):
    """One event before it becomes a FHIR resource; sorts by when the partner recorded it."""

    at: int  # seconds after EPOCH
    seq: int  # generation order: a stable tie-break
    partner: str
    person: int
    appointment: int  # appointment number; -1 for the linking Patient
    version: int
    status: str
    start: int
    end: int
    booked_at: int


def _partners_of(rng: random.Random, person: Person) -> tuple[tuple[str, ...], tuple[float, ...]]:
    partners = [PROBATION]
    if person.nhs is not None:
        partners += [p for p, share in ((GP, GP_SHARE), (MHT, MHT_SHARE)) if rng.random() < share]
    if rng.random() < VOLUNTARY_SHARE:
        partners.append(VOLUNTARY)
    return tuple(partners), tuple(AGENCIES[p].weight for p in partners)


def _working_start(rng: random.Random) -> int:
    day = rng.randrange(7, 7 + WINDOW_DAYS)
    if day % 7 >= 5:  # a weekend: agencies book on weekdays
        day -= 2
    return day * DAY + rng.randint(9, 16) * HOUR + rng.choice((0, 15, 30, 45)) * MINUTE


def _start(
    rng: random.Random, partner: str, booked: list[tuple[str, int, int]]
) -> tuple[int, bool]:
    """A start time, and whether it was put on top of a health appointment."""
    if booked and rng.random() < CLASH_SHARE:
        others = [b for b in booked if b[0] != partner]
        if others:
            other, other_start, _ = rng.choice(others)
            return other_start + rng.choice((-30, -15, 0, 15, 30)) * MINUTE, other in HEALTH
    return _working_start(rng), False


def _appointment_changes(
    rng: random.Random,
    person: int,
    number: int,
    partners: tuple[tuple[str, ...], tuple[float, ...]],
    booked: list[tuple[str, int, int]],
) -> list[tuple[Any, ...]]:
    """Booking, perhaps a reschedule, then a cancellation or an outcome: (at, ...) without seq."""
    partner = rng.choices(*partners)[0]
    start, at_health = _start(rng, partner, booked)
    duration = rng.choice((30, 45, 60)) * MINUTE
    booked_at = start - rng.randint(HOUR, min(21 * DAY, start))
    changes = [(booked_at, partner, person, number, 1, "booked", start, start + duration)]
    at, version = booked_at, 1
    if rng.random() < RESCHEDULE_SHARE:
        at = rng.randint(at, max(at, start - HOUR))
        start += rng.choice((1, 2, 7, 14)) * DAY + rng.choice((-60, 0, 60)) * MINUTE
        version += 1
        changes.append((at, partner, person, number, version, "booked", start, start + duration))
    booked.append((partner, start, start + duration))
    if rng.random() < CANCEL_SHARE:
        at = rng.randint(at, max(at, start - HOUR))
        status = "cancelled"
    else:
        at = start + duration + rng.randint(5 * MINUTE, 2 * HOUR)
        noshow = NOSHOW_IF_AT_HEALTH if at_health and partner in OBLIGATIONS else NOSHOW_SHARE
        status = "noshow" if rng.random() < noshow else "fulfilled"
    changes.append((at, partner, person, number, version + 1, status, start, start + duration))
    return [(*change, booked_at) for change in changes]


def _changes(rng: random.Random, people: list[Person], events: int) -> list[_Change]:
    """Every appointment change (exactly `events`) and the linking Patients, in recorded order."""
    partners = [_partners_of(rng, person) for person in people]
    booked: list[list[tuple[str, int, int]]] = [[] for _ in people]
    raw: list[tuple[Any, ...]] = []
    number = 0
    while len(raw) < events:
        # Everyone gets a first appointment before anyone gets a second.
        index = number if number < len(people) else rng.randrange(len(people))
        number += 1
        raw += _appointment_changes(rng, index, number, partners[index], booked[index])
    del raw[events:]
    first: dict[int, int] = {}  # person -> when a partner first and last published about them
    last: dict[int, int] = {}
    for change in raw:
        first[change[2]] = min(change[0], first.get(change[2], change[0]))
        last[change[2]] = max(change[0], last.get(change[2], change[0]))
    for person in people:
        if person.nhs is not None:
            at = _link_time(rng, first.get(person.index), last.get(person.index))
            raw.append((at, PROBATION, person.index, -1, 1, "", 0, 0, 0))
    changes = [_Change(change[0], seq, *change[1:]) for seq, change in enumerate(raw)]
    changes.sort()
    return changes


def _link_time(rng: random.Random, first: int | None, last: int | None) -> int:
    if first is None or last is None:
        return rng.randrange(WINDOW_DAYS * DAY)
    if last > first and rng.random() < LATE_LINK_SHARE:
        return rng.randint(first, last)
    return first - rng.randint(0, min(2 * DAY, first))


@cache
def _date(day: int) -> str:
    return (EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")


def _iso(seconds: int) -> str:
    # strftime on a datetime per field was most of the generator's time.
    day, rest = divmod(seconds, DAY)
    hours, rest = divmod(rest, HOUR)
    minutes, secs = divmod(rest, MINUTE)
    return f"{_date(day)}{hours:02d}:{minutes:02d}:{secs:02d}Z"


def appointment(
    partner: str,
    person: Person,
    number: int,
    *,
    version: int,
    status: str,
    start: int,
    end: int,
    booked_at: int,
    at: int,
) -> dict[str, Any]:
    """A FHIR R4 Appointment as `partner` publishes it (about 1.5 KB of JSON)."""
    agency = AGENCIES[partner]
    service = agency.services[number % len(agency.services)]
    location = agency.locations[(person.index + number) % len(agency.locations)]
    staff = agency.staff[number % len(agency.staff)]
    who = (NHS_NUMBER, person.nhs) if agency.by_nhs else (PROBATION_CRN, person.crn)
    appointment_id = f"{agency.prefix}-{number:07d}"
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "meta": {"versionId": str(version), "lastUpdated": _iso(at)},
        "status": status,
        "serviceCategory": [_concept(agency.system, service.category)],
        "serviceType": [_concept(agency.system, service.service_type)],
        "specialty": [_concept(agency.system, service.specialty)],
        "appointmentType": _concept(
            "http://terminology.hl7.org/CodeSystem/v2-0276", service.appointment_type
        ),
        "description": service.description,
        "start": _iso(start),
        "end": _iso(end),
        "minutesDuration": (end - start) // MINUTE,
        "created": _iso(booked_at),
        "patientInstruction": service.instruction,
        "participant": [
            {
                "actor": {"identifier": {"system": who[0], "value": who[1]}},
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": {"reference": f"Practitioner/{staff[0]}", "display": staff[1]},
                "required": "required",
                "status": "accepted",
            },
            {
                "actor": {"reference": f"Location/{location[0]}", "display": location[1]},
                "required": "required",
                "status": "accepted",
            },
        ],
    }
    if status == "cancelled":
        resource["cancelationReason"] = {"text": "Cancelled by the service: staff unavailable"}
    return resource


def _concept(system: str, code: tuple[str, str]) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code[0], "display": code[1]}]}


def link_patient(person: Person, at: int) -> dict[str, Any]:
    """Probation's Patient naming the person by CRN and NHS number: the event that links them."""
    if person.nhs is None:
        raise ValueError("only a person with an NHS number can be linked")
    return {
        "resourceType": "Patient",
        "id": f"case-{person.crn}",
        "meta": {"versionId": "1", "lastUpdated": _iso(at)},
        "active": True,
        "identifier": [
            {"use": "official", "system": PROBATION_CRN, "value": person.crn},
            {"use": "secondary", "system": NHS_NUMBER, "value": person.nhs},
        ],
        "managingOrganization": {"display": "London Probation Delivery Unit"},
    }


def population(people: int, seed: int = 7) -> list[Person]:
    """The `people` people of a seeded population; about 60% carry an NHS number."""
    rng = random.Random(seed)
    return [person_for(index, rng.random() < LINKED_SHARE) for index in range(people)]


def generate(people: int, events: int, seed: int = 7) -> Iterator[tuple[str, dict[str, Any]]]:
    """(partner, resource) for `events` appointment events plus a linking Patient per linked person.

    The same arguments always give the same stream. Events come in the order partners
    recorded them, so bookings precede their reschedules, cancellations and outcomes.
    """
    folks = population(people, seed)
    for change in _changes(random.Random(seed + 1), folks, events):
        person = folks[change.person]
        if change.appointment < 0:
            yield change.partner, link_patient(person, change.at)
            continue
        yield (
            change.partner,
            appointment(
                change.partner,
                person,
                change.appointment,
                version=change.version,
                status=change.status,
                start=change.start,
                end=change.end,
                booked_at=change.booked_at,
                at=change.at,
            ),
        )


def clash_pairs(
    first_person: int, pairs: int, seed: int = 7
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Two overlapping bookings from different agencies for each of `pairs` new people.

    Person `first_person + k` gets the k-th pair: probation and the recovery service by
    CRN, or the GP and the mental health trust by NHS number, alternately. The second
    booking of each pair is the one that raises the clash.
    """
    rng = random.Random(seed)
    for k in range(pairs):
        person = person_for(first_person + k, linked=True)
        first, second = (PROBATION, VOLUNTARY) if k % 2 == 0 else (GP, MHT)
        start = _working_start(rng)
        number = LATENCY_PAIR_NUMBER + 2 * k
        for partner, offset, n in ((first, 0, number), (second, 15 * MINUTE, number + 1)):
            yield (
                partner,
                appointment(
                    partner,
                    person,
                    n,
                    version=1,
                    status="booked",
                    start=start + offset,
                    end=start + offset + 45 * MINUTE,
                    booked_at=start - 3 * DAY,
                    at=start - 3 * DAY,
                ),
            )
