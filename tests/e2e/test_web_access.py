"""No data without sign-in: every route the worker and the gateway serve, walked from their own
routers; and a breach check answered only once its audit record is on the audit topic."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable

from connectors.gateway.app import GatewayConfig, build_app
from connectors.kafka_io import read_topic
from schemas.topics import AUDIT
from tests.e2e.conftest import CRN, NHS, Worker, appointment, patient
from tests.e2e.test_reconciliation import breach_check
from tests.integration.test_gateway import Served
from tests.keys import person_id_for_token

# Answer without sign-in, by design: liveness, readiness and metrics (which name partners,
# never people), and the gateway's description of what it accepts (the FHIR
# CapabilityStatement, its readiness probe, and the OpenAPI document).
PUBLIC = {"/ready", "/livez", "/metrics", "/metadata", "/fhir/metadata", "/openapi.json"}
# What a request without sign-in may be answered: refused, or not found.
REFUSED = {401, 404, 405}
PERSON = person_id_for_token(f"{CRN}|X123456")
# Path parameters filled with values that name real things where a route takes them.
PARAMETERS = {
    "person_id": PERSON,
    "name": "calendars",
    "key": PERSON,
    "resource_type": "Appointment",
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def worker_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route a worker serves, from its live router.

    The worker's web server, built as `concord worker` builds it: the same modules register
    the same pages, and the server adds whatever faust adds when it starts.
    """
    from services.stream import agents  # noqa: F401 -- registers the agents
    from services.stream.app import app
    from services.web import observe, views  # noqa: F401 -- and the pages

    app.web.init_server()
    return routes_of(app.web.web_app.router.routes())


def routes_of(routes: Iterable[object]) -> list[tuple[str, str]]:
    found = set()
    for route in routes:
        resource = route.resource  # type: ignore[attr-defined]
        if resource is not None:
            found.add((route.method, resource.canonical))  # type: ignore[attr-defined]
    return sorted(found)


def status_without_sign_in(base: str, method: str, template: str) -> int:
    path = template.format(**{k: PARAMETERS.get(k, "x") for k in _fields(template)})
    request = urllib.request.Request(
        base + path, method=method, data=b"" if method != "GET" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _fields(template: str) -> list[str]:
    return [part[1:-1] for part in template.split("/") if part.startswith("{")]


def walk(base: str, routes: list[tuple[str, str]]) -> list[str]:
    """Each route that answered without sign-in, with what it answered."""
    answered = []
    for method, template in routes:
        if template in PUBLIC:
            continue
        for each in METHODS if method == "*" else (method,):
            status = status_without_sign_in(base, each, template)
            if status not in REFUSED:
                answered.append(f"{each} {template}: {status}")
    return answered


def test_no_route_of_the_worker_or_the_gateway_answers_without_sign_in(
    worker: Worker, publish
) -> None:
    # Someone the hub knows, so a route that leaks has something to leak.
    publish("probation-london", patient((CRN, "X123456"), (NHS, "9434765919")))
    publish(
        "probation-london",
        appointment(
            "p-1", "noshow", "2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z", (CRN, "X123456")
        ),
    )
    breach_check(worker, "p-1")

    routes = worker_routes()
    assert ("GET", "/ready") in routes, "the walk sees the worker's pages"
    assert walk(worker.url, routes) == []

    with Served(build_app(GatewayConfig())) as gateway:
        routes = routes_of(gateway.runner.app.router.routes())
        assert ("POST", "/fhir/{resource_type}") in routes, "the walk sees the gateway's routes"
        assert walk(f"http://127.0.0.1:{gateway.port}", routes) == []


def test_the_breach_check_answer_arrives_after_its_audit_record_is_stored(
    worker: Worker, publish
) -> None:
    publish("probation-london", patient((CRN, "X123456"), (NHS, "9434765919")))
    publish(
        "probation-london",
        appointment(
            "p-1", "noshow", "2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z", (CRN, "X123456")
        ),
    )
    breach_check(worker, "p-1")
    # Kafka acknowledged the record before the answer left the worker: it is there at once.
    audited = [
        json.loads(value)["resource"] for _, value in read_topic(AUDIT.name, idle_timeout_s=0.5)
    ]
    answers = [
        a
        for a in audited
        if a["entity"][-1]["what"].get("reference") == "BreachCheck/probation-london/p-1"
    ]
    assert answers, "the answer's AuditEvent is on the audit topic"


def test_the_worker_takes_a_person_only_from_a_statement_the_pages_signed(
    worker: Worker, publish
) -> None:
    """A statement of who is signed in that is forged, expired, or names a role that cannot act
    for its partner is refused as a wrong secret is; a good one is answered and audited under the
    individual's name."""
    from datetime import UTC, datetime, timedelta

    from services.domain.staff import STAFF_HEADER, Staff, statement
    from services.runtime import pages_secret

    publish("probation-london", patient((CRN, "X123456"), (NHS, "9434765919")))
    officer = Staff(user="officer.adeyemi", partner="probation-london", role="probation-officer")
    path = f"/person-view?identifier={CRN}%7CX123456"
    now = datetime.now(UTC)

    def asked(header: str) -> int:
        request = urllib.request.Request(worker.url + path, headers={STAFF_HEADER: header})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert asked(statement(officer, "not-the-pages-secret", now)) == 401
    assert asked(statement(officer, pages_secret(), now - timedelta(hours=1))) == 401
    clinician_for_probation = Staff(officer.user, officer.partner, "clinician")
    assert asked(statement(clinician_for_probation, pages_secret(), now)) == 401
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while (status := asked(statement(officer, pages_secret(), datetime.now(UTC)))) == 404:
        assert datetime.now(UTC) < deadline, "the worker never held the person"
        time.sleep(0.3)
    assert status == 200
    audited = [json.loads(v)["resource"] for _, v in read_topic(AUDIT.name, idle_timeout_s=1.0)]
    views = [a for a in audited if a["entity"][1]["what"]["reference"].startswith("PersonView/")]
    assert views[-1]["agent"][1]["who"]["identifier"]["value"] == "officer.adeyemi"
