"""Identity that never joins two people, end to end on the real broker with a real worker:
placeholder NHS numbers, and identity conflicts raised, told, flagged and resolved."""

from __future__ import annotations

import json
import time
from typing import Any

from connectors.kafka_io import read_topic
from schemas import topics
from tests.conftest import run_concord
from tests.e2e.conftest import CRN, NHS, Worker, alerts, appointment, patient
from tests.e2e.test_reconciliation import GP_FULFILLED, PROBATION_MISSED, breach_check

PERSON_CRN = (CRN, "X123456")
PERSON_NHS = (NHS, "9434765919")
OTHER_NHS = (NHS, "4010232137")
MRN = ("urn:concord:id:local:mht-rv5", "RV5-0042")
PLACEHOLDER = (NHS, "9999999999")


# The trust's visit under the other NHS number, at the time of the missed appointment: evidence
# for the probation case only if the two NHS numbers were (wrongly) joined.
OTHER_VISIT = appointment(
    "mht-9", "fulfilled", "2026-12-03T10:00:00Z", "2026-12-03T10:30:00Z", OTHER_NHS
)


def mht_patient(*identifiers: tuple[str, str]) -> dict[str, Any]:
    """The trust's record of its patient: the same id every time it is sent."""
    return {**patient(*identifiers), "id": "rv5-7"}


def notices(event_type: str, expected: int) -> dict[str, dict[str, Any]]:
    """The identity notices of one type on the alerts topic, by recipient; bounded wait."""
    deadline = time.monotonic() + 30
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        found = {a["recipient"]: a for a in alerts(0) if a["event_type"] == event_type}
        if len(found) >= expected:
            return found
        time.sleep(0.5)
    raise AssertionError(f"expected {expected} {event_type}, found {sorted(found)}")


def named(notice: dict[str, Any]) -> set[tuple[str, str]]:
    contained = notice["resource"]["contained"][0]
    return {(i["system"], i["value"]) for i in contained["identifier"]}


def open_conflicts() -> list[dict[str, Any]]:
    done = run_concord("identity", "conflicts", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def one_open_conflict() -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = open_conflicts()
        if found:
            [conflict] = found
            return conflict
        time.sleep(0.5)
    raise AssertionError("no open identity conflict")


def breach_check_is(worker: Worker, verdict: str) -> dict[str, Any]:
    return breach_check(worker, "prob-1", PERSON_CRN, expect=verdict)


def explained_then_disputed(worker: Worker, publish: Any) -> dict[str, Any]:
    """Probation links the CRN to an NHS number whose GP visit explains a missed appointment;
    then the mental health trust's record names the same CRN with another NHS number."""
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("gp-Y01234", GP_FULFILLED)
    publish("probation-london", PROBATION_MISSED)
    publish("mht-rv5", OTHER_VISIT)
    breach_check_is(worker, "explained")

    publish("mht-rv5", mht_patient(OTHER_NHS, PERSON_CRN, MRN))
    raised = notices("identity.conflict.raised", 2)
    assert set(raised) == {"probation-london", "mht-rv5"}
    # Each source is named only its own identifiers: never the other's NHS number.
    assert named(raised["probation-london"]) == {PERSON_CRN, PERSON_NHS}
    assert named(raised["mht-rv5"]) == {OTHER_NHS, PERSON_CRN, MRN}
    assert OTHER_NHS[1] not in json.dumps(raised["probation-london"])
    assert PERSON_NHS[1] not in json.dumps(raised["mht-rv5"])
    assert "mht" not in json.dumps(raised["probation-london"]["resource"])

    answer = breach_check_is(worker, "identity-conflict")
    assert answer["evidence"] == []
    assert answer["partners"] == []
    assert "operator" in answer["explanation"]
    return one_open_conflict()


def test_a_crn_named_with_a_second_nhs_number_is_kept_apart_until_the_operator_resolves_it(
    worker: Worker, publish: Any
) -> None:
    conflict = explained_then_disputed(worker, publish)

    assert conflict["status"] == "open"
    assert set(conflict["sources"]) == {"probation-london", "mht-rv5"}
    assert {"|".join(PERSON_NHS), "|".join(OTHER_NHS)} <= set(conflict["identifiers"])
    done = run_concord(
        "identity",
        "resolve",
        conflict["conflict_id"],
        "--keep-apart",
        "--reason",
        "the trust recorded another patient's CRN",
        "--operator",
        "ops-test",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{conflict['conflict_id']}: kept-apart"

    answer = breach_check_is(worker, "explained")
    # Kept apart: the trust's visit under the other NHS number is no evidence for this person.
    assert len(answer["evidence"]) == 1
    assert set(notices("identity.conflict.resolved", 2)) == {"probation-london", "mht-rv5"}
    assert open_conflicts() == []
    audited = [
        json.loads(value)
        for _, value in read_topic(topics.AUDIT.name, idle_timeout_s=2.0)
        if b"audit.identity.resolved" in value
    ]
    assert audited
    assert {a["resource"]["agent"][0]["who"]["identifier"]["value"] for a in audited} == {
        "ops-test"
    }
    assert "another patient" not in json.dumps(audited), "free text stays off the audit topic"
    repeat = run_concord(
        "identity", "resolve", conflict["conflict_id"], "--link", "--reason", "again"
    )
    assert repeat.returncode == 2
    assert "resolved already" in repeat.stderr
    log = worker.log.read_text()
    for secret in (OTHER_NHS[1], PERSON_NHS[1], PERSON_CRN[1], MRN[1], "another patient"):
        assert secret not in log


def test_the_source_correcting_its_record_resolves_the_conflict(
    worker: Worker, publish: Any
) -> None:
    conflict = explained_then_disputed(worker, publish)

    # The trust re-sends its record without the CRN it had wrongly recorded.
    publish("mht-rv5", mht_patient(OTHER_NHS, MRN))

    answer = breach_check_is(worker, "explained")
    assert len(answer["evidence"]) == 1, "the trust's patient is someone else"
    assert set(notices("identity.conflict.resolved", 2)) == {"probation-london", "mht-rv5"}
    assert open_conflicts() == []
    assert (
        conflict["conflict_id"]
        in notices("identity.conflict.resolved", 2)["mht-rv5"]["resource"]["detail"]
    )


def test_a_placeholder_nhs_number_shared_by_two_crns_joins_no_one(
    worker: Worker, publish: Any
) -> None:
    """9999999999 passes the mod-11 check; two case records holding it are two people."""
    other_crn = (CRN, "Y654321")
    # The placeholder comes first, so that without the rule all three links would share one
    # inbound partition and reach the linker in order, before the last one is seen applied.
    publish("probation-london", patient(PLACEHOLDER, PERSON_CRN))
    publish("probation-london", patient(PLACEHOLDER, other_crn, PERSON_NHS))
    publish("gp-Y01234", GP_FULFILLED)
    publish("probation-london", PROBATION_MISSED)
    publish(
        "probation-london",
        appointment("prob-2", "noshow", "2026-12-03T10:15:00Z", "2026-12-03T11:00:00Z", other_crn),
    )

    # The GP visit is the second case's (linked by a real NHS number), never the first's.
    breach_check(worker, "prob-2", other_crn, expect="explained")
    breach_check_is(worker, "no-known-conflict")
