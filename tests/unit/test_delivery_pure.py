"""Outbound delivery's pure pieces: Bundles, HL7 v2 messages, ACK matching, backoff, commit offsets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.detectedissue import DetectedIssue

from connectors.delivery import service as delivery
from connectors.delivery.formats import message_bundle
from connectors.delivery.rules import (
    DeliveredKeys,
    DeliverySettings,
    EndpointConfigError,
    PartitionOffsets,
    backoff_delay,
    delivery_key,
    http_verdict,
    journal_keys,
    load_endpoints,
    operator_alert,
    retry_after,
    settings_from_env,
    undeliverable_letter,
)
from connectors.delivery.service import Journal
from connectors.hl7v2.ack import AckError, parse_ack, read_ack
from connectors.hl7v2.framing import Frame, FrameDecoder, frame
from connectors.hl7v2.from_fhir import control_id, hl7_message
from connectors.hl7v2.message import escape
from schemas.codec import decode, encode
from schemas.envelope import Envelope

ROOT = Path(__file__).parents[2]
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
EVENT_ID = "abac12fe-d314-5151-9828-96147b019f58"


def alert_envelope(detail: str = "Two appointments overlap on 3 December") -> Envelope:
    """An alert as the delivery service decodes it from the alerts topic."""
    return decode(_json(alert_data(detail)))


def alert_data(detail: str) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "event_type": "alert.clash.raised",
        "source": "concord-hub",
        "subject": {"identifiers": [], "person_id": "p-0a1b2c3d4e5f60718293"},
        "occurred_at": "2026-12-01T09:00:00Z",
        "recorded_at": "2026-12-01T09:00:05Z",
        "schema_version": 1,
        "correlation_id": EVENT_ID,
        "resource": {
            "resourceType": "DetectedIssue",
            "id": "clash-1",
            "status": "final",
            "severity": "moderate",
            "code": {"coding": [{"system": "urn:concord:alert", "code": "appointment-clash"}]},
            "patient": {
                "identifier": {"system": "urn:concord:id:person", "value": "p-0a1b2c3d4e5f60718293"}
            },
            "detail": detail,
            "implicated": [{"reference": "Appointment/gp-appt-1001"}],
        },
    }


# --- FHIR message Bundle ------------------------------------------------------------------


def test_bundle_is_a_valid_fhir_message_whose_header_names_the_event_type_and_recipient() -> None:
    envelope = alert_envelope()
    bundle = message_bundle(envelope, "gp-Y01234", "https://gp.example/fhir")

    Bundle.model_validate(bundle)  # raises if not a valid R4 Bundle
    assert bundle["type"] == "message"
    assert bundle["id"] == EVENT_ID
    header, focus = (entry["resource"] for entry in bundle["entry"])
    assert header["resourceType"] == "MessageHeader"
    assert header["eventCoding"]["code"] == "alert.clash.raised"
    assert header["destination"][0]["receiver"]["identifier"]["value"] == "gp-Y01234"
    assert header["destination"][0]["endpoint"] == "https://gp.example/fhir"
    assert header["focus"] == [{"reference": bundle["entry"][1]["fullUrl"]}]
    assert focus == envelope.resource
    assert bundle["timestamp"] == "2026-12-01T09:00:05Z", "the envelope's recorded_at"


def test_bundle_for_an_event_is_the_same_on_every_attempt() -> None:
    first = message_bundle(alert_envelope(), "gp-Y01234", "https://gp.example/fhir")
    again = message_bundle(alert_envelope(), "gp-Y01234", "https://gp.example/fhir")
    assert first == again


# --- HL7 v2 -------------------------------------------------------------------------------


def segments(message: str) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for segment in message.split("\r"):
        if segment:
            fields = segment.split("|")
            found.setdefault(fields[0], []).append(fields)
    return found


def task_envelope() -> Envelope:
    """A referral's Task update to the referrer, as decoded from the outbound topic."""
    data = alert_data("unused") | {"event_type": "referral.task.updated"}
    data["resource"] = {
        "resourceType": "Task",
        "id": "referral-ref-9",
        "status": "rejected",
        "intent": "order",
        "focus": {"reference": "ServiceRequest/ref-9"},
        "for": {
            "identifier": {"system": "urn:concord:id:person", "value": "p-0a1b2c3d4e5f60718293"}
        },
        "statusReason": {"text": "no capacity"},
    }
    return decode(_json(data))


def test_a_task_update_becomes_an_oru_r01_whose_first_obx_says_its_status() -> None:
    control = control_id(EVENT_ID)
    message = hl7_message(task_envelope(), "mht-rv5", control, NOW)
    parts = segments(message)

    msh = parts["MSH"][0]
    assert msh[1] == "^~\\&"
    # fields[n - 1] is MSH-n: MSH-1 is the separator the split consumed.
    assert (msh[4], msh[5], msh[8], msh[9], msh[11]) == (
        "mht-rv5",
        "mht-rv5",
        "ORU^R01^ORU_R01",
        control,
        "2.5.1",
    )
    assert parts["PID"][0][3] == "p-0a1b2c3d4e5f60718293^^^&urn:concord:id:person&URI"
    assert (
        parts["OBR"][0][4] == "referral.task.updated^referral.task.updated^urn:concord:event-type"
    )
    assert parts["OBR"][0][7] == "20261201090000+0000"
    first = parts["OBX"][0]
    assert first[1:4] == ["1", "TX", "Task^^urn:concord:fhir-path"]
    assert first[5] == "Task rejected"
    assert first[11] == "F"


def test_every_element_of_the_resource_is_an_obx_named_by_its_path() -> None:
    parts = segments(hl7_message(task_envelope(), "mht-rv5", "c-1", NOW))
    observed = {obx[3].split("^")[0]: obx[5] for obx in parts["OBX"][1:]}
    assert observed["Task.status"] == "rejected"
    assert observed["Task.statusReason.text"] == "no capacity"
    assert observed["Task.focus.reference"] == "ServiceRequest/ref-9"
    assert [obx[1] for obx in parts["OBX"]] == [str(n) for n in range(1, len(parts["OBX"]) + 1)]


def test_an_alert_becomes_an_mdm_t02_note_whose_obx_is_the_detail() -> None:
    """MDM^T02: filed against the person as a document; TXA-2 the alert's code, TXA-12 the
    event id (the same document on every attempt), the one OBX a LOINC Note with the text."""
    parts = segments(hl7_message(alert_envelope(), "mht-rv5", control_id(EVENT_ID), NOW))
    assert list(parts) == ["MSH", "EVN", "PID", "PV1", "TXA", "OBX"]
    assert parts["MSH"][0][8] == "MDM^T02^MDM_T02"
    assert parts["EVN"][0][1:] == ["T02", "20261201090005+0000"]
    assert parts["PID"][0][3] == "p-0a1b2c3d4e5f60718293^^^&urn:concord:id:person&URI"
    assert parts["PID"][0][5:] == [], "no name: the hub sends none it was not given"
    txa = parts["TXA"][0]
    assert (txa[2], txa[3], txa[12], txa[17], txa[19]) == (
        "appointment-clash",
        "TX",
        f"{EVENT_ID}^CONCORD",
        "AU",
        "AV",
    )
    [obx] = parts["OBX"]
    assert obx[1:6] == ["1", "TX", "34109-9^Note^LN", "", "Two appointments overlap on 3 December"]
    assert obx[11] == "F"


def test_separators_and_line_breaks_in_text_are_escaped() -> None:
    message = hl7_message(alert_envelope("a|b^c~d&e\\f\nnext"), "mht-rv5", "c-1", NOW)
    [first_obx] = segments(message)["OBX"]
    assert first_obx[5] == "a\\F\\b\\S\\c\\R\\d\\T\\e\\E\\f\\.br\\next"
    assert "\n" not in message
    assert escape("plain text") == "plain text"


def test_the_control_id_is_the_event_id_a_partner_drops_a_repeat_by() -> None:
    assert control_id(EVENT_ID) == EVENT_ID


# --- MLLP and ACKs ------------------------------------------------------------------------


def ack(code: str, control: str, text: str = "") -> bytes:
    return f"MSH|^~\\&|MHT|RV5|CONCORD|CONCORD-HUB|20261201093000||ACK^R01|a1|P|2.5.1\rMSA|{code}|{control}|{text}\r".encode()


def test_frames_are_split_from_a_stream_and_an_unfinished_one_is_kept() -> None:
    decoder = FrameDecoder()
    stream = b"noise" + frame("first") + frame("second") + b"\x0bthi"
    assert decoder.feed(stream) == [Frame(b"first"), Frame(b"second")]
    assert decoder.in_frame
    assert decoder.feed(b"rd\x1c\x0d") == [Frame(b"third")]
    assert not decoder.in_frame


def test_frame_wraps_the_message_in_mllp_blocks() -> None:
    assert frame("MSH|x") == b"\x0bMSH|x\x1c\x0d"


def test_ack_is_parsed_with_the_separator_the_partner_declares() -> None:
    parsed = parse_ack(b"MSH#^~\\&#MHT\nMSA#AE#ctl-9#busy\n")
    assert (parsed.code, parsed.control_id, parsed.text) == ("AE", "ctl-9", "busy")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"PID|1", "no MSH segment"),
        (b"MSH|^~\\&|MHT\rERR|1", "no MSA segment"),
        (b"MSH|^~\\&|MHT\rMSA|OK|c", "MSA-1 is 'OK'"),
        (b"MSH|^~\\&|MHT\rMSA|AA|", "MSA-2"),
    ],
)
def test_a_frame_that_is_no_ack_says_why(data: bytes, problem: str) -> None:
    with pytest.raises(AckError, match=problem):
        parse_ack(data)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [("AA", "delivered"), ("CA", "delivered"), ("AE", "retry"), ("CE", "retry"), ("AR", "refused")],
)
def test_an_ack_for_this_attempt_decides_it(code: str, verdict: str) -> None:
    assert read_ack(parse_ack(ack(code, "ctl-2")), "ctl-2") == verdict


def test_a_late_ack_for_an_earlier_message_does_not_count() -> None:
    earlier, current = control_id("e-1"), control_id(EVENT_ID)
    assert read_ack(parse_ack(ack("AA", earlier)), current) == "not-ours"


# --- retries ------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    settings = DeliverySettings()
    delays = [backoff_delay(n, settings) for n in range(1, 11)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 120, 120, 120]
    assert backoff_delay(10_000, settings) == 120


def test_jitter_only_shortens_a_delay_by_at_most_a_tenth() -> None:
    settings = DeliverySettings()
    assert backoff_delay(8, settings, spread=0.999) == pytest.approx(120 * 0.9, rel=1e-3)
    assert backoff_delay(8, settings, spread=0.5) < backoff_delay(8, settings)


def test_default_schedule_outlasts_a_partner_down_for_an_hour() -> None:
    settings = DeliverySettings()
    assert settings.max_attempts == 60
    # Seconds from the first attempt to the last, at the shortest jitter.
    span = sum(backoff_delay(n, settings, 1.0) for n in range(1, settings.max_attempts))
    assert span > 3600


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (204, "delivered"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (400, "refused"),
        (401, "refused"),
        (404, "refused"),
        (422, "refused"),
        (301, "refused"),
    ],
)
def test_http_status_decides_retry_or_refusal(status: int, verdict: str) -> None:
    assert http_verdict(status) == verdict


def test_retry_after_in_seconds_is_read_and_a_date_is_not() -> None:
    assert retry_after("30") == 30.0
    assert retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retry_after(None) is None


# --- commit offsets -----------------------------------------------------------------------


def test_commit_stops_at_the_lowest_unfinished_offset() -> None:
    offsets = PartitionOffsets()
    for offset in range(10, 15):
        offsets.fetched(offset)
    offsets.finished(12)
    offsets.finished(13)
    assert offsets.committable() == 10  # 10 itself is not finished: nothing past it yet
    offsets.finished(10)
    assert offsets.committable() == 11
    offsets.finished(11)
    assert offsets.committable() == 14
    offsets.finished(14)
    assert offsets.committable() == 15
    assert offsets.backlog() == 0


def test_nothing_is_committed_twice_or_before_anything_is_fetched() -> None:
    offsets = PartitionOffsets()
    assert offsets.committable() is None
    offsets.fetched(0)
    offsets.finished(0)
    assert offsets.committable() == 1
    offsets.committed = 1
    assert offsets.committable() is None


def test_an_unfinished_first_offset_commits_nothing_new() -> None:
    offsets = PartitionOffsets()
    offsets.fetched(5)
    offsets.fetched(6)
    offsets.finished(6)
    assert offsets.committable() == 5  # everything before 5 was done before it was fetched
    offsets.committed = 5
    assert offsets.committable() is None
    assert offsets.backlog() == 1


# --- endpoints and settings ---------------------------------------------------------------


def test_demo_endpoints_file_lists_every_demo_partner() -> None:
    """Every partner the hub sends messages to; a commissioner is sent none (it reads figures)."""
    document = yaml.safe_load((ROOT / "deploy" / "endpoints.yaml").read_text())
    endpoints = load_endpoints(document, "endpoints.yaml")
    partners = yaml.safe_load((ROOT / "deploy" / "demo" / "partners.yaml").read_text())["partners"]
    assert set(endpoints) == {p["id"] for p in partners if p["kind"] != "commissioner"}
    assert {e.format for e in endpoints.values()} == {"fhir", "json", "hl7"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"partner": "gp-Y01234", "format": "xml"}, r"endpoints\[0\] \(gp-Y01234\): format"),
        ({"partner": "gp-Y01234", "format": "fhir"}, r"\(gp-Y01234\): url: must be an http"),
        (
            {"partner": "gp-Y01234", "format": "json", "url": "ftp://x/y"},
            r"\(gp-Y01234\): url",
        ),
        (
            {"partner": "gp-Y01234", "format": "json", "url": "https://u:p@x/y"},
            "credentials",
        ),
        ({"partner": "mht-rv5", "format": "hl7", "host": "h"}, r"\(mht-rv5\): port"),
        ({"partner": "mht-rv5", "format": "hl7", "host": "h", "port": 70000}, "port"),
        (
            {"partner": "mht-rv5", "format": "hl7", "host": "h", "port": 1, "url": "http://x"},
            r"\(mht-rv5\): url: not a field of a hl7 endpoint",
        ),
        ({"partner": "Bad Id", "format": "json"}, "partner: 'Bad Id' is not a partner id"),
        ({"partner": "hub-operator", "format": "json", "url": "http://x"}, "never delivered"),
        ("gp-Y01234", r"endpoints\[0\]: must be a mapping"),
    ],
)
def test_a_bad_endpoint_is_named_in_the_error(entry: object, message: str) -> None:
    with pytest.raises(EndpointConfigError, match=message):
        load_endpoints({"endpoints": [entry]}, "endpoints.yaml")


def test_a_partner_listed_twice_is_an_error() -> None:
    entry = {"partner": "gp-Y01234", "format": "fhir", "url": "https://gp.example/fhir"}
    with pytest.raises(
        EndpointConfigError, match=r"endpoints\[1\] \(gp-Y01234\): partner listed twice"
    ):
        load_endpoints({"endpoints": [entry, entry]}, "endpoints.yaml")


def test_a_file_without_an_endpoints_list_is_an_error() -> None:
    with pytest.raises(EndpointConfigError, match="'endpoints' list"):
        load_endpoints({"endpoint": []}, "endpoints.yaml")


def test_deliver_check_names_the_bad_entry_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "endpoints.yaml"
    bad.write_text("endpoints:\n  - partner: mht-rv5\n    format: hl7\n    host: 127.0.0.1\n")
    assert delivery.main(["--check", "--endpoints", str(bad)]) == 2
    assert f"{bad}: endpoints[0] (mht-rv5): port:" in capsys.readouterr().err
    assert delivery.main(["--check", "--endpoints", str(ROOT / "deploy" / "endpoints.yaml")]) == 0
    assert "mht-rv5: hl7 mllp://127.0.0.1:9104" in capsys.readouterr().out


def test_settings_come_from_the_environment_with_defaults() -> None:
    settings = settings_from_env(
        {"CONCORD_DELIVERY_MAX_ATTEMPTS": "5", "CONCORD_DELIVERY_BACKOFF_CAP_S": "0.5"}
    )
    assert (settings.max_attempts, settings.backoff_cap_s) == (5, 0.5)
    assert (settings.backoff_base_s, settings.timeout_s) == (1.0, 10.0)
    with pytest.raises(ValueError, match="CONCORD_DELIVERY_MAX_ATTEMPTS"):
        settings_from_env({"CONCORD_DELIVERY_MAX_ATTEMPTS": "many"})
    with pytest.raises(ValueError, match="greater than 0"):
        settings_from_env({"CONCORD_DELIVERY_TIMEOUT_S": "0"})


# --- failures -----------------------------------------------------------------------------


def test_operator_alert_names_partner_event_and_reason_and_nothing_about_the_person() -> None:
    alert = operator_alert(
        partner="gp-Y01234", event_id=EVENT_ID, reason="refused: HTTP 400", now=NOW
    )
    assert decode(encode(alert)) == alert
    resource = alert.resource
    DetectedIssue.model_validate(resource)  # raises if not a valid R4 DetectedIssue
    assert resource["code"]["coding"][0]["code"] == "delivery-failed"
    assert (
        resource["detail"] == f"delivery to gp-Y01234 of event {EVENT_ID} failed: refused: HTTP 400"
    )
    assert "patient" not in resource
    assert alert.subject is None


def test_dead_letter_keeps_the_envelope_and_says_where_it_failed() -> None:
    raw = encode(alert_envelope())
    letter = undeliverable_letter(
        raw,
        reason="refused: HTTP 400",
        partner="gp-Y01234",
        source="concord-hub",
        event_id=EVENT_ID,
        now=NOW,
    )
    assert letter.origin == "delivery:gp-Y01234"
    assert letter.event_id == uuid.UUID(EVENT_ID)
    assert letter.raw == raw.decode()


def _json(value: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(value)


# --- repeats --------------------------------------------------------------------------------


def test_delivered_keys_forget_the_oldest_beyond_their_limit() -> None:
    keys = DeliveredKeys(2, ["gp a", "gp b"])
    assert keys.add("gp c")
    assert not keys.add("gp c")  # already kept
    assert list(keys) == ["gp b", "gp c"]
    assert "gp a" not in keys


def test_a_journal_line_cut_short_by_a_crash_is_left_out() -> None:
    text = f"gp-Y01234 {EVENT_ID}\nnot a key at all\nmht-rv5 e-2\nmht-rv5 e-"
    assert journal_keys(text) == [f"gp-Y01234 {EVENT_ID}", "mht-rv5 e-2"]
    assert delivery_key("gp-Y01234", EVENT_ID) == f"gp-Y01234 {EVENT_ID}"


def test_the_journal_keeps_delivered_keys_across_a_restart_and_compacts(tmp_path: Path) -> None:
    path = tmp_path / "delivery" / "hub.journal"
    first = Journal(path, limit=3)
    first.open()
    for n in range(7):  # the sixth line reaches twice the limit: rewritten with the last three
        first.add(f"gp e-{n}")
    first.add("gp e-6")  # a key kept already is not written again
    # Killed: not closed. What was written is on the file.
    assert journal_keys(path.read_text()) == ["gp e-3", "gp e-4", "gp e-5", "gp e-6"]
    again = Journal(path, limit=3)
    again.open()
    assert "gp e-6" in again
    assert "gp e-3" not in again  # beyond the limit: forgotten
    again.close()


def test_no_journal_path_keeps_keys_in_memory_only() -> None:
    journal = Journal(None, limit=3)
    journal.open()
    journal.add("gp e-1")
    assert "gp e-1" in journal
