"""The demo: a worker, a feed of partner events for one person, the alerts and the breach check.

`make run` starts Kafka and runs this. A probation case links a CRN to an NHS
number and refers the person to an addiction service; a GP, a Mental Health Trust,
the addiction service and probation publish appointments. The addiction session
clashes with the GP's and is missed while the person was at the GP; the supervision
appointment clashes with the trust's and is missed while the person was there. The
output is what each booker is told, the officer's breach check (the trust shown only
as a "health service"), and the addiction service's. Then a month of synthetic activity across
three areas (services/ops/demo_month.py) and the commissioners' figures it makes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from schemas.identifiers import HUB_PERSON
from services.domain.signin import basic_header
from services.ops.client import get_json
from services.ops.demo_month import MONTH as DEMO_MONTH

FEED = Path(__file__).resolve().parents[2] / "deploy" / "demo"
MISSED = "rec-5531"
SERVICE = "vol-recovery"  # the addiction service, asking about its own missed appointment
OFFICER = "probation-london"
CASE = "urn:concord:id:probation-crn|X123456"  # how the officer knows the person
SUPERVISION = "sup-2207"  # the officer's own missed appointment
COMMISSIONER = "commissioner-sel"  # reads the month's figures

# To the addiction service and the officer for the key-work session, to the officer for the
# supervision appointment.
EXPLAINED_ABSENCES = 3


def demo_secret(partner: str) -> str:
    """A demo partner's secret (deploy/demo/secrets.json: demo use only; real secrets are never committed)."""
    secrets: dict[str, str] = json.loads((FEED / "secrets.json").read_text())
    return secrets[partner]


def start_service(args: list[str], ready_url: str, log_file: Path) -> subprocess.Popen[bytes]:
    """A `concord` service subprocess for the demo, once `ready_url` answers 200."""
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.ops.cli", *args], stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"concord {args[0]} stopped; see {log_file}")
        if get_json(ready_url)[0] == 200:
            return process
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"concord {args[0]} did not start in time; see {log_file}")


def post_to_gateway(gateway: str, partner: str, path: Path) -> None:
    """Submit one FHIR resource as a partner's system would: HTTP POST to the gateway."""
    resource = json.loads(path.read_text())
    request = urllib.request.Request(  # noqa: S310 -- the demo's own gateway on loopback
        f"{gateway}/fhir/{resource['resourceType']}",
        data=json.dumps(resource).encode(),
        headers={
            "Content-Type": "application/fhir+json",
            "Authorization": basic_header(partner, demo_secret(partner)),
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        if response.status != 202:
            raise SystemExit(f"the gateway answered {response.status} for {path.name}")


def replay(gateway: str) -> None:
    """Publish every step of the feed, in order, as its partner: over HTTP or with the publish path."""
    from connectors.fhir_input import read_file
    from connectors.kafka_io import Publisher
    from connectors.publish import publish_records

    publisher = Publisher()
    try:
        for step in json.loads((FEED / "feed.json").read_text()):
            if step["via"] == "gateway":
                post_to_gateway(gateway, step["as"], FEED / step["file"])
            else:
                publish_records(read_file(FEED / step["file"]), step["as"], publisher)
            print(f"  {step['as']:<17} {step['says']}  [{step['via']}]")
            time.sleep(0.3)  # let the story unfold in order, as it would in a day
    finally:
        publisher.close()


def wait_for_alerts(until_event_type: str, count: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """(recipient, alert resource) pairs once `count` alerts of the given type are out (bounded
    wait)."""
    from connectors.kafka_io import read_topic
    from schemas.codec import decode
    from schemas.topics import ALERTS

    found: list[tuple[str, str, dict[str, Any]]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(t == until_event_type for _, t, _ in found) < count:
        found = [
            (key.decode() if key else "?", (e := decode(value)).event_type, e.resource)
            for key, value in read_topic(ALERTS.name, idle_timeout_s=1.0)
        ]
    return [(recipient, issue) for recipient, _, issue in found]


def referred_person(recipient: str) -> str:
    """The hub person id the recipient's referral came with: how it names the person to the hub."""
    from connectors.kafka_io import read_topic
    from schemas.topics import OUTBOUND

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for key, value in read_topic(OUTBOUND.name, idle_timeout_s=1.0):
            message = json.loads(value)
            if key == recipient.encode() and message["event_type"] == "referral.request.delivered":
                return str(message["resource"]["subject"]["identifier"]["value"])
    raise SystemExit(f"no referral reached {recipient}")


def start_pages(worker: str) -> subprocess.Popen[bytes]:
    """`concord pages` for the demo's people, printing where they sign in and as whom."""
    from connectors.pages.users import UserDirectory
    from services.runtime import ROOT, config, partner_directory, settings

    address = f"http://localhost:{config().pages_port}"
    os.environ.setdefault("CONCORD_WORKER_URL", worker)
    pages = start_service(["pages"], f"{address}/health", ROOT / ".cache" / "demo-pages.log")
    users = UserDirectory.load(
        Path(str(config().users)), partner_directory(settings().partners_file)
    )
    print(f"\nThe pages: {address}  (sign in as one of the demo's people; person X123456)")
    for user in users:
        print(f"  {user.id:<18} password demo-{user.id:<20} {user.role} at {user.partner}")
    return pages


def _demo_month(worker: str, charts: Path) -> None:
    """A month of referrals across three areas, and the commissioners' figures of it."""
    from services.ops.demo_month import publish_month, show_figures

    print(f"\nA month of referrals across three areas ({DEMO_MONTH}):")
    print(f"  {publish_month()} partner events published")
    show_figures(worker, COMMISSIONER, demo_secret(COMMISSIONER), charts)


def main(argv: list[str] | None = None) -> int:
    """Run the demo end to end, print what each partner sees, then keep the hub running."""
    once = "--once" in (sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("CONCORD_TOPIC_PREFIX", f"demo-{time.strftime('%Y%m%d-%H%M%S')}.")
    from deploy.demo import use_demo_settings

    use_demo_settings()  # the demo, and only the demo, runs on the committed demo partners
    from deploy.topics import create_topics
    from services.runtime import ROOT, config, worker_url
    from services.runtime import configure_logging as configure

    configure("warning")
    create_topics()
    url = worker_url()
    gateway = f"http://127.0.0.1:{config().gateway_port}"
    log_file = ROOT / ".cache" / "demo-worker.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"concord demo (topics {os.environ['CONCORD_TOPIC_PREFIX']}*, worker {url}, gateway {gateway})\n"
    )
    worker = start_service(["worker"], f"{url}/ready", log_file)
    gateway_process = start_service(
        ["gateway"], f"{gateway}/metadata", ROOT / ".cache" / "demo-gateway.log"
    )
    started: list[subprocess.Popen[bytes]] = []  # the pages, when the hub keeps running
    try:
        print("Partner events:")
        replay(gateway)
        print("\nWhat each booker is told:")
        explained = wait_for_alerts("alert.absence.explained", EXPLAINED_ABSENCES)
        for recipient, issue in sorted(explained, key=lambda a: a[0]):
            print(f"  to {recipient:<17} {issue['detail']}")
        officer = {"Authorization": basic_header(OFFICER, demo_secret(OFFICER))}
        query = urlencode({"identifier": CASE, "appointment": SUPERVISION})
        status, check = get_json(f"{url}/breach-check?{query}", headers=officer)
        print(
            f"\nThe officer's breach check for the missed supervision {SUPERVISION} (HTTP {status}):"
        )
        print(json.dumps(check, indent=2))
        service = {"Authorization": basic_header(SERVICE, demo_secret(SERVICE))}
        person = f"{HUB_PERSON}|{referred_person(SERVICE)}"
        query = urlencode({"identifier": person, "appointment": MISSED})
        status, answer = get_json(f"{url}/breach-check?{query}", headers=service)
        print(
            f"\nThe addiction service's breach check for its missed session {MISSED} "
            f"(HTTP {status}): {answer.get('verdict')}"
        )
        _demo_month(url, ROOT / ".cache" / "demo-measures")
        if not once:
            started.append(start_pages(url))
            print(f"\nThe hub keeps running (worker log: {log_file}). In another terminal try:")
            print(
                f"  CONCORD_PARTNER_SECRET={demo_secret(OFFICER)} .venv/bin/concord breach-check "
                f"--as {OFFICER} --person '{CASE}' --appointment {SUPERVISION}"
            )
            print(
                f"  CONCORD_TOPIC_PREFIX={os.environ['CONCORD_TOPIC_PREFIX']} .venv/bin/concord tail alerts"
            )
            print(
                f"  CONCORD_TOPIC_PREFIX={os.environ['CONCORD_TOPIC_PREFIX']} "
                f"CONCORD_PARTNER_SECRET={demo_secret(COMMISSIONER)} .venv/bin/concord measures "
                f"--for {COMMISSIONER} --month {DEMO_MONTH} --csv"
            )
            print("Press Ctrl-C to stop.")
            worker.wait()
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        for process in (*started, gateway_process, worker):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
