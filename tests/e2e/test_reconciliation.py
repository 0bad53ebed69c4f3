"""The case concord exists for, end to end on the real broker with a real worker."""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import urlencode

from schemas.identifiers import HUB_PERSON
from tests.conftest import run_concord
from tests.e2e.conftest import (
    CRN,
    DEMO_SECRETS,
    NHS,
    Worker,
    alerts,
    appointment,
    delivered_person,
    patient,
    referral_to,
)
from tests.keys import person_id_for_token

PERSON_CRN = (CRN, "X123456")
PERSON_NHS = (NHS, "9434765919")
GP_BOOKED = appointment(
    "gp-1",
    "booked",
    "2026-12-03T10:00:00Z",
    "2026-12-03T10:30:00Z",
    PERSON_NHS,
    location="surgery",
    specialty="Psychiatry",
)
GP_FULFILLED = {
    **GP_BOOKED,
    "status": "fulfilled",
    "meta": {"versionId": "2", "lastUpdated": "2026-12-03T10:35:00Z"},
}
REHAB_BOOKED = appointment(
    "rec-1", "booked", "2026-12-03T10:15:00Z", "2026-12-03T11:00:00Z", PERSON_CRN, location="hub"
)
REHAB_NOSHOW = {
    **REHAB_BOOKED,
    "status": "noshow",
    "meta": {"versionId": "2", "lastUpdated": "2026-12-03T11:05:00Z"},
}
PERSON_IDS = (PERSON_CRN, PERSON_NHS)
PROBATION_MISSED = appointment(
    "prob-1", "noshow", "2026-12-03T10:15:00Z", "2026-12-03T11:00:00Z", PERSON_CRN
)


def kinds(found: list[dict]) -> Counter:
    return Counter((a["event_type"], a["recipient"]) for a in found)


def ask(person: tuple[str, str], appointment_id: str) -> str:
    """The breach check's path for a person named by `person` (SYSTEM, VALUE)."""
    return "/breach-check?" + urlencode(
        {"identifier": "|".join(person), "appointment": appointment_id}
    )


def referred(publish, partner: str = "vol-recovery") -> tuple[str, str]:
    """Probation refers the person to `partner`: the hub person id it is given, to ask by."""
    publish("probation-london", referral_to(partner, f"ref-{partner}"))
    return (HUB_PERSON, delivered_person(partner, f"ref-{partner}"))


def breach_check(
    worker: Worker,
    appointment_id: str,
    person: tuple[str, str] = PERSON_CRN,
    *,
    expect: str | None = None,
    as_partner: str = "probation-london",
) -> dict:
    """The worker's answer once it has one (and it is `expect`, if given); bounded wait."""
    deadline = time.monotonic() + 30
    answer: dict = {}
    while time.monotonic() < deadline:
        status, answer = worker.get(ask(person, appointment_id), as_partner)
        if status == 200 and (expect is None or answer["verdict"] == expect):
            return answer
        time.sleep(0.3)
    raise AssertionError(f"no breach check answer{' of ' + expect if expect else ''}: {answer}")


def test_noshow_during_attended_gp_visit_is_explained(worker: Worker, publish) -> None:
    """CRN and NHS number linked by probation; clash alerted to both; no-show explained."""
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    person = referred(publish)
    publish("gp-Y01234", GP_BOOKED)
    publish("vol-recovery", REHAB_BOOKED)
    clash = alerts(2)
    assert kinds(clash) == {
        ("alert.clash.raised", "gp-Y01234"): 1,
        ("alert.clash.raised", "vol-recovery"): 1,
    }

    publish("gp-Y01234", GP_FULFILLED)
    publish("vol-recovery", REHAB_NOSHOW)
    found = alerts(6)
    assert len(found) == 6
    assert kinds(found)[("alert.absence.explained", "vol-recovery")] == 1
    assert kinds(found)[("alert.absence.explained", "probation-london")] == 1, "the officer is told"

    answer = breach_check(worker, "rec-1", person, expect="explained", as_partner="vol-recovery")
    # Without consent the GP visit is a health service's, under an opaque id.
    assert [(e["appointment_id"], e["organisation_type"]) for e in answer["evidence"]] == [
        ("evidence-1", "health-service")
    ]
    assert answer["evidence"][0]["status"] == "fulfilled"
    for secret in ("Psychiatry", "9434765919", "X123456"):
        assert secret not in json.dumps(answer)
    assert "Psychiatry" not in json.dumps(found)
    # An alert names the person only by what its recipient sent: the GP booked by NHS number,
    # the voluntary service by CRN, probation linked the two.
    sent_by = {
        "9434765919": {"gp-Y01234", "probation-london"},
        "X123456": {"probation-london", "vol-recovery"},
    }
    for value, senders in sent_by.items():
        assert {a["recipient"] for a in found if value in json.dumps(a)} <= senders, value
    # The GP's feed freshness, as a health service's: no partner id without consent.
    assert [(p.get("partner"), p["organisation_type"]) for p in answer["partners"]] == [
        (None, "health-service")
    ]
    assert answer["partners"][0]["last_heard"] is not None


def test_gp_outcome_after_noshow_explains_it_then(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    person = referred(publish)
    publish("gp-Y01234", GP_BOOKED)
    publish("vol-recovery", REHAB_BOOKED)
    # Named by different identifiers, the two may otherwise meet only once the no-show is in.
    assert len(alerts(2)) == 2, "the clash"
    publish("vol-recovery", REHAB_NOSHOW)
    breach_check(worker, "rec-1", person, expect="possible-conflict", as_partner="vol-recovery")
    publish("gp-Y01234", GP_FULFILLED)
    found = alerts(6)
    assert kinds(found)[("alert.absence.explained", "probation-london")] == 1
    breach_check(
        worker, "vol-recovery/rec-1", person, expect="explained", as_partner="vol-recovery"
    )


def test_link_arriving_after_the_appointments_merges_calendars(worker: Worker, publish) -> None:
    publish("gp-Y01234", GP_FULFILLED)
    publish("vol-recovery", REHAB_NOSHOW)
    # The service is given the person id of the CRN alone, before the link joins it to another.
    person = referred(publish)
    # Not yet known to be one person: nothing said.
    assert alerts(1, timeout_s=3) == []
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    found = alerts(2)
    assert kinds(found) == {
        ("alert.absence.explained", "vol-recovery"): 1,
        ("alert.absence.explained", "probation-london"): 1,
    }
    answer = breach_check(worker, "rec-1", person, expect="explained", as_partner="vol-recovery")
    assert answer["person_id"] == min(person_id_for_token("|".join(p)) for p in PERSON_IDS)


def test_event_delivered_twice_has_no_second_effect(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    for _ in range(2):
        publish("gp-Y01234", GP_BOOKED)
        publish("vol-recovery", REHAB_BOOKED)
    found = alerts(2)
    assert alerts(3, timeout_s=4) == found
    assert len(found) == 2


def test_older_version_after_newer_never_overwrites_it(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    person = referred(publish)
    publish("gp-Y01234", GP_FULFILLED)
    publish("gp-Y01234", GP_BOOKED)  # version 1 arrives late
    publish("vol-recovery", REHAB_NOSHOW)
    found = alerts(2)
    assert kinds(found) == {
        ("alert.absence.explained", "vol-recovery"): 1,
        ("alert.absence.explained", "probation-london"): 1,
    }
    answer = breach_check(worker, "rec-1", person, expect="explained", as_partner="vol-recovery")
    assert answer["evidence"][0]["status"] == "fulfilled"


def test_unknown_person_or_appointment_is_a_clear_404(worker: Worker, publish) -> None:
    status, answer = worker.get(ask((CRN, "Z999999"), "x"))
    assert (status, answer["error"]) == (404, "no such person known to the hub")

    publish("probation-london", PROBATION_MISSED)
    breach_check(worker, "prob-1")  # the person is known now
    status, answer = worker.get(ask(PERSON_CRN, "nope"))
    assert (status, answer["error"]) == (404, "no such appointment for this person")


def test_partner_without_a_relationship_cannot_tell_the_person_exists(
    worker: Worker, publish
) -> None:
    """A known person looks exactly like an unknown one to a partner with no relationship."""
    publish("vol-recovery", REHAB_BOOKED)  # booking an appointment is no relationship
    publish("probation-london", PROBATION_MISSED)
    breach_check(worker, "prob-1")  # both events are in the calendar now
    person = (HUB_PERSON, person_id_for_token("|".join(PERSON_CRN)))
    unknown = (404, {"error": "no such person known to the hub"})
    assert worker.get(ask(person, "rec-1"), "vol-recovery") == unknown
    assert worker.get(ask(person, "rec-1"), "vol-housing") == unknown
    assert worker.get(f"/people/{person[1]}/breach-check?appointment=rec-1", "vol-recovery") == (
        unknown
    )


def test_a_partner_may_ask_only_about_its_own_appointments(worker: Worker, publish) -> None:
    """Another partner's appointment is not found, exactly as one that does not exist."""
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    person = referred(publish)
    publish("vol-recovery", REHAB_NOSHOW)
    publish("probation-london", PROBATION_MISSED)
    breach_check(worker, "rec-1", person, as_partner="vol-recovery")
    breach_check(worker, "prob-1")
    not_found = (404, {"error": "no such appointment for this person"})
    assert worker.get(ask(PERSON_CRN, "vol-recovery/rec-1")) == not_found
    assert worker.get(ask(person, "probation-london/prob-1"), "vol-recovery") == not_found


def test_breach_check_needs_a_signed_in_partner_whose_role_may_ask(worker: Worker) -> None:
    assert worker.get(ask(PERSON_CRN, "x"), None)[0] == 401
    assert worker.get(ask(PERSON_CRN, "x"), "gp-Y01234")[0] == 403
    assert worker.get("/people/p-1/breach-check?appointment=x", None)[0] == 401
    assert worker.get("/people/p-1/breach-check?appointment=x", "mht-rv5")[0] == 403


def test_bad_identifier_is_a_clear_400(worker: Worker) -> None:
    status, answer = worker.get(ask((NHS, "9434765918"), "x"))
    assert status == 400
    assert "check digit" in answer["error"]


def test_a_partner_names_the_person_by_its_own_identifiers_only(worker: Worker) -> None:
    """Asked by another agency's identifier, the answer would say whose it is."""
    status, answer = worker.get(ask(PERSON_NHS, "x"))
    assert status == 400
    assert "your own system" in answer["error"]
    assert worker.get(ask(PERSON_CRN, "x"), "vol-recovery")[0] == 400
    local = ("urn:concord:id:local:vol-housing", "C-1")
    assert worker.get(ask(local, "x"), "vol-recovery")[0] == 400


def test_breach_check_command_prints_the_verdict_as_json(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("gp-Y01234", GP_FULFILLED)
    publish("probation-london", PROBATION_MISSED)
    breach_check(worker, "prob-1", expect="explained")
    env = {
        "CONCORD_WORKER_URL": worker.url,
        "CONCORD_PARTNER_SECRET": DEMO_SECRETS["probation-london"],
    }
    ask_as = ("breach-check", "--as", "probation-london", "--person", "|".join(PERSON_CRN))
    result = run_concord(*ask_as, "--appointment", "prob-1", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "explained"
    missing = run_concord(*ask_as, "--appointment", "nope", env=env)
    assert missing.returncode == 4
    assert "no such appointment" in missing.stderr


def test_invalid_nhs_number_reaching_the_hub_is_dead_lettered_with_the_reason(
    worker: Worker,
) -> None:
    from connectors.kafka_io import Publisher, read_topic
    from schemas.codec import decode_dead_letter
    from schemas.envelope import wrap
    from schemas.topics import DEADLETTER

    bad = (NHS, "9434765918")
    resource = appointment("gp-x", "booked", "2026-12-03T10:00:00Z", "2026-12-03T10:30:00Z", bad)
    publisher = (
        Publisher()
    )  # straight onto the inbound topic, as a producer bypassing the edge would
    publisher.send_envelope(
        wrap(resource, event_type="appointment.booking.updated", source="gp-Y01234", subject=(bad,))
    )
    publisher.confirm()
    publisher.close()
    deadline = time.monotonic() + 30
    letters: list = []
    while not letters and time.monotonic() < deadline:
        letters = [
            decode_dead_letter(v) for _, v in read_topic(DEADLETTER.name, idle_timeout_s=1.0)
        ]
    assert len(letters) == 1
    assert letters[0].origin == "person-index"
    assert "check digit" in letters[0].reason
