"""The outbox (services/stream/outbox.py `render`): each decision as the messages that carry it
out, on which topic, under which key; and the hub's commands read back as what was decided."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import get_args

import orjson
import pytest

from schemas import topics
from schemas.codec import decode, decode_dead_letter, decode_person_message, peek
from services.domain.calendar import Calendar
from services.domain.decisions import (
    Answered,
    Assigned,
    CheckDeadlines,
    Decision,
    Disclose,
    Forward,
    IdentityFlagsChanged,
    InboxEntryChanged,
    Merge,
    RelationshipBegun,
    Transfer,
    UpdateRefused,
)
from services.domain.referrals import Referral
from services.domain.refusals import Refusal
from services.domain.relationships import Relationship
from services.stream.outbox import _RENDERERS, flags_entry, render
from services.stream.pipeline import person_message
from services.web.inbox import entry_of
from tests.audit import basis_of

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EVENT = uuid.UUID("6a1f8e52-0d3c-5b7a-9e41-2c8d7f6b3a90")
CAUSE = uuid.UUID("1c2d3e4f-5a6b-5c7d-8e9f-0a1b2c3d4e5f")


def disclose(resource_type: str = "DetectedIssue", cause: uuid.UUID | None = CAUSE) -> Disclose:
    return Disclose(
        person_id="p-1",
        recipient="vol-recovery",
        role="voluntary-worker",
        event_id=EVENT,
        event_type="alert.clash.raised",
        resource={"resourceType": resource_type, "id": "issue-1"},
        what=f"{resource_type}/issue-1",
        basis="probation-london/c-1",
        cause=cause,
    )


def test_every_kind_of_decision_has_its_rendering() -> None:
    assert set(_RENDERERS) == set(get_args(Decision))


def test_a_disclosure_goes_to_its_partner_and_its_audit_record_to_the_persons_key() -> None:
    sent, audit = render([disclose()], NOW)
    assert (sent.topic, sent.key) == (topics.ALERTS, b"vol-recovery")
    envelope = decode(sent.value)
    assert (envelope.event_id, envelope.correlation_id) == (EVENT, CAUSE)
    assert (envelope.source, envelope.subject and envelope.subject.person_id) == (
        "concord-hub",
        "p-1",
    )
    assert (audit.topic, audit.key) == (topics.AUDIT, b"p-1")
    record = decode(audit.value)
    assert record.event_type == "audit.disclosure.recorded"
    assert record.correlation_id == EVENT, "the audit record names the disclosure"
    assert basis_of(record.resource) == "probation-london/c-1"
    assert record.resource["entity"][-1]["what"] == {"reference": "DetectedIssue/issue-1"}


def test_a_referral_or_its_task_goes_on_the_outbound_topic_and_answers_its_cause() -> None:
    [sent, _] = render([disclose("Task", cause=None)], NOW)
    assert sent.topic is topics.OUTBOUND
    assert decode(sent.value).correlation_id == EVENT, "the hub's own message correlates to itself"


def test_an_answer_given_over_http_is_only_audited() -> None:
    answered = Answered(
        EVENT, "p-1", "probation-london", "probation-officer", "BreachCheck/x", "role-default"
    )
    [audit] = render([answered], NOW)
    assert (audit.topic, audit.key) == (topics.AUDIT, b"p-1")
    assert decode(audit.value).correlation_id == EVENT


def test_a_new_relationship_is_audited_with_the_same_id_every_time() -> None:
    begun = RelationshipBegun(
        "p-1", "mht-rv5", Relationship("mht", "referral", "probation-london/ref-9")
    )
    [audit] = render([begun], NOW)
    [again] = render([begun], datetime(2026, 12, 2, tzinfo=UTC))
    record = decode(audit.value)
    assert record.event_type == "audit.relationship.recorded"
    assert record.resource["id"] == decode(again.value).resource["id"]
    assert basis_of(record.resource) == "referral"
    assert record.resource["entity"][-1]["what"] == {"reference": "ServiceRequest/ref-9"}


def test_a_refused_update_is_dead_lettered_and_told_to_its_sender() -> None:
    message = {
        "event_id": str(CAUSE),
        "event_type": "referral.task.updated",
        "source": "mht-rv5",
        "resource": {"resourceType": "Task", "id": "t-1"},
    }
    letter, told = render(
        [UpdateRefused(message, Refusal("why", "not-found"), "referral-lifecycle")], NOW
    )
    assert decode_dead_letter(letter.value).origin == "referral-lifecycle"
    assert (told.topic, told.key) == (topics.OUTBOUND, b"mht-rv5")
    assert decode(told.value).event_type == "referral.task.refused"


def test_an_inbox_entry_is_keyed_by_its_referral_and_read_back_by_the_inboxes() -> None:
    referral = Referral(
        referral_id="probation-london/ref-9",
        fhir_id="ref-9",
        referrer="probation-london",
        recipient="mht-rv5",
        status="requested",
        category="mental-health-assessment",
        urgency="routine",
        requested=NOW,
        deadline=datetime(2026, 12, 8, 9, 0, tzinfo=UTC),
    )
    [out] = render([InboxEntryChanged("p-1", referral)], NOW)
    assert (out.topic, out.key) == (topics.REFERRALS, b"probation-london/ref-9")
    referral_id, entry = entry_of(out.key, out.value)
    assert referral_id == "probation-london/ref-9"
    assert (entry["person_id"], entry["deadline"]) == ("p-1", "2026-12-08T09:00:00Z")


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (Merge("p-9", "p-1"), b"p-9"),
        (Transfer("p-9", "p-1", Calendar("p-9", partners={"gp-Y01234": "gp"})), b"p-1"),
        (CheckDeadlines("p-1", NOW), b"p-1"),
    ],
    ids=["merge", "transfer", "deadlines"],
)
def test_a_command_goes_to_the_record_it_is_for_and_reads_back_as_decided(
    command: Merge | Transfer | CheckDeadlines, key: bytes
) -> None:
    [out] = render([command], NOW)
    assert (out.topic, out.key) == (topics.PERSON_EVENTS, key)
    assert person_message(decode_person_message(out.value)) == command


def test_the_identity_flags_leave_the_open_conflicts_or_nothing() -> None:
    [out] = render([IdentityFlagsChanged("p-1", ("c-1",))], NOW)
    assert (out.topic, out.key) == (topics.PERSON_EVENTS, b"p-1")
    assert flags_entry(decode_person_message(out.value)) == orjson.dumps({"open": ["c-1"]})
    [cleared] = render([IdentityFlagsChanged("p-1", ())], NOW)
    assert flags_entry(decode_person_message(cleared.value)) is None


def test_an_event_goes_on_to_its_person_resolved_to_them() -> None:
    envelope = {"event_id": str(CAUSE), "subject": {"identifiers": [], "person_id": "p-9"}}
    [out] = render([Forward("p-1", envelope)], NOW)
    assert (out.topic, out.key) == (topics.PERSON_EVENTS, b"p-1")
    assert peek(out.value)["subject"]["person_id"] == "p-1"


def test_an_assignment_goes_to_the_partition_its_identifiers_events_arrive_on() -> None:
    [out] = render([Assigned("sys|1", "p-1", 5)], NOW)
    assert (out.topic, out.key, out.value, out.partition) == (
        topics.ASSIGNMENTS,
        b"sys|1",
        b"p-1",
        5,
    )


def test_decisions_render_in_order() -> None:
    outs = render([Merge("p-9", "p-1"), disclose(), CheckDeadlines("p-1", NOW)], NOW)
    assert [o.topic for o in outs] == [
        topics.PERSON_EVENTS,
        topics.ALERTS,
        topics.AUDIT,
        topics.PERSON_EVENTS,
    ]
