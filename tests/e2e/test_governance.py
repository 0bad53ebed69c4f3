"""Consent widens what the officer sees, withdrawal narrows it again, every disclosure is audited."""

from __future__ import annotations

import json
import time
from typing import Any

from connectors.kafka_io import read_topic
from schemas.topics import AUDIT
from tests.audit import basis_of
from tests.conftest import run_concord
from tests.e2e.conftest import CRN, NHS, Worker, alerts, appointment, patient
from tests.e2e.test_reconciliation import breach_check

PERSON_CRN = (CRN, "X123456")
PERSON_NHS = (NHS, "9434765919")
SPECIALTY = "Psychosis early intervention"


def consent(
    consent_id: str,
    *,
    status: str = "active",
    recorded: str,
    category: str = "appointment-detail",
    kind: str = "permit",
) -> dict[str, Any]:
    """The person's consent, recorded by probation, to officers seeing appointment detail."""
    return {
        "resourceType": "Consent",
        "id": consent_id,
        "status": status,
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        # By NHS number, as the MHT's appointments name the person: the same key keeps the
        # consent ahead of them all the way through the hub (people linked by different
        # identifiers are joined asynchronously, so their events may interleave).
        "patient": {"identifier": {"system": NHS, "value": "9434765919"}},
        "dateTime": recorded,
        "provision": {
            "type": kind,
            "actor": [
                {
                    "role": {
                        "coding": [{"system": "urn:concord:role", "code": "probation-officer"}]
                    },
                    "reference": {"display": "probation officers"},
                }
            ],
            "code": [{"coding": [{"system": "urn:concord:disclosure-category", "code": category}]}],
        },
    }


def mht_visit(number: int, status: str, version: int) -> dict[str, Any]:
    day = f"2026-12-{number:02d}"
    return appointment(
        f"mht-{number}",
        status,
        f"{day}T10:00:00Z",
        f"{day}T11:00:00Z",
        PERSON_NHS,
        version=version,
        specialty=SPECIALTY,
    )


def missed_probation(number: int) -> dict[str, Any]:
    day = f"2026-12-{number:02d}"
    return appointment(
        f"prob-{number}", "noshow", f"{day}T10:30:00Z", f"{day}T11:00:00Z", PERSON_CRN
    )


def officer_alerts(found: list[dict]) -> list[dict]:
    return [
        a
        for a in found
        if a["recipient"] == "probation-london" and a["event_type"] == "alert.absence.explained"
    ]


def audit_records(expected: int, timeout_s: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = [json.loads(value) for _, value in read_topic(AUDIT.name, idle_timeout_s=1.0)]
        if len(found) >= expected:
            break
        time.sleep(0.5)
    return found


def explained_absence(publish, number: int) -> None:
    """An MHT visit attended while a probation appointment was missed: one alert, to the officer."""
    publish("mht-rv5", mht_visit(number, "booked", 1))
    publish("probation-london", missed_probation(number))
    publish("mht-rv5", mht_visit(number, "fulfilled", 2))


def test_consent_permit_lets_the_officer_see_the_specialty(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("probation-london", consent("c-1", recorded="2026-11-20T09:00:00Z"))
    explained_absence(publish, 3)
    [alert] = officer_alerts(alerts(1))
    evidence = alert["resource"]["contained"][1]
    assert evidence["specialty"] == [{"text": SPECIALTY}]
    answer = breach_check(worker, "prob-3", expect="explained")
    assert answer["evidence"][0]["service_type"] == SPECIALTY


def test_without_consent_the_officer_sees_time_type_and_attendance_only(
    worker: Worker, publish
) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    explained_absence(publish, 3)
    [alert] = officer_alerts(alerts(1))
    assert SPECIALTY not in json.dumps(alert)
    evidence = alert["resource"]["contained"][1]
    assert set(evidence) == {
        "resourceType",
        "id",
        "status",
        "start",
        "end",
        "serviceCategory",
        "participant",
    }
    answer = breach_check(worker, "prob-3", expect="explained")
    assert SPECIALTY not in json.dumps(answer)
    assert set(answer["evidence"][0]) == {
        "appointment_id",
        "organisation_type",
        "status",
        "start",
        "end",
        "recorded",  # when the service recorded the attendance: no detail of it
    }


def test_a_deny_to_probation_withholds_alerts_and_every_breach_check(
    worker: Worker, publish
) -> None:
    """Below the role default: no alert reaches the officer, and the verdict reveals nothing."""
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    deny = consent(
        "c-2", recorded="2026-11-20T09:00:00Z", category="appointment-times", kind="deny"
    )
    publish("probation-london", deny)
    explained_absence(publish, 3)
    # A clash the MHT must still hear of; once it has, the events before it were reconciled.
    publish("probation-london", appointment("prob-5", "booked", "2026-12-05T10:30:00Z",
                                            "2026-12-05T11:00:00Z", PERSON_CRN))  # fmt: skip
    publish("mht-rv5", mht_visit(5, "booked", 1))
    found = alerts(1)
    deadline = time.monotonic() + 30
    while not any(a["recipient"] == "mht-rv5" for a in found) and time.monotonic() < deadline:
        found = alerts(len(found) + 1, timeout_s=2)
    assert [(a["recipient"], a["event_type"]) for a in found] == [
        ("mht-rv5", "alert.clash.raised")
    ], "the officer is told nothing of health appointments"

    answer = breach_check(worker, "prob-3", expect="withheld")
    assert answer["evidence"] == []
    assert answer["partners"] == []
    assert answer["explanation"] == "the hub holds information it may not share; ask the person"
    records = audit_records(2)
    answered = [
        r["resource"]
        for r in records
        if r["resource"]["entity"][-1]["what"]["reference"].startswith("BreachCheck/")
    ]
    assert answered
    assert {basis_of(r) for r in answered} == {"probation-london/c-2"}


def test_withdrawal_between_two_alerts_applies_to_the_second(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("probation-london", consent("c-1", recorded="2026-11-20T09:00:00Z"))
    explained_absence(publish, 3)
    assert len(officer_alerts(alerts(1))) == 1
    publish("probation-london", consent("c-1", status="inactive", recorded="2026-11-26T09:00:00Z"))
    explained_absence(publish, 10)
    first, second = sorted(
        officer_alerts(alerts(2)), key=lambda a: a["resource"]["contained"][0]["start"]
    )
    assert SPECIALTY in json.dumps(first)
    assert SPECIALTY not in json.dumps(second)


def test_every_disclosure_has_exactly_one_audit_event(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("probation-london", consent("c-1", recorded="2026-11-20T09:00:00Z"))
    explained_absence(publish, 3)
    sent = alerts(1)
    # Every answer is a disclosure: one asked before the outcome landed is audited too.
    breach_check(worker, "prob-3", expect="explained")
    # Also on the audit topic: probation's relationship with the person, from its case record.
    everything = audit_records(len(sent) + 2)
    related = [r for r in everything if r["event_type"] == "audit.relationship.recorded"]
    assert {
        (r["resource"]["agent"][0]["who"]["identifier"]["value"], basis_of(r["resource"]))
        for r in related
    } == {("probation-london", "case-record")}
    # Once per person it began for: the case record may reach the CRN's provisional person
    # before the link joins it to the NHS number's, and is not audited again by the merge.
    people = [r["subject"]["person_id"] for r in related]
    assert len(people) == len(set(people))
    records = [r for r in everything if r["event_type"] == "audit.disclosure.recorded"]
    for_alerts = [
        r
        for r in records
        if r["resource"]["entity"][-1]["what"]["reference"].startswith("DetectedIssue/")
    ]
    for_answers = [
        r
        for r in records
        if r["resource"]["entity"][-1]["what"]["reference"] == "BreachCheck/probation-london/prob-3"
    ]
    assert len(for_alerts) + len(for_answers) == len(records), "nothing else was disclosed"
    assert sorted(r["correlation_id"] for r in for_alerts) == sorted(a["event_id"] for a in sent), (
        "each alert audited exactly once"
    )
    assert {basis_of(r["resource"]) for r in for_alerts} == {"probation-london/c-1"}, (
        "the enriched alert names the consent"
    )
    newest = max(for_answers, key=lambda r: r["resource"]["recorded"])
    assert basis_of(newest["resource"]) == "probation-london/c-1", (
        "the answer showing the specialty names it too"
    )

    result = run_concord("audit", "--person", "|".join(PERSON_NHS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(everything)
    assert "BreachCheck/probation-london/prob-3" in lines[0], "newest first"
    assert "9434765919" not in result.stdout
    assert "X123456" not in result.stdout
