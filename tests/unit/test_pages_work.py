"""Unit tests for what the pages build and choose without a broker: the clinician's Task and
Appointment, the operator's dead-letter filters and pages, and who may open the operator pages."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from connectors.fhir_input import read_text
from connectors.pages import operations, referrals
from connectors.pages.app import build_app
from connectors.publish import Encoded, decide_encoded
from schemas.envelope import DeadLetter
from schemas.identifiers import NHS_NUMBER, PersonIdentifier
from services.domain.audit import STAFF_USER_SYSTEM, replay_audit
from services.domain.staff import STAFF_HEADER
from services.runtime import ROOT
from tests.unit.test_pages_sessions import CONFIG, USERS, sign_in

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
ENTRY = {
    "referral_id": "probation-london/ref-1",
    "id": "ref-1",
    "person_id": "p-0123456789abcdef0123",
}


def edge_decision(resource: dict[str, Any], partner: str) -> Any:
    [record] = list(read_text(json.dumps(resource), "pages"))
    return decide_encoded(record, partner)


def test_accepting_is_the_task_a_trust_system_sends_and_passes_its_edge_checks() -> None:
    task = referrals.task(ENTRY, "accepted", NOW, None)
    assert task["focus"] == {"reference": "ServiceRequest/ref-1"}
    assert isinstance(edge_decision(task, "mht-rv5"), Encoded)
    rejected = referrals.task(ENTRY, "rejected", NOW, "No capacity in the area")
    assert rejected["statusReason"] == {"text": "No capacity in the area"}


def test_the_first_appointment_names_the_person_as_the_service_knows_them() -> None:
    start, end = datetime(2026, 12, 10, 10, tzinfo=UTC), datetime(2026, 12, 10, 11, tzinfo=UTC)
    booked = referrals.first_appointment(
        ENTRY, PersonIdentifier(NHS_NUMBER, "9434765919"), start, end, NOW
    )
    assert booked["basedOn"] == [{"reference": "ServiceRequest/ref-1"}]
    assert isinstance(edge_decision(booked, "mht-rv5"), Encoded)


def test_booking_times_are_read_in_local_time_and_checked() -> None:
    summer = referrals.booking_times({"date": "2026-07-01", "start": "10:00", "end": "11:00"})
    assert summer == (datetime(2026, 7, 1, 9, tzinfo=UTC), datetime(2026, 7, 1, 10, tzinfo=UTC))
    assert referrals.booking_times({"date": "1/7/26", "start": "10", "end": "x"}).keys() == {
        "date",
        "end",
    }
    assert (
        "after"
        in referrals.booking_times({"date": "2026-07-01", "start": "11:00", "end": "10:00"})["end"]
    )


def test_a_mistyped_nhs_number_is_refused_on_the_booking_form() -> None:
    assert isinstance(referrals.person_named({"person": "943 476 5918"}, NHS_NUMBER), dict)
    assert referrals.person_named({"person": "943 476 5919"}, NHS_NUMBER) == PersonIdentifier(
        NHS_NUMBER, "9434765919"
    )


def letter(source: str, reason: str, raw: str, origin: str, hour: int) -> DeadLetter:
    return DeadLetter(
        reason=reason,
        source=source,
        origin=origin,
        received_at=datetime(2026, 12, 3, hour, tzinfo=UTC),
        raw=raw,
    )


LETTERS = [
    operations.Letter("0-1", letter("gp-Y01234", "bad NHS number", "{}", "a.json", 9), "fhir-json"),
    operations.Letter("0-2", letter("mht-rv5", "no PID", "MSH|^~", "mllp:1.2.3.4", 10), "hl7v2"),
    operations.Letter(
        "1-1", letter("gp-Y01234", "no status", "<Appointment/>", "b.xml", 11), "fhir-xml"
    ),
]


def test_each_inputs_format_is_told_by_where_it_came_and_how_it_starts() -> None:
    assert [operations.input_format(i.letter) for i in LETTERS] == [i.format for i in LETTERS]
    failed = letter("concord-hub", "gave up", "{}", "delivery:gp-Y01234", 9)
    assert operations.input_format(failed) == "delivery"


@pytest.mark.parametrize(
    ("query", "refs"),
    [
        ({}, ["1-1", "0-2", "0-1"]),
        ({"partner": "gp-Y01234"}, ["1-1", "0-1"]),
        ({"reason": "nhs"}, ["0-1"]),
        ({"format": "hl7v2"}, ["0-2"]),
        ({"since": "2026-12-03T10:00", "until": "2026-12-03T10:30"}, ["0-2"]),
    ],
)
def test_dead_letters_are_filtered_by_partner_reason_format_and_time(
    query: dict[str, str], refs: list[str]
) -> None:
    filters, errors = operations.Filters.from_query(query)
    assert errors == {}
    assert [i.ref for i in operations.selected(LETTERS, filters)] == refs


def test_a_time_that_cannot_be_read_is_named() -> None:
    _, errors = operations.Filters.from_query({"since": "yesterday", "format": "pdf"})
    assert errors.keys() == {"since", "format"}


def test_dead_letters_come_in_pages() -> None:
    many = LETTERS * 15  # 45
    first, pages = operations.page_of(many, 1)
    last, _ = operations.page_of(many, 99)
    assert (len(first), pages, len(last)) == (operations.PAGE_SIZE, 3, 5)


def test_a_replay_is_audited_under_the_operators_name() -> None:
    audit = replay_audit(
        operator="operator.nowak",
        partner="gp-Y01234",
        dead_letter="0-1",
        event_ids=["e-1"],
        rejected=0,
        at=NOW,
    )
    assert audit["agent"][0]["who"]["identifier"] == {
        "system": STAFF_USER_SYSTEM,
        "value": "operator.nowak",
    }
    assert audit["entity"][0]["what"] == {"reference": "DeadLetter/0-1"}


def test_only_operators_open_the_operator_pages() -> None:
    async def main() -> None:
        app = build_app(CONFIG, USERS, live_updates=False)
        async with TestClient(TestServer(app)) as client:
            await sign_in(client, "officer.adeyemi", "demo-officer.adeyemi")
            for path in ("/dead-letters", "/dead-letters/0-1", "/identity-conflicts", "/partners"):
                assert (await client.get(path)).status == 403
        async with TestClient(TestServer(build_app(CONFIG, USERS, live_updates=False))) as client:
            await sign_in(client, "operator.nowak", "demo-operator.nowak")
            page = await (await client.get("/dead-letters")).text()
            assert re.search(r"<h1[^>]*>Dead letters</h1>", page)

    asyncio.run(main())


def test_a_refused_form_is_logged_by_its_route_never_its_path() -> None:
    """A path can name a person (/people/X123456); the log names the route's pattern only."""

    async def main() -> None:
        app = build_app(CONFIG, USERS, live_updates=False)
        async with TestClient(TestServer(app)) as client:
            await sign_in(client, "clinician.okafor", "demo-clinician.okafor")
            with capture_logs() as logs:
                await client.post("/referrals/probation-london%2FX123456/accept", data={})
        [refused] = [entry for entry in logs if entry["event"] == "pages.form_refused"]
        assert refused["route"] == "/referrals/{referral}/{action}"
        assert "X123456" not in repr(logs)

    asyncio.run(main())


def test_a_referral_shows_the_reason_and_notes_only_as_they_reached_the_service() -> None:
    """The page shows what was delivered to the service, which the policy already minimised:
    with consent the reason and notes; without, nothing."""
    consented = {
        "resourceType": "ServiceRequest",
        "reasonCode": [{"text": "Low mood"}, {"coding": [{"display": "Poor sleep"}]}],
        "note": [{"text": "Prefers mornings"}],
    }
    assert referrals.referral_content(consented) == {
        "reasons": ["Low mood", "Poor sleep"],
        "notes": ["Prefers mornings"],
    }
    minimised = {"resourceType": "ServiceRequest", "id": "ref-1"}
    assert referrals.referral_content(minimised) == {"reasons": [], "notes": []}
    assert referrals.referral_content(None) == {"reasons": [], "notes": []}


def test_the_pages_keep_each_referral_as_it_was_delivered_to_its_recipient() -> None:
    from schemas.codec import encode_hub_envelope

    state = operations.HubState()
    resource = {"resourceType": "ServiceRequest", "id": "ref-1", "status": "active"}
    value = encode_hub_envelope(
        uuid.uuid4(),
        "referral.request.delivered",
        person_id="p-1",
        resource=resource,
        now=NOW,
        correlation_id=uuid.uuid4(),
    )
    state.outbound(b"mht-rv5", value)
    other = encode_hub_envelope(
        uuid.uuid4(),
        "referral.task.updated",
        person_id="p-1",
        resource={"resourceType": "Task", "id": "t"},
        now=NOW,
        correlation_id=uuid.uuid4(),
    )
    state.outbound(b"probation-london", other)
    assert state.delivered == {("mht-rv5", "p-1", "ref-1"): resource}


REPORT = json.loads((ROOT / "schemas" / "examples" / "stats.measure.reported.json").read_text())[
    "resource"
]


def test_a_commissioner_sees_the_months_figures_as_charts_and_tables_and_nothing_else() -> None:
    """The figures page asks the workers' /measures as the signed-in commissioner and draws
    what comes back; officers may not open it, and commissioners reach no person page."""
    asked: list[tuple[str, str | None]] = []

    async def measures(request: web.Request) -> web.Response:
        asked.append((request.query_string, request.headers.get(STAFF_HEADER)))
        if request.query.get("format") == "csv":
            return web.Response(text="figure,month\nreferrals-accepted,2026-11\n")
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": REPORT}]}
        return web.json_response(bundle)

    async def main() -> None:
        worker = web.Application()
        worker.router.add_get("/measures", measures)
        async with TestServer(worker) as stand_in:
            config = dataclasses.replace(CONFIG, worker=str(stand_in.make_url("")).rstrip("/"))
            async with TestClient(TestServer(build_app(config, USERS, live_updates=False))) as c:
                await sign_in(c, "commissioner.achebe", "demo-commissioner.achebe")
                page = await (await c.get("/figures?month=2026-11")).text()
                assert "<svg" in page
                assert "Lambeth" in page
                assert re.search(r"<h1[^>]*>Figures for 2026-11</h1>", page)
                csv_answer = await c.get("/figures.csv?month=2026-11")
                assert csv_answer.headers["Content-Disposition"].endswith('-2026-11.csv"')
                for person_level in ("/people/X123456", "/people?reference=X1", "/referrals"):
                    assert (await c.get(person_level)).status == 403, person_level
            async with TestClient(TestServer(build_app(config, USERS, live_updates=False))) as c:
                await sign_in(c, "officer.adeyemi", "demo-officer.adeyemi")
                assert (await c.get("/figures")).status == 403
        assert [query for query, _ in asked] == ["month=2026-11", "month=2026-11&format=csv"]
        assert all(statement for _, statement in asked), "asked as the signed-in commissioner"

    asyncio.run(main())
