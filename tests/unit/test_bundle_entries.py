"""A Bundle whose entries answer to one name (id or fullUrl) is refused whole, JSON or XML."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson

from connectors.fhir_input import read_file, read_text
from connectors.gateway.rules import RefusedRequest, assess
from connectors.publish import Accepted, Rejected, decide

FIXTURES = Path(__file__).parents[1] / "fixtures"
TWO_PATIENTS = FIXTURES / "invalid" / "bundle-two-patients-one-id.json"
GP = "gp-Y01234"


def decisions(text: str, origin: str = "b.json", partner: str = GP) -> list[Any]:
    return [decide(record, partner) for record in read_text(text, origin)]


def bundle() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(TWO_PATIENTS.read_bytes())
    return data


def test_two_patients_with_one_id_refuse_the_bundle_naming_both_entries() -> None:
    """Seen: the appointment was attached to one of two different patients."""
    [only] = [decide(record, GP) for record in read_file(TWO_PATIENTS)]
    assert isinstance(only, Rejected)
    assert only.reason() == (
        "Bundle.entry[1].resource.id: the same resource type and id as Bundle.entry[0]: "
        "each entry must be a different resource"
    )
    assert "pat-1" not in only.reason(), "a resource id may be a local number: not repeated"


def test_entries_sharing_a_fullurl_refuse_the_bundle() -> None:
    data = bundle()
    data["entry"][1]["resource"]["id"] = "pat-2"
    for entry in data["entry"][:2]:
        entry["fullUrl"] = "urn:uuid:7e2f1a3b-4c5d-4e6f-8a9b-0c1d2e3f4a03"
    [only] = decisions(orjson.dumps(data).decode())
    assert isinstance(only, Rejected)
    assert only.reason().startswith("Bundle.entry[1].fullUrl: the same fullUrl as Bundle.entry[0]")


def test_a_fullurl_naming_another_entry_by_type_and_id_refuses_the_bundle() -> None:
    data = bundle()
    data["entry"][1]["resource"]["id"] = "pat-2"
    data["entry"][1]["fullUrl"] = "Patient/pat-1"
    [only] = decisions(orjson.dumps(data).decode())
    assert isinstance(only, Rejected)
    assert "Bundle.entry[1].fullUrl: the same name" in only.reason()


def test_the_same_id_on_different_resource_types_is_fine() -> None:
    data = bundle()
    data["entry"][1]["resource"]["id"] = "pat-2"
    data["entry"][2]["resource"]["id"] = "pat-1"
    results = decisions(orjson.dumps(data).decode())
    assert [type(r).__name__ for r in results] == ["Accepted", "Accepted", "Accepted"]


def test_a_message_bundle_repeating_an_entry_is_refused() -> None:
    data = orjson.loads((FIXTURES / "gp" / "message-bundle.json").read_bytes())
    data["entry"].append(copy.deepcopy(data["entry"][2]))
    [only] = decisions(orjson.dumps(data).decode())
    assert isinstance(only, Rejected)
    assert "Bundle.entry[4].fullUrl: the same fullUrl as Bundle.entry[2]" in only.reason()
    assert "Bundle.entry[4].resource.id: the same resource type and id as Bundle.entry[2]" in (
        only.reason()
    )


def xml_patient(patient_id: str, nhs: str, full_url: str = "") -> str:
    url = f'<fullUrl value="{full_url}"/>' if full_url else ""
    return (
        f'<entry>{url}<resource><Patient><id value="{patient_id}"/><identifier>'
        '<system value="https://fhir.nhs.uk/Id/nhs-number"/>'
        f'<value value="{nhs}"/></identifier></Patient></resource></entry>'
    )


def xml_bundle(*entries: str) -> str:
    return (
        '<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/>'
        + "".join(entries)
        + "</Bundle>"
    )


def test_xml_bundle_with_two_patients_of_one_id_is_refused() -> None:
    xml = xml_bundle(xml_patient("pat-1", "9000000009"), xml_patient("pat-1", "9000000017"))
    [only] = decisions(xml, "b.xml")
    assert isinstance(only, Rejected)
    assert only.reason().startswith("Bundle.entry[1].resource.id: the same resource type and id")


def test_xml_bundle_with_two_entries_of_one_fullurl_is_refused() -> None:
    url = "urn:uuid:c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e05"
    xml = xml_bundle(
        xml_patient("pat-1", "9000000009", url), xml_patient("pat-2", "9000000017", url)
    )
    [only] = decisions(xml, "b.xml")
    assert isinstance(only, Rejected)
    assert only.reason().startswith("Bundle.entry[1].fullUrl: the same fullUrl")


def test_an_unreadable_xml_entry_still_counts_for_its_id() -> None:
    unreadable = xml_patient("pat-1", "9000000017").replace("<Patient>", "<Patient><class/>")
    [only] = decisions(xml_bundle(xml_patient("pat-1", "9000000009"), unreadable), "b.xml")
    assert isinstance(only, Rejected)
    assert "Bundle.entry[1].resource.id" in only.reason()


def test_each_xml_message_entry_is_kept_with_its_own_text() -> None:
    """The header is checked, not carried: the entries after it keep their own raw text."""
    xml = (FIXTURES / "mht" / "appointments.xml").read_text()
    header = (
        '<entry><resource><MessageHeader><id value="h-1"/>'
        '<eventCoding><code value="x"/></eventCoding>'
        '<source><endpoint value="https://mht.example/fhir"/></source>'
        "</MessageHeader></resource></entry>"
    )
    message = xml.replace('<type value="collection"/>', f'<type value="message"/>{header}')
    message = message.replace('<status value="booked"/>', '<status value="bogus"/>')
    results = decisions(message, "m.xml", "mht-rv5")
    assert [type(r).__name__ for r in results] == ["Accepted", "Rejected"]
    assert isinstance(results[1], Rejected)
    assert 'value="bogus"' in results[1].raw
    assert "MessageHeader" not in results[1].raw


def test_an_entry_that_is_not_an_object_is_reported_not_skipped() -> None:
    data = bundle()
    data["entry"] = [5, data["entry"][0]]
    results = decisions(orjson.dumps(data).decode())
    assert [type(r).__name__ for r in results] == ["Rejected", "Accepted"]
    assert isinstance(results[0], Rejected)
    assert results[0].origin == "b.json#entry[0]"
    assert isinstance(results[1], Accepted)
    assert results[1].origin == "b.json#entry[1]"


def test_the_gateway_refuses_such_a_bundle_with_a_422_pointing_at_the_entry() -> None:
    verdict = assess(TWO_PATIENTS.read_bytes(), "application/fhir+json", None, GP)
    assert isinstance(verdict, RefusedRequest)
    assert verdict.status == 422
    [issue] = verdict.outcome()["issue"]
    assert issue["expression"] == ["Bundle.entry[1].resource.id"]
