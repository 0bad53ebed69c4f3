"""A real worker process on the real broker, and helpers to feed it and read what it says."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.fhir_input import read_text
from connectors.kafka_io import Publisher, read_topic
from connectors.publish import publish_records
from schemas.codec import decode
from services.domain.signin import basic_header

ROOT = Path(__file__).parents[2]
DEMO_SECRETS: dict[str, str] = json.loads((ROOT / "deploy" / "demo" / "secrets.json").read_text())
NHS = "https://fhir.nhs.uk/Id/nhs-number"
CRN = "urn:concord:id:probation-crn"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Worker:
    """One `concord worker` subprocess with its own web port."""

    def __init__(self, tmp: Path, **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"worker-{self.port}.log"
        self.env = {
            **os.environ,
            "CONCORD_WEB_PORT": str(self.port),
            "CONCORD_STORE": "memory://",
            "CONCORD_DATA_DIR": str(tmp / f"data-{self.port}"),
            "CONCORD_LOG_FORMAT": "json",
            "CONCORD_ESCALATION_CHECK_SECONDS": "1",
            # Longer than the 8 s default: on a busy test machine a worker can take longer than
            # that to handle a rebalance, and would be dropped from its group again and again.
            "CONCORD_SESSION_TIMEOUT_S": "30",
            **extra_env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 90.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.ops.cli", "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            status, _ = self.get("/ready")
            if status == 200:
                return
            time.sleep(0.3)
        self.stop()  # a worker that never got ready must not outlive the test
        raise AssertionError(f"worker did not become ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def get(
        self, path: str, as_partner: str | None = "probation-london"
    ) -> tuple[int, dict[str, Any]]:
        """GET a path, signed in as a demo partner (or anonymously with as_partner=None)."""
        headers = (
            {"Authorization": basic_header(as_partner, DEMO_SECRETS[as_partner])}
            if as_partner
            else {}
        )
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, {}


@pytest.fixture
def worker(topics: str, tmp_path: Path) -> Iterator[Worker]:
    """A running worker on this test's topics."""
    running = Worker(tmp_path)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def publish() -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """Publish one FHIR resource as a partner, through the real publish path."""
    publisher = Publisher()

    def send(partner: str, resource: dict[str, Any]) -> None:
        summary = publish_records(read_text(json.dumps(resource), "test.json"), partner, publisher)
        assert summary.accepted == 1, summary.errors

    yield send
    publisher.close()


def alerts(expected: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Alert envelopes (as dicts) once at least `expected` are on the topic; bounded wait."""
    deadline = time.monotonic() + timeout_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [
            {**decode(value).model_dump(mode="json"), "recipient": key.decode() if key else None}
            for key, value in read_topic(_alerts_topic(), idle_timeout_s=1.0)
        ]
        if len(found) >= expected:
            return found
        time.sleep(0.5)
    return found


def _alerts_topic() -> str:
    from schemas.topics import ALERTS

    return ALERTS.name


def appointment(
    appointment_id: str,
    status: str,
    start: str,
    end: str,
    identifier: tuple[str, str],
    *,
    version: int = 1,
    location: str | None = None,
    specialty: str | None = None,
) -> dict[str, Any]:
    """A FHIR Appointment naming its person by one identifier."""
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "meta": {"versionId": str(version), "lastUpdated": f"2026-12-01T08:{version:02d}:00Z"},
        "status": status,
        "start": start,
        "end": end,
        "participant": [
            {
                "actor": {"identifier": {"system": identifier[0], "value": identifier[1]}},
                "status": "accepted",
            }
        ],
    }
    if location:
        resource["participant"].append(
            {"actor": {"reference": f"Location/{location}"}, "status": "accepted"}
        )
    if specialty:
        resource["specialty"] = [{"text": specialty}]
        resource["description"] = f"{specialty} review"
    return resource


def patient(*identifiers: tuple[str, str]) -> dict[str, Any]:
    """A FHIR Patient carrying several identifiers of one person: a link."""
    return {
        "resourceType": "Patient",
        "identifier": [{"system": s, "value": v} for s, v in identifiers],
    }


# What each service in deploy/services.yaml takes referrals for (in area E09000022).
REFERRAL_CATEGORY = {
    "vol-recovery": "substance-misuse-treatment",
    "vol-housing": "housing-support",
    "mht-rv5": "mental-health-assessment",
}


def referral_to(recipient: str, referral_id: str, crn: str = "X123456") -> dict[str, Any]:
    """Probation's referral of the person (by CRN) to `recipient`: a relationship for it."""
    return {
        "resourceType": "ServiceRequest",
        "id": referral_id,
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "category": [
            {
                "coding": [
                    {
                        "system": "urn:concord:referral-category",
                        "code": REFERRAL_CATEGORY[recipient],
                    }
                ]
            }
        ],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "performer": [{"identifier": {"system": "urn:concord:partner", "value": recipient}}],
        "subject": {"identifier": {"system": CRN, "value": crn}},
        "authoredOn": "2026-11-30T09:00:00Z",
    }


def delivered_person(recipient: str, referral_id: str, timeout_s: float = 30.0) -> str:
    """The hub person id a referral's recipient was given with it (bounded wait)."""
    from schemas.topics import OUTBOUND

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for key, value in read_topic(OUTBOUND.name, idle_timeout_s=1.0):
            message = json.loads(value)
            if (
                key == recipient.encode()
                and message["event_type"] == "referral.request.delivered"
                and message["resource"]["id"] == referral_id
            ):
                return hub_person_of(message["resource"])
        time.sleep(0.3)
    raise AssertionError(f"referral {referral_id} was not delivered to {recipient}")


def hub_person_of(resource: dict[str, Any]) -> str:
    """The hub person id a delivered resource names the person by, beside the recipient's own
    identifiers: in its contained Patient."""
    [patient] = [c for c in resource.get("contained", ()) if c["resourceType"] == "Patient"]
    [person] = [i["value"] for i in patient["identifier"] if i["system"] == "urn:concord:id:person"]
    return str(person)
