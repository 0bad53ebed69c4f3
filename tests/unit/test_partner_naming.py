"""Partners name people by NHS number, CRN or their own local id: never by the hub's person id
(but in a referral's Task) nor by another partner's local id, on every path into the hub."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.feeds.csv_feed import records_from_csv_text
from connectors.feeds.probation import map_event
from connectors.fhir_input import Record, read_text
from connectors.gateway.rules import RefusedRequest, assess
from connectors.hl7v2.listener import reply_to
from connectors.hl7v2.to_fhir import records_from_hl7_text
from connectors.publish import Encoded, Rejected, decide, decide_encoded, naming_problems
from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PersonIdentifier, local_system

FIXTURES = Path(__file__).parents[1] / "fixtures"
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
HUB_ID = {"system": HUB_PERSON, "value": "p-0a1b2c3d4e5f60718293"}
THEIR_ID = {"system": "urn:concord:id:local:mht-rv5", "value": "MRN445566"}
OWN_ID = {"system": "urn:concord:id:local:vol-recovery", "value": "C-1042"}
VOL = "vol-recovery"


def appointment(who: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": "vol-a-1",
        "status": "booked",
        "start": "2026-12-03T10:15:00Z",
        "end": "2026-12-03T11:00:00Z",
        "participant": [{"actor": {"identifier": who}, "status": "accepted"}],
    }


def task(who: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": "task-ref-1",
        "status": "accepted",
        "intent": "order",
        "focus": {"reference": "ServiceRequest/ref-1"},
        "for": {"identifier": who},
    }


def service_request(who: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "ref-1",
        "status": "active",
        "intent": "order",
        "subject": {"identifier": who},
    }


def patient(*identifiers: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": list(identifiers)}


def consent(who: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"code": "INFA"}]}],
        "patient": {"identifier": who},
    }


def is_accepted(outcome: object) -> bool:
    return not isinstance(outcome, Rejected)


def reason(outcome: object) -> str:
    assert isinstance(outcome, Rejected), outcome
    return outcome.reason()


# decide is the gateway's and the MLLP listener's path; decide_encoded is `concord publish`'s.
DECIDERS: list[Callable[[Record, str], object]] = [
    lambda record, partner: decide(record, partner, NOW),
    lambda record, partner: decide_encoded(record, partner, NOW),
]


@pytest.fixture(params=DECIDERS, ids=["decide", "decide_encoded"])
def deciding(request: pytest.FixtureRequest) -> Callable[[dict[str, Any], str], object]:
    decider = request.param

    def run(resource: dict[str, Any], partner: str = VOL) -> object:
        return decider(Record("r.json", orjson.dumps(resource).decode(), resource), partner)

    return run


def test_an_appointment_naming_the_hub_person_id_is_refused(deciding: Callable) -> None:
    found = reason(deciding(appointment(HUB_ID)))
    assert found == (
        "Appointment.participant.actor: names the person by the hub's person id "
        "(urn:concord:id:person), which only a referral's Task may use: name them by "
        "NHS number, CRN or your own id (urn:concord:id:local:vol-recovery)"
    )


@pytest.mark.parametrize(
    "build",
    [service_request, consent, lambda who: patient(OWN_ID, who)],
    ids=["sr", "consent", "patient"],
)
def test_other_resources_naming_the_hub_person_id_are_refused(
    deciding: Callable, build: Callable[[dict[str, str]], dict[str, Any]]
) -> None:
    assert "the hub's person id" in reason(deciding(build(HUB_ID)))


def test_a_referral_task_may_name_the_person_as_the_hub_named_them(deciding: Callable) -> None:
    assert is_accepted(deciding(task(HUB_ID)))


@pytest.mark.parametrize(
    "build",
    [appointment, task, service_request, consent, lambda who: patient(OWN_ID, who)],
    ids=["appointment", "task", "sr", "consent", "patient"],
)
def test_naming_the_person_by_another_partners_local_id_is_refused(
    deciding: Callable, build: Callable[[dict[str, str]], dict[str, Any]]
) -> None:
    found = reason(deciding(build(THEIR_ID)))
    assert "names the person by another partner's local id (urn:concord:id:local:mht-rv5)" in (
        found
    )


def test_a_partners_own_local_id_is_fine(deciding: Callable) -> None:
    assert is_accepted(deciding(appointment(OWN_ID)))
    assert is_accepted(deciding(patient(OWN_ID, {"system": NHS_NUMBER, "value": "9434765919"})))


def test_a_bundled_patient_is_held_to_the_same_rule() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": patient(THEIR_ID)},
            {
                "resource": {
                    **appointment(OWN_ID),
                    "participant": [{"actor": {"reference": "urn:uuid:1"}, "status": "accepted"}],
                }
            },
        ],
    }
    outcomes = [decide(r, VOL, NOW) for r in read_text(orjson.dumps(bundle).decode(), "b.json")]
    assert all("another partner's local id" in reason(o) for o in outcomes)


def test_the_rule_is_one_function_of_type_subject_and_partner() -> None:
    hub = (PersonIdentifier(HUB_PERSON, "p-1"),)
    assert naming_problems("Task", hub, VOL) == []
    assert naming_problems("Appointment", (PersonIdentifier(*OWN_ID.values()),), VOL) == []
    [problem] = naming_problems("Appointment", hub, VOL)
    assert problem.path == "Appointment.participant.actor"


def test_the_gateway_refuses_the_hub_person_id_with_a_422_outcome() -> None:
    body = orjson.dumps(appointment(HUB_ID))
    verdict = assess(body, "application/fhir+json", "Appointment", VOL, NOW)
    assert isinstance(verdict, RefusedRequest)
    assert verdict.status == 422
    [issue] = verdict.outcome()["issue"]
    assert issue["expression"] == ["Appointment.participant.actor"]
    assert "the hub's person id" in issue["diagnostics"]


# --- the formats that build their own subjects -------------------------------------------------


def test_hl7_names_the_person_by_nhs_number_or_the_trusts_own_mrn_only() -> None:
    """Whatever PID-3's assigning authority claims, a patient number is the trust's own."""
    text = (FIXTURES / "mht" / "siu-s12.hl7").read_bytes().decode()
    claimed = text.replace("MRN445566^^^RV5^MR", "p-0a1b2c3d^^^urn:concord:id:person^MR")
    reply = reply_to(claimed, "mht-rv5", "mllp")
    assert reply.code == "AA"
    systems = {
        i.system for e in reply.envelopes for i in (e.subject.identifiers if e.subject else ())
    }
    assert systems == {NHS_NUMBER, local_system("mht-rv5")}
    records = list(records_from_hl7_text(claimed, "a.hl7", "mht-rv5"))
    assert all(isinstance(decide_encoded(r, "mht-rv5", NOW), Encoded) for r in records)


def test_probation_feed_has_no_field_for_another_identifier_system() -> None:
    event = orjson.loads((FIXTURES / "probation" / "case-feed.ndjson").read_bytes().splitlines()[0])
    _, problems = map_event({**event, "person_id": HUB_ID["value"]})
    assert [str(p) for p in problems] == ["person_id: not a field of appointment.created events"]


def test_csv_client_ids_are_always_the_uploading_partners_own() -> None:
    text = "client_id,appointment_id,date,start_time,end_time,status\nC-1,a-1,2026-12-03,10:00,11:00,booked\n"
    [record] = records_from_csv_text(text, "a.csv", VOL)
    assert record.resource is not None
    [participant] = record.resource["participant"]
    assert participant["actor"]["identifier"]["system"] == local_system(VOL)
    extra = text.replace("status\n", "status,person_system\n").replace("booked\n", "booked,x\n")
    notice, taken = records_from_csv_text(extra, "a.csv", VOL)
    assert notice.ignored_because is not None
    assert notice.ignored_because.startswith("column 'person_system' is not read")
    assert taken.resource is not None
    assert taken.resource["participant"] == record.resource["participant"]
