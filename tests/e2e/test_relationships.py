"""A relationship cannot be claimed: publishing an appointment naming someone earns no answer
about them and no word of another agency's appointment."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from connectors.kafka_io import read_topic
from schemas.identifiers import HUB_PERSON
from schemas.topics import ALERTS, AUDIT
from tests.e2e.conftest import CRN, NHS, Worker, alerts, appointment, patient
from tests.keys import person_id_for_token

PERSON_CRN = (CRN, "X123456")
PERSON_NHS = (NHS, "9434765919")
# Probation has linked the two: the person's id is the smaller of their provisional ids.
PERSON = min(person_id_for_token("|".join(p)) for p in (PERSON_CRN, PERSON_NHS))
ATTACKER = "vol-housing"


def test_an_invented_appointment_gets_a_404_and_no_word_of_the_trusts_appointment(
    worker: Worker, publish
) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    publish(
        "mht-rv5",
        appointment(
            "mht-1", "fulfilled", "2026-12-03T10:00:00Z", "2026-12-03T11:00:00Z", PERSON_NHS
        ),
    )
    # A voluntary service that has never worked with the person names their NHS number in an
    # appointment it says was missed at the time the trust saw them.
    publish(
        ATTACKER,
        appointment("inv-1", "noshow", "2026-12-03T10:15:00Z", "2026-12-03T11:00:00Z", PERSON_NHS),
    )
    # The officer, related by the case record, hears of it: the invented event has been handled.
    [told] = alerts(1)
    assert (told["recipient"], told["event_type"]) == (
        "probation-london",
        "alert.absence.explained",
    )

    not_known = (404, {"error": "no such person known to the hub"})
    by_person = urlencode({"identifier": f"{HUB_PERSON}|{PERSON}", "appointment": "inv-1"})
    assert worker.get(f"/breach-check?{by_person}", ATTACKER) == not_known
    assert worker.get(f"/people/{PERSON}/breach-check?appointment=inv-1", ATTACKER) == not_known
    by_nhs = urlencode({"identifier": "|".join(PERSON_NHS), "appointment": "inv-1"})
    status, answer = worker.get(f"/breach-check?{by_nhs}", ATTACKER)
    assert status == 400, "another agency's identifier is no way to ask"
    assert "9434765919" not in json.dumps(answer)

    to_attacker = [
        v for k, v in read_topic(ALERTS.name, idle_timeout_s=1.0) if k == ATTACKER.encode()
    ]
    assert to_attacker == [], "no alert reaches the partner that made the claim"
    audited = [json.loads(v)["resource"] for _, v in read_topic(AUDIT.name, idle_timeout_s=1.0)]
    recipients = {a["agent"][0]["who"]["identifier"]["value"] for a in audited}
    assert ATTACKER not in recipients, "nothing disclosed to it, and no relationship recorded"
