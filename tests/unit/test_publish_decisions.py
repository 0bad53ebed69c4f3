"""Reading partner FHIR files and deciding, record by record, what is published."""

from pathlib import Path

from connectors.fhir_input import read_file, read_text
from connectors.publish import Accepted, Ignored, Rejected, decide, rejection_letter

FIXTURES = Path(__file__).parents[1] / "fixtures"


def decisions(path: Path, partner: str = "gp-Y01234") -> list:
    return [decide(record, partner) for record in read_file(path)]


def test_single_json_resource_is_one_envelope() -> None:
    [only] = decisions(FIXTURES / "gp" / "appointment-booked.json")
    assert isinstance(only, Accepted)
    assert only.envelope.event_type == "appointment.booking.updated"
    assert only.envelope.source == "gp-Y01234"


def test_message_bundle_publishes_its_resources_and_passes_by_practitioners() -> None:
    results = decisions(FIXTURES / "gp" / "message-bundle.json")
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["Accepted", "Accepted", "Ignored"]
    appointment = results[1].envelope
    # The appointment names its patient by a bundle reference; the subject is the patient's NHS
    # number and the Patient's id, the GP's own id for them.
    assert [(i.system, i.value) for i in appointment.subject.identifiers] == [
        ("https://fhir.nhs.uk/Id/nhs-number", "9000000009"),
        ("urn:concord:id:local:gp-Y01234", "pat-9000000009"),
    ]
    assert appointment.subject.identifiers == results[0].envelope.subject.identifiers
    assert appointment.correlation_id == results[0].envelope.correlation_id


def test_message_bundle_without_header_first_is_rejected_whole() -> None:
    text = '{"resourceType":"Bundle","type":"message","entry":[{"resource":{"resourceType":"Patient"}}]}'
    [only] = [decide(r, "gp-Y01234") for r in read_text(text, "m.json")]
    assert isinstance(only, Rejected)
    assert "MessageHeader" in only.reason()


def test_xml_bundle_entries_are_read_with_their_patient_links() -> None:
    results = decisions(FIXTURES / "mht" / "appointments.xml", "mht-rv5")
    assert [type(r).__name__ for r in results] == ["Accepted", "Accepted"]
    assert results[1].envelope.resource["status"] == "booked"
    assert len(results[1].envelope.subject.identifiers) == 2


def test_ndjson_reports_line_numbers() -> None:
    text = '{"resourceType":"Patient","identifier":[{"system":"urn:concord:id:probation-crn","value":"X123456"}]}\n{oops\n'
    results = [decide(r, "probation-london") for r in read_text(text, "feed.ndjson")]
    assert isinstance(results[0], Accepted)
    assert isinstance(results[1], Rejected)
    assert results[1].origin == "feed.ndjson:2"


def test_bad_records_are_rejected_and_good_ones_in_the_same_file_accepted() -> None:
    results = decisions(FIXTURES / "invalid" / "mixed-collection.json")
    assert [type(r).__name__ for r in results] == ["Accepted", "Rejected", "Rejected"]
    assert "Appointment.status" in results[1].reason()
    assert "check digit" in results[2].reason()


def test_rejection_message_names_file_element_and_reason() -> None:
    [only] = decisions(FIXTURES / "invalid" / "appointment.json")
    assert isinstance(only, Rejected)
    assert f"{only.origin}: {only.reason()}".startswith("appointment.json: Appointment.participant")


def test_malformed_json_is_rejected_with_the_raw_text_kept() -> None:
    [only] = [decide(r, "gp-Y01234") for r in read_text("{not json", "broken.json")]
    assert isinstance(only, Rejected)
    letter = rejection_letter(only, "gp-Y01234")
    assert letter.raw == "{not json"
    assert "not valid JSON" in letter.reason


def test_malformed_xml_is_rejected() -> None:
    [only] = [decide(r, "mht-rv5") for r in read_text("<Appointment><status", "a.xml")]
    assert isinstance(only, Rejected)
    assert "XML" in only.reason()


def test_xml_with_a_bad_code_is_rejected_by_the_hub_rules() -> None:
    xml = (
        '<Appointment xmlns="http://hl7.org/fhir"><status value="bogus"/>'
        '<participant><status value="accepted"/></participant></Appointment>'
    )
    [only] = [decide(r, "mht-rv5") for r in read_text(xml, "a.xml")]
    assert isinstance(only, Rejected)
    assert "Appointment.status" in only.reason()


def test_unsupported_top_level_resource_is_rejected_not_ignored() -> None:
    [only] = [
        decide(r, "gp-Y01234") for r in read_text('{"resourceType":"Practitioner"}', "p.json")
    ]
    assert isinstance(only, Rejected)
    assert not isinstance(only, Ignored)


def test_dead_letter_of_huge_input_is_trimmed_to_fit_the_broker() -> None:
    [only] = [decide(r, "gp-Y01234") for r in read_text("x" * 2_000_000, "big.json")]
    from schemas.codec import encode

    letter = rejection_letter(only, "gp-Y01234")
    assert len(encode(letter)) < 1024 * 1024, "fits the broker's record limit"
    assert letter.raw.startswith("xxxx")


def test_ignored_entry_warning_names_the_file_the_entry_and_the_type() -> None:
    """`concord publish` prints this line for each entry passed by."""
    ignored = Ignored("bundle.json#entry[3]", "Slot")
    assert (
        ignored.warning() == "bundle.json: Bundle.entry[3]: ignored: Slot is not routed by the hub"
    )


APPOINTMENT_UUID = "aca94bdb-2e38-4399-9ece-2ba083ce65b5"


def _transaction(*entries: str) -> str:
    return '{"resourceType":"Bundle","type":"transaction","entry":[' + ",".join(entries) + "]}"


def test_a_bundled_patient_that_names_no_one_is_passed_by_and_alone_refused() -> None:
    nameless = '{"resourceType":"Patient","name":[{"family":"Chalmers"}]}'
    foreign = (
        '{"resourceType":"Patient","identifier":[{"system":"http://example.org/ids","value":"1"}]}'
    )
    bundled = [
        decide(r, "gp-Y01234")
        for r in read_text(
            _transaction(
                '{"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":'
                + nameless
                + ',"request":{"method":"POST","url":"Patient"}}',
                '{"resource":' + foreign + ',"request":{"method":"POST","url":"Patient"}}',
            ),
            "t.json",
        )
    ]
    assert [type(d).__name__ for d in bundled] == ["Ignored", "Ignored"]
    assert "names no one" in bundled[0].reason()
    [alone] = [decide(r, "gp-Y01234") for r in read_text(nameless, "p.json")]
    assert isinstance(alone, Rejected)
    assert "Patient.identifier" in alone.reason()


def test_a_bundled_resource_without_id_is_known_by_its_urn_uuid_full_url() -> None:
    patient_url = "urn:uuid:0b2c5d0e-5f4c-4a0b-9f3e-3a8f3f1c2d11"
    patient = (
        f'{{"fullUrl":"{patient_url}","resource":{{"resourceType":"Patient","identifier":'
        '[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9476719931"}]}}'
    )
    appointment = (
        '{"resourceType":"Appointment","status":"booked","start":"2026-12-03T10:00:00Z",'
        '"end":"2026-12-03T10:30:00Z","participant":[{"actor":{"reference":'
        f'"{patient_url}"}},"status":"accepted"}}]}}'
    )
    entry = f'{{"fullUrl":"urn:uuid:{APPOINTMENT_UUID.upper()}","resource":{appointment}}}'
    results = [decide(r, "gp-Y01234") for r in read_text(_transaction(patient, entry), "b.json")]
    assert [type(d).__name__ for d in results] == ["Accepted", "Accepted"]
    assert results[0].envelope.resource.get("id") is None, "a Patient's id is never a message uuid"
    assert results[1].envelope.resource["id"] == APPOINTMENT_UUID
    http = entry.replace(f"urn:uuid:{APPOINTMENT_UUID.upper()}", "https://gp.example/a/1")
    [_, named_by_url] = [
        decide(r, "gp-Y01234") for r in read_text(_transaction(patient, http), "c")
    ]
    assert isinstance(named_by_url, Rejected), "only a urn:uuid stands in for an id"
    assert "Appointment.id" in named_by_url.reason()


def test_a_referrals_task_may_name_no_person_and_is_keyed_by_its_referral() -> None:
    """A service updating a referral need not copy the hub's person id: the referral names them."""
    task = (
        '{"resourceType":"Task","id":"mht-own-1","status":"accepted","intent":"order",'
        '"focus":{"reference":"ServiceRequest/ref-1"}}'
    )
    [only] = [decide(r, "mht-rv5") for r in read_text(task, "task.json")]
    assert isinstance(only, Accepted)
    assert only.envelope.subject is None
    assert only.envelope.key() == b"urn:concord:referral|mht-rv5/ref-1"


def test_a_task_naming_neither_person_nor_referral_is_refused_naming_both() -> None:
    task = '{"resourceType":"Task","id":"t-1","status":"accepted","intent":"order"}'
    [only] = [decide(r, "mht-rv5") for r in read_text(task, "task.json")]
    assert isinstance(only, Rejected)
    assert "Task.for" in only.reason()
    assert "no reference names the person" in only.reason()
