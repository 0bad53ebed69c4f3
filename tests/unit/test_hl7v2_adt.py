"""ADT as UK trusts send it: stays as Encounters, patient updates, merges and links as Patients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.hl7v2.message import Hl7Error
from connectors.hl7v2.to_fhir import map_message, records_from_hl7_text
from connectors.publish import Accepted, decide
from services.domain.appointments import slot_from_encounter

PARTNER = "mht-rv5"
NHS = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}
LOCAL = "urn:concord:id:local:mht-rv5"
MRN = {"system": LOCAL, "value": "RV5123456"}
PID = "PID|1||RV5123456^^^RV5^MR~9434765919^^^NHS^NH||TESTPATIENT^ALEX"
PV1 = "PV1|1|I|WARD7^^^RV5 Highgate||||||||||||||||V0042|||||||||||||||||||||||||20261202093000"


def adt(trigger: str, *segments: str, msh_time: str = "20261202093500") -> str:
    msh = f"MSH|^~\\&|RIO|RV5|CONCORD|HUB|{msh_time}||ADT^{trigger}|CTRL-{trigger}|P|2.4"
    return "\r".join([msh, f"EVN|{trigger}|20261202093400", *segments]) + "\r"


def resources(text: str) -> list[dict[str, Any]]:
    return list(map_message(text, PARTNER).resources)


def encounter(text: str) -> dict[str, Any]:
    [found] = [r for r in resources(text) if r["resourceType"] == "Encounter"]
    return found


def error(text: str) -> Hl7Error:
    with pytest.raises(Hl7Error) as caught:
        map_message(text, PARTNER)
    return caught.value


def with_pv1_field(position: int, value: str, pv1: str = PV1) -> str:
    fields = pv1.split("|")
    fields += [""] * (position + 1 - len(fields))
    fields[position] = value
    return "|".join(fields)


# --- stays --------------------------------------------------------------------------------


def test_admission_is_an_encounter_in_progress_named_by_its_visit_number() -> None:
    patient, stay = resources(adt("A01", PID, PV1))
    assert patient == {
        "resourceType": "Patient",
        "meta": {"lastUpdated": "2026-12-02T09:35:00Z"},
        "identifier": [NHS, MRN],
    }
    assert stay == {
        "resourceType": "Encounter",
        "id": "V0042",
        "meta": {"lastUpdated": "2026-12-02T09:35:00Z"},
        "status": "in-progress",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "subject": {"identifier": NHS},
        "period": {"start": "2026-12-02T09:30:00Z"},
        "location": [{"location": {"reference": "Location/RV5-Highgate"}}],
    }


def test_discharge_finishes_the_same_encounter_with_pv1_45() -> None:
    pv1 = with_pv1_field(45, "20261205110000")
    stay = encounter(adt("A03", PID, pv1, msh_time="20261205110500"))
    assert (stay["id"], stay["status"]) == ("V0042", "finished")
    assert stay["period"] == {"start": "2026-12-02T09:30:00Z", "end": "2026-12-05T11:00:00Z"}
    assert stay["meta"]["lastUpdated"] == "2026-12-05T11:05:00Z", "newer than the admission"


def test_discharge_without_times_is_evidence_of_the_event_moment() -> None:
    pv1 = with_pv1_field(44, "")
    stay = encounter(adt("A03", PID, pv1))
    assert stay["period"] == {"start": "2026-12-02T09:34:00Z", "end": "2026-12-02T09:34:00Z"}


def test_discharge_to_the_minute_within_the_admission_minute_is_taken() -> None:
    """201302111000 is any moment of that minute: not earlier than an admission at 10:00:52."""
    pv1 = with_pv1_field(45, "202612020930", with_pv1_field(44, "20261202093052"))
    assert encounter(adt("A03", PID, pv1))["period"] == {
        "start": "2026-12-02T09:30:52Z",
        "end": "2026-12-02T09:30:52Z",
    }


def test_discharge_before_the_admission_is_refused_naming_pv1_45() -> None:
    found = error(adt("A03", PID, with_pv1_field(45, "20261201093000")))
    assert found.where == "PV1-45"
    assert "earlier than the admission" in found.reason


@pytest.mark.parametrize(
    ("trigger", "status"),
    [("A04", "in-progress"), ("A11", "cancelled"), ("A38", "cancelled"), ("A13", "in-progress")],
)
def test_registrations_and_cancellations_set_the_status(trigger: str, status: str) -> None:
    assert encounter(adt(trigger, PID, PV1))["status"] == status


def test_pre_admission_is_planned_with_the_expected_times_only() -> None:
    pv1 = with_pv1_field(44, "")
    planned = encounter(adt("A05", PID, pv1, "PV2||||||||20261210090000|20261212120000"))
    assert planned["status"] == "planned"
    assert planned["period"] == {"start": "2026-12-10T09:00:00Z", "end": "2026-12-12T12:00:00Z"}
    no_dates = encounter(adt("A05", PID, pv1))
    assert "period" not in no_dates, "the event time is when it was booked, not the stay"


def test_admission_without_pv1_44_takes_evn_6_then_evn_2() -> None:
    pv1 = with_pv1_field(44, "")
    text = adt("A01", PID, pv1).replace("EVN|A01|20261202093400", "EVN|A01|20261202093400||||")
    assert encounter(text)["period"]["start"] == "2026-12-02T09:34:00Z"
    text = adt("A01", PID, pv1).replace(
        "EVN|A01|20261202093400", "EVN|A01|20261202093400||||20261202091500"
    )
    assert encounter(text)["period"]["start"] == "2026-12-02T09:15:00Z"


@pytest.mark.parametrize(
    ("patient_class", "code"),
    [("E", "EMER"), ("O", "AMB"), ("P", "PRENC"), ("", "UNK"), ("N", "UNK")],
)
def test_pv1_2_patient_class_is_the_encounter_class(patient_class: str, code: str) -> None:
    pv1 = with_pv1_field(2, patient_class)
    assert encounter(adt("A04", PID, pv1))["class"]["code"] == code


def test_without_a_visit_number_the_stay_is_named_by_the_trust_number_and_admit_time() -> None:
    pv1 = with_pv1_field(19, "")
    assert encounter(adt("A01", PID, pv1))["id"] == "RV5123456-20261202093000"
    assert encounter(adt("A01", PID, with_pv1_field(50, "ALT-7", pv1)))["id"] == "ALT-7"


def test_a_discharge_without_a_visit_number_finds_its_stay_by_the_admit_time() -> None:
    pv1 = with_pv1_field(45, "20261205110000", with_pv1_field(19, ""))
    assert encounter(adt("A03", PID, pv1))["id"] == "RV5123456-20261202093000"


def test_a_discharge_without_a_visit_number_or_admit_time_is_refused_naming_pv1_19() -> None:
    found = error(adt("A03", PID, with_pv1_field(44, "", with_pv1_field(19, ""))))
    assert (found.where, found.code) == ("PV1-19", 101)


def test_a_stay_without_pv1_is_refused() -> None:
    assert error(adt("A01", PID)).where == "PV1"


def test_encounters_are_accepted_and_read_as_attendance() -> None:
    """What the edge takes, the calendar can place: the stay is evidence from its start."""
    [*_, record] = records_from_hl7_text(adt("A01", PID, PV1), "adt.hl7", PARTNER)
    decision = decide(record, PARTNER)
    assert isinstance(decision, Accepted)
    assert decision.envelope.event_type == "encounter.attendance.updated"
    slot = slot_from_encounter(
        decision.envelope.resource,
        source=PARTNER,
        kind="mht",
        event_id="e1",
        occurred_at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    assert (slot.appointment_id, slot.status) == ("mht-rv5/Encounter/V0042", "arrived")


# --- identity -----------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["A08", "A28", "A31"])
def test_patient_updates_are_a_patient_naming_both_identifiers(trigger: str) -> None:
    assert resources(adt(trigger, PID, PV1)) == [
        {
            "resourceType": "Patient",
            "meta": {"lastUpdated": "2026-12-02T09:35:00Z"},
            "identifier": [NHS, MRN],
        }
    ]


def test_patient_update_with_the_placeholder_nhs_number_names_the_local_number_only() -> None:
    pid = "PID|||40800000^^^MRENTR^MEDREC~9999999999^^^NHS^HN"
    [patient] = resources(adt("A08", pid))
    assert patient["identifier"] == [{"system": LOCAL, "value": "40800000"}]


def test_merge_names_the_survivor_and_the_merged_record_it_replaces() -> None:
    [patient] = resources(adt("A40", PID, "MRG|RV5000111^^^RV5^MR"))
    merged = {"system": LOCAL, "value": "RV5000111"}
    assert patient["identifier"] == [NHS, MRN, {**merged, "use": "old"}]
    assert patient["link"] == [{"other": {"identifier": merged}, "type": "replaces"}]


def test_merge_takes_the_merged_number_by_the_pid_3_rules() -> None:
    """An untyped MRG-1 with an assigning authority, as Epic sends it, is the trust's number."""
    [patient] = resources(adt("A40", "PID|||40800001^^^MRENTR^MEDREC", "MRG|40800000^^^MRENTR"))
    assert patient["link"][0]["other"]["identifier"]["value"] == "40800000"


@pytest.mark.parametrize(
    ("segments", "where", "reason"),
    [
        ((PID,), "MRG", "segment required"),
        ((PID, "MRG|123^^^SSA^SS~456^^^X^SS"), "MRG-1", "merged record's own number"),
        ((PID, "MRG|RV5123456^^^RV5^MR"), "MRG-1", "same record"),
        (("PID|||9434765919^^^NHS^NH", "MRG|1^^^RV5^MR"), "PID-3", "trust's own number"),
    ],
)
def test_unusable_merges_are_refused_naming_the_field(
    segments: tuple[str, ...], where: str, reason: str
) -> None:
    found = error(adt("A40", *segments))
    assert found.where == where
    assert reason in found.reason


def test_link_names_the_second_record_as_seen_also() -> None:
    [patient] = resources(adt("A24", PID, "PID|2||RV5999^^^RV5^MR"))
    other = {"system": LOCAL, "value": "RV5999"}
    assert patient["identifier"] == [NHS, MRN, {**other, "use": "secondary"}]
    assert patient["link"] == [{"other": {"identifier": other}, "type": "seealso"}]


def test_link_of_records_with_different_nhs_numbers_is_refused() -> None:
    second = "PID|2||RV5999^^^RV5^MR~9434765870^^^NHS^NH"
    found = error(adt("A24", PID, second))
    assert found.where == "PID-3"
    assert "different NHS numbers" in found.reason


def test_merge_is_accepted_as_an_identity_update() -> None:
    [record] = records_from_hl7_text(adt("A40", PID, "MRG|RV5000111^^^RV5^MR"), "m.hl7", PARTNER)
    decision = decide(record, PARTNER)
    assert isinstance(decision, Accepted)
    assert decision.envelope.event_type == "identity.patient.updated"
    assert decision.envelope.subject is not None
    assert {(i.system, i.value) for i in decision.envelope.subject.identifiers} == {
        (NHS["system"], NHS["value"]),
        (LOCAL, "RV5123456"),
        (LOCAL, "RV5000111"),
    }


# --- what is refused by type --------------------------------------------------------------


def test_an_adt_trigger_the_hub_does_not_read_is_refused_naming_those_it_does() -> None:
    found = error(adt("A02", PID, PV1))
    assert (found.where, found.code, found.rejects_message) == ("MSH-9.2", 201, True)
    assert "ADT^A02" in found.reason
    assert "A01, A03, A04, A05, A08, A11, A13, A24, A28, A31, A38, A40" in found.reason


def test_a_lab_result_is_refused_by_message_type() -> None:
    text = adt("A01", PID, PV1).replace("ADT^A01", "ORU^R01")
    found = error(text)
    assert (found.where, found.code) == ("MSH-9.1", 200)
    assert "unsupported message type 'ORU'" in found.reason


def test_a_trusts_referral_request_is_refused_for_its_sender_before_its_content() -> None:
    """The trust can mend a PID-3; it cannot become probation: that reason comes first."""
    text = adt("A01", "PID|1||X^^^^SS").replace("ADT^A01", "REF^I12").replace("EVN|A01|", "RF1|")
    with pytest.raises(Hl7Error) as caught:
        map_message(text, PARTNER, kind="mht")
    assert "routes referrals from probation services only" in caught.value.reason
    with pytest.raises(Hl7Error) as content:
        map_message(text, "probation-london", kind="probation")
    assert content.value.where.startswith("RF1-6"), "from probation the content is checked"
