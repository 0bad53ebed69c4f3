"""The HTTP ingest gateway over real HTTP on 127.0.0.1, publishing to the real broker."""

from __future__ import annotations

import asyncio
import base64
import copy
import http.client
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from connectors.gateway.app import GatewayConfig, build_app
from connectors.kafka_io import read_topic
from schemas import topics as catalogue
from schemas.codec import decode, decode_dead_letter
from schemas.envelope import DeadLetter, Envelope, content_event_id

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
SECRETS: dict[str, str] = json.loads((ROOT / "deploy" / "demo" / "secrets.json").read_text())
GP = "gp-Y01234"
APPOINTMENT = (FIXTURES / "gp" / "appointment-booked.json").read_bytes()
MESSAGE = (FIXTURES / "gp" / "message-bundle.json").read_bytes()
NHS_NUMBER = "9434765919"  # in APPOINTMENT: must never reach a log line
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


class Served:
    """An aiohttp application served on a free port of 127.0.0.1 by a loop in its own thread."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> Served:
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    async def _start(self) -> int:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return int(self.runner.addresses[0][1])

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any = field(default=None)

    @property
    def issues(self) -> list[dict[str, Any]]:
        assert self.body["resourceType"] == "OperationOutcome", self.body
        return list(self.body["issue"])

    def diagnostics(self) -> str:
        return " | ".join(i["diagnostics"] for i in self.issues)


def basic(partner: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{partner}:{secret}".encode()).decode()


class Client:
    """Plain http.client requests, so headers and bodies are exactly what a test says."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            connection.request(
                method, path, body=body, headers=headers or {}, encode_chunked=chunked
            )
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return Reply(
            response.status, dict(response.getheaders()), json.loads(data) if data else None
        )

    def post(
        self,
        path: str,
        body: bytes | Iterable[bytes],
        *,
        partner: str | None = GP,
        secret: str | None = None,
        content_type: str = "application/fhir+json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = {"Content-Type": content_type, **(headers or {})}
        if partner is not None:
            sent["Authorization"] = basic(partner, secret or SECRETS[partner])
        return self.request("POST", path, body, sent)


@pytest.fixture
def client(topics: str) -> Iterator[Client]:
    """A client of a gateway publishing to this test's fresh topics."""
    with Served(build_app(GatewayConfig())) as served:
        yield Client(served.port)


def inbound(expected: int | None = None) -> list[Envelope]:
    """The inbound topic's envelopes: `expected` of them, or all until the topic is idle."""
    messages = read_topic(catalogue.INBOUND.name, max_messages=expected, idle_timeout_s=3)
    return [decode(value) for _, value in messages]


def dead_letters(expected: int | None = None) -> list[DeadLetter]:
    """The dead-letter topic's records: `expected` of them, or all until the topic is idle."""
    messages = read_topic(catalogue.DEADLETTER.name, max_messages=expected, idle_timeout_s=3)
    return [decode_dead_letter(value) for _, value in messages]


# --- accepted -----------------------------------------------------------------------------------


def test_good_appointment_is_202_with_its_envelope_on_the_inbound_topic(client: Client) -> None:
    reply = client.post("/fhir/Appointment", APPOINTMENT)

    resource = json.loads(APPOINTMENT)
    event_id = str(content_event_id(GP, resource))
    assert reply.status == 202, reply.body
    assert reply.body == {"event_ids": [event_id], "accepted": 1, "ignored": 0}
    [envelope] = inbound(1)
    assert (str(envelope.event_id), envelope.source, envelope.resource) == (event_id, GP, resource)


def test_good_message_bundle_is_202_with_each_resource_on_the_inbound_topic(
    client: Client,
) -> None:
    reply = client.post("/fhir", MESSAGE, content_type="application/json")

    assert reply.status == 202, reply.body
    assert (reply.body["accepted"], reply.body["ignored"]) == (2, 1)
    envelopes = inbound(2)
    assert sorted(str(e.event_id) for e in envelopes) == sorted(reply.body["event_ids"])
    assert {e.resource_type for e in envelopes} == {"Patient", "Appointment"}


def test_fhir_xml_bundle_is_202(client: Client) -> None:
    xml = (FIXTURES / "mht" / "appointments.xml").read_bytes()
    reply = client.post("/fhir", xml, partner="mht-rv5", content_type="application/fhir+xml")

    assert reply.status == 202, reply.body
    assert reply.body["accepted"] == 2
    assert {e.source for e in inbound(2)} == {"mht-rv5"}


# --- refused and dead-lettered ------------------------------------------------------------------


def _deep(depth: int) -> bytes:
    return b'{"resourceType":"Appointment","a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def _bogus_status() -> bytes:
    return APPOINTMENT.replace(b'"status": "booked"', b'"status": "bogus"', 1)


def _message_with_appointment_without_id() -> bytes:
    """No id, and a fullUrl that is no urn:uuid (which would stand in for the id)."""
    bundle = json.loads(MESSAGE)
    del bundle["entry"][2]["resource"]["id"]
    url = "https://gp.example/fhir/Appointment/gp-appt-1002"
    bundle["entry"][2]["fullUrl"] = url
    bundle["entry"][0]["resource"]["focus"] = [{"reference": url}]
    return json.dumps(bundle).encode()


def _consent(actor: dict[str, Any]) -> bytes:
    """A Consent naming a recipient the hub's vocabulary does not know."""
    return json.dumps(
        {
            "resourceType": "Consent",
            "id": "consent-7",
            "status": "active",
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "category": [{"coding": [{"code": "INFA"}]}],
            "patient": {"identifier": {"system": NHS_SYSTEM, "value": NHS_NUMBER}},
            "provision": {"type": "permit", "actor": [actor]},
        }
    ).encode()


def _referral() -> bytes:
    return json.dumps(
        {
            "resourceType": "ServiceRequest",
            "id": "gp-ref-1",
            "status": "active",
            "intent": "order",
            "subject": {"identifier": {"system": NHS_SYSTEM, "value": NHS_NUMBER}},
        }
    ).encode()


def _task_without_focus() -> bytes:
    return json.dumps(
        {
            "resourceType": "Task",
            "id": "gp-task-1",
            "status": "accepted",
            "intent": "order",
            "for": {"identifier": {"system": NHS_SYSTEM, "value": NHS_NUMBER}},
        }
    ).encode()


def _hub_person_id() -> bytes:
    nhs = b'{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}'
    return APPOINTMENT.replace(nhs, b'{"system": "urn:concord:id:person", "value": "p-0a1b2c3d"}')


class Bad(NamedTuple):
    """A bad request and how the gateway must answer it."""

    name: str
    path: str
    body: bytes
    content_type: str
    status: int
    code: str
    fragment: str  # of the diagnostics and the dead letter's reason


BAD_REQUESTS = [
    Bad("malformed-json", "/fhir/Appointment", b'{"resourceType": "Appoi', "application/fhir+json", 400, "structure", "not valid JSON"),
    Bad("too-deep", "/fhir/Appointment", _deep(40), "application/fhir+json", 400, "structure", "nested deeper than 32 levels"),
    Bad("path-mismatch", "/fhir/Patient", APPOINTMENT, "application/fhir+json", 400, "invalid", "'Appointment' but the path is /fhir/Patient"),
    Bad("text-plain", "/fhir/Appointment", APPOINTMENT, "text/plain", 415, "not-supported", "'text/plain'"),
    Bad("invalid-status", "/fhir/Appointment", _bogus_status(), "application/fhir+json", 422, "invalid", "Appointment.status: 'bogus' is not one of"),
    # What the worker would refuse after acceptance is refused here, while the sender waits.
    Bad("appointment-without-id", "/fhir", _message_with_appointment_without_id(), "application/fhir+json", 422, "invalid", "Bundle.entry[2]: Appointment.id: field required to track the appointment"),
    Bad("consent-actor-unknown", "/fhir/Consent", _consent({"role": {"coding": [{"system": "urn:concord:role", "code": "judge"}]}, "reference": {"display": "the court"}}), "application/fhir+json", 422, "invalid", "Consent.provision.actor[0].role: unknown role code 'judge'"),
    Bad("consent-actor-unreadable", "/fhir/Consent", _consent({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FAMMEMB"}]}, "reference": {"display": "the family"}}), "application/fhir+json", 422, "invalid", "names neither a urn:concord:partner identifier nor a urn:concord:role role"),
    Bad("referral-not-from-probation", "/fhir/ServiceRequest", _referral(), "application/fhir+json", 422, "invalid", "the hub routes referrals from probation services only"),
    Bad("task-without-focus", "/fhir/Task", _task_without_focus(), "application/fhir+json", 422, "invalid", "Task.focus: must reference the referral as ServiceRequest/<id>"),
    Bad("two-patients-one-id", "/fhir", (FIXTURES / "invalid" / "bundle-two-patients-one-id.json").read_bytes(), "application/fhir+json", 422, "invalid", "Bundle.entry[1].resource.id: the same resource type and id as Bundle.entry[0]"),
    Bad("hub-person-id", "/fhir/Appointment", _hub_person_id(), "application/fhir+json", 422, "invalid", "Appointment.participant.actor: names the person by the hub's person id"),
    Bad("fhir-r5-xml", "/fhir/Appointment", (FIXTURES / "invalid" / "appointment-r5.xml").read_bytes(), "application/fhir+xml", 422, "invalid", "Appointment.class: not an element of Appointment in FHIR R4"),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.name for bad in BAD_REQUESTS])
def test_bad_input_is_refused_with_an_outcome_and_kept_on_the_dead_letter_topic(
    client: Client, bad: Bad
) -> None:
    reply = client.post(bad.path, bad.body, content_type=bad.content_type)

    assert reply.status == bad.status, reply.body
    assert reply.headers["Content-Type"].startswith("application/fhir+json")
    [issue] = reply.issues
    assert (issue["severity"], issue["code"]) == ("error", bad.code)
    assert bad.fragment in issue["diagnostics"]
    [letter] = dead_letters(1)
    assert bad.fragment in letter.reason
    assert (letter.source, letter.origin) == (GP, f"POST {bad.path}")
    assert letter.raw == bad.body.decode()
    assert inbound() == []


def test_invalid_appointment_outcome_points_at_appointment_status(client: Client) -> None:
    reply = client.post("/fhir/Appointment", _bogus_status())

    assert reply.status == 422
    [issue] = reply.issues
    assert issue["expression"] == ["Appointment.status"]
    assert issue["diagnostics"].startswith("Appointment.status: ")


def test_bundle_with_some_bad_entries_is_422_listing_every_problem_and_publishes_nothing(
    client: Client,
) -> None:
    body = (FIXTURES / "invalid" / "mixed-collection.json").read_bytes()
    reply = client.post("/fhir", body)

    assert reply.status == 422
    expressions = [i["expression"][0] for i in reply.issues]
    assert expressions[0] == "Bundle.entry[1].resource.status"
    assert any(e.startswith("Bundle.entry[2].resource.participant") for e in expressions)
    [letter] = dead_letters(1)
    assert json.loads(letter.raw) == json.loads(body)
    assert "Bundle.entry[1]: Appointment.status" in letter.reason
    assert inbound() == [], "the good entry of a refused Bundle is not published"


def test_body_declared_over_the_limit_is_413_and_kept_in_part(client: Client) -> None:
    body = b'{"resourceType":"Appointment","comment":"' + b"x" * (1024 * 1024) + b'"}'
    reply = client.post("/fhir/Appointment", body)

    assert reply.status == 413
    [issue] = reply.issues
    assert issue["code"] == "too-long"
    assert f"{len(body)} bytes is over the limit of 1048576 bytes" in issue["diagnostics"]
    [letter] = dead_letters(1)
    assert "over the limit" in letter.reason
    assert letter.raw.startswith('{"resourceType":"Appointment"')
    assert len(letter.raw) < 100 * 1024


def test_chunked_body_over_the_limit_is_413_while_reading(client: Client) -> None:
    chunks = [b'{"resourceType":"Appointment","comment":"'] + [b"x" * 65536] * 20 + [b'"}']
    reply = client.post("/fhir/Appointment", iter(chunks))

    assert reply.status == 413
    assert "more than that is over the limit" in reply.diagnostics()
    assert len(dead_letters(1)) == 1


# --- not signed in, or not as itself: refused, not dead-lettered -------------------------------


def test_missing_credential_is_401_with_a_basic_challenge(client: Client) -> None:
    reply = client.post("/fhir/Appointment", APPOINTMENT, partner=None)

    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Basic")
    assert reply.issues[0]["code"] == "security"
    assert "no credential" in reply.diagnostics()


def test_wrong_secret_is_401_and_nothing_is_kept(client: Client) -> None:
    reply = client.post("/fhir/Appointment", APPOINTMENT, secret=SECRETS["vol-recovery"])

    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Basic")
    assert "unknown partner or wrong secret" in reply.diagnostics()
    assert SECRETS["vol-recovery"] not in reply.diagnostics()
    assert inbound() == []
    assert dead_letters() == []


def test_message_sent_as_another_partner_is_403_and_nothing_is_kept(client: Client) -> None:
    bundle = json.loads(MESSAGE)
    bundle["entry"][0]["resource"]["sender"] = {
        "identifier": {"system": "urn:concord:partner", "value": "gp-A99999"}
    }
    reply = client.post("/fhir", json.dumps(bundle).encode())

    assert reply.status == 403
    [issue] = reply.issues
    assert issue["code"] == "security"
    assert issue["expression"] == ["Bundle.entry[0].resource.sender.identifier"]
    assert "gp-A99999" in issue["diagnostics"]
    assert inbound() == []
    assert dead_letters() == []


# --- retries ------------------------------------------------------------------------------------


def test_retry_with_the_same_idempotency_key_gets_the_same_202_and_publishes_nothing_new(
    client: Client,
) -> None:
    key = {"Idempotency-Key": "7c0e6a52-2b1f-4d7e-9a43-5f1c2e3d4b6a"}
    first = client.post("/fhir", MESSAGE, headers=key)
    again = client.post("/fhir", MESSAGE, headers=key)

    assert first.status == again.status == 202
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(inbound()) == 2, "published once"


def test_idempotency_key_reused_for_different_content_is_422(client: Client) -> None:
    key = {"Idempotency-Key": "reused-key-1"}
    assert client.post("/fhir/Appointment", APPOINTMENT, headers=key).status == 202

    changed = APPOINTMENT.replace(b"10:30:00Z", b"10:45:00Z")
    reply = client.post("/fhir/Appointment", changed, headers=key)

    assert reply.status == 422
    assert reply.issues[0]["code"] == "processing"
    assert "already used for a different request" in reply.diagnostics()
    assert len(inbound()) == 1
    assert "Idempotency-Key" in dead_letters(1)[0].reason


def test_resend_without_a_key_is_recognised_by_its_event_ids(client: Client) -> None:
    first = client.post("/fhir/Appointment", APPOINTMENT)
    # Reformatted, but the same resource: the same content-derived event id.
    again = client.post("/fhir/Appointment", json.dumps(json.loads(APPOINTMENT)).encode())

    assert first.status == again.status == 202
    assert again.body == first.body
    assert len(inbound()) == 1


def _appointment_at(start: str, end: str, meta: dict[str, str] | None = None) -> bytes:
    resource = json.loads(APPOINTMENT)
    resource.pop("meta")
    if meta:
        resource["meta"] = meta
    resource["start"], resource["end"] = f"2026-12-03T{start}:00Z", f"2026-12-03T{end}:00Z"
    return json.dumps(resource).encode()


def test_appointment_moved_back_to_its_earlier_time_is_published(client: Client) -> None:
    """10:00, then 11:00, then 10:00 again: the third is a change, not a resend of the first."""
    at_ten, at_eleven = _appointment_at("10:00", "10:30"), _appointment_at("11:00", "11:30")
    replies = [client.post("/fhir/Appointment", body) for body in (at_ten, at_eleven, at_ten)]

    assert [r.status for r in replies] == [202, 202, 202]
    assert "Idempotent-Replayed" not in replies[2].headers
    published = inbound(3)
    assert [e.resource["start"] for e in published] == [
        "2026-12-03T10:00:00Z",
        "2026-12-03T11:00:00Z",
        "2026-12-03T10:00:00Z",
    ]
    # Same content, same event id: the worker orders them by when each arrived.
    assert published[2].event_id == published[0].event_id
    assert published[2].occurred_at > published[1].occurred_at


def test_stale_version_is_409_naming_both_versions_and_is_not_published(client: Client) -> None:
    first = _appointment_at("10:00", "10:30", {"versionId": "1"})
    second = _appointment_at("11:00", "11:30", {"versionId": "2"})
    assert client.post("/fhir/Appointment", first).status == 202
    assert client.post("/fhir/Appointment", second).status == 202

    reply = client.post("/fhir/Appointment", first)  # a replayed capture of the superseded one

    assert reply.status == 409
    assert "Retry-After" not in reply.headers, "retrying a stale version cannot help"
    [issue] = reply.issues
    assert (issue["code"], issue["expression"]) == ("conflict", ["Appointment.meta"])
    assert "version 1 of" in issue["diagnostics"]
    assert "is older than version 2 of" in issue["diagnostics"]
    assert len(inbound()) == 2
    [letter] = dead_letters(1)
    assert "is older than version 2" in letter.reason
    assert (letter.source, letter.origin) == (GP, "POST /fhir/Appointment")


def test_kafka_unavailable_is_503_with_retry_after_never_202(
    topics: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # nothing listens there
    with Served(build_app(GatewayConfig(kafka_timeout_s=1.0))) as served:
        reply = Client(served.port).post("/fhir/Appointment", APPOINTMENT)

    assert reply.status == 503
    assert int(reply.headers["Retry-After"]) > 0
    assert reply.issues[0]["code"] == "transient"


# --- documents and logs -------------------------------------------------------------------------


def test_metadata_is_a_capability_statement(client: Client) -> None:
    for path in ("/metadata", "/fhir/metadata"):
        reply = client.request("GET", path)
        assert reply.status == 200
        assert reply.body["resourceType"] == "CapabilityStatement"


def test_unknown_endpoint_is_404_with_an_outcome(client: Client) -> None:
    reply = client.request("GET", "/fhir/Patient/123")

    assert reply.status in (404, 405)
    assert reply.issues[0]["code"] == "not-supported"


def test_one_log_line_per_request_with_partner_status_and_events_never_content(
    client: Client,
) -> None:
    with capture_logs() as logs:
        client.post("/fhir/Appointment", APPOINTMENT)
        client.post("/fhir/Appointment", _bogus_status())

    lines = [line for line in logs if line["event"] == "gateway.request"]
    assert [(x["partner"], x["status"], x["events"]) for x in lines] == [
        (GP, 202, 1),
        (GP, 422, 0),
    ]
    assert NHS_NUMBER not in json.dumps(logs, default=str)
    assert "bogus" not in json.dumps(logs, default=str)


def test_concurrent_requests_each_wait_only_for_their_own_envelopes(client: Client) -> None:
    resources = []
    for minute in range(12):
        resource = copy.deepcopy(json.loads(APPOINTMENT))
        resource["id"] = f"gp-appt-{minute}"
        resources.append(resource)
    replies: list[Reply] = []

    def send(resource: dict[str, Any]) -> None:
        replies.append(client.post("/fhir/Appointment", json.dumps(resource).encode()))

    threads = [threading.Thread(target=send, args=(r,)) for r in resources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(r.status for r in replies) == [202] * 12
    assert len(inbound(12)) == 12
