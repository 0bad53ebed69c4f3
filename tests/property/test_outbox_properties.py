"""Every disclosure the person stream decides is audited: rendered, each disclosing decision gives
exactly one AuditEvent, on the audit topic, keyed by the person, correlated to the disclosure's
event id; each data-quality flag reaches its sender in exactly one message; and the hub's commands
read back as what was decided."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import topics
from schemas.codec import decode, decode_dead_letter, decode_person_message
from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PROBATION_CRN
from services.domain.calendar import Calendar, Slot
from services.domain.decisions import (
    Answered,
    CheckDeadlines,
    DataQualityFlagged,
    Decision,
    Disclose,
    Merge,
    PersonMessage,
    RelationshipBegun,
    Rules,
    Transfer,
)
from services.domain.person import decide
from services.runtime import ROOT, partner_directory, service_directory
from services.stream.outbox import Out, render
from services.stream.pipeline import person_message
from tests.property.test_calendar_properties import changes

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RULES = Rules(
    directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
    now=NOW,
    services=service_directory(ROOT / "deploy" / "services.yaml"),
)
PERSON = "p-1"
EVENTS = uuid.UUID("7d1e0c3a-52b8-5f4e-8a60-2c9b1e7f3d14")
# The partners the reconciler may hear from about the person, and whom a consent may name.
RECIPIENTS = ["vol-recovery", "vol-housing", "gp-Y01234", "mht-rv5"]
CATEGORIES = ["appointment-times", "appointment-detail", "referral-content"]


def _instant(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def envelope(source: str, resource: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    """A partner's event as the reconciler reads it: resolved to the person."""
    event_id = uuid.uuid5(EVENTS, orjson.dumps([source, resource]).decode())
    return {
        "event_id": str(event_id),
        "event_type": "x.y.updated",
        "source": source,
        "subject": {"identifiers": [{"system": system, "value": value}], "person_id": PERSON},
        "occurred_at": _instant(NOW),
        "recorded_at": _instant(NOW),
        "correlation_id": str(event_id),
        "resource": resource,
    }


def appointment(slot: Slot) -> dict[str, Any]:
    """One of the calendar properties' appointment changes, as its partner publishes it."""
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": slot.appointment_id.partition("/")[2],
        "meta": {
            "versionId": str(slot.version.number),
            "lastUpdated": _instant(slot.version.updated),
        },
        "status": slot.status,
    }
    if slot.start is not None and slot.end is not None:
        resource |= {"start": _instant(slot.start), "end": _instant(slot.end)}
    # Probation names the person by CRN: its case record, which relates it to the person.
    system = PROBATION_CRN if slot.kind == "probation" else NHS_NUMBER
    return envelope(
        slot.partner, resource, system, "X123456" if system == PROBATION_CRN else "9434765919"
    )


@st.composite
def consents(draw: st.DrawFn) -> dict[str, Any]:
    """Probation recording the person's permit, deny or withdrawal for one partner."""
    provision = {
        "type": draw(st.sampled_from(["permit", "deny"])),
        "actor": [
            {
                "reference": {
                    "identifier": {
                        "system": "urn:concord:partner",
                        "value": draw(st.sampled_from(RECIPIENTS)),
                    }
                }
            }
        ],
        "code": [
            {
                "coding": [
                    {
                        "system": "urn:concord:disclosure-category",
                        "code": draw(st.sampled_from(CATEGORIES)),
                    }
                ]
            }
        ],
    }
    resource = {
        "resourceType": "Consent",
        "id": f"c-{draw(st.integers(0, 2))}",
        "status": draw(st.sampled_from(["active", "active", "inactive"])),
        "dateTime": _instant(NOW - timedelta(days=draw(st.integers(1, 9)))),
        "provision": provision,
    }
    return envelope("probation-london", resource, PROBATION_CRN, "X123456")


@st.composite
def referrals(draw: st.DrawFn) -> dict[str, Any]:
    """Probation referring the person: routed, held or not routed, by category, area, content."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": f"ref-{draw(st.integers(0, 1))}",
        "status": "active",
        "intent": "order",
        "priority": draw(st.sampled_from(["routine", "urgent"])),
        "category": [
            {
                "coding": [
                    {
                        "system": "urn:concord:referral-category",
                        "code": draw(
                            st.sampled_from(
                                ["mental-health-assessment", "substance-misuse-treatment"]
                            )
                        ),
                    }
                ]
            }
        ],
        "locationCode": [
            {
                "coding": [
                    {"system": "urn:concord:area", "code": draw(st.sampled_from(["SE11", "W1"]))}
                ]
            }
        ],
        "authoredOn": "2026-11-27T09:00:00Z",
    }
    if draw(st.booleans()):
        resource["reasonCode"] = [{"text": "low mood"}]
    return envelope("probation-london", resource, PROBATION_CRN, "X123456")


@st.composite
def tasks(draw: st.DrawFn) -> dict[str, Any]:
    """A party's update to a referral's Task; some the lifecycle refuses."""
    status = draw(st.sampled_from(["received", "accepted", "rejected", "completed", "cancelled"]))
    resource = {
        "resourceType": "Task",
        "id": f"t-{status}",
        "status": status,
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/ref-{draw(st.integers(0, 1))}"},
        "for": {"identifier": {"system": HUB_PERSON, "value": PERSON}},
    }
    source = draw(st.sampled_from(["mht-rv5", "vol-recovery", "probation-london"]))
    return envelope(source, resource, HUB_PERSON, PERSON)


deadline_checks = st.integers(0, 14).map(
    lambda days: CheckDeadlines(PERSON, NOW + timedelta(days=days))
)
partner_events = st.one_of(changes().map(appointment), consents(), referrals(), tasks())
messages: st.SearchStrategy[PersonMessage] = st.one_of(partner_events, deadline_checks)


def played(sequence: Iterable[PersonMessage], record: Calendar) -> tuple[Calendar, list[Decision]]:
    decided: list[Decision] = []
    for message in sequence:
        record, decisions = decide(record, message, RULES)
        decided += decisions
    return record, decided


def audits(outs: list[Out]) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in outs if o.topic is topics.AUDIT]


def assert_audited(decision: Decision) -> None:
    """A disclosing decision renders one AuditEvent for the person, correlated to it."""
    outs = render([decision], NOW)
    [audit] = audits(outs)
    [record] = [o for o in outs if o.topic is topics.AUDIT]
    assert record.key == decision.person_id.encode()  # type: ignore[union-attr]
    assert audit["subject"]["person_id"] == decision.person_id  # type: ignore[union-attr]
    assert audit["resource"]["resourceType"] == "AuditEvent"
    if isinstance(decision, Disclose):
        [sent] = [o for o in outs if o.topic is not topics.AUDIT]
        assert sent.key == decision.recipient.encode()
        assert sent.topic in (topics.ALERTS, topics.OUTBOUND)
        assert decode(sent.value).event_id == decision.event_id
        assert audit["correlation_id"] == str(decision.event_id)
    elif isinstance(decision, Answered):
        assert outs == [record]
        assert audit["correlation_id"] == str(decision.disclosure_id)
    else:
        assert outs == [record]
        assert audit["event_type"] == "audit.relationship.recorded"


DISCLOSING = (Disclose, Answered, RelationshipBegun)


@settings(max_examples=150, deadline=None)
@given(st.lists(messages, max_size=14))
def test_every_disclosure_decided_for_a_person_renders_exactly_one_audit_record(
    sequence: list[PersonMessage],
) -> None:
    _, decisions = played(sequence, Calendar(PERSON))
    disclosing = [d for d in decisions if isinstance(d, DISCLOSING)]
    for decision in disclosing:
        assert_audited(decision)
    assert len(audits(render(decisions, NOW))) == len(disclosing), "nothing else is audited"


@settings(max_examples=150, deadline=None)
@given(st.lists(messages, max_size=14))
def test_each_data_quality_flag_renders_exactly_one_message_to_its_sender(
    sequence: list[PersonMessage],
) -> None:
    _, decisions = played(sequence, Calendar(PERSON))
    for flag in (d for d in decisions if isinstance(d, DataQualityFlagged)):
        outs = render([flag], NOW)
        [told] = [o for o in outs if o.topic is topics.OUTBOUND]
        assert told.key == flag.message["source"].encode()
        sent = decode(told.value)
        assert sent.event_type.endswith(".flagged")
        assert sent.subject is None, "it names no person"
        assert [i["details"]["coding"][0]["code"] for i in sent.resource["issue"]] == [
            i.rule for i in flag.issues
        ]
        kept = [o for o in outs if o.topic is topics.DEADLETTER]
        # An update the hub did not apply is kept for the operator; nothing else is sent.
        assert len(kept) == (0 if flag.applied else 1)
        assert len(outs) == 1 + len(kept)
        for letter in kept:
            assert str(decode_dead_letter(letter.value).event_id) == flag.message["event_id"]


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, max_size=8), st.lists(messages, max_size=8))
def test_a_merge_hands_over_and_the_take_over_audits_each_disclosure(
    absorbed_messages: list[PersonMessage], survivor_messages: list[PersonMessage]
) -> None:
    absorbed, _ = played(absorbed_messages, Calendar("p-0"))
    tombstone, [transfer] = decide(absorbed, Merge("p-0", PERSON), RULES)
    assert tombstone == Calendar("p-0", merged_into=PERSON)
    assert isinstance(transfer, Transfer)
    # The transfer command, as the survivor's worker reads it, is the record handed over.
    [out] = render([transfer], NOW)
    read = person_message(decode_person_message(out.value))
    assert read == transfer
    assert read.calendar == absorbed  # type: ignore[union-attr]

    survivor, _ = played(survivor_messages, Calendar(PERSON))
    merged, decisions = decide(survivor, transfer, RULES)
    assert merged.person_id == PERSON
    for decision in decisions:
        if isinstance(decision, DISCLOSING):
            assert_audited(decision)


@settings(max_examples=50, deadline=None)
@given(messages)
def test_a_merged_record_passes_everything_on_to_the_survivor(message: PersonMessage) -> None:
    moved = Calendar(PERSON, merged_into="p-0")
    if isinstance(message, CheckDeadlines):
        assert decide(moved, message, RULES) == (moved, [replace(message, person_id="p-0")])
        return
    _, [forwarded] = decide(moved, message, RULES)
    assert audits(render([forwarded], NOW)) == [], "passing on is no disclosure"
    [out] = render([forwarded], NOW)
    assert (out.topic, out.key) == (topics.PERSON_EVENTS, b"p-0")
    assert orjson.loads(out.value)["subject"]["person_id"] == "p-0"
