"""The gateway's pure decisions: OperationOutcomes, nesting depth, content types, routes, idempotency."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome

from connectors.gateway.rules import (
    MAX_DEPTH,
    Admitted,
    Answer,
    Busy,
    IdempotencyMemory,
    Issue,
    LatestVersions,
    Mismatch,
    Published,
    RefusedRequest,
    Replay,
    assess,
    body_kind,
    issue,
    key_refusal,
    nesting_depth,
    operation_outcome,
    oversize_refusal,
    parse_json,
    parse_xml,
)
from connectors.gateway.spec import capability_statement
from schemas.envelope import content_event_id
from schemas.fhir import Problem

FIXTURES = Path(__file__).parents[1] / "fixtures"
PARTNER = "gp-Y01234"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def body(value: Any) -> bytes:
    return orjson.dumps(value)


def nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def refusal_of(verdict: object) -> RefusedRequest:
    assert isinstance(verdict, RefusedRequest), verdict
    return verdict


# --- OperationOutcome ---------------------------------------------------------------------------


def test_outcome_names_the_element_path_and_problem_and_is_valid_fhir() -> None:
    problem = Problem("Appointment.participant[0].actor", "field required")
    outcome = operation_outcome([issue("invalid", problem)])
    assert outcome == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "Appointment.participant[0].actor: field required",
                "expression": ["Appointment.participant[0].actor"],
            }
        ],
    }
    OperationOutcome.model_validate(outcome)


def test_outcome_gives_no_expression_when_the_problem_is_not_an_element() -> None:
    [only] = operation_outcome([issue("structure", Problem("(body)", "not valid JSON"))])["issue"]
    assert only["diagnostics"] == "(body): not valid JSON"
    assert "expression" not in only


def test_refusal_reason_lists_every_issue_on_one_line() -> None:
    refusal = RefusedRequest(
        422,
        (
            Issue("invalid", "Appointment.status", "bad"),
            Issue("invalid", "Appointment.end", "early"),
        ),
    )
    assert refusal.reason() == "Appointment.status: bad; Appointment.end: early"
    assert len(refusal.outcome()["issue"]) == 2


# --- nesting ------------------------------------------------------------------------------------


def test_nesting_depth_counts_objects_and_arrays() -> None:
    assert nesting_depth("scalar") == 0
    assert nesting_depth({}) == 1
    assert nesting_depth({"a": [{"b": 1}]}) == 3
    assert nesting_depth(fixture("gp/message-bundle.json")) < MAX_DEPTH


def test_nesting_depth_stops_counting_past_the_limit() -> None:
    assert nesting_depth(nested(1000), limit=5) == 6


def test_json_at_the_limit_parses_and_one_deeper_is_refused() -> None:
    assert parse_json(orjson.dumps(nested(MAX_DEPTH)).decode()) == nested(MAX_DEPTH)
    refusal = parse_json(orjson.dumps(nested(MAX_DEPTH + 1)).decode())
    assert isinstance(refusal, RefusedRequest)
    assert refusal.status == 400
    assert "nested deeper than 32 levels" in refusal.reason()


def test_json_deeper_than_the_parser_allows_is_refused_as_too_deep_not_malformed() -> None:
    refusal = parse_json("[" * 5000 + "]" * 5000)
    assert isinstance(refusal, RefusedRequest)
    assert "nested deeper" in refusal.reason()


def test_deep_xml_is_refused() -> None:
    inner = "<extension>" * 40 + "</extension>" * 40
    xml = f'<Patient xmlns="http://hl7.org/fhir">{inner}</Patient>'
    refusal = parse_xml(xml.encode())
    assert isinstance(refusal, RefusedRequest)
    assert "nested deeper" in refusal.reason()


def test_xml_outside_the_fhir_namespace_is_refused() -> None:
    refusal = parse_xml(b"<Patient/>")
    assert isinstance(refusal, RefusedRequest)
    assert "namespace" in refusal.reason()


# --- content types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("application/fhir+json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/fhir+json; fhirVersion=4.0", "json"),
        ("application/fhir+xml;charset=UTF-8", "xml"),
    ],
)
def test_fhir_media_types_are_accepted(header: str, kind: str) -> None:
    assert body_kind(header) == kind


@pytest.mark.parametrize(
    "header", [None, "", "text/plain", "application/xml", "application/fhir+json; charset=latin-1"]
)
def test_other_media_types_are_415(header: str | None) -> None:
    refusal = body_kind(header)
    assert isinstance(refusal, RefusedRequest)
    assert refusal.status == 415
    assert refusal.issues[0].code == "not-supported"


# --- assessing a request ------------------------------------------------------------------------


def test_good_appointment_is_admitted_with_its_content_derived_event_id() -> None:
    resource = fixture("gp/appointment-booked.json")
    verdict = assess(body(resource), "application/fhir+json", "Appointment", PARTNER)
    assert isinstance(verdict, Admitted)
    assert verdict.answer() == {
        "event_ids": [str(content_event_id(PARTNER, resource))],
        "accepted": 1,
        "ignored": 0,
    }


def test_message_bundle_is_admitted_and_its_practitioner_passed_by() -> None:
    verdict = assess(body(fixture("gp/message-bundle.json")), "application/json", None, PARTNER)
    assert isinstance(verdict, Admitted)
    assert (len(verdict.accepted), verdict.ignored) == (2, 1)


def test_invalid_status_is_422_naming_appointment_status() -> None:
    resource = fixture("gp/appointment-booked.json") | {"status": "bogus"}
    refusal = refusal_of(assess(body(resource), "application/fhir+json", "Appointment", PARTNER))
    assert refusal.status == 422
    [only] = refusal.outcome()["issue"]
    assert only["diagnostics"].startswith("Appointment.status: 'bogus' is not one of")
    assert only["expression"] == ["Appointment.status"]


def test_bundle_with_bad_entries_is_refused_whole_listing_every_problem_at_its_entry() -> None:
    verdict = assess(
        body(fixture("invalid/mixed-collection.json")), "application/fhir+json", None, PARTNER
    )
    refusal = refusal_of(verdict)
    assert refusal.status == 422
    expressions = [i.expression for i in refusal.issues]
    assert expressions[0] == "Bundle.entry[1].resource.status"
    assert any(e and e.startswith("Bundle.entry[2].resource.participant") for e in expressions)
    assert refusal.issues[0].diagnostics.startswith("Bundle.entry[1]: Appointment.status:")


def test_resource_type_not_matching_the_path_is_400() -> None:
    resource = fixture("gp/appointment-booked.json")
    refusal = refusal_of(assess(body(resource), "application/fhir+json", "Patient", PARTNER))
    assert refusal.status == 400
    assert "'Appointment' but the path is /fhir/Patient" in refusal.reason()


def test_single_resource_posted_to_the_bundle_endpoint_is_400() -> None:
    resource = fixture("gp/appointment-booked.json")
    assert refusal_of(assess(body(resource), "application/fhir+json", None, PARTNER)).status == 400


def test_resource_type_the_gateway_does_not_take_is_404() -> None:
    refusal = refusal_of(assess(b"{}", "application/fhir+json", "DetectedIssue", PARTNER))
    assert refusal.status == 404


def test_hub_output_types_inside_a_bundle_are_refused() -> None:
    issue_resource = json.loads(
        (Path(__file__).parents[2] / "schemas" / "examples" / "alert.issue.raised.json").read_text()
    )["resource"]
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": issue_resource}]}
    refusal = refusal_of(assess(body(bundle), "application/fhir+json", None, PARTNER))
    assert refusal.status == 422
    assert "DetectedIssue: not accepted from partners" in refusal.reason()


def test_messageheader_out_of_place_is_refused_not_a_crash() -> None:
    header = fixture("gp/message-bundle.json")["entry"][0]
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [header]}
    assert refusal_of(assess(body(bundle), "application/fhir+json", None, PARTNER)).status == 422


def test_document_bundles_are_not_accepted() -> None:
    bundle = fixture("gp/message-bundle.json") | {"type": "document"}
    refusal = refusal_of(assess(body(bundle), "application/fhir+json", None, PARTNER))
    assert (refusal.status, refusal.issues[0].code) == (422, "not-supported")


def message_from(sender: str) -> dict[str, Any]:
    bundle = copy.deepcopy(fixture("gp/message-bundle.json"))
    bundle["entry"][0]["resource"]["sender"] = {
        "identifier": {"system": "urn:concord:partner", "value": sender}
    }
    return bundle


def test_message_sent_as_another_partner_is_403_and_not_dead_lettered() -> None:
    refusal = refusal_of(assess(body(message_from("gp-A99999")), "application/json", None, PARTNER))
    assert refusal.status == 403
    assert refusal.dead_letter is False
    assert "gp-A99999" in refusal.reason()


def test_message_sent_as_itself_is_admitted() -> None:
    verdict = assess(body(message_from(PARTNER)), "application/json", None, PARTNER)
    assert isinstance(verdict, Admitted)


def test_xml_message_sent_as_another_partner_is_403() -> None:
    xml = """<Bundle xmlns="http://hl7.org/fhir"><type value="message"/>
      <entry><resource><MessageHeader>
        <eventCoding><system value="urn:concord:message-event"/><code value="x"/></eventCoding>
        <sender><identifier><system value="urn:concord:partner"/><value value="mht-rv5"/></identifier></sender>
        <source><endpoint value="https://example.org"/></source>
      </MessageHeader></resource></entry></Bundle>"""
    refusal = refusal_of(assess(xml.encode(), "application/fhir+xml", None, PARTNER))
    assert refusal.status == 403


def test_malformed_xml_is_400() -> None:
    refusal = refusal_of(assess(b"<Bundle", "application/fhir+xml", None, PARTNER))
    assert refusal.status == 400
    assert "not well-formed XML" in refusal.reason()


def test_body_not_utf8_is_400() -> None:
    refusal = refusal_of(assess(b"\xff\xfe{}", "application/fhir+json", "Appointment", PARTNER))
    assert refusal.status == 400


def test_envelope_over_the_broker_limit_is_413() -> None:
    resource = fixture("gp/appointment-booked.json")
    resource["comment"] = "x" * (1024 * 1024)
    refusal = refusal_of(assess(body(resource), "application/fhir+json", "Appointment", PARTNER))
    assert (refusal.status, refusal.issues[0].code) == (413, "too-long")
    assert "over the broker's limit of 1048576" in refusal.reason()


def test_envelope_within_the_broker_limit_passes_the_size_check() -> None:
    resource = fixture("gp/appointment-booked.json")
    resource["comment"] = "x" * (1000 * 1024)
    verdict = assess(body(resource), "application/fhir+json", "Appointment", PARTNER)
    assert isinstance(verdict, Admitted)
    assert oversize_refusal(verdict, limit=1000 * 1024) is not None


def test_idempotency_key_must_be_printable_ascii() -> None:
    assert key_refusal(None) is None
    assert key_refusal("3b9f2c1e-6a7d-4c2b-9e8f-1a2b3c4d5e6f") is None
    for bad in ("", "has space", "x" * 256, "é"):
        refusal = key_refusal(bad)
        assert refusal is not None
        assert refusal.status == 400


# --- idempotency memory -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_memory_replays_the_final_answer_for_the_same_request() -> None:
    memory = IdempotencyMemory()
    assert memory.begin("k", "body-1") is None
    assert isinstance(memory.begin("k", "body-1"), Busy)
    memory.finish("k", "body-1", Answer(202, {"accepted": 1}))
    assert memory.begin("k", "body-1") == Replay(Answer(202, {"accepted": 1}))
    assert isinstance(memory.begin("k", "body-2"), Mismatch)


def test_memory_forgets_a_key_whose_request_had_no_final_answer() -> None:
    memory = IdempotencyMemory()
    assert memory.begin("k", "body") is None
    memory.finish("k", "body", None)  # e.g. Kafka was unavailable: the retry must run again
    assert memory.begin("k", "body") is None


def test_memory_expires_keys_after_the_ttl() -> None:
    clock = Clock()
    memory = IdempotencyMemory(ttl_s=60, clock=clock)
    memory.begin("k", "body")
    memory.finish("k", "body", Answer(202, {}))
    clock.now = 59
    assert isinstance(memory.begin("k", "body"), Replay)
    clock.now = 61
    assert memory.begin("k", "other body") is None


def test_memory_holds_at_most_max_keys_forgetting_the_oldest() -> None:
    memory = IdempotencyMemory(max_keys=3)
    for key in "abcd":
        memory.begin(key, "x")
        memory.finish(key, "x", Answer(202, {"key": key}))
    assert len(memory) == 3
    assert memory.begin("a", "x") is None
    assert isinstance(memory.begin("d", "x"), Replay)


# --- versions -----------------------------------------------------------------------------------


def admitted(resource: dict[str, Any], now: str = "2026-12-01T09:00:00+00:00") -> Admitted:
    verdict = assess(
        body(resource), "application/fhir+json", "Appointment", PARTNER, datetime.fromisoformat(now)
    )
    assert isinstance(verdict, Admitted), verdict
    return verdict


def appointment_at(start: str, meta: dict[str, str] | None = None) -> dict[str, Any]:
    resource = fixture("gp/appointment-booked.json")
    resource.pop("meta")
    if meta:
        resource["meta"] = meta
    return resource | {"start": f"2026-12-03T{start}:00Z", "end": f"2026-12-03T{start[:2]}:30:00Z"}


def test_content_equal_to_the_latest_version_published_is_a_repeat() -> None:
    versions = LatestVersions()
    first = admitted(appointment_at("10:00"))
    versions.record(PARTNER, first)
    assert isinstance(
        versions.check(PARTNER, admitted(appointment_at("10:00"), "2026-12-01T10:00:00+00:00")),
        Published,
    )
    assert versions.check("gp-A99999", first) is None, "another partner's resource"


def test_content_equal_to_an_earlier_version_is_a_change_to_publish() -> None:
    """10:00, 11:00, then 10:00 again: an appointment moved back, not a resend."""
    versions = LatestVersions()
    versions.record(PARTNER, admitted(appointment_at("10:00"), "2026-12-01T09:00:00+00:00"))
    versions.record(PARTNER, admitted(appointment_at("11:00"), "2026-12-01T09:05:00+00:00"))
    back = admitted(appointment_at("10:00"), "2026-12-01T09:10:00+00:00")
    assert versions.check(PARTNER, back) is None


def test_older_meta_version_than_the_latest_published_is_409_naming_both() -> None:
    versions = LatestVersions()
    versions.record(PARTNER, admitted(appointment_at("11:00", {"versionId": "2"})))
    stale = admitted(appointment_at("10:00", {"versionId": "1"}), "2026-12-01T12:00:00+00:00")
    refusal = refusal_of(versions.check(PARTNER, stale))
    assert refusal.status == 409
    [only] = refusal.outcome()["issue"]
    assert only["code"] == "conflict"
    assert only["expression"] == ["Appointment.meta"]
    assert only["diagnostics"].startswith("Appointment.meta: version 1 of 2026-12-01T12:00:00Z is")
    assert "older than version 2 of" in only["diagnostics"]


def test_stale_entry_of_a_bundle_is_named_at_its_entry() -> None:
    versions = LatestVersions()
    bundle = fixture("gp/message-bundle.json")
    verdict = assess(body(bundle), "application/fhir+json", None, PARTNER)
    assert isinstance(verdict, Admitted)
    versions.record(PARTNER, verdict)
    bundle["entry"][2]["resource"]["meta"] = {
        "versionId": "1",
        "lastUpdated": "2026-12-01T09:00:00Z",
    }
    older = assess(body(bundle), "application/fhir+json", None, PARTNER)
    assert isinstance(older, Admitted)
    refusal = refusal_of(versions.check(PARTNER, older))
    [only] = refusal.outcome()["issue"]
    assert only["expression"] == ["Bundle.entry[2].resource.meta"]
    assert only["diagnostics"].startswith("Bundle.entry[2]: Appointment.meta: version 1 of")


def test_version_memory_holds_at_most_max_keys_forgetting_the_least_recently_published() -> None:
    versions = LatestVersions(max_keys=2)
    for number in range(3):
        versions.record(PARTNER, admitted(appointment_at("10:00") | {"id": f"a-{number}"}))
    assert len(versions) == 2
    assert versions.check(PARTNER, admitted(appointment_at("10:00") | {"id": "a-0"})) is None


# --- capability ---------------------------------------------------------------------------------


def test_capability_statement_is_valid_fhir_listing_the_partner_resource_types() -> None:
    statement = capability_statement("https://hub.example.org", 1440)
    CapabilityStatement.model_validate(statement)
    types = [r["type"] for r in statement["rest"][0]["resource"]]
    assert types == ["Appointment", "Encounter", "ServiceRequest", "Task", "Patient", "Consent"]


# --- dead letters -------------------------------------------------------------------------------


def test_dead_letter_of_multibyte_text_is_cut_to_fit_the_broker() -> None:
    from connectors.publish import Rejected, rejection_letter
    from schemas.codec import encode

    raw = "é" * (900 * 1024)  # two bytes each: even cut to 512K characters it is over 1 MiB
    letter = rejection_letter(Rejected("POST /fhir", raw, (Problem("(body)", "x"),)), PARTNER)
    assert len(encode(letter)) < 1024 * 1024 - 4096
    assert letter.raw.startswith("éé")
    assert letter.raw.endswith("characters to fit the broker]")
    assert letter.raw.count("to fit the broker") == 1


GP_CONNECT_PROFILE = "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-Appointment-1"


def booking_message(*extra: dict[str, Any]) -> dict[str, Any]:
    """The GP's message Bundle with further entries appended."""
    bundle = fixture("gp/message-bundle.json")
    bundle["entry"] += list(extra)
    return bundle


def test_stu3_profile_is_422_naming_the_profile_and_saying_send_r4() -> None:
    resource = fixture("gp/appointment-booked.json") | {"meta": {"profile": [GP_CONNECT_PROFILE]}}
    refusal = refusal_of(assess(body(resource), "application/fhir+json", "Appointment", PARTNER))
    [only] = refusal.outcome()["issue"]
    assert refusal.status == 422
    assert only["diagnostics"] == "Appointment.meta.profile[0]: this is FHIR STU3; send R4"


def test_stu3_only_resource_type_in_a_bundle_refuses_the_bundle_whole() -> None:
    referral = {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "ReferralRequest"}}
    refusal = refusal_of(assess(body(booking_message(referral)), "application/json", None, PARTNER))
    [only] = refusal.outcome()["issue"]
    assert (
        only["diagnostics"]
        == "Bundle.entry[4].resource: ReferralRequest: this is FHIR STU3; send R4"
    )


def test_stu3_element_is_named() -> None:
    resource = fixture("gp/appointment-booked.json") | {"incomingReferral": []}
    refusal = refusal_of(assess(body(resource), "application/fhir+json", "Appointment", PARTNER))
    assert "Appointment.incomingReferral: this is FHIR STU3" in refusal.reason()


def test_entries_the_hub_does_not_route_are_passed_by_with_a_warning_each() -> None:
    slot = {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Slot", "status": "busy"}}
    read = {"request": {"method": "GET", "url": "Patient?name=x"}}
    verdict = assess(body(booking_message(slot, read)), "application/json", None, PARTNER)
    assert isinstance(verdict, Admitted)
    assert (len(verdict.accepted), verdict.ignored) == (2, 3)
    warnings = verdict.answer()["outcome"]["issue"]
    assert [w["severity"] for w in warnings] == ["warning"] * 3
    assert warnings[1]["diagnostics"] == "Bundle.entry[4]: ignored: Slot is not routed by the hub"
    assert warnings[2]["expression"] == ["Bundle.entry[5].request.method"]
    assert "GET request is not taken" in warnings[2]["diagnostics"]
    OperationOutcome.model_validate(verdict.message_outcome())


def test_message_whose_focus_is_missing_is_refused() -> None:
    bundle = fixture("gp/message-bundle.json")
    del bundle["entry"][2]  # the Appointment the header's focus names
    refusal = refusal_of(assess(body(bundle), "application/json", None, PARTNER))
    assert refusal.status == 422
    assert "MessageHeader.focus[0]: names no entry of this message" in refusal.reason()


def test_process_message_takes_message_bundles_only() -> None:
    bundle = fixture("gp/message-bundle.json") | {"type": "collection"}
    bundle["entry"] = bundle["entry"][1:]
    refusal = refusal_of(assess(body(bundle), "application/json", None, PARTNER, message=True))
    assert refusal.status == 422
    assert "$process-message takes a message Bundle" in refusal.reason()


def test_process_message_correlation_id_is_the_envelopes_correlation() -> None:
    raw = body(fixture("gp/message-bundle.json"))
    plain = assess(raw, "application/json", None, PARTNER, message=True)
    given = assess(raw, "application/json", None, PARTNER, message=True, correlation="c-1")
    assert isinstance(plain, Admitted)
    assert isinstance(given, Admitted)
    first, second = plain.accepted[0].envelope, given.accepted[0].envelope
    assert first.correlation_id != second.correlation_id
    assert first.event_id == second.event_id
    outcome = given.message_outcome()
    assert outcome["issue"][0]["severity"] == "information"
    assert str(second.event_id) in outcome["issue"][0]["diagnostics"]
