"""FHIR XML that fhir.resources' reader does not expect is rejected with the element at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.fhir_input import read_file, read_text
from connectors.gateway.rules import RefusedRequest, assess
from connectors.publish import Accepted, Rejected, decide

INVALID = Path(__file__).parents[1] / "fixtures" / "invalid"
PERSON = (
    "<participant><actor><identifier>"
    '<system value="https://fhir.nhs.uk/Id/nhs-number"/><value value="9000000017"/>'
    '</identifier></actor><status value="accepted"/></participant>'
)


def appointment(inner: str, root: str = '<Appointment xmlns="http://hl7.org/fhir">') -> str:
    return (
        f'{root}<id value="mht-appt-1"/><status value="booked"/>{inner}'
        '<start value="2026-12-04T13:00:00Z"/><end value="2026-12-04T14:00:00Z"/>'
        f"{PERSON}</Appointment>"
    )


def rejection(xml: str) -> str:
    [only] = [decide(record, "mht-rv5") for record in read_text(xml, "a.xml")]
    assert isinstance(only, Rejected), only
    return only.reason()


def test_the_well_formed_appointment_these_tests_break_is_accepted() -> None:
    [only] = [decide(record, "mht-rv5") for record in read_text(appointment(""), "a.xml")]
    assert isinstance(only, Accepted)


def test_r5_class_element_on_an_appointment_is_rejected_naming_it() -> None:
    """R5 added Appointment.class; read as R4 it made the reader raise KeyError."""
    [only] = [decide(record, "mht-rv5") for record in read_file(INVALID / "appointment-r5.xml")]
    assert isinstance(only, Rejected)
    assert only.reason() == "Appointment.class: not an element of Appointment in FHIR R4"


def test_stu3_message_header_rejects_the_whole_message_naming_the_element() -> None:
    """STU3's MessageHeader.event is R4's event[x]; read as R4 it made the reader raise KeyError."""
    [only] = [decide(record, "mht-rv5") for record in read_file(INVALID / "message-stu3.xml")]
    assert isinstance(only, Rejected)
    assert "MessageHeader.event: not an element of MessageHeader in FHIR R4" in only.reason()


def test_unknown_element_deep_inside_a_resource_is_rejected_with_its_path() -> None:
    inner = "<meta><event><code value='x'/></event></meta>"
    assert "Appointment.meta.event: not an element of Appointment.meta" in rejection(
        appointment(inner)
    )


def test_unknown_element_inside_a_bundle_entry_rejects_that_entry_only() -> None:
    bundle = (
        '<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/>'
        f"<entry><resource>{appointment('<class/>')}</resource></entry>"
        f"<entry><resource>{appointment('').replace('mht-appt-1', 'mht-appt-2')}</resource></entry>"
        "</Bundle>"
    )
    results = [decide(record, "mht-rv5") for record in read_text(bundle, "b.xml")]
    assert [type(r).__name__ for r in results] == ["Rejected", "Accepted"]
    assert isinstance(results[0], Rejected)
    assert "Appointment.class" in results[0].reason()


@pytest.mark.parametrize(
    ("xml", "words"),
    [
        (appointment('<status value="cancelled"/>'), "Appointment.status: appears more than once"),
        (appointment("", root="<Appointment>"), "must be in the namespace http://hl7.org/fhir"),
        (
            appointment("", root='<f:Appointment xmlns:f="http://hl7.org/fhir">').replace(
                "</Appointment>", "</f:Appointment>"
            ),
            "must be in the namespace http://hl7.org/fhir",
        ),
        (appointment('<comment value="x"><note/></comment>'), "Appointment.comment.note"),
        (
            appointment('<div xmlns="http://www.w3.org/1999/xhtml">x</div>'),
            "Appointment.div",
        ),
        (appointment("<contained><Nonsense/></contained>"), "Appointment.contained"),
        (appointment("<?pi here?>"), "Appointment"),
    ],
    ids=["repeated", "no-namespace", "prefixed", "under-primitive", "xhtml", "contained", "pi"],
)
def test_xml_the_reader_cannot_take_is_rejected_not_raised(xml: str, words: str) -> None:
    assert words in rejection(xml)


def test_the_gateway_answers_r5_xml_with_a_422_outcome_not_a_500() -> None:
    body = (INVALID / "appointment-r5.xml").read_bytes()
    verdict = assess(body, "application/fhir+xml", "Appointment", "mht-rv5")
    assert isinstance(verdict, RefusedRequest)
    assert verdict.status == 422
    assert "Appointment.class" in verdict.reason()


PUBLIC = Path(__file__).parents[1] / "fixtures" / "public"
TWINS = sorted(p.stem for p in (PUBLIC / "fhir-xml").glob("*.xml") if (PUBLIC / "fhir-json" / f"{p.stem}.json").exists() and not p.stem.startswith(("bundle", "message")))  # fmt: skip


def verdicts(path: Path) -> list[str]:
    """What the publish path says of each record of a file: its rejection reason, or accepted."""
    found = []
    for record in read_file(path):
        decision = decide(record, "gp-Y01234")
        found.append(decision.reason() if isinstance(decision, Rejected) else "accepted")
    return found


@pytest.mark.parametrize("name", TWINS)
def test_the_r4_specifications_xml_examples_are_judged_as_their_json_twins(name: str) -> None:
    """The examples comment before `id`, which fhir.resources' reader turned into a refusal."""
    xml = verdicts(PUBLIC / "fhir-xml" / f"{name}.xml")
    assert xml == verdicts(PUBLIC / "fhir-json" / f"{name}.json")
