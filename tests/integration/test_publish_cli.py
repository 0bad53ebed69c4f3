"""`concord publish` and `concord tail` against the real broker."""

import json
import subprocess
from pathlib import Path

from schemas.codec import decode, decode_dead_letter
from schemas.envelope import content_event_id
from tests.conftest import run_concord

FIXTURES = Path(__file__).parents[1] / "fixtures"
SECRETS = json.loads((Path(__file__).parents[2] / "deploy" / "demo" / "secrets.json").read_text())


def publish(
    partner: str, *files: str, secret_of: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`concord publish --as partner`, signed in with the secret of `secret_of` (default: the partner)."""
    env = {"CONCORD_PARTNER_SECRET": SECRETS[secret_of or partner]}
    return run_concord("publish", "--as", partner, *files, env=env)


def tail(topic: str, count: int) -> list[str]:
    result = run_concord("tail", topic, "--max", str(count), "--timeout", "10")
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_published_file_reads_back_as_the_same_envelope(topics: str) -> None:
    path = FIXTURES / "gp" / "appointment-booked.json"
    result = publish("gp-Y01234", str(path))
    assert result.returncode == 0, result.stderr
    assert "accepted 1, rejected 0" in result.stdout

    [line] = tail("inbound", 1)
    envelope = decode(line.encode())
    resource = json.loads(path.read_text())
    assert envelope.resource == resource
    assert envelope.source == "gp-Y01234"
    assert envelope.event_id == content_event_id("gp-Y01234", resource)
    assert [i.value for i in envelope.subject.identifiers] == ["9434765919"]
    # The bytes on the topic are exactly the codec's encoding of the envelope.
    assert json.loads(line) == json.loads(envelope.model_dump_json())


def test_invalid_file_is_refused_with_path_and_reason_and_kept_on_dead_letter(topics: str) -> None:
    path = FIXTURES / "invalid" / "appointment.json"
    result = publish("gp-Y01234", str(path))
    assert result.returncode == 1
    assert "appointment.json: Appointment.participant.actor:" in result.stderr
    assert "accepted 0, rejected 1" in result.stdout

    [line] = tail("deadletter", 1)
    letter = decode_dead_letter(line.encode())
    assert letter.origin == "appointment.json"
    assert "Appointment.participant.actor" in letter.reason
    assert json.loads(letter.raw) == json.loads(path.read_text())


def test_consent_the_hub_cannot_read_is_refused_with_its_reason_and_exit_1(
    topics: str, tmp_path: Path
) -> None:
    """Refused at the edge, as the worker would refuse it: never accepted and dropped later."""
    path = tmp_path / "consent.json"
    consent = {
        "resourceType": "Consent",
        "id": "consent-9",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"code": "INFA"}]}],
        "patient": {"identifier": {"system": "urn:concord:id:probation-crn", "value": "X123456"}},
        "provision": {
            "type": "deny",
            "actor": [
                {
                    "role": {"coding": [{"system": "urn:concord:role", "code": "judge"}]},
                    "reference": {"display": "the court"},
                }
            ],
        },
    }
    path.write_text(json.dumps(consent))
    result = publish("probation-london", str(path))

    assert result.returncode == 1
    assert (
        "consent.json: Consent.provision.actor[0].role: unknown role code 'judge'" in result.stderr
    )
    assert "accepted 0, rejected 1" in result.stdout
    [line] = tail("deadletter", 1)
    letter = decode_dead_letter(line.encode())
    assert (letter.source, letter.origin) == ("probation-london", "consent.json")
    assert "unknown role code 'judge'" in letter.reason


def test_fhir_xml_of_another_fhir_version_is_refused_and_kept_not_a_crash(topics: str) -> None:
    r5, stu3 = (
        FIXTURES / "invalid" / "appointment-r5.xml",
        FIXTURES / "invalid" / "message-stu3.xml",
    )
    result = publish("mht-rv5", str(r5), str(stu3))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "appointment-r5.xml: Appointment.class: not an element of Appointment in FHIR R4" in (
        result.stderr
    )
    assert "MessageHeader.event: not an element of MessageHeader in FHIR R4" in result.stderr
    assert "accepted 0, rejected 2" in result.stdout
    letters = [decode_dead_letter(line.encode()) for line in tail("deadletter", 2)]
    assert sorted(letter.origin for letter in letters) == [
        "appointment-r5.xml",
        "message-stu3.xml#entry[0]",
    ]


def test_good_records_of_a_partly_bad_file_are_still_published(topics: str) -> None:
    result = publish("gp-Y01234", str(FIXTURES / "invalid" / "mixed-collection.json"))
    assert result.returncode == 1
    assert "accepted 1, rejected 2" in result.stdout
    [good] = tail("inbound", 1)
    assert decode(good.encode()).resource["id"] == "good-1"
    letters = [decode_dead_letter(line.encode()) for line in tail("deadletter", 2)]
    assert sorted(letter.origin for letter in letters) == [
        "mixed-collection.json#entry[1]",
        "mixed-collection.json#entry[2]",
    ]


def test_every_partner_format_publishes(topics: str) -> None:
    # Each as the partner whose data it is: a partner's local ids are its own to give.
    files = [
        ("gp-Y01234", FIXTURES / "gp" / "message-bundle.json", 2),
        ("mht-rv5", FIXTURES / "mht" / "appointments.xml", 2),
        ("vol-recovery", FIXTURES / "voluntary" / "appointments.ndjson", 2),
        ("probation-london", FIXTURES / "probation" / "patient-link.json", 1),
    ]
    for partner, path, accepted in files:
        result = publish(partner, str(path))
        assert result.returncode == 0, result.stderr
        assert f"accepted {accepted}, rejected 0" in result.stdout
    assert len(tail("inbound", 7)) == 7


def test_another_partners_local_id_is_refused_and_kept(topics: str) -> None:
    result = publish("gp-Y01234", str(FIXTURES / "voluntary" / "appointments.ndjson"))
    assert result.returncode == 1
    assert "accepted 0, rejected 2" in result.stdout
    assert (
        "appointments.ndjson:1: Appointment.participant.actor: names the person by another "
        "partner's local id (urn:concord:id:local:vol-recovery)"
    ) in result.stderr
    letters = [decode_dead_letter(line.encode()) for line in tail("deadletter", 2)]
    assert {letter.source for letter in letters} == {"gp-Y01234"}


def test_publish_to_missing_file_is_a_usage_error(topics: str) -> None:
    result = publish("gp-Y01234", "no-such-file.json")
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_tail_of_unknown_topic_says_so(topics: str) -> None:
    result = run_concord("tail", "no-such-topic", "--timeout", "1")
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_partner_publishing_as_another_partner_is_refused_and_nothing_is_published(
    topics: str,
) -> None:
    result = publish(
        "gp-Y01234", str(FIXTURES / "gp" / "appointment-booked.json"), secret_of="vol-recovery"
    )
    assert result.returncode == 5
    assert "refused: unknown partner or wrong secret for partner 'gp-Y01234'" in result.stderr
    assert SECRETS["vol-recovery"] not in result.stderr + result.stdout
    assert run_concord("tail", "inbound", "--timeout", "2").stdout == "", "nothing published"


def test_publish_without_a_secret_says_how_to_give_one(topics: str) -> None:
    result = run_concord(
        "publish",
        "--as",
        "gp-Y01234",
        str(FIXTURES / "gp" / "appointment-booked.json"),
        env={"CONCORD_PARTNER_SECRET": ""},
    )
    assert result.returncode == 5
    assert "CONCORD_PARTNER_SECRET" in result.stderr


def test_voluntary_csv_publishes_good_rows_and_names_bad_lines(topics: str) -> None:
    result = publish("vol-recovery", str(FIXTURES / "voluntary" / "appointments.csv"))
    assert result.returncode == 1
    assert "accepted 97, rejected 3" in result.stdout
    for line in (7, 42, 88):
        assert f"appointments.csv:{line}:" in result.stderr


def test_probation_feed_is_read_with_format_probation(topics: str) -> None:
    env = {"CONCORD_PARTNER_SECRET": SECRETS["probation-london"]}
    feed = str(FIXTURES / "probation" / "case-feed.ndjson")
    result = run_concord(
        "publish", "--as", "probation-london", "--format", "probation", feed, env=env
    )
    assert "accepted 11, rejected 1" in result.stdout
    assert "case-feed.ndjson:4:" in result.stderr
