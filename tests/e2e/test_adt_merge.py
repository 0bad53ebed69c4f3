"""A trust's ADT feed end to end on the real broker with a real worker: a stay explains a missed
probation appointment once the trust merges the record it was booked under into the one the hub
knows; a merge of records holding different NHS numbers joins no one."""

from __future__ import annotations

from typing import Any

from connectors.hl7v2.to_fhir import records_from_hl7_text
from connectors.kafka_io import Publisher
from connectors.publish import publish_records
from tests.e2e.conftest import Worker, patient
from tests.e2e.test_identity import OTHER_NHS, PERSON_CRN, PERSON_NHS, one_open_conflict
from tests.e2e.test_reconciliation import PROBATION_MISSED, breach_check

TRUST = "mht-rv5"
# The stay is booked under the trust's old record, which names no NHS number.
ADMITTED_UNDER_OLD_RECORD = (
    "MSH|^~\\&|RIO|RV5|CONCORD|HUB|20261203090500||ADT^A01|ADT-1|P|2.4\r"
    "EVN|A01|20261203090000\r"
    "PID|1||RV5-OLD^^^RV5^MR\r"
    "PV1|1|I|WARD7^^^RV5||||||||||||||||V-77|||||||||||||||||||||||||20261203090000\r"
)
UPDATE = (
    "MSH|^~\\&|RIO|RV5|CONCORD|HUB|20261203091000||ADT^A08|ADT-2|P|2.4\r"
    "EVN|A08|20261203091000\r"
    "PID|1||{mrn}^^^RV5^MR~{nhs}^^^NHS^NH\r"
)
MERGE = (
    "MSH|^~\\&|RIO|RV5|CONCORD|HUB|20261203120000||ADT^A40|ADT-3|P|2.4\r"
    "EVN|A40|20261203120000\r"
    "PID|1||RV5-NEW^^^RV5^MR\r"
    "MRG|RV5-OLD^^^RV5^MR\r"
)


def send_hl7(text: str) -> None:
    publisher = Publisher()
    try:
        summary = publish_records(records_from_hl7_text(text, "adt.hl7", TRUST), TRUST, publisher)
    finally:
        publisher.close()
    assert summary.rejected == 0, summary.errors


def test_a_merge_brings_the_stay_under_the_old_record_to_the_person(
    worker: Worker, publish: Any
) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    send_hl7(UPDATE.format(mrn="RV5-NEW", nhs=PERSON_NHS[1]))
    send_hl7(ADMITTED_UNDER_OLD_RECORD)
    publish("probation-london", PROBATION_MISSED)
    breach_check(worker, "prob-1", expect="no-known-conflict")

    send_hl7(MERGE)

    answer = breach_check(worker, "prob-1", expect="explained")
    assert len(answer["evidence"]) == 1, "the stay, and only it"


def test_a_merge_of_records_holding_different_nhs_numbers_keeps_them_apart(
    worker: Worker, publish: Any
) -> None:
    publish("probation-london", patient(PERSON_CRN, PERSON_NHS))
    send_hl7(UPDATE.format(mrn="RV5-NEW", nhs=PERSON_NHS[1]))
    send_hl7(UPDATE.format(mrn="RV5-OLD", nhs=OTHER_NHS[1]).replace("ADT-2", "ADT-4"))
    send_hl7(ADMITTED_UNDER_OLD_RECORD)
    publish("probation-london", PROBATION_MISSED)

    send_hl7(MERGE)

    conflict = one_open_conflict()
    assert {"|".join(PERSON_NHS), "|".join(OTHER_NHS)} <= set(conflict["identifiers"])
    assert conflict["claim"]["source"] == TRUST
    # Whoever's stay that was, it is no evidence: the person's checks wait for the conflict.
    answer = breach_check(worker, "prob-1", expect="identity-conflict")
    assert answer["evidence"] == []
