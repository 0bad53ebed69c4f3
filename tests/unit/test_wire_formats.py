"""What partners receive: the BaRS referral Bundle, FHIR response messages, REF^I12 and MDM^T02,
checked against the golden files in schemas/examples/wire/ and read back with fhir.resources
and hl7apy (and, for REF^I12, the hub's own HL7 reader)."""

from __future__ import annotations

import contextlib
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message as hl7apy_parse
from hl7apy.validation import Validator
from hypothesis import given
from hypothesis import strategies as st

from connectors.delivery import wire_examples
from connectors.delivery.formats import (
    BARS_EVENT_SYSTEM,
    answered_message_id,
    lift_contained,
    message_bundle,
    response_code,
)
from connectors.delivery.wire_examples import ANSWERED_MESSAGE, SCENARIOS, WIRE, WireExample
from connectors.hl7v2.from_fhir import hl7_message
from connectors.hl7v2.message import parse_message
from connectors.hl7v2.to_fhir import service_request_from
from schemas.codec import decode
from schemas.envelope import Envelope

EXAMPLES = Path(__file__).parents[2] / "schemas" / "examples"
URL = "https://gp.example/fhir/$process-message"
REFERRAL = "wire/inputs/referral.request.delivered.json"


def example(source: str, **changes: Any) -> Envelope:
    return WireExample("-", source, "-", "-", changes).envelope()


def with_resource(source: str, resource: dict[str, Any]) -> Envelope:
    data = json.loads((EXAMPLES / source).read_text())
    return decode(json.dumps(data | {"resource": resource}).encode())


def entries(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Bundle's resources by fullUrl."""
    return {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]}


def segments(text: str) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for line in text.split("\r"):
        if line:
            found.setdefault(line.split("|")[0], []).append(line.split("|"))
    return found


def hl7apy_problems(text: str, tmp_path: Path) -> tuple[str, list[str]]:
    """hl7apy's strict reading of a message: its structure's name and the errors it reports."""
    message = hl7apy_parse(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    report = tmp_path / "report.txt"
    with contextlib.suppress(HL7apyException):  # every error is in the report
        Validator.validate(message, report_file=str(report))
    errors = [line for line in report.read_text().splitlines() if line.startswith("Error")]
    return message.name, errors


# --- golden files -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_golden_wire_example_is_what_the_builder_makes(scenario: WireExample) -> None:
    """Regenerate with `python -m connectors.delivery.wire_examples` after a deliberate change."""
    assert (WIRE / scenario.name).read_bytes() == scenario.render()


def test_the_regenerating_command_reports_nothing_stale() -> None:
    assert wire_examples.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(p.name for p in WIRE.glob("*.json")), ids=str)
def test_every_fhir_golden_is_a_valid_r4_message_whose_references_resolve(name: str) -> None:
    bundle = json.loads((WIRE / name).read_text())
    Bundle.model_validate(bundle)
    urls = set(entries(bundle))
    referenced = {
        value
        for value in _all_values(bundle, "reference")
        if isinstance(value, str) and value.startswith("urn:uuid:")
    }
    assert referenced <= urls, "every urn:uuid reference names an entry"
    for resource in entries(bundle).values():
        local = {f"#{item['id']}" for item in resource.get("contained", ())} | {"#"}
        references = _all_values(resource, "reference")
        assert {r for r in references if r.startswith("#")} <= local, "local ones are contained"


def _all_values(value: Any, key: str) -> list[Any]:
    if isinstance(value, dict):
        return [v for k, child in value.items() for v in ([child] if k == key else [])] + [
            v for child in value.values() for v in _all_values(child, key)
        ]
    if isinstance(value, list):
        return [v for child in value for v in _all_values(child, key)]
    return []


@pytest.mark.parametrize(
    ("name", "structure", "errors"),
    [
        ("referral.ref-i12.hl7", "REF_I12", []),
        # Without the person's Patient the hub has no name to send: PID-5 stays empty.
        ("referral-by-identifier.ref-i12.hl7", "REF_I12", ["PID.PID_5"]),
        ("alert.mdm-t02.hl7", "MDM_T02", ["PID.PID_5"]),
    ],
)
def test_hl7_golden_reads_back_with_hl7apy_as_its_structure(
    name: str, structure: str, errors: list[str], tmp_path: Path
) -> None:
    text = (WIRE / name).read_text().replace("\n", "\r")
    found, problems = hl7apy_problems(text, tmp_path)
    assert found == structure
    assert [p.rsplit(" ", 1)[-1] for p in problems] == errors, problems


# --- FHIR: the referral in the BaRS pattern -----------------------------------------------


def test_referral_bundle_is_a_bars_request_with_the_request_in_focus_and_its_task() -> None:
    bundle = message_bundle(example(REFERRAL), "gp-Y01234", URL)
    header = bundle["entry"][0]["resource"]
    assert header["eventCoding"] == {"system": BARS_EVENT_SYSTEM, "code": "servicerequest-request"}
    assert header["reason"]["coding"][0]["code"] == "new"
    resources = entries(bundle)
    request = resources[header["focus"][0]["reference"]]
    assert (request["resourceType"], request["id"]) == ("ServiceRequest", "ref-2001")
    assert [r["resourceType"] for r in resources.values()] == [
        "MessageHeader",
        "ServiceRequest",
        "Patient",
        "PractitionerRole",
        "Task",
    ]
    patient = resources[request["subject"]["reference"]]
    assert patient["identifier"][0] == {
        "system": "https://fhir.nhs.uk/Id/nhs-number",
        "value": "9434765919",
    }
    requester = resources[request["requester"]["reference"]]
    assert requester["telecom"][1]["value"] == "jo.officer@justice.example"
    [task] = [r for r in resources.values() if r["resourceType"] == "Task"]
    assert task["id"] == "referral-ref-2001", "the id the hub's own Task updates carry"
    assert task["focus"] == {"reference": header["focus"][0]["reference"]}
    assert task["for"] == request["subject"]
    assert task["owner"]["identifier"]["value"] == "gp-Y01234"
    assert "contained" not in request


def test_referral_naming_its_person_by_identifier_has_no_patient_entry() -> None:
    """The hub contains the person's Patient in every referral it sends today; a request that
    names them by identifier alone is still sent as it is."""
    delivered = example("referral.request.delivered.json")
    by_identifier = {
        key: value
        for key, value in delivered.resource.items()
        if key not in ("contained", "requester")
    }
    by_identifier["subject"] = {"identifier": delivered.resource["subject"]["identifier"]}
    envelope = delivered.model_copy(update={"resource": by_identifier})
    bundle = message_bundle(envelope, "gp-Y01234", URL)
    Bundle.model_validate(bundle)
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == [
        "MessageHeader",
        "ServiceRequest",
        "Task",
    ]
    assert bundle["entry"][1]["resource"] == envelope.resource, "unchanged: nothing contained"
    assert bundle["entry"][2]["resource"]["for"] == envelope.resource["subject"]


def test_lifting_rewrites_references_between_contained_resources_and_to_the_container() -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "id": "r",
        "contained": [
            {"resourceType": "Practitioner", "id": "pr", "name": [{"family": "Ade"}]},
            {
                "resourceType": "PractitionerRole",
                "id": "role",
                "practitioner": {"reference": "#pr"},
                "extension": [{"url": "x", "valueReference": {"reference": "#"}}],
            },
        ],
        "requester": {"reference": "#role"},
        "subject": {"identifier": {"system": "urn:concord:id:person", "value": "p-1"}},
    }
    original = copy.deepcopy(resource)
    outer, lifted = lift_contained(resource, "urn:uuid:self", lambda local: f"urn:uuid:{local}")
    assert resource == original, "the input is not changed"
    assert outer["requester"] == {"reference": "urn:uuid:role"}
    assert outer["subject"] == original["subject"]
    assert dict(lifted)["urn:uuid:role"]["practitioner"] == {"reference": "urn:uuid:pr"}
    assert dict(lifted)["urn:uuid:role"]["extension"][0]["valueReference"] == {
        "reference": "urn:uuid:self"
    }
    assert [r["id"] for _, r in lifted] == ["pr", "role"], "the fullUrl's id"


@given(
    ids=st.lists(st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True), unique=True, max_size=5),
    data=st.data(),
)
def test_after_lifting_no_local_reference_is_left_and_each_names_a_lifted_entry(
    ids: list[str], data: st.DataObject
) -> None:
    targets = [f"#{i}" for i in ids] + ["#"]
    pick = st.sampled_from(targets) if ids else st.just("#")
    contained = [
        {"resourceType": "Patient", "id": i, "link": [{"other": {"reference": data.draw(pick)}}]}
        for i in ids
    ]
    resource = {
        "resourceType": "ServiceRequest",
        "contained": contained,
        "subject": {"reference": data.draw(pick)},
        "basedOn": [{"reference": data.draw(pick)} for _ in range(data.draw(st.integers(0, 3)))],
    }
    outer, lifted = lift_contained(resource, "urn:uuid:self", lambda local: f"urn:uuid:c-{local}")
    urls = {"urn:uuid:self"} | {url for url, _ in lifted}
    references = _all_values([outer, *(r for _, r in lifted)], "reference")
    assert all(reference in urls for reference in references)
    assert len(lifted) == len(ids)


# --- FHIR: answers as response messages ---------------------------------------------------


def test_refusal_answers_the_partners_message_by_its_id_with_a_fatal_error() -> None:
    envelope = example("referral.request.refused.json", correlation_id=str(ANSWERED_MESSAGE))
    bundle = message_bundle(envelope, "gp-Y01234", URL)
    header = bundle["entry"][0]["resource"]
    outcome_url = bundle["entry"][1]["fullUrl"]
    assert header["response"] == {
        "identifier": str(ANSWERED_MESSAGE),
        "code": "fatal-error",
        "details": {"reference": outcome_url},
    }
    assert header["focus"] == [{"reference": outcome_url}]
    assert header["eventCoding"]["code"] == "referral.request.refused"


def test_an_answer_to_a_message_whose_id_the_hub_does_not_know_is_no_response() -> None:
    """The partner gave no message id (the correlation is the hub's own event id): R4 requires
    response.identifier, so the outcome travels as a plain message rather than a made-up id."""
    envelope = example("referral.request.refused.json")
    assert answered_message_id(envelope) is None
    header = message_bundle(envelope, "gp-Y01234", URL)["entry"][0]["resource"]
    assert "response" not in header
    assert (
        header["focus"][0]["reference"]
        == message_bundle(envelope, "gp-Y01234", URL)["entry"][1]["fullUrl"]
    )


@pytest.mark.parametrize(
    ("issues", "code"),
    [
        ([("warning", "not-found"), ("information", "informational")], "ok"),
        ([("warning", "business-rule"), ("error", "business-rule")], "fatal-error"),
        ([("error", "transient"), ("error", "throttled")], "transient-error"),
        ([("error", "transient"), ("fatal", "invalid")], "fatal-error"),
        ([], "ok"),
    ],
)
def test_response_code_says_whether_to_resend(issues: list[tuple[str, str]], code: str) -> None:
    outcome = {"issue": [{"severity": s, "code": c} for s, c in issues]}
    assert response_code(outcome) == code


def test_a_flag_on_an_applied_change_is_an_ok_response() -> None:
    envelope = example("appointment.booking.flagged.json", correlation_id=str(ANSWERED_MESSAGE))
    header = message_bundle(envelope, "gp-Y01234", URL)["entry"][0]["resource"]
    assert header["response"]["code"] == "ok"


def test_alert_bundle_has_the_detected_issue_in_focus_as_the_hub_wrote_it() -> None:
    envelope = example("alert.clash.raised.json")
    bundle = message_bundle(envelope, "gp-Y01234", URL)
    header, focus = (entry["resource"] for entry in bundle["entry"])
    assert header["eventCoding"]["code"] == "alert.clash.raised"
    assert "response" not in header
    assert focus == envelope.resource, "its contained appointments stay contained"


# --- HL7 v2: REF^I12 ----------------------------------------------------------------------


def test_ref_i12_carries_the_referral_the_referrer_and_the_person() -> None:
    text = hl7_message(example(REFERRAL), "mht-rv5", "c.1", example(REFERRAL).recorded_at)
    parts = segments(text)
    assert list(parts) == ["MSH", "RF1", "PRD", "PID", "NTE"]
    assert parts["MSH"][0][8] == "REF^I12^REF_I12"
    rf1 = parts["RF1"][0]
    assert rf1[1].split("^")[0] == "P", "pending: the service has not answered"
    assert rf1[2].split("^")[0] == "A", "urgent"
    assert rf1[3].split("^")[0] == "mental-health-assessment"
    assert (rf1[6], rf1[7]) == ("ref-2001", "20261201090000+0000")
    assert rf1[10] == "^Low mood reported at supervision; asks for help with sleep \\T\\ anxiety"
    prd = parts["PRD"][0]
    assert prd[1] == "RP^Referring Provider^HL70286"
    assert prd[2] == "Jo Probation-Officer"
    assert prd[4].split("^")[8] == "Lambeth Probation Delivery Unit"
    assert prd[5].split("~") == [
        "^WPN^PH^^^^^^^^^020 7946 0123",
        "^NET^Internet^jo.officer@justice.example",
    ]
    pid = parts["PID"][0]
    assert pid[3].split("~")[0] == "9434765919^^^NHS^NH"
    assert pid[5] == "O'Brien^Sam^Lee^^^^L"
    assert pid[7] == "19880402"
    assert pid[11] == "Flat 2^14 Kennington Road^London^^SE11 4QT^^H"
    assert (
        parts["NTE"][0][3]
        == "Prefers morning appointments.\\.br\\Reports at Lambeth office on Tuesdays."
    )


def test_ref_i12_reads_back_through_the_hubs_own_referral_mapping() -> None:
    """What a trust gets is what the hub itself would take as the same referral."""
    envelope = example(REFERRAL)
    text = hl7_message(envelope, "mht-rv5", "c.1", envelope.recorded_at)
    *_, request = service_request_from(parse_message(text), "mht-rv5")
    assert request["id"] == "ref-2001"
    assert request["priority"] == "urgent"
    assert request["subject"] == {
        "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}
    }
    assert request["authoredOn"] == "2026-12-01T09:00:00Z"
    assert request["reasonCode"] == [
        {"text": "Low mood reported at supervision; asks for help with sleep & anxiety"}
    ]


def test_ref_i12_without_the_persons_details_names_them_by_identifier_and_adds_nothing() -> None:
    envelope = example("wire/inputs/referral-without-details.request.delivered.json")
    parts = segments(hl7_message(envelope, "mht-rv5", "c.1", envelope.recorded_at))
    assert parts["PID"][0] == [
        "PID",
        "1",
        "",
        "9434765919^^^NHS^NH~p-468c6e946e3611ce49a1^^^&urn:concord:id:person&URI",
    ]
    assert parts["PRD"][0] == ["PRD", "RP^Referring Provider^HL70286"]
    assert len(parts["RF1"][0]) == 8, "no reason field: the resource carries none"
    assert "NTE" not in parts


def test_prd_takes_a_practitioners_structured_name_and_the_requesters_own_identifier() -> None:
    base = example("referral.request.delivered.json").resource
    practitioner = {
        "resourceType": "Practitioner",
        "id": "requester",
        "identifier": [{"system": "urn:concord:id:staff", "value": "S-77"}],
        "name": [{"family": "Okafor", "given": ["Ada"], "prefix": ["Ms"]}],
        "telecom": [{"system": "phone", "value": "07700 900123", "use": "mobile"}],
    }
    resource = base | {"contained": [practitioner], "requester": {"reference": "#requester"}}
    envelope = with_resource("referral.request.delivered.json", resource)
    prd = segments(hl7_message(envelope, "mht-rv5", "c.1", envelope.recorded_at))["PRD"][0]
    assert prd[2] == "Okafor^Ada^^^Ms"
    assert prd[5] == "^PRN^CP^^^^^^^^^07700 900123"
    assert prd[7] == "S-77^^urn:concord:id:staff"
    by_identifier = base | {
        "requester": {
            "identifier": {"system": "urn:concord:partner", "value": "probation-london"},
            "display": "Probation London",
        }
    }
    envelope = with_resource("referral.request.delivered.json", by_identifier)
    prd = segments(hl7_message(envelope, "mht-rv5", "c.1", envelope.recorded_at))["PRD"][0]
    assert prd[4] == "^^^^^^^^Probation London"
    assert prd[7] == "probation-london^^urn:concord:partner"


def test_separators_in_the_persons_details_are_escaped_not_split() -> None:
    data = json.loads((EXAMPLES / REFERRAL).read_text())
    data["resource"]["contained"][0]["name"] = [{"family": "Smith|Jones^Jr", "given": ["A~B"]}]
    envelope = decode(json.dumps(data).encode())
    pid = segments(hl7_message(envelope, "mht-rv5", "c.1", envelope.recorded_at))["PID"][0]
    assert pid[5] == "Smith\\F\\Jones\\S\\Jr^A\\R\\B"


def test_alerts_name_a_contained_patient_by_its_nhs_number() -> None:
    envelope = example("identity.conflict.raised.json")
    text = hl7_message(envelope, "mht-rv5", "c.1", envelope.recorded_at)
    pid = segments(text)["PID"][0]
    assert pid[3] == "9434765919^^^NHS^NH~X123456^^^&urn:concord:id:probation-crn&URI"
    assert segments(text)["TXA"][0][2] == "identity-conflict"


def test_every_event_id_gives_its_own_document_number() -> None:
    first = example("alert.clash.raised.json")
    second = example("alert.clash.raised.json", event_id=str(uuid.uuid4()))
    numbers = {
        segments(hl7_message(e, "mht-rv5", "c.1", e.recorded_at))["TXA"][0][12]
        for e in (first, second)
    }
    assert len(numbers) == 2


# Text as a person or a referrer might write it: letters, digits, punctuation (HL7's separators
# and escape character among them), symbols and spaces; one line, no edge spaces. `""` alone
# is HL7's explicit null and cannot be sent as text.
TEXT = st.text(
    st.characters(whitelist_categories=("L", "N", "P", "S", "Zs"), max_codepoint=0x2FFF),
    min_size=1,
    max_size=40,
).filter(lambda s: s == s.strip() and s != '""')


@given(family=TEXT, reason=TEXT)
def test_any_name_and_reason_read_back_unchanged_from_the_ref_i12(family: str, reason: str) -> None:
    data = json.loads((EXAMPLES / REFERRAL).read_text())
    data["resource"]["contained"][0]["name"] = [{"family": family}]
    data["resource"]["reasonCode"] = [{"text": reason}]
    envelope = decode(json.dumps(data).encode())
    message = parse_message(hl7_message(envelope, "mht-rv5", "c.1", envelope.recorded_at))
    assert message.require("PID").get(5) == family
    *_, request = service_request_from(message, "mht-rv5")
    assert request["reasonCode"] == [{"text": reason}]
