"""Records the fuzz suite (tests/fuzz/) found crashing a worker or a connector, each now refused
with an exception its agent dead-letters (`MALFORMED`) or, at the edge, a named rejection."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from connectors.fhir_input import Record
from connectors.hl7v2.to_fhir import records_from_hl7_text
from connectors.publish import Rejected, decide_encoded
from schemas.codec import CodecError, decode_assignment, decode_person_message, peek_envelope
from schemas.identifiers import nhs_number_is_valid
from services.domain.calendar import Calendar
from services.stream.activity import activity_record, heard_from
from services.stream.pipeline import MALFORMED, identifiers_of, person_event, person_id_of_key
from services.stream.state import decode_calendar, encode_calendar
from services.web.inbox import entry_of, inbox, latest_entries
from tests.fuzz.corpus import CONTEXT, ROOT, played

EXAMPLES = ROOT / "schemas" / "examples"


def example(event_type: str, person_id: str | None = None) -> dict[str, Any]:
    envelope: dict[str, Any] = orjson.loads((EXAMPLES / f"{event_type}.json").read_bytes())
    if person_id:
        envelope["subject"]["person_id"] = person_id
    return envelope


def inbound_step(raw: bytes) -> None:
    """What the person index does inside its try block, up to routing."""
    identifiers_of(peek_envelope(raw))


# --- the person index -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "breakage",
    [
        lambda e: e.update(subject=["X123456"]),
        lambda e: e["subject"]["identifiers"][0].update(value=9434765919),
        lambda e: e["subject"].update(identifiers={"system": "x"}),
        lambda e: e.pop("source"),  # read after the try block: a KeyError there stopped the agent
        lambda e: e.update(recorded_at=None),
        lambda e: e.update(resource=["Appointment"]),
    ],
    ids=["subject-list", "value-number", "identifiers-object", "no-source", "no-recorded-at", "resource-list"],
)  # fmt: skip
def test_an_envelope_of_the_wrong_shape_is_refused_by_name(breakage: Any) -> None:
    """Each of these raised AttributeError or KeyError where the person index does not catch it."""
    envelope = example("appointment.booking.updated")
    breakage(envelope)
    with pytest.raises(CodecError, match="not an envelope"):
        inbound_step(orjson.dumps(envelope))


def test_a_tombstone_on_a_topic_is_malformed_not_a_crash() -> None:
    with pytest.raises(MALFORMED):
        peek_envelope(None)  # type: ignore[arg-type]  # a null value, as Kafka may deliver


def test_an_assignment_without_a_key_or_with_a_person_id_that_is_not_text_is_refused() -> None:
    """A null key raised AttributeError; a non-UTF-8 person id was stored and broke every later
    event about that identifier with UnicodeDecodeError, which the person index did not catch."""
    with pytest.raises(CodecError):
        decode_assignment(None, b"p-1")
    with pytest.raises(CodecError):
        decode_assignment(b"urn:concord:id:probation-crn|X123456", b"\xff\xfe")
    token, person = decode_assignment(b"urn:concord:id:probation-crn|X123456", b"p-1")
    assert (token, person) == ("urn:concord:id:probation-crn|X123456", b"p-1")


# --- the reconciler ---------------------------------------------------------------------------


def test_a_person_events_record_without_a_key_is_refused() -> None:
    with pytest.raises(CodecError):
        person_id_of_key(None)


@pytest.mark.parametrize(
    "message",
    [
        {"command": "merge", "absorbed": ["p-1"], "survivor": "p-2"},
        {"command": "deadlines", "person_id": "p-1"},
        {"command": ["merge"]},
        {"command": "transfer", "absorbed": "p-1", "survivor": "p-2"},
    ],
    ids=["merge-list", "deadlines-no-now", "command-list", "transfer-no-calendar"],
)
def test_a_hub_command_of_the_wrong_shape_is_refused(message: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        decode_person_message(orjson.dumps(message))


@pytest.mark.parametrize(
    ("event_type", "breakage"),
    [
        ("referral.request.updated", lambda r: r.update(category=["mental-health-assessment"])),
        ("referral.task.updated", lambda r: r.update(focus="ServiceRequest/ref-2001")),
        ("governance.consent.recorded", lambda r: r["provision"].update(period="2026")),
    ],
    ids=["service-request-category", "task-focus", "consent-period"],
)
def test_a_referral_or_consent_the_edge_would_refuse_is_refused_by_the_reconciler(
    event_type: str, breakage: Any
) -> None:
    """These raised AttributeError inside the referral and consent rules, stopping the agent."""
    envelope = example(event_type, person_id="p-468c6e946e3611ce49a1")
    envelope["source"] = "mht-rv5" if "task" in event_type else envelope["source"]
    breakage(envelope["resource"])
    message = decode_person_message(orjson.dumps(envelope))
    with pytest.raises(ValueError, match=envelope["resource"]["resourceType"]):
        person_event(None, message, CONTEXT)


def test_a_corrupt_stored_calendar_is_a_value_error() -> None:
    """An empty slot row raised IndexError, a time out of range OverflowError."""
    stored = orjson.loads(played().calendars[-1])
    empty_row, huge_time = copy.deepcopy(stored), copy.deepcopy(stored)
    empty_row[3] = [[]]
    huge_time[3] = [[*stored[3][0][:4], 2**62, *stored[3][0][5:]]] if stored[3] else [[]]
    for corrupt in (empty_row, huge_time, [1, "p-1", None, [], [], [], [[]]]):
        with pytest.raises(ValueError, match="stored"):
            decode_calendar(orjson.dumps(corrupt))
    assert decode_calendar(encode_calendar(Calendar("p-1"))) == Calendar("p-1")


# --- what every worker reads whole ------------------------------------------------------------


def test_a_partner_activity_record_of_the_wrong_shape_is_refused() -> None:
    """The worker's reader of this topic stopped for good on such a record (KeyError, ...)."""
    assert heard_from(activity_record("gp-Y01234", "2026-12-01T09:00:00Z"))[0] == "gp-Y01234"
    for bad in (b"[]", b'{"partner": "gp-Y01234"}', b'{"partner": 1, "last_heard": "x"}', None):
        with pytest.raises(CodecError):
            heard_from(bad)


def test_a_referral_entry_of_the_wrong_shape_is_not_shown_in_any_inbox() -> None:
    """A list as an entry made every partner's /referrals fail with AttributeError."""
    good_key, good = played().records["concord.referrals"][0]
    entries = latest_entries([(good_key, good), (b"ref-x", b"[]"), (b"ref-y", b'{"id": 1}')])
    assert list(entries) == [good_key.decode()]
    referrer = entries[good_key.decode()]["referrer"]
    assert len(inbox(entries, referrer)) == 1
    with pytest.raises(CodecError):
        entry_of(b"ref-x", b"[]")


# --- the edge ---------------------------------------------------------------------------------


def test_an_nhs_number_with_a_superscript_digit_is_rejected_not_a_crash() -> None:
    """'943476591²' passed str.isdigit() and then failed int(): `concord publish` crashed."""
    assert not nhs_number_is_valid("943476591²")
    assert not nhs_number_is_valid("٩٤٣٤٧٦٥٩١٩")
    resource = example("appointment.booking.updated")["resource"]
    resource["participant"][0]["actor"]["identifier"]["value"] = "943476591²"
    record = Record("a.json", orjson.dumps(resource).decode(), resource)
    outcome = decide_encoded(record, "gp-Y01234")
    assert isinstance(outcome, Rejected)
    assert "NHS number" in outcome.reason()


@pytest.mark.parametrize("end", ["2026-12-05", "2026-12-03T11:00:00"])
def test_an_appointment_ending_on_a_date_or_a_time_without_offset_is_rejected_not_a_crash(
    end: str,
) -> None:
    """Ordering it against an aware start raised TypeError: `concord publish` crashed."""
    resource = example("appointment.booking.updated")["resource"]
    resource["end"] = end
    record = Record("a.json", orjson.dumps(resource).decode(), resource)
    outcome = decide_encoded(record, "gp-Y01234")
    assert isinstance(outcome, Rejected)
    assert outcome.reason().startswith("Appointment.end: ")


SIU_S15 = (ROOT / "tests" / "fixtures" / "mht" / "siu-s15.hl7").read_bytes().decode()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (("service|||||^^30", "service|||99999999999999||^^30"), "SCH-9: a duration over a year"),
        (("service|||||^^30", "service|||nan||^^30"), "SCH-9: not a number"),
        (("service|||||^^30", "service|||1e999||^^30"), "SCH-9: not a number"),
        (("|20261203083000|", "|99991231230000-1400|"), "MSH-7: not a valid datetime"),
    ],
    ids=["huge-duration", "nan-duration", "infinite-duration", "last-hour-of-9999"],
)  # fmt: skip
def test_hl7_times_out_of_range_are_named_not_a_crash(change: tuple[str, str], where: str) -> None:
    """These raised OverflowError or ValueError inside the mapping: `concord publish` crashed."""
    assert change[0] in SIU_S15
    text = SIU_S15.replace(*change)
    [record] = records_from_hl7_text(text, "a.hl7", "mht-rv5")
    assert record.problems
    assert str(record.problems[0]).startswith(where)
