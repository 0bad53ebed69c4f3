"""Seed corpora: the test fixtures and public samples per partner format, and, for the worker,
every record a small scenario puts on each topic when played through the pure stream steps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from connectors.fhir_input import read_file
from connectors.publish import Accepted, decide
from schemas import topics
from schemas.codec import decode_person_message, peek
from services.domain.decisions import Rules
from services.domain.identity import PersonIndex
from services.runtime import ROOT, partner_directory, service_directory
from services.stream.pipeline import link_step, person_event
from tests.keys import KEY
from tests.streams import index_event

FIXTURES = ROOT / "tests" / "fixtures"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
CONTEXT = Rules(
    directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
    now=NOW,
    services=service_directory(ROOT / "deploy" / "services.yaml"),
    buffer=timedelta(minutes=30),
)


def files(*patterns: str) -> list[bytes]:
    """The bytes of every fixture file matching the patterns, in a stable order."""
    found = sorted({p for pattern in patterns for p in FIXTURES.glob(pattern) if p.is_file()})
    return [p.read_bytes() for p in found]


FORMAT_SEEDS = {
    "fhir-json": lambda: files(
        "gp/*.json", "invalid/*.json", "fhir-examples/*.json", "public/fhir-json/*.json",
        "voluntary/*.ndjson", "mht/*.json", "probation/patient-link.json",
    ),
    "fhir-xml": lambda: files("mht/*.xml", "invalid/*.xml", "public/fhir-xml/*.xml"),
    "hl7v2": lambda: files("mht/*.hl7", "public/hl7v2/*.hl7"),
    "probation": lambda: files("probation/*.ndjson", "public/hmpps/*.json"),
    "csv": lambda: files("voluntary/*.csv"),
}  # fmt: skip


# --- the worker's records ----------------------------------------------------------------------

CRN = {"system": "urn:concord:id:probation-crn", "value": "X123456"}
NHS = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}


def _appointment(
    appointment_id: str, who: dict[str, str], start: str, status: str = "booked"
) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": appointment_id,
        "meta": {"versionId": "1"},
        "status": status,
        "start": f"2026-12-03T{start}:00Z",
        "end": f"2026-12-03T{start[:2]}:50:00Z",
        "participant": [{"actor": {"identifier": who}, "status": "accepted"}],
    }


def _scenario() -> list[tuple[str, dict[str, Any]]]:
    """(partner, resource) as partners send them: a link, clashing and missed appointments,
    a consent, a referral routed, received and accepted, and the demo feed."""
    referral = {
        "resourceType": "ServiceRequest",
        "id": "ref-1",
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "category": [
            {
                "coding": [
                    {"system": "urn:concord:referral-category", "code": "mental-health-assessment"}
                ]
            }
        ],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "subject": {"identifier": CRN},
        "authoredOn": "2026-11-30T09:00:00Z",
        "reasonCode": [{"text": "low mood"}],
    }
    consent = orjson.loads(
        (ROOT / "schemas" / "examples" / "governance.consent.recorded.json").read_bytes()
    )
    demo = [
        (item["as"], orjson.loads((ROOT / "deploy" / "demo" / item["file"]).read_bytes()))
        for item in orjson.loads((ROOT / "deploy" / "demo" / "feed.json").read_bytes())
    ]
    return [
        *demo,
        ("probation-london", {"resourceType": "Patient", "identifier": [CRN, NHS]}),
        ("probation-london", _appointment("pa-1", CRN, "10:00")),
        ("gp-Y01234", _appointment("gp-1", NHS, "10:15")),
        ("gp-Y01234", _appointment("gp-1", NHS, "10:15", "fulfilled")),
        ("probation-london", _appointment("pa-1", CRN, "10:00", "noshow")),
        (consent["source"], consent["resource"]),
        ("probation-london", referral),
    ]


def _task(person_id: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": f"task-ref-1-{status}",
        "status": status,
        "intent": "order",
        "focus": {"reference": "ServiceRequest/ref-1"},
        "for": {"identifier": {"system": "urn:concord:id:person", "value": person_id}},
    }


@dataclass
class Played:
    """What the scenario put on each topic, and each calendar the reconciler stored."""

    records: dict[str, list[tuple[bytes | None, bytes]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    calendars: list[bytes] = field(default_factory=list)


def _wrap(partner: str, resource: dict[str, Any]) -> bytes:
    [decision] = [decide(r, partner, NOW) for r in _records(resource)]
    assert isinstance(decision, Accepted), decision
    return decision.envelope.model_dump_json().encode()


def _records(resource: dict[str, Any]) -> Any:
    from connectors.fhir_input import Record

    return [Record("scenario", orjson.dumps(resource).decode(), resource)]


@cache
def played() -> Played:
    """Play the scenario through the person index, linker and reconciler steps, in memory."""
    out = Played()
    index, assigned, stored = PersonIndex(KEY), dict[str, str](), dict[str, bytes]()
    queue: list[tuple[str, bytes | None, bytes]] = [
        (topics.INBOUND.name, None, _wrap(p, r)) for p, r in _scenario()
    ]
    tasked = False
    while queue:
        topic, key, value = queue.pop(0)
        out.records[topic].append((key, value))
        outs = []
        if topic == topics.INBOUND.name:
            message = peek(value)
            ids = message["subject"]["identifiers"] if message.get("subject") else []
            token = f"{ids[0]['system']}|{ids[0]['value']}" if len(ids) == 1 else None
            outs = index_event(message, value, assigned.get(token) if token else None)
        elif topic == topics.LINKS.name:
            step = link_step(peek(value), index, CONTEXT)
            index, outs = step.updated, step.outs
        elif topic == topics.ASSIGNMENTS.name and key is not None:
            assigned[key.decode()] = value.decode()
        elif topic == topics.PERSON_EVENTS.name and key is not None:
            step = person_event(stored.get(key.decode()), decode_person_message(value), CONTEXT)
            if step.stored is not None:
                stored[key.decode()] = step.stored
                out.calendars.append(step.stored)
            outs = step.outs
            if not tasked and any(o.topic is topics.OUTBOUND for o in outs):
                tasked = True  # the referral was delivered: the service answers it
                person = key.decode()
                queue += [
                    (topics.INBOUND.name, None, _wrap("mht-rv5", _task(person, s)))
                    for s in ("received", "accepted")
                ]
        queue += [(o.topic.name, o.key, o.value) for o in outs]
    deadlines = orjson.dumps(
        {"command": "deadlines", "person_id": sorted(stored)[0], "now": NOW.isoformat()}
    )
    out.records[topics.PERSON_EVENTS.name].append((sorted(stored)[0].encode(), deadlines))
    return out


def topic_seeds(topic: str) -> list[bytes]:
    """The values the scenario put on a topic."""
    return [value for _key, value in played().records[topic]]


def example_envelopes() -> list[bytes]:
    """schemas/examples: one envelope per event type."""
    return [p.read_bytes() for p in sorted((ROOT / "schemas" / "examples").glob("*.json"))]


def fixture_envelopes() -> list[bytes]:
    """Every FHIR fixture the hub accepts, wrapped as the publish path wraps it."""
    found = []
    for path in sorted(Path(FIXTURES).rglob("*")):
        if path.suffix not in (".json", ".xml", ".ndjson"):
            continue
        for record in read_file(path):
            for partner in ("gp-Y01234", "mht-rv5", "vol-recovery", "probation-london"):
                decision = decide(record, partner, NOW)
                if isinstance(decision, Accepted):
                    found.append(decision.envelope.model_dump_json().encode())
                    break
    return found
