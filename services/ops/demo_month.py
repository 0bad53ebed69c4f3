"""The demo's month of synthetic activity for the commissioners' figures: seeded referrals across
three areas (Lambeth, Southwark, Wandsworth) with their services' answers, first appointments
and completions, and some clashes; Wandsworth asks for substance misuse treatment and talking
therapies that no service there offers, its unmet need. Then what a commissioner reads: the
figures at GET /measures, and SVG charts of them under .cache/demo-measures/.

No real person: CRNs are made up (`D` and six digits), and nothing here names anyone.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MONTH = "2026-11"
SEED = 2026
AREAS = {"E09000022": 0.45, "E09000028": 0.35, "E09000032": 0.20}
# What each area asks for most; Wandsworth's substance misuse and therapy asks find no service.
CATEGORIES = {
    "E09000022": ["mental-health-assessment"] * 4 + ["substance-misuse-treatment"] * 3
    + ["housing-support"] * 2 + ["crisis-support", "talking-therapies", "gp-registration"],
    "E09000028": ["mental-health-assessment"] * 3 + ["alcohol-treatment"] * 2
    + ["housing-support"] * 2 + ["crisis-support", "gp-registration"],
    "E09000032": ["mental-health-assessment"] * 3 + ["substance-misuse-treatment"] * 3
    + ["talking-therapies"] * 2 + ["housing-support"],
}  # fmt: skip
# Who takes each category where (deploy/services.yaml): the demo answers as that service.
SERVICE = {
    "mental-health-assessment": "mht-rv5",
    "crisis-support": "mht-rv5",
    "talking-therapies": "mht-rv5",
    "substance-misuse-treatment": "vol-recovery",
    "alcohol-treatment": "vol-recovery",
    "housing-support": "vol-housing",
    "gp-registration": "gp-Y01234",
}
CRN = "urn:concord:id:probation-crn"
PROBATION = "probation-london"


def _instant(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _person(crn: str) -> dict[str, Any]:
    return {"identifier": {"system": CRN, "value": crn}}


def _referral(  # noqa: PLR0917 -- one argument per element of the referral
    ref_id: str, crn: str, area: str, category: str, urgency: str, at: datetime
) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": ref_id,
        "status": "active",
        "intent": "order",
        "priority": urgency,
        "category": [{"coding": [{"system": "urn:concord:referral-category", "code": category}]}],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": area}]}],
        "subject": _person(crn),
        "authoredOn": _instant(at),
    }


def _task(
    ref_id: str, crn: str, status: str, at: datetime, reason: str | None = None
) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": f"task-{ref_id}-{status}",
        "meta": {"lastUpdated": _instant(at)},
        "status": status,
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{ref_id}"},
        "for": _person(crn),
    }
    if reason:
        task["statusReason"] = {"text": reason}
    return task


def _appointment(
    appointment_id: str, crn: str, start: datetime, at: datetime, based_on: str | None = None
) -> dict[str, Any]:
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "meta": {"versionId": "1", "lastUpdated": _instant(at)},
        "status": "booked",
        "start": _instant(start),
        "end": _instant(start + timedelta(minutes=45)),
        "participant": [{"actor": _person(crn), "status": "accepted"}],
    }
    if based_on:
        appointment["basedOn"] = [{"reference": f"ServiceRequest/{based_on}"}]
    return appointment


def month_of_activity(
    people: int = 160, seed: int = SEED
) -> Iterator[tuple[datetime, str, dict[str, Any]]]:
    """(when, partner, resource) of the month's activity, in time order."""
    rnd = random.Random(seed)  # noqa: S311 -- synthetic demo data, seeded to be the same each run
    events: list[tuple[datetime, str, dict[str, Any]]] = []
    for number in range(people):
        crn = f"D{number:06d}"
        area = rnd.choices(list(AREAS), weights=list(AREAS.values()))[0]
        for r in range(rnd.choice([1, 1, 1, 2])):
            ref_id, category = f"demo-{number}-{r}", rnd.choice(CATEGORIES[area])
            urgency = "urgent" if rnd.random() < 0.2 else "routine"
            made = datetime(2026, 11, rnd.randint(2, 18), rnd.randint(9, 16), tzinfo=UTC)
            events.append((made, PROBATION, _referral(ref_id, crn, area, category, urgency, made)))
            service = SERVICE[category]
            offered = not (
                area == "E09000032"
                and category in ("substance-misuse-treatment", "talking-therapies")
            )
            if not offered or rnd.random() < 0.1:
                continue  # unmet need, or still awaiting an answer
            decided = made + timedelta(days=rnd.choice([0, 1, 1, 2, 3, 4, 6, 8]), hours=1)
            if rnd.random() < 0.12:
                reason = rnd.choice(["no-capacity", "not-eligible", "out-of-area"])
                events.append((decided, service, _task(ref_id, crn, "rejected", decided, reason)))
                continue
            events.append((decided, service, _task(ref_id, crn, "accepted", decided)))
            first = decided + timedelta(days=rnd.randint(2, 9), hours=1)
            appointment = _appointment(
                f"first-{ref_id}", crn, first, decided + timedelta(minutes=30), ref_id
            )
            events.append((decided + timedelta(minutes=30), service, appointment))
            if rnd.random() < 0.6:
                done = first + timedelta(hours=2)
                events.append((done, service, _task(ref_id, crn, "completed", done)))
        if rnd.random() < 0.15:  # a probation appointment booked over a health one: a clash
            start = datetime(2026, 11, rnd.randint(20, 27), 11, tzinfo=UTC)
            booked = start - timedelta(days=3)
            events.append((booked, PROBATION, _appointment(f"sup-{number}", crn, start, booked)))
            gp = _appointment(
                f"gp-{number}", crn, start + timedelta(minutes=15), booked + timedelta(hours=1)
            )
            events.append((booked + timedelta(hours=1), "gp-Y01234", gp))
    events.sort(key=lambda e: e[0])
    yield from events


def publish_month() -> int:
    """Publish the month as its partners would; how many events."""
    import json

    from connectors.fhir_input import read_text
    from connectors.kafka_io import Publisher
    from connectors.publish import publish_records

    publisher = Publisher()
    sent = 0
    try:
        for _when, partner, resource in month_of_activity():
            publish_records(read_text(json.dumps(resource), "demo-month.json"), partner, publisher)
            sent += 1
    finally:
        publisher.close()
    return sent


def show_figures(worker: str, commissioner: str, secret: str, charts: Path) -> None:
    """Print the month's headline figures by area, as the commissioner reads them, and write a
    chart per figure."""
    import time

    from connectors.pages.charts import bar_chart, breakdown_chart
    from services.domain.signin import basic_header
    from services.ops.client import get_json

    headers = {"Authorization": basic_header(commissioner, secret)}
    deadline = time.monotonic() + 90
    reports: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # until the figures stop changing: every fact counted
        status, bundle = get_json(f"{worker}/measures?month={MONTH}", headers=headers)
        latest = [e["resource"] for e in (bundle or {}).get("entry", [])] if status == 200 else []
        counts = [r["group"] for r in latest]
        if latest and counts == [r["group"] for r in reports]:
            break
        reports = latest
        time.sleep(3)
    charts.mkdir(parents=True, exist_ok=True)
    by_figure: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        by_figure.setdefault(report["measure"].rpartition(":")[2], []).append(report)
    print(f"\nThe commissioner's figures for {MONTH} (GET /measures; * = suppressed):")
    for figure, chosen in sorted(by_figure.items()):
        chosen.sort(key=lambda r: r["id"])
        cells = []
        for r in chosen:
            group = r["group"][0]
            score = group.get("measureScore", {})
            shown = (
                score.get("value", group["population"][0].get("count", "*"))
                if score
                else group["population"][0].get("count", "*")
            )
            cells.append(f"{r['subject']['display'][:12]}={shown}")
        print(f"  {figure:<26} " + "  ".join(cells))
        (charts / f"{figure}.svg").write_text(bar_chart(chosen), encoding="utf-8")
    for report in by_figure.get("referrals-unrouted", []):  # the unmet need, by category
        area = report["subject"].get("identifier", {}).get("value", "all")
        chart = breakdown_chart(report, "category")
        (charts / f"referrals-unrouted-{area}-by-category.svg").write_text(chart, encoding="utf-8")
    print(f"Charts (SVG): {charts}/")
