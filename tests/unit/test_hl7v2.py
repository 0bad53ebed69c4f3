"""HL7 v2 messages from Mental Health Trusts mapped to FHIR: golden files, round trips and errors."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hl7apy.parser import parse_message as hl7apy_parse

from connectors.fhir_input import Record
from connectors.hl7v2.ack import acknowledgement
from connectors.hl7v2.message import (
    Header,
    Hl7Error,
    Separators,
    escape,
    parse_dtm,
    read_header,
    split_messages,
    unescape,
)
from connectors.hl7v2.to_fhir import (
    fhir_instant,
    map_message,
    records_from_hl7_file,
    records_from_hl7_text,
)
from connectors.publish import Accepted, decide
from schemas.fhir import problems_in
from services.domain.appointments import slot_from_appointment
from services.domain.breach import breach_check
from services.domain.calendar import Calendar, Slot, Version
from services.domain.reconciliation import reconcile

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mht"
PARTNER = "mht-rv5"
NHS = {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}
MRN = {"system": "urn:concord:id:local:mht-rv5", "value": "MRN445566"}
GOLDEN = sorted(FIXTURES.glob("*.hl7"))


def fixture_text(name: str) -> str:
    # Bytes, not read_text: universal newlines would turn the \r segment separators into \n.
    return (FIXTURES / name).read_bytes().decode("utf-8")


def resources_from_hl7(text: str, partner: str) -> list[dict[str, Any]]:
    """The FHIR resources one HL7 v2 message from `partner` maps to (a linking Patient first)."""
    return list(map_message(text, partner).resources)


def mapped(name: str) -> list[dict[str, Any]]:
    return resources_from_hl7(fixture_text(name), PARTNER)


def appointment(name: str) -> dict[str, Any]:
    [found] = [r for r in mapped(name) if r["resourceType"] == "Appointment"]
    return found


def person(resource: dict[str, Any]) -> dict[str, str]:
    return resource["participant"][0]["actor"]["identifier"]


def with_segment(text: str, name: str, replacement: str | None) -> str:
    """The message with its first `name` segment replaced (or removed when None)."""
    lines = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r").split("\r")
    index = next(i for i, line in enumerate(lines) if line.startswith(name))
    lines[index : index + 1] = [] if replacement is None else [replacement]
    return "\r".join(lines)


# --- golden files -------------------------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_every_golden_message_maps_to_resources_the_hub_accepts(path: Path) -> None:
    resources = resources_from_hl7(fixture_text(path.name), PARTNER)
    assert resources
    for resource in resources:
        assert problems_in(resource) == [], resource


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_resources_round_trip_through_json_and_fhir_models(path: Path) -> None:
    """Parse, map, dump the FHIR JSON, parse it again: the same resources."""
    from fhir.resources.R4B import get_fhir_model_class

    resources = resources_from_hl7(fixture_text(path.name), PARTNER)
    dumped = json.dumps(resources)
    assert json.loads(dumped) == resources
    for resource in json.loads(dumped):
        model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert json.loads(model.model_dump_json(exclude_none=True)) == resource


def test_s12_new_booking_is_a_booked_appointment_with_a_linking_patient() -> None:
    patient, booked = mapped("siu-s12.hl7")
    assert patient == {
        "resourceType": "Patient",
        "meta": {"lastUpdated": "2026-12-01T09:30:00Z"},
        "identifier": [NHS, MRN],
    }
    assert booked == {
        "resourceType": "Appointment",
        "id": "APPT-88",
        "meta": {"lastUpdated": "2026-12-01T09:30:00Z"},
        "status": "booked",
        "serviceType": [{"text": "Community mental health team"}],
        "start": "2026-12-04T13:00:00Z",
        "end": "2026-12-04T14:00:00Z",
        "participant": [
            {"actor": {"identifier": NHS}, "status": "accepted"},
            {
                "actor": {"reference": "Location/CMHT-MAUDS", "display": "Maudsley CMHT clinic"},
                "status": "accepted",
            },
        ],
    }


def test_s13_reschedule_keeps_the_id_with_new_times_from_the_service_and_its_duration() -> None:
    moved = appointment("siu-s13.hl7")
    assert (moved["id"], moved["status"]) == ("APPT-88", "booked")
    assert (moved["start"], moved["end"]) == ("2026-12-07T10:30:00Z", "2026-12-07T11:15:00Z")
    assert moved["meta"]["lastUpdated"] > appointment("siu-s12.hl7")["meta"]["lastUpdated"]


def test_s14_with_filler_status_complete_is_fulfilled() -> None:
    modified = appointment("siu-s14.hl7")
    assert modified["status"] == "fulfilled"
    assert (modified["start"], modified["end"]) == ("2026-12-07T10:30:00Z", "2026-12-07T11:15:00Z")
    assert modified["participant"][1]["actor"]["reference"] == "Location/CMHT-LAMB"
    assert mapped("siu-s14.hl7") == [modified], "PID has only the NHS number: no linking Patient"


def test_s15_is_cancelled() -> None:
    cancelled = appointment("siu-s15.hl7")
    assert (cancelled["id"], cancelled["status"]) == ("APPT-89", "cancelled")
    assert cancelled["start"] == "2026-12-10T15:00:00Z"


def test_s17_is_entered_in_error_identified_by_placer_id_and_local_mrn() -> None:
    deleted = appointment("siu-s17.hl7")
    assert (deleted["id"], deleted["status"]) == ("PL-8803", "entered-in-error")
    assert person(deleted) == MRN


def test_s26_is_a_noshow() -> None:
    missed = appointment("siu-s26.hl7")
    assert (missed["status"], missed["start"], missed["end"]) == (
        "noshow",
        "2026-12-04T13:00:00Z",
        "2026-12-04T14:00:00Z",
    )


def test_ref_i12_is_an_active_service_request() -> None:
    patient, request = mapped("ref-i12.hl7")
    assert patient["identifier"] == [NHS, MRN]
    assert request == {
        "resourceType": "ServiceRequest",
        "id": "REF-2001",
        "meta": {"lastUpdated": "2026-12-01T09:00:00Z"},
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "category": [{"text": "Psychiatric"}],
        "subject": {"identifier": NHS},
        "authoredOn": "2026-12-01T08:55:00Z",
        "reasonCode": [{"text": "Low mood and anxiety"}, {"text": "Moderate depressive episode"}],
    }


def test_rri_i12_is_the_referral_task_with_its_status_and_reason() -> None:
    [task] = mapped("rri-i12.hl7")
    assert task == {
        "resourceType": "Task",
        "id": "task-REF-2001",
        "meta": {"lastUpdated": "2026-12-02T11:00:00Z"},
        "status": "accepted",
        "intent": "order",
        "focus": {"reference": "ServiceRequest/REF-2001"},
        "for": {"identifier": NHS},
        "lastModified": "2026-12-02T11:00:00Z",
        "statusReason": {"text": "Accepted for CMHT assessment; first appointment to follow."},
    }


@pytest.mark.parametrize(
    ("code", "status"),
    [("A", "accepted"), ("R", "rejected"), ("P", "received"), ("E", "cancelled")],
)
def test_rri_referral_status_codes(code: str, status: str) -> None:
    text = fixture_text("rri-i12.hl7").replace("RF1|A^Accepted", f"RF1|{code}^x")
    [task] = resources_from_hl7(text, PARTNER)
    assert task["status"] == status


def test_routine_referral_priority() -> None:
    text = fixture_text("ref-i12.hl7").replace("A^ASAP^HL70280", "R^Routine^HL70280")
    assert resources_from_hl7(text, PARTNER)[1]["priority"] == "routine"


def test_escape_sequences_are_decoded_in_mapped_text() -> None:
    booked = appointment("escapes.hl7")
    assert booked["serviceType"] == [{"text": "Drug & alcohol | dual diagnosis ^ review"}]
    location = booked["participant"][1]["actor"]
    assert location["display"] == "Room 1 ~ 2 \\ annex"
    assert location["reference"] == "Location/ANNEX-1", "a code with a space is tidied into a key"


def test_lf_separated_message_in_summer_time_is_converted_to_utc() -> None:
    booked = appointment("lf-separated.hl7")
    assert (booked["start"], booked["end"]) == ("2026-06-10T13:00:00Z", "2026-06-10T14:00:00Z")
    assert booked["meta"]["lastUpdated"] == "2026-06-01T08:30:00Z"


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"], ids=["CR", "LF", "CRLF"])
def test_any_segment_separator_gives_the_same_resources(separator: str) -> None:
    text = fixture_text("siu-s12.hl7").replace("\r", separator)
    assert resources_from_hl7(text, PARTNER) == mapped("siu-s12.hl7")


def test_repeated_segments_all_count() -> None:
    """Several AIS span the appointment; every AIL is a location; AIP and NTE are passed by."""
    patient, booked = mapped("repeated-segments.hl7")
    assert patient["identifier"] == [NHS, MRN], "first NHS number and first MRN; PN ignored"
    assert (booked["start"], booked["end"]) == ("2026-12-08T13:00:00Z", "2026-12-08T14:15:00Z")
    assert booked["serviceType"] == [{"text": "Initial assessment"}, {"text": "Medication review"}]
    assert [p["actor"].get("reference") for p in booked["participant"][1:]] == [
        "Location/ROOM-A",
        "Location/ROOM-B",
        "Location/RV5-HQ",
    ]
    assert "comment" not in booked
    assert "Jones" not in json.dumps(booked)


# --- the S26 no-show and its FHIR equivalent ------------------------------------------------


def test_s26_noshow_matches_its_fhir_equivalent() -> None:
    from_hl7 = appointment("siu-s26.hl7")
    from_fhir = json.loads((FIXTURES / "s26-equivalent.json").read_text())
    for element in ("id", "status", "start", "end"):
        assert from_hl7[element] == from_fhir[element], element
    assert person(from_hl7) == person(from_fhir)


def _slot(resource: dict[str, Any]) -> Slot:
    return slot_from_appointment(
        resource,
        source=PARTNER,
        kind="mht",
        event_id="e-1",
        occurred_at=datetime(2026, 12, 4, 14, 30, tzinfo=UTC),
    )


def test_s26_noshow_gets_the_same_reconciler_verdict_as_its_fhir_equivalent() -> None:
    """An officer's breach check cannot tell whether the trust spoke HL7 v2 or FHIR."""
    from_hl7 = _slot(appointment("siu-s26.hl7"))
    from_fhir = _slot(json.loads((FIXTURES / "s26-equivalent.json").read_text()))
    assert from_hl7 == from_fhir

    missed = Slot(
        appointment_id="probation-london/sup-1",
        partner="probation-london",
        kind="probation",
        status="noshow",
        start=datetime(2026, 12, 4, 13, 15, tzinfo=UTC),
        end=datetime(2026, 12, 4, 13, 45, tzinfo=UTC),
        location=None,
        version=Version(1, datetime(2026, 12, 4, 14, 0, tzinfo=UTC), "e-0"),
    )
    outcomes = []
    for slot in (from_hl7, from_fhir):
        calendar, _ = reconcile(Calendar("p-1"), missed)
        calendar, alerts = reconcile(calendar, slot)
        check = breach_check(calendar, missed.appointment_id, {PARTNER: "mht"}, {})
        outcomes.append((alerts, check.verdict, check.evidence))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == "no-known-conflict", "a missed trust appointment explains nothing"


# --- text and time ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (r"a\F\b\S\c\T\d\R\e\E\f", "a|b^c&d~e\\f"),
        (r"line one\.br\line two", "line one\nline two"),
        (r"\X41\\X42\C", "ABC"),
        (r"\H\bold\N\ text", "bold text"),
        (r"no escapes", "no escapes"),
        (r"\Q\ unknown is kept", r"\Q\ unknown is kept"),
    ],
)
def test_unescape(raw: str, text: str) -> None:
    assert unescape(raw, Separators()) == text


def test_escape_and_unescape_are_inverse() -> None:
    text = "a|b^c&d~e\\f"
    assert unescape(escape(text, Separators()), Separators()) == text


def test_a_message_with_its_own_separators_maps_the_same() -> None:
    own = Separators(field="#", component="$", repetition="*", escape="!", subcomponent="%")
    swap = str.maketrans("|^~\\&", "#$*!%")
    text = "MSH#" + own.msh2 + fixture_text("siu-s12.hl7")[8:].translate(swap)
    assert resources_from_hl7(text, PARTNER) == mapped("siu-s12.hl7")
    # An escape stands for the message's own delimiter.
    assert unescape("a!T!b!F!c", own) == "a%b#c"


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("202612041300", "2026-12-04T13:00:00Z"),
        ("20261204130000", "2026-12-04T13:00:00Z"),
        ("20260610140000", "2026-06-10T13:00:00Z"),
        ("20260610140000+0100", "2026-06-10T13:00:00Z"),
        ("20261204130000-0500", "2026-12-04T18:00:00Z"),
        ("20261204130000.25", "2026-12-04T13:00:00.250Z"),
        ("20261025013000", "2026-10-25T00:30:00Z"),  # the repeated autumn hour: BST reading
    ],
)
def test_hl7_times_become_utc_instants(value: str, instant: str) -> None:
    assert fhir_instant(parse_dtm(value)) == instant


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-12-04T13:00", "expected YYYYMMDDHHMM"),
        ("20261204", "expected YYYYMMDDHHMM"),
        ("20261304130000", "month must be in 1..12"),
        ("20261204130000+2500", "offset out of range"),
        ("20260329013000", "does not exist in Europe/London"),
    ],
)
def test_unusable_hl7_times_say_why(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_dtm(value)


# --- more mapping rules -------------------------------------------------------------------


def test_filler_status_started_is_arrived_but_never_overrides_a_cancellation() -> None:
    started = fixture_text("siu-s12.hl7").replace("||Booked", "||Started")
    assert resources_from_hl7(started, PARTNER)[1]["status"] == "arrived"
    complete = fixture_text("siu-s15.hl7").replace("||Cancelled", "||Complete")
    assert resources_from_hl7(complete, PARTNER)[0]["status"] == "cancelled"


def test_a_cancellation_may_omit_its_times() -> None:
    text = fixture_text("siu-s15.hl7").replace("^^30^20261210150000^20261210153000", "")
    [cancelled] = resources_from_hl7(text, PARTNER)
    assert "start" not in cancelled
    assert "end" not in cancelled
    assert problems_in(cancelled) == []


def test_tq1_gives_the_times_when_sch_11_is_empty() -> None:
    text = with_segment(
        fixture_text("siu-s14.hl7"),
        "SCH",
        "SCH|PL-8801^RIO|APPT-88^RIO" + "|" * 23 + "Booked",
    )
    text = text.replace("\rPID", "\rTQ1|1||||||20261207103000|20261207111500\rPID")
    booked = resources_from_hl7(text, PARTNER)[0]
    assert (booked["start"], booked["end"]) == ("2026-12-07T10:30:00Z", "2026-12-07T11:15:00Z")


def test_a_v27_message_still_carrying_sch_11_is_read() -> None:
    """hl7apy refuses SCH-11 under v2.7 rules; segments are read with v2.5 definitions."""
    text = fixture_text("siu-s12.hl7").replace("|P|2.5.1|", "|P|2.7|")
    assert resources_from_hl7(text, PARTNER) == mapped("siu-s12.hl7")


def test_unknown_and_newer_segments_are_passed_by() -> None:
    text = fixture_text("siu-s12.hl7").replace("\rRGS|1", "\rZXY|1|local^stuff\rPRT|1|AD\rRGS|1")
    assert resources_from_hl7(text, PARTNER) == mapped("siu-s12.hl7")


# --- errors -------------------------------------------------------------------------------

S12 = fixture_text("siu-s12.hl7")
S12_WITHOUT_AIS_TIME = S12.replace("|20261204130000|||60|min", "")
REF = fixture_text("ref-i12.hl7")
RRI = fixture_text("rri-i12.hl7")


@pytest.mark.parametrize(
    ("text", "where", "reason", "code", "location"),
    [
        ("hello world", "MSH", "not an HL7 v2 message", 100, "MSH^1"),
        (
            S12.replace("MSH|^~\\&|", "MSH|^^\\&|"),
            "MSH-2",
            "invalid encoding characters",
            102,
            "MSH^1^2",
        ),
        (S12.replace("|RV5-0001|", "||"), "MSH-10", "message control id", 101, "MSH^1^10"),
        (S12.replace("|20261201093000|", "||"), "MSH-7", "field required", 101, "MSH^1^7"),
        (
            S12.replace("|20261201093000|", "|yesterday|"),
            "MSH-7",
            "not a valid datetime",
            102,
            "MSH^1^7",
        ),
        (S12.replace("SIU^S12^SIU_S12", ""), "MSH-9", "message type", 101, "MSH^1^9"),
        (
            S12.replace("SIU^S12", "ORU^R01"),
            "MSH-9.1",
            "unsupported message type 'ORU'",
            200,
            "MSH^1^9^1^1",
        ),
        (
            S12.replace("SIU^S12", "SIU^S99"),
            "MSH-9.2",
            "unsupported trigger event SIU^S99",
            201,
            "MSH^1^9^1^2",
        ),
        (S12 + "MSH|^~\\&|X\r", "MSH", "a second MSH", 100, "MSH^2"),
        (
            S12.replace("\rRGS|1", "\rnot a segment"),
            "message",
            "line 4 is not an HL7 segment",
            100,
            "",
        ),
        (with_segment(S12, "PID", None), "PID", "segment required", 100, "PID^1"),
        (with_segment(S12, "PID", "PID|1||"), "PID-3", "field required", 101, "PID^1^3"),
        (
            with_segment(S12, "PID", "PID|1||123456789^^^USSSA^SS"),
            "PID-3",
            "no NHS number",
            103,
            "PID^1^3",
        ),
        (
            with_segment(S12, "PID", "PID|1||9999999999^^^NHS^NH"),
            "PID-3",
            "placeholder",
            103,
            "PID^1^3",
        ),
        (
            S12.replace("\rRGS", "\rPID|2||9434765919^^^NHS^NH\rRGS"),
            "PID",
            "more than one person",
            100,
            "PID^2",
        ),
        (with_segment(S12, "SCH", None), "SCH", "segment required", 100, "SCH^1"),
        (
            S12.replace("SCH|PL-8801^RIO|APPT-88^RIO|", "SCH|||"),
            "SCH-2",
            "filler appointment id",
            101,
            "SCH^1^2",
        ),
        (
            S12.replace("|APPT-88^RIO|", "|APPT 88^RIO|"),
            "SCH-2",
            "not usable as an id",
            102,
            "SCH^1^2",
        ),
        (
            S12.replace("^20261204130000^20261204140000", "^2026-12-04 13:00^20261204140000"),
            "SCH-11.4",
            "not a valid datetime '2026-12-04 13:00'",
            102,
            "SCH^1^11^1^4",
        ),
        (
            S12.replace("^20261204130000^20261204140000", "^20260329013000^20260329023000"),
            "SCH-11.4",
            "does not exist in Europe/London",
            102,
            "SCH^1^11^1^4",
        ),
        (
            S12_WITHOUT_AIS_TIME.replace("^^60^20261204130000^20261204140000", ""),
            "SCH-11",
            "no appointment start",
            101,
            "SCH^1^11",
        ),
        (
            S12.replace("^20261204130000^20261204140000", "^20261204130000^20261204120000"),
            "SCH-11.5",
            "must end after it starts",
            102,
            "SCH^1^11^1^5",
        ),
        (
            S12.replace("^^60^20261204130000^20261204140000", "").replace(
                "|||60|min\r", "|||sixty|min\r"
            ),
            "AIS-7",
            "not a number",
            102,
            "AIS^1^7",
        ),
        (
            S12.replace("^^60^20261204130000^20261204140000", "").replace(
                "|||60|min\r", "|||60|fortnights\r"
            ),
            "AIS-8",
            "unknown duration unit 'fortnights'",
            103,
            "AIS^1^8",
        ),
        (
            S12.replace("\rAIL", "\rAIS|2||X^Extra|tomorrow\rAIL").replace(
                "^^60^20261204130000^20261204140000", ""
            ),
            "AIS-4",
            "not a valid datetime",
            102,
            "AIS^2^4",
        ),
        (with_segment(REF, "RF1", None), "RF1", "segment required", 100, "RF1^1"),
        (
            REF.replace("|REF-2001^RIO|", "||"),
            "RF1-6",
            "originating referral identifier",
            101,
            "RF1^1^6",
        ),
        (
            RRI.replace("RF1|A^Accepted", "RF1|Z^Zapped"),
            "RF1-1",
            "unknown referral status 'Z'",
            103,
            "RF1^1^1",
        ),
        (RRI.replace("RF1|A^Accepted^HL70283", "RF1|"), "RF1-1", "field required", 101, "RF1^1^1"),
    ],
)
def test_unmappable_messages_name_the_segment_and_field(
    text: str, where: str, reason: str, code: int, location: str
) -> None:
    with pytest.raises(Hl7Error) as caught:
        resources_from_hl7(text, PARTNER)
    error = caught.value
    assert error.where == where
    assert reason in error.reason
    assert str(error).startswith(f"{where}: ")
    report = error.report()
    assert (report.code, report.location) == (code, location)
    assert error.rejects_message == where.startswith("MSH")
    # The reason goes into logs and dead letters: it never quotes the person's details.
    assert "9434765919" not in str(error)
    assert "TESTPATIENT" not in str(error)


# --- files --------------------------------------------------------------------------------


def test_split_messages_accepts_mllp_framing_bytes_and_blank_lines() -> None:
    text = "\x0b" + S12 + "\x1c\r\n\n\x0b" + RRI + "\x1c\r"
    assert len(split_messages(text)) == 2


def test_a_file_of_several_messages_gives_records_per_message_and_rejects_only_the_bad_one() -> (
    None
):
    bad = S12.replace("SIU^S12", "SIU^S99")
    invalid_nhs = fixture_text("siu-s14.hl7").replace("9434765919", "9434765918")
    text = "\n".join([S12, bad, RRI, invalid_nhs])
    records = list(records_from_hl7_text(text, "trust.hl7", PARTNER))

    assert [r.origin for r in records] == [
        "trust.hl7#msg[0]",
        "trust.hl7#msg[0]",
        "trust.hl7#msg[1]",
        "trust.hl7#msg[2]",
        "trust.hl7#msg[3]",
    ]
    patient, booked, unsupported, task, rejected = records
    assert [patient.resource, booked.resource] == mapped("siu-s12.hl7")
    assert patient.correlation == booked.correlation == "RV5-0001"
    assert patient.raw == S12.strip("\r")
    assert [str(p) for p in unsupported.problems] == [
        "MSH-9.2: unsupported trigger event SIU^S99 (supported for SIU: S12, S13, S14, S15, S16, S17, S26)"
    ]
    assert task.resource is not None
    assert task.resource["resourceType"] == "Task"
    assert rejected.resource is None, "a message is rejected whole, never half published"
    assert "check digit" in str(rejected.problems[0])

    decisions = [decide(r, PARTNER) for r in records]
    assert [type(d).__name__ for d in decisions] == [
        "Accepted",
        "Accepted",
        "Rejected",
        "Accepted",
        "Rejected",
    ]
    envelopes = [d.envelope for d in decisions if isinstance(d, Accepted)]
    assert [e.event_type for e in envelopes] == [
        "identity.patient.updated",
        "appointment.booking.updated",
        "referral.task.updated",
    ]
    assert envelopes[0].correlation_id == envelopes[1].correlation_id


def test_a_file_without_a_message_is_one_rejection() -> None:
    [record] = records_from_hl7_text("\n\n", "empty.hl7", PARTNER)
    assert [str(p) for p in record.problems] == ["(file): no HL7 v2 message (MSH segment) found"]


def test_records_from_an_iso_8859_1_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.hl7"
    path.write_bytes(fixture_text("escapes.hl7").replace("annex", "annexe é").encode("latin-1"))
    records: list[Record] = list(records_from_hl7_file(path, PARTNER))
    assert [r.origin for r in records] == ["latin.hl7#msg[0]"]
    assert records[0].resource is not None
    assert records[0].resource["participant"][1]["actor"]["display"].endswith("annexe é")


# --- the header ---------------------------------------------------------------------------


def test_the_header_holds_what_msh_says_as_sent() -> None:
    assert read_header(S12) == Header(
        Separators(),
        sending_application="RIO",
        sending_facility="RV5",
        receiving_application="CONCORD",
        receiving_facility="HUB",
        message_type="SIU",
        trigger="S12",
        control_id="RV5-0001",
        processing_id="P",
        version="2.5.1",
        accept_ack_type="AL",
        application_ack_type="NE",
    )


def test_the_header_is_a_frozen_value() -> None:
    header = read_header(S12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.control_id = "other"  # type: ignore[misc]


def test_the_header_reads_the_partners_own_separators() -> None:
    own = Separators(field="#", component="$", repetition="*", escape="!", subcomponent="%")
    text = "MSH#" + own.msh2 + "#RIO#RV5#CONCORD#HUB#20261201093000##SIU$S12#RV5-0001#T#2.4$GBR"
    header = read_header(text)
    assert header.separators == own
    assert (header.message_type, header.trigger, header.control_id) == ("SIU", "S12", "RV5-0001")
    assert (header.processing_id, header.version) == ("T", "2.4")


def test_header_values_stay_escaped_as_sent_for_the_ack_to_echo() -> None:
    """The mapping's control id is unescaped; the reply echoes MSH-10 exactly as it came."""
    text = S12.replace("|RV5-0001|", "|RV5\\T\\0001|")
    assert read_header(text).control_id == "RV5\\T\\0001"
    assert map_message(text, PARTNER).message.control_id == "RV5&0001"
    ack = acknowledgement(read_header(text), "AA", ack_control_id="A", now=NOW)
    assert ack.split("\r")[1] == "MSA|AA|RV5\\T\\0001"


@pytest.mark.parametrize(
    "text",
    ["", "GET / HTTP/1.1", "MSH|^~", "MSH|^^\\&|RIO|RV5", "PID|1||9434765919^^^NHS^NH"],
)
def test_an_unreadable_header_is_the_default_never_an_error(text: str) -> None:
    assert read_header(text) == Header()


def test_a_short_msh_gives_empty_fields_and_the_defaults() -> None:
    header = read_header("MSH|^~\\&|RIO")
    assert header.sending_application == "RIO"
    assert (header.control_id, header.trigger, header.processing_id, header.version) == (
        "",
        "",
        "P",
        "2.5",
    )


# --- acknowledgements ---------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 9, 31, 5, tzinfo=UTC)


def test_aa_echoes_the_control_id_and_swaps_sender_and_receiver() -> None:
    ack = acknowledgement(read_header(S12), "AA", ack_control_id="ACK1", now=NOW)
    assert ack.split("\r") == [
        "MSH|^~\\&|CONCORD|HUB|RIO|RV5|20261201093105+0000||ACK^S12^ACK|ACK1|P|2.5.1|||NE|NE",
        "MSA|AA|RV5-0001",
        "",
    ]
    parsed = hl7apy_parse(ack, find_groups=False)
    assert parsed.msa.msa_2.to_er7() == "RV5-0001"


def test_ae_carries_one_escaped_err_segment_per_error() -> None:
    with pytest.raises(Hl7Error) as caught:
        resources_from_hl7(S12.replace("SIU^S12", "SIU^S99"), PARTNER)
    ack = acknowledgement(
        read_header(S12), "AR", [caught.value.report()], ack_control_id="A", now=NOW
    )
    _msh, msa, err, _ = ack.split("\r")
    assert msa.startswith("MSA|AR|RV5-0001|MSH-9.2: unsupported trigger event SIU\\S\\S99")
    fields = err.split("|")
    assert fields[2] == "MSH^1^9^1^2"
    assert fields[3] == "201^Unsupported event code^HL70357"
    assert fields[4] == "E"
    assert unescape(fields[8], Separators()) == str(caught.value)
    hl7apy_parse(ack, find_groups=False)  # well-formed HL7


def test_a_reply_to_something_that_is_not_hl7_still_is_hl7() -> None:
    ack = acknowledgement(read_header("GET / HTTP/1.1"), "AR", ack_control_id="A", now=NOW)
    assert ack.split("\r")[1] == "MSA|AR|"
    hl7apy_parse(ack, find_groups=False)


def test_a_placeholder_nhs_number_leaves_the_person_named_by_the_mrn_and_links_nothing() -> None:
    """Feeds send 9999999999 when the NHS number is not known: it must never join anyone."""
    text = S12.replace("9434765919^^^NHS^NH", "9999999999^^^NHS^NH")
    [booked] = resources_from_hl7(text, PARTNER)
    assert booked["resourceType"] == "Appointment"
    assert person(booked) == MRN
