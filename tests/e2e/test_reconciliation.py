"""The case concord exists for, end to end on the real broker with a real worker."""

from __future__ import annotations

import json
import time
from collections import Counter
from urllib.parse import quote

from tests.conftest import run_concord
from tests.e2e.conftest import CRN, DEMO_SECRETS, NHS, Worker, alerts, appointment, patient

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


def kinds(found: list[dict]) -> Counter:
    return Counter((a["event_type"], a["recipient"]) for a in found)


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
        status, found = worker.get(
            f"/people?identifier={quote('|'.join(person), safe='')}", as_partner
        )
        if status == 200:
            status, answer = worker.get(
                f"/people/{found['person_id']}/breach-check?appointment={quote(appointment_id)}",
                as_partner,
            )
            if status == 200 and (expect is None or answer["verdict"] == expect):
                return answer
        time.sleep(0.3)
    raise AssertionError(f"no breach check answer{' of ' + expect if expect else ''}: {answer}")


def test_noshow_during_attended_gp_visit_is_explained(worker: Worker, publish) -> None:
    """CRN and NHS number linked by probation; clash alerted to both; no-show explained."""
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
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

    answer = breach_check(worker, "rec-1", expect="explained")
    assert [e["appointment_id"] for e in answer["evidence"]] == ["gp-Y01234/gp-1"]
    assert answer["evidence"][0]["status"] == "fulfilled"
    text = json.dumps(answer) + json.dumps(found)
    for secret in ("Psychiatry", "9434765919", "X123456"):
        assert secret not in text
    assert {p["partner"] for p in answer["partners"]} == {"gp-Y01234"}
    assert answer["partners"][0]["last_heard"] is not None


def test_gp_outcome_after_noshow_explains_it_then(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("gp-Y01234", GP_BOOKED)
    publish("vol-recovery", REHAB_BOOKED)
    publish("vol-recovery", REHAB_NOSHOW)
    breach_check(worker, "rec-1", expect="possible-conflict")
    publish("gp-Y01234", GP_FULFILLED)
    found = alerts(4)
    assert kinds(found)[("alert.absence.explained", "probation-london")] == 1
    breach_check(worker, "vol-recovery/rec-1", expect="explained")


def test_link_arriving_after_the_appointments_merges_calendars(worker: Worker, publish) -> None:
    publish("gp-Y01234", GP_FULFILLED)
    publish("vol-recovery", REHAB_NOSHOW)
    # Not yet known to be one person: nothing said.
    assert alerts(1, timeout_s=3) == []
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    found = alerts(2)
    assert kinds(found) == {
        ("alert.absence.explained", "vol-recovery"): 1,
        ("alert.absence.explained", "probation-london"): 1,
    }
    breach_check(worker, "rec-1", PERSON_NHS, expect="explained")


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
    publish("gp-Y01234", GP_FULFILLED)
    publish("gp-Y01234", GP_BOOKED)  # version 1 arrives late
    publish("vol-recovery", REHAB_NOSHOW)
    found = alerts(2)
    assert kinds(found) == {
        ("alert.absence.explained", "vol-recovery"): 1,
        ("alert.absence.explained", "probation-london"): 1,
    }
    assert breach_check(worker, "rec-1", expect="explained")["evidence"][0]["status"] == "fulfilled"


def test_unknown_person_or_appointment_is_a_clear_404(worker: Worker, publish) -> None:
    status, found = worker.get(f"/people?identifier={quote(CRN + '|Z999999', safe='')}")
    assert status == 200
    status, answer = worker.get(f"/people/{found['person_id']}/breach-check?appointment=x")
    assert (status, answer["error"]) == (404, "no such person known to the hub")

    publish("vol-recovery", REHAB_BOOKED)
    breach_check(worker, "rec-1", as_partner="vol-recovery")  # the person is known now
    status, found = worker.get(f"/people?identifier={quote('|'.join(PERSON_CRN), safe='')}")
    status, answer = worker.get(
        f"/people/{found['person_id']}/breach-check?appointment=nope", "vol-recovery"
    )
    assert (status, answer["error"]) == (404, "no such appointment for this person")


def test_partner_without_a_relationship_cannot_tell_the_person_exists(
    worker: Worker, publish
) -> None:
    """A known person looks exactly like an unknown one to a partner with no relationship."""
    publish("vol-recovery", REHAB_BOOKED)
    breach_check(worker, "rec-1", as_partner="vol-recovery")
    _, found = worker.get(f"/people?identifier={quote('|'.join(PERSON_CRN), safe='')}")
    path = f"/people/{found['person_id']}/breach-check?appointment=rec-1"
    assert worker.get(path, "vol-housing") == (404, {"error": "no such person known to the hub"})


def test_breach_check_needs_a_signed_in_partner_whose_role_may_ask(worker: Worker) -> None:
    path = f"/people?identifier={quote(CRN + '|X123456', safe='')}"
    assert worker.get(path, None)[0] == 401
    _, found = worker.get(path)
    assert (
        worker.get(f"/people/{found['person_id']}/breach-check?appointment=x", "gp-Y01234")[0]
        == 403
    )


def test_bad_identifier_is_a_clear_400(worker: Worker) -> None:
    status, answer = worker.get(f"/people?identifier={quote(NHS + '|9434765918', safe='')}")
    assert status == 400
    assert "check digit" in answer["error"]


def test_breach_check_command_prints_the_verdict_as_json(worker: Worker, publish) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish("gp-Y01234", GP_FULFILLED)
    publish("vol-recovery", REHAB_NOSHOW)
    breach_check(worker, "rec-1", expect="explained")
    env = {
        "CONCORD_WORKER_URL": worker.url,
        "CONCORD_PARTNER_SECRET": DEMO_SECRETS["probation-london"],
    }
    ask = ("breach-check", "--as", "probation-london", "--person", "|".join(PERSON_NHS))
    result = run_concord(*ask, "--appointment", "rec-1", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "explained"
    missing = run_concord(*ask, "--appointment", "nope", env=env)
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
