"""The commissioners' figures on the real broker: referrals counted by the worker appear as
MeasureReports on the measures topic and at GET /measures, small numbers suppressed; and a
commissioner reaches no endpoint about people; a replay from the start publishes the same figures."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.kafka_io import read_topic
from schemas.codec import decode
from schemas.measures import BY_CODE
from schemas.topics import MEASURES
from services.domain.measure_reports import table
from services.domain.measures import Counted, add_to_cells
from services.domain.signin import basic_header
from services.domain.suppression import shown
from services.runtime import ROOT, area_map
from tests.conftest import run_concord
from tests.e2e.conftest import DEMO_SECRETS, Worker
from tests.e2e.test_referrals import referral
from tests.e2e.test_web_access import PARAMETERS, _fields, worker_routes

AREAS = area_map(ROOT / "deploy" / "areas.yaml")
COMMISSIONER = "commissioner-sel"
MONTH = "2026-11"
LAMBETH, WANDSWORTH = "E09000022", "E09000032"
PERSON_LEVEL = re.compile(
    r"(\bp-[0-9a-f]{20}\b|\bX\d{6}\b|probation-crn|nhs-number|urn:concord:id:)"
)
# Answer a commissioner, by design: readiness, and the figures.
AGGREGATE = {"/ready", "/livez", "/metrics", "/measures"}  # about the hub, never a person


def as_crn(referral_id: str, crn: str, **more: Any) -> dict[str, Any]:
    resource = referral(referral_id, authored=None, **more)
    resource["subject"]["identifier"]["value"] = crn
    resource["authoredOn"] = f"{MONTH}-16T10:00:00Z"
    return resource


def get(worker: Worker, path: str, partner: str) -> tuple[int, bytes]:
    headers = {"Authorization": basic_header(partner, DEMO_SECRETS[partner])}
    request = urllib.request.Request(worker.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def published(figure: str, area: str, expected: int | str, timeout_s: float = 60.0) -> bool:
    """Whether the latest MeasureReport of a figure and area on the measures topic comes to show
    `expected` (the figures are republished as facts arrive); bounded wait."""
    wanted = f"{figure}-{MONTH}-{area}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        latest = {
            key.decode(): decode(value).resource
            for key, value in read_topic(MEASURES.name, idle_timeout_s=1.0)
            if key
        }
        if wanted in latest and _headline(latest[wanted]) == expected:
            return True
        time.sleep(0.5)
    return False


def expected_headlines(figure: str) -> dict[str, int | str]:
    """What each area's report should show, from the facts this test sent, counted here."""
    facts = [
        Counted(f"m{n}", "referrals-made", MONTH, LAMBETH, "mental-health-assessment", "routine")
        for n in range(12)
    ] + [
        Counted(f"t{n}", "referrals-made", MONTH, WANDSWORTH, "talking-therapies", "routine")
        for n in range(3)
    ]
    if figure != "referrals-made":  # what was offered was routed; the rest was not
        unmet = figure == "referrals-unrouted"
        facts = [replace(f, figure=figure) for f in facts if (f.area == WANDSWORTH) == unmet]
    t = table(BY_CODE[figure], MONTH, add_to_cells({}, facts), AREAS)
    return {
        row[1]: shown(t.counts[(row, ("all", ""))], (row, ("all", "")) in t.suppressed)
        for row in t.rows
    }


def _headline(report: dict[str, Any]) -> int | str:
    population = report["group"][0]["population"][0]
    return population.get("count", "*")


def test_referrals_counted_by_the_worker_reach_the_topic_and_get_measures(
    worker: Worker, publish
) -> None:
    for n in range(12):  # twelve people referred for assessment in Lambeth: shown, rounded
        publish("probation-london", as_crn(f"mha-{n}", f"X5{n:05d}"))
    for n in range(3):  # three for talking therapies in Wandsworth, where none is offered
        publish(
            "probation-london",
            as_crn(f"tt-{n}", f"X6{n:05d}", category="talking-therapies", area=WANDSWORTH),
        )

    routed = expected_headlines("referrals-routed")
    assert routed[LAMBETH] == routed["all"] == 10  # 12, rounded to 5: nothing small to hide
    assert published("referrals-routed", LAMBETH, 10)
    made = expected_headlines("referrals-made")
    for area, headline in made.items():
        assert published("referrals-made", area, headline), f"{area} shows {headline}"
    unmet = expected_headlines("referrals-unrouted")
    assert unmet[WANDSWORTH] == "*", "three is a small number: suppressed"
    assert published("referrals-unrouted", WANDSWORTH, "*")

    path = f"/measures?month={MONTH}&figure=referrals-routed"
    status, body = get(worker, path, COMMISSIONER)
    deadline = time.monotonic() + 30
    while status == 200 and time.monotonic() < deadline:
        by_id = {e["resource"]["id"]: e["resource"] for e in json.loads(body)["entry"]}
        if {
            a: _headline(by_id[f"referrals-routed-{MONTH}-{a}"])
            for a in routed
            if f"referrals-routed-{MONTH}-{a}" in by_id
        } == routed:
            break
        time.sleep(0.5)  # the worker follows the measures topic; bounded wait for it
        status, body = get(worker, path, COMMISSIONER)
    assert status == 200, body
    by_id = {e["resource"]["id"]: e["resource"] for e in json.loads(body)["entry"]}
    assert _headline(by_id[f"referrals-routed-{MONTH}-{LAMBETH}"]) == 10

    status, body = get(worker, f"/measures?month={MONTH}&format=csv", COMMISSIONER)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    unrouted = [r for r in rows if r["figure"] == "referrals-unrouted" and r["area"] == WANDSWORTH]
    assert unrouted
    assert {r["count"] for r in unrouted if r["breakdown"] == "all"} == {"*"}

    # Nothing a commissioner reads names a person, or counts fewer than 8.
    for text in [
        body.decode(),
        *(v.decode() for _, v in read_topic(MEASURES.name, idle_timeout_s=1.0)),
    ]:
        assert not PERSON_LEVEL.search(text)
    for row in rows:
        assert row["count"] == "*" or int(row["count"]) == 0 or int(row["count"]) >= 10

    status, _ = get(worker, "/measures", "probation-london")
    assert status == 403, "the figures are for commissioners"

    # The same figures from the command line, as CSV; refused to anyone but a commissioner.
    cli = run_concord(
        "measures", "--for", COMMISSIONER, "--month", MONTH, "--figure", "referrals-unrouted",
        "--csv", env={"CONCORD_PARTNER_SECRET": DEMO_SECRETS[COMMISSIONER]},
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    lines = list(csv.DictReader(io.StringIO(cli.stdout)))
    assert {r["count"] for r in lines if r["area"] == WANDSWORTH and r["breakdown"] == "all"} == {
        "*"
    }
    refused = run_concord(
        "measures", "--for", "probation-london", "--month", MONTH,
        env={"CONCORD_PARTNER_SECRET": DEMO_SECRETS["probation-london"]},
    )  # fmt: skip
    assert refused.returncode == 5
    assert "for commissioners" in refused.stderr


def test_a_commissioner_reaches_no_endpoint_about_people(worker: Worker) -> None:
    """Every route the worker serves, walked from its live router, as a signed-in commissioner."""
    routes = worker_routes()
    assert ("GET", "/measures") in routes
    answered = []
    for method, template in routes:
        if template in AGGREGATE:
            continue
        path = template.format(**{k: PARAMETERS.get(k, "x") for k in _fields(template)})
        for each in ("GET", "POST", "PUT", "PATCH", "DELETE") if method == "*" else (method,):
            headers = {"Authorization": basic_header(COMMISSIONER, DEMO_SECRETS[COMMISSIONER])}
            request = urllib.request.Request(
                worker.url + path, method=each, headers=headers, data=None if each == "GET" else b""
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answered.append(f"{each} {template}: {response.status}")
            except urllib.error.HTTPError as exc:
                if exc.code not in {401, 403, 404, 405}:
                    answered.append(f"{each} {template}: {exc.code}")
    assert answered == []
    status, _ = get(worker, "/referrals", COMMISSIONER)
    assert status == 403


def latest_figures() -> dict[str, Any]:
    """Each published report's figures (its groups), by report id: what a replay must repeat."""
    return {
        key.decode(): decode(value).resource["group"]
        for key, value in read_topic(MEASURES.name, idle_timeout_s=1.0)
        if key
    }


def published_at() -> dict[str, str]:
    """When each report on the measures topic was last published."""
    return {
        key.decode(): decode(value).resource["date"]
        for key, value in read_topic(MEASURES.name, idle_timeout_s=1.0)
        if key
    }


def settled(timeout_s: float = 60.0) -> dict[str, Any]:
    """The published figures once two reads a few seconds apart agree (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    before = latest_figures()
    while time.monotonic() < deadline:
        time.sleep(3)
        now = latest_figures()
        if now and now == before:
            return now
        before = now
    raise AssertionError("the figures did not settle")


def accepted(referral_id: str, crn: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": f"task-{referral_id}-accepted",
        "meta": {"lastUpdated": f"{MONTH}-18T11:00:00Z"},
        "status": "accepted",
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral_id}"},
        "for": {"identifier": {"system": "urn:concord:id:probation-crn", "value": crn}},
    }


def test_a_replay_from_the_start_gives_the_same_figures(
    topics: str, tmp_path: Path, publish
) -> None:
    """A second hub (its own consumer group and tables, nothing of the first's state) reading
    the same topics from the start counts every fact again and publishes the same figures."""
    first = Worker(tmp_path)
    first.start()
    try:
        for n in range(13):
            publish("probation-london", as_crn(f"rp-{n}", f"X7{n:05d}"))
            if n % 3:
                publish("mht-rv5", accepted(f"rp-{n}", f"X7{n:05d}"))
        for n in range(4):
            publish("probation-london", as_crn(f"rq-{n}", f"X8{n:05d}", area=WANDSWORTH))
        live = settled()
    finally:
        first.stop()
    assert _headline_of(live, f"referrals-accepted-{MONTH}-{LAMBETH}") == 10  # 8, rounded

    replay_began = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    # A second app id: its own consumer group and changelogs, which its worker creates.
    replaying = Worker(tmp_path, CONCORD_APP_ID=f"{topics}replay", CONCORD_CREATE_TOPICS="true")
    replaying.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and min(published_at().values()) < replay_began:
            time.sleep(2)  # until the replaying hub has published every report again
        replayed = settled()
    finally:
        replaying.stop()
    assert min(published_at().values()) >= replay_began, "every report was published again"
    assert replayed == live


def _headline_of(figures: dict[str, Any], report: str) -> int | str:
    population = figures[report][0]["population"][0]
    return population.get("count", "*")
