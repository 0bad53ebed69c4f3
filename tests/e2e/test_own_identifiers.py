"""End to end: what a trust or a GP receives from the hub names the person and its own
appointment as it knows them, so it can match them to its own records; a referral reaches the
service with who the person is and who referred them, on direct care, audited."""

from __future__ import annotations

import json
from typing import Any

from connectors.feeds.probation import records_from_probation_text
from connectors.kafka_io import Publisher
from connectors.publish import publish_records
from schemas.topics import AUDIT, OUTBOUND
from tests.e2e.conftest import CRN, NHS, Worker, alerts, appointment, patient
from tests.e2e.test_referrals import messages

PERSON_CRN = (CRN, "X123456")
PERSON_NHS = (NHS, "9434765919")
REFERRAL_CREATED = {
    "event_type": "referral.created",
    "crn": "X123456",
    "nhs_number": "9434765919",
    "referral_id": "ref-own-1",
    "category": "mental-health-assessment",
    "urgency": "urgent",
    "area": "E09000022",
    "given_name": "Jo",
    "family_name": "Smith",
    "birth_date": "1990-04-01",
    "address_line_1": "10 Acacia Avenue",
    "town": "London",
    "postcode": "SE11 5AB",
    "officer_name": "Sam Patel",
    "officer_team": "Lambeth North",
    "officer_phone": "020 7946 0000",
    "officer_email": "sam.patel@justice.gov.uk",
}


def identifiers(resource: dict[str, Any]) -> set[tuple[str, str]]:
    [person] = [c for c in resource["contained"] if c["resourceType"] == "Patient"]
    return {(i["system"], i["value"]) for i in person["identifier"]}


def test_a_referral_from_the_probation_feed_reaches_the_trust_with_who_and_by_whom(
    worker: Worker,
) -> None:
    publisher = Publisher()
    records = records_from_probation_text(json.dumps(REFERRAL_CREATED) + "\n", "feed.ndjson")
    summary = publish_records(records, "probation-london", publisher)
    publisher.close()
    assert summary.accepted == 2, summary.errors  # the link Patient and the ServiceRequest

    [delivery] = messages(OUTBOUND.name, 1, event_type="referral.request.delivered")
    assert delivery["to"] == "mht-rv5"
    resource = delivery["resource"]
    assert PERSON_NHS in identifiers(resource), "the trust registers the person by NHS number"
    assert PERSON_CRN not in identifiers(resource), "nothing of probation's own records"
    person, role, officer = resource["contained"]
    assert person["name"] == [{"use": "official", "family": "Smith", "given": ["Jo"]}]
    assert person["birthDate"] == "1990-04-01"
    assert person["address"][0]["postalCode"] == "SE11 5AB"
    assert resource["subject"]["reference"] == "#patient"
    assert resource["requester"] == {"reference": "#requester"}
    assert {t["value"] for t in role["telecom"]} == {"020 7946 0000", "sam.patel@justice.gov.uk"}
    assert officer["name"] == [{"text": "Sam Patel"}]

    audits = messages(AUDIT.name, 1, event_type="audit.disclosure.recorded")
    referral_audits = [
        a
        for a in audits
        if a["resource"]["entity"][1]["what"]["reference"] == "ServiceRequest/ref-own-1"
    ]
    assert [a["resource"]["agent"][0]["policy"] for a in referral_audits] == [
        ["urn:concord:basis:direct-care"]
    ]
    officer_view = messages(OUTBOUND.name, 1, to="probation-london")
    assert "Smith" not in json.dumps(officer_view), "the officer is sent nothing new"


def test_a_clash_names_each_bookers_own_appointment_and_the_person_as_it_knows_them(
    worker: Worker, publish
) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    gp = appointment("gp-55", "booked", "2026-12-10T10:00:00Z", "2026-12-10T10:30:00Z", PERSON_NHS)
    publish("gp-Y01234", gp)
    supervision = appointment(
        "prob-55", "booked", "2026-12-10T10:00:00Z", "2026-12-10T11:00:00Z", PERSON_CRN
    )
    publish("probation-london", supervision)

    raised = [a for a in alerts(2) if a["event_type"] == "alert.clash.raised"]
    to = {a["recipient"]: a["resource"] for a in raised}
    assert set(to) == {"gp-Y01234", "probation-london"}
    for partner, own_id, known, unknown in (
        ("gp-Y01234", "gp-55", PERSON_NHS, PERSON_CRN),
        ("probation-london", "prob-55", PERSON_CRN, None),
    ):
        issue = to[partner]
        own = [
            c["identifier"][0]["value"]
            for c in issue["contained"]
            if c["resourceType"] == "Appointment" and "identifier" in c
        ]
        assert own == [own_id], partner
        assert known in identifiers(issue), partner
        if unknown:
            assert unknown not in identifiers(issue), "a GP is never told the CRN"
