"""The hub's internal messages through the codec: round trips, what each reader refuses, and the
records the hub's steps write today, read by the codec byte for byte."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, get_args

import orjson
import pytest

from schemas import topics
from schemas.codec import (
    CodecError,
    decode_assignment,
    decode_command,
    decode_internal,
    decode_link_message,
    decode_person_message,
    encode_assignment,
    encode_internal,
)
from schemas.identifiers import NHS_NUMBER, PROBATION_CRN, PersonIdentifier
from schemas.internal import (
    ConflictDecision,
    ConflictStatus,
    DeadlinesCommand,
    IdentityConflictRecord,
    IdentityFlagsCommand,
    InternalMessage,
    MergeCommand,
    PartnerActivity,
    ReferralInboxEntry,
    ResolveConflictCommand,
    TransferCommand,
)
from services.domain import identity
from services.domain.calendar import Calendar
from services.stream.state import decode_calendar, encode_calendar
from tests.fuzz.corpus import played
from tests.keys import KEY

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CALENDAR = encode_calendar(Calendar("p-1"))
ENTRY: dict[str, Any] = {
    "referral_id": "probation-london/ref-1",
    "id": "ref-1",
    "person_id": "p-1",
    "referrer": "probation-london",
    "recipient": "mht-rv5",
    "status": "requested",
    "category": "mental-health-assessment",
    "urgency": "routine",
    "requested": "2026-12-01T09:00:00Z",
    "deadline": "2026-12-08T17:00:00Z",
    "escalated": False,
    "first_appointment": None,
    "reason": None,
    "updated": "2026-12-01T09:00:00Z",
}


def conflict() -> identity.Conflict:
    crn = PersonIdentifier(PROBATION_CRN, "X123456")
    nhs, other = (
        PersonIdentifier(NHS_NUMBER, "9434765919"),
        PersonIdentifier(NHS_NUMBER, "4010232137"),
    )
    index, _ = identity.resolve(identity.PersonIndex(KEY), [crn, nhs], source="probation-london")
    _, refused = identity.resolve(index, [other, crn], source="mht-rv5", at=AT)
    assert isinstance(refused, identity.RefusedLink)
    return refused.conflict


MESSAGES: list[InternalMessage] = [
    MergeCommand(absorbed="p-1", survivor="p-2"),
    TransferCommand(absorbed="p-1", survivor="p-2", calendar=CALENDAR),
    DeadlinesCommand(person_id="p-1", now=AT),
    IdentityFlagsCommand(person_id="p-1", open=("c-1", "c-2")),
    IdentityFlagsCommand(person_id="p-1", open=()),
    ResolveConflictCommand(
        conflict_id="c-1",
        decision="link",
        operator="duty-officer",
        reason="same person",
        at=AT,
        request_id=uuid.uuid4(),
    ),
    PartnerActivity(partner="gp-Y01234", last_heard="2026-12-01T09:00:00.123456Z"),
    ReferralInboxEntry(**ENTRY),
    IdentityConflictRecord.model_validate(identity.conflict_record(conflict())),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_each_internal_message_round_trips(message: InternalMessage) -> None:
    assert decode_internal(encode_internal(message), type(message)) == message


def test_the_commands_are_written_as_the_hub_has_always_written_them() -> None:
    """Byte for byte: what is already on person-events and links stays readable, both ways."""
    assert encode_internal(MergeCommand(absorbed="p-1", survivor="p-2")) == orjson.dumps(
        {"command": "merge", "absorbed": "p-1", "survivor": "p-2"}
    )
    transfer = {"command": "transfer", "absorbed": "p-1", "survivor": "p-2"}
    assert encode_internal(TransferCommand(**transfer, calendar=CALENDAR)) == orjson.dumps(
        {**transfer, "calendar": orjson.Fragment(CALENDAR)}
    )
    flags = {"command": "identity-conflicts", "person_id": "p-1", "open": ["c-1"]}
    assert encode_internal(IdentityFlagsCommand(person_id="p-1", open=("c-1",))) == orjson.dumps(
        flags
    )
    assert encode_internal(DeadlinesCommand(person_id="p-1", now=AT)) == orjson.dumps(
        {"command": "deadlines", "person_id": "p-1", "now": "2026-12-01T09:00:00Z"}
    )


def test_a_transfer_carries_the_stored_calendar_as_it_was_stored() -> None:
    transfer = TransferCommand(absorbed="p-1", survivor="p-2", calendar=CALENDAR)
    command = decode_command(encode_internal(transfer))
    assert isinstance(command, TransferCommand)
    assert command.calendar == CALENDAR
    assert decode_calendar(command.calendar) == Calendar("p-1")


def test_the_records_of_compacted_topics_are_written_as_before() -> None:
    assert encode_internal(ReferralInboxEntry(**ENTRY)) == orjson.dumps(ENTRY)
    record = identity.conflict_record(conflict())
    assert encode_internal(IdentityConflictRecord.model_validate(record)) == orjson.dumps(record)
    activity = {"partner": "gp-Y01234", "last_heard": "2026-12-01T09:00:00+00:00"}
    assert encode_internal(PartnerActivity(**activity)) == orjson.dumps(activity)


def test_everything_the_hub_steps_write_today_is_read_by_the_codec() -> None:
    """The scenario's records, as the person index, linker and reconciler wrote them."""
    records = played().records
    commands = [decode_person_message(v) for _, v in records[topics.PERSON_EVENTS.name]]
    kinds = {type(c) for c in commands}
    assert {MergeCommand, TransferCommand, DeadlinesCommand, dict} <= kinds
    for key, value in records[topics.REFERRALS.name]:
        entry = decode_internal(value, ReferralInboxEntry)
        assert key == entry.referral_id.encode()
        assert encode_internal(entry) == value
    for key, value in records[topics.ASSIGNMENTS.name]:
        assert decode_assignment(key, value) == (key.decode(), value)
    assert all(isinstance(decode_link_message(v), dict) for _, v in records[topics.LINKS.name])


def test_a_record_written_by_a_later_version_is_read_without_its_new_fields() -> None:
    value = orjson.dumps({**ENTRY, "priority": "high"})
    assert decode_internal(value, ReferralInboxEntry) == ReferralInboxEntry(**ENTRY)


def test_an_inbox_entry_may_lack_what_the_inboxes_read_as_null() -> None:
    read = ("referral_id", "id", "person_id", "referrer", "status", "urgency", "requested")
    required = {name: ENTRY[name] for name in read}
    entry = decode_internal(orjson.dumps(required), ReferralInboxEntry)
    assert (entry.recipient, entry.deadline, entry.escalated) == (None, None, False)


def test_the_schema_names_the_domains_decisions_and_statuses() -> None:
    assert get_args(ConflictDecision) == get_args(identity.Decision)
    assert get_args(ConflictStatus) == get_args(identity.ConflictStatus)


def test_a_conflict_record_reads_back_as_the_domain_conflict() -> None:
    original = conflict()
    written = IdentityConflictRecord.model_validate(identity.conflict_record(original))
    record = decode_internal(encode_internal(written), IdentityConflictRecord)
    assert identity.conflict_from_record(record.model_dump()) == original


# --- what each reader refuses, by name -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"command": "merge", "absorbed": ["p-1"], "survivor": "p-2"}, "MergeCommand: absorbed"),
        ({"command": "merge", "survivor": "p-2"}, "MergeCommand: absorbed: Field required"),
        ({"command": "deadlines", "person_id": "p-1"}, "DeadlinesCommand: now: Field required"),
        ({"command": "deadlines", "person_id": "p-1", "now": "2026-12-01T09:00:00"}, "DeadlinesCommand: now"),
        ({"command": "deadlines", "person_id": "p-1", "now": 1764579600}, "DeadlinesCommand: now"),
        ({"command": "transfer", "absorbed": "p-1", "survivor": "p-2"}, "TransferCommand: calendar: Field required"),
        ({"command": "transfer", "absorbed": "p-1", "survivor": "p-2", "calendar": "x"}, "TransferCommand: calendar"),
        ({"command": "identity-conflicts", "person_id": "p-1", "open": "c-1"}, "IdentityFlagsCommand: open"),
        ({"command": "identity-conflicts", "person_id": "p-1", "open": [1]}, "IdentityFlagsCommand: open.0"),
        ({"command": ["merge"]}, "not a hub command: unknown command"),
        ({"command": "resolve-conflict"}, "not a hub command: unknown command"),
    ],
    ids=["merge-list", "merge-no-absorbed", "deadlines-no-now", "deadlines-naive", "deadlines-number", "transfer-no-calendar", "transfer-calendar-text", "flags-text", "flags-number", "command-list", "not-a-person-command"],
)  # fmt: skip
def test_a_command_of_the_wrong_shape_is_refused_naming_the_field(
    value: dict[str, Any], problem: str
) -> None:
    with pytest.raises(CodecError, match=problem):
        decode_command(orjson.dumps(value))
    with pytest.raises(CodecError, match=problem):
        decode_person_message(orjson.dumps(value))


@pytest.mark.parametrize("data", [b"", b"\xff", b"[]", b"null", b'"merge"'])
def test_bytes_that_are_no_json_object_are_refused(data: bytes) -> None:
    with pytest.raises(CodecError):
        decode_command(data)
    for model in (MergeCommand, PartnerActivity, ReferralInboxEntry, IdentityConflictRecord):
        with pytest.raises(CodecError, match=f"not a valid {model.__name__}"):
            decode_internal(data, model)


def test_a_tombstone_is_no_internal_message() -> None:
    with pytest.raises(CodecError, match="not a valid PartnerActivity"):
        decode_internal(None, PartnerActivity)


def test_a_person_events_envelope_must_be_resolved_to_a_person() -> None:
    activity = encode_internal(PartnerActivity(partner="gp-Y01234", last_heard=AT.isoformat()))
    with pytest.raises(CodecError, match="not an envelope: event_id"):
        decode_person_message(activity)
    played_envelope = next(
        v for _, v in played().records[topics.INBOUND.name] if b'"command"' not in v
    )
    with pytest.raises(CodecError, match="not resolved to a person"):
        decode_person_message(played_envelope)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"decision": "merge"}, "decision"),
        ({"request_id": "not-a-uuid"}, "request_id"),
        ({"at": "yesterday"}, "at"),
        ({"operator": 7}, "operator"),
    ],
)
def test_an_operator_decision_of_the_wrong_shape_is_refused(
    change: dict[str, Any], problem: str
) -> None:
    good = orjson.loads(encode_internal(MESSAGES[5]))
    assert isinstance(decode_link_message(orjson.dumps(good)), ResolveConflictCommand)
    with pytest.raises(CodecError, match=f"ResolveConflictCommand: {problem}"):
        decode_link_message(orjson.dumps(good | change))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"id": 1}, "id"),
        ({"escalated": "yes"}, "escalated"),
        ({"recipient": ["mht-rv5"]}, "recipient"),
        ({"status": None}, "status"),
    ],
)
def test_an_inbox_entry_of_the_wrong_shape_is_refused(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(CodecError, match=f"ReferralInboxEntry: {problem}"):
        decode_internal(orjson.dumps(ENTRY | change), ReferralInboxEntry)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"status": "closed"}, "status"),
        ({"people": "p-1"}, "people"),
        ({"claim": {}}, "claim.source"),
    ],
)
def test_a_conflict_record_of_the_wrong_shape_is_refused(
    change: dict[str, Any], problem: str
) -> None:
    record = identity.conflict_record(conflict())
    with pytest.raises(CodecError, match=f"IdentityConflictRecord: {problem}"):
        decode_internal(orjson.dumps(record | change), IdentityConflictRecord)


# --- assignments: token -> person id, plain text -----------------------------------------------


def test_an_assignment_round_trips() -> None:
    token = PersonIdentifier(PROBATION_CRN, "X123456").token()
    key, value = encode_assignment(token, "p-1")
    assert decode_assignment(key, value) == (token, b"p-1")
    assert decode_assignment(key, None) == (token, None), "a forgotten token"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        (None, b"p-1", "not an assignment: IdentifierError"),
        (b"urn:concord:id:probation-crn|X123456", b"\xff\xfe", "UnicodeDecodeError"),
        (b"urn:concord:id:probation-crn|X123456", b"p 1", "not a printable word"),
        (b"urn:concord:id:probation-crn|X123456", b"", "not a printable word"),
    ],
)
def test_an_assignment_the_linker_would_not_write_is_refused(
    key: bytes | None, value: bytes, problem: str
) -> None:
    with pytest.raises(CodecError, match=problem):
        decode_assignment(key, value)
