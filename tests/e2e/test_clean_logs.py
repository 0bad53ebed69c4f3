"""No identifier, name, date of birth or clinical text from partner input ever reaches a log."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_concord
from tests.e2e.conftest import CRN, DEMO_SECRETS, NHS, Worker, alerts, delivered_person
from tests.e2e.test_reconciliation import breach_check

MRN = "MRN778899"
SECRETS_IN_INPUT = [
    "9434765919",
    "X123456",
    MRN,
    "Jane",
    "Doe",
    "1984-02-29",
    "Methadone",
    "psychosis",
    "Flat 3",
    "020 7946 0999",
    "Sam Officer",
]


def write(tmp: Path, name: str, resource: dict) -> str:
    path = tmp / name
    path.write_text(json.dumps(resource))
    return str(path)


def scenario_files(tmp: Path) -> list[tuple[str, str]]:
    """(partner, file) pairs: a link with name and birth date, clinical free text, bad input."""
    person = [
        {"system": CRN, "value": "X123456"},
        {"system": NHS, "value": "9434765919"},
    ]
    patient = {
        "resourceType": "Patient",
        "identifier": person,
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "birthDate": "1984-02-29",
        "address": [{"line": ["Flat 3"]}],
    }
    mht_patient = {
        "resourceType": "Patient",
        "identifier": [person[1], {"system": "urn:concord:id:local:mht-rv5", "value": MRN}],
    }

    def visit(
        appointment_id: str, status: str, start: str, end: str, who: dict, *, version: int
    ) -> dict:
        return {
            "resourceType": "Appointment",
            "id": appointment_id,
            "meta": {"versionId": str(version)},
            "status": status,
            "start": start,
            "end": end,
            "description": "Methadone titration; psychosis review",
            "comment": "Jane Doe, lives at Flat 3",
            "specialty": [{"text": "Early intervention in psychosis"}],
            "participant": [
                {"actor": {"identifier": who, "display": "Jane Doe"}, "status": "accepted"}
            ],
        }

    # A referral with the person's details and the officer's contact, for the trust alone.
    referral = {
        "resourceType": "ServiceRequest",
        "id": "ref-logs",
        "contained": [
            {**patient, "id": "who"},
            {
                "resourceType": "PractitionerRole",
                "id": "by",
                "practitioner": {"reference": "#officer"},
                "telecom": [{"system": "phone", "value": "020 7946 0999"}],
            },
            {"resourceType": "Practitioner", "id": "officer", "name": [{"text": "Sam Officer"}]},
        ],
        "status": "active",
        "intent": "order",
        "category": [
            {
                "coding": [
                    {
                        "system": "urn:concord:referral-category",
                        "code": "mental-health-assessment",
                    }
                ]
            }
        ],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "subject": {"reference": "#who"},
        "requester": {"reference": "#by"},
    }
    local = {"system": "urn:concord:id:local:mht-rv5", "value": MRN}
    bad = visit(
        "bad-1",
        "booked",
        "2026-12-03T10:00:00Z",
        "2026-12-03T10:30:00Z",
        {"system": NHS, "value": "9434765918"},
        version=1,
    )
    return [
        ("probation-london", write(tmp, "patient.json", patient)),
        ("mht-rv5", write(tmp, "mht-patient.json", mht_patient)),
        ("probation-london", write(tmp, "referral.json", referral)),
        (
            "mht-rv5",
            write(
                tmp,
                "booked.json",
                visit(
                    "m-1",
                    "booked",
                    "2026-12-03T10:00:00Z",
                    "2026-12-03T11:00:00Z",
                    local,
                    version=1,
                ),
            ),
        ),
        (
            "probation-london",
            write(
                tmp,
                "probation.json",
                visit(
                    "p-1",
                    "booked",
                    "2026-12-03T10:30:00Z",
                    "2026-12-03T11:30:00Z",
                    person[0],
                    version=1,
                ),
            ),
        ),
        (
            "mht-rv5",
            write(
                tmp,
                "attended.json",
                visit(
                    "m-1",
                    "fulfilled",
                    "2026-12-03T10:00:00Z",
                    "2026-12-03T11:00:00Z",
                    local,
                    version=2,
                ),
            ),
        ),
        (
            "probation-london",
            write(
                tmp,
                "noshow.json",
                visit(
                    "p-1",
                    "noshow",
                    "2026-12-03T10:30:00Z",
                    "2026-12-03T11:30:00Z",
                    person[0],
                    version=2,
                ),
            ),
        ),
        ("gp-Y01234", write(tmp, "bad.json", bad)),
    ]


def test_end_to_end_logs_carry_no_identifier_or_clinical_text(
    worker: Worker, tmp_path: Path
) -> None:
    logs = []
    for partner, path in scenario_files(tmp_path):
        result = run_concord(
            "publish", "--as", partner, path, env={"CONCORD_PARTNER_SECRET": DEMO_SECRETS[partner]}
        )
        logs.append(result.stderr)
    # A wrong secret and free text as a partner id are logged too: still nothing personal.
    refused = run_concord(
        "publish", "--as", "gp-Y01234", path, env={"CONCORD_PARTNER_SECRET": "9434765919"}
    )
    logs.append(refused.stderr)
    assert len(alerts(4)) >= 4
    delivered_person("mht-rv5", "ref-logs")  # the referral and its details went through
    breach_check(worker, "p-1", expect="explained")
    worker.stop()
    logs.append(worker.log.read_text())

    text = "\n".join(logs)
    assert "publish.done" in text, "the publishers' logs were captured"
    assert "reconciler.handled" in text, "the worker's log was captured"
    leaked = [secret for secret in SECRETS_IN_INPUT if secret in text]
    assert leaked == [], f"found in logs: {leaked}"
