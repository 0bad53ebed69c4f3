"""Nothing accepted is dropped in silence: the worker's refusals reach their sender, and what the
edge can know it refuses while the sender waits."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from connectors.delivery.formats import message_bundle
from connectors.fhir_input import read_text
from connectors.hl7v2.from_fhir import hl7_message
from connectors.publish import Accepted, Rejected, decide
from schemas import topics
from schemas.codec import decode, decode_dead_letter, peek
from schemas.envelope import Envelope
from schemas.fhir import CARRIED, PARTNER_RESOURCE_TYPES, problems_in
from services.domain.consent import decision_from_consent
from services.domain.consent import stale_reason as consent_stale_reason
from services.domain.referrals import Referral
from services.domain.refusals import Refusal, refused_event_type, sender_of
from services.domain.versions import Version, is_stale, version_of
from services.stream.outbox import Out, refusal_outs
from services.stream.pipeline import person_event
from services.stream.state import decode_calendar, encode_calendar
from tests.unit.test_contract import EXAMPLES
from tests.unit.test_pipeline import (
    CTX,
    NHS,
    appointment,
    envelope,
    referral_ctx,
    referral_message,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def told(outs: list[Out]) -> list[tuple[str, dict[str, Any]]]:
    """The refusals among a step's outputs: (recipient, envelope) on the outbound topic."""
    return [
        (o.key.decode(), peek(o.value))
        for o in outs
        if o.topic == topics.OUTBOUND and peek(o.value)["event_type"].endswith(".refused")
    ]


def kept(outs: list[Out]) -> list[str]:
    """The reasons of the dead letters among a step's outputs."""
    return [decode_dead_letter(o.value).reason for o in outs if o.topic == topics.DEADLETTER]


# --- the rule: one refusal message ---------------------------------------------------------------


def test_refusal_names_the_senders_own_resource_the_event_and_the_reason_and_nothing_else() -> None:
    message, raw = envelope("gp-Y01234", appointment("gp-7", "booked", "10:00", "10:30", NHS))
    message["subject"]["person_id"] = "p-0a1b2c3d"
    letter, refusal = refusal_outs(message, Refusal("why", "conflict"), NOW, origin="reconciler")

    assert (letter.topic, letter.key) == (topics.DEADLETTER, b"gp-Y01234")
    assert decode_dead_letter(letter.value).event_id == uuid.UUID(message["event_id"])
    assert (refusal.topic, refusal.key) == (topics.OUTBOUND, b"gp-Y01234")
    sent = decode(refusal.value)
    assert sent.event_type == "appointment.booking.refused"
    assert (sent.source, sent.subject) == ("concord-hub", None), "no person is named"
    outcome = sent.resource
    assert problems_in(outcome) == []
    assert outcome["extension"] == [
        {
            "url": "urn:concord:extension:refused-resource",
            "valueReference": {"reference": "Appointment/gp-7"},
        },
        {
            "url": "urn:concord:extension:refused-event",
            "valueIdentifier": {"system": "urn:concord:event-id", "value": message["event_id"]},
        },
    ]
    assert outcome["issue"] == [{"severity": "error", "code": "conflict", "diagnostics": "why"}]
    assert NHS.value in raw.decode()
    assert NHS.value not in refusal.value.decode()
    assert "p-0a1b2c3d" not in refusal.value.decode()


def test_refusing_the_same_event_again_gives_the_same_message_id() -> None:
    message, _ = envelope("gp-Y01234", appointment("gp-7", "booked", "10:00", "10:30", NHS))
    first = refusal_outs(message, Refusal("why"), NOW, origin="reconciler")[1]
    again = refusal_outs(message, Refusal("why"), NOW + timedelta(hours=1), origin="reconciler")[1]
    assert decode(first.value).event_id == decode(again.value).event_id


@pytest.mark.parametrize(
    "message",
    [
        {"command": "merge", "absorbed": "p-1", "survivor": "p-2"},
        {
            "source": "concord-hub",
            "event_id": str(uuid.uuid4()),
            "event_type": "alert.clash.raised",
        },
        {
            "source": "gp-Y01234",
            "event_id": "not-a-uuid",
            "event_type": "appointment.booking.updated",
        },
        {"source": "Not A Partner", "event_id": str(uuid.uuid4()), "event_type": "a.b.c"},
        {},
    ],
    ids=["command", "hub", "no-event-id", "no-partner", "nothing"],
)
def test_a_message_that_names_no_partner_sender_is_only_dead_lettered(message: dict) -> None:
    outs = refusal_outs(message, Refusal("why"), NOW, origin="reconciler", raw=b"\x00garbage")
    assert [o.topic for o in outs] == [topics.DEADLETTER]
    assert decode_dead_letter(outs[0].value).raw == "\x00garbage"


def test_refused_event_type_keeps_the_domain_and_entity() -> None:
    assert refused_event_type("referral.task.updated") == "referral.task.refused"
    assert refused_event_type("governance.consent.recorded") == "governance.consent.refused"
    with pytest.raises(ValueError, match="domain"):
        refused_event_type("refused")


def test_every_partner_event_type_has_a_refusal_example() -> None:
    examples = {path.stem for path in EXAMPLES}
    for resource_type in PARTNER_RESOURCE_TYPES:
        assert refused_event_type(CARRIED[resource_type][1]) in examples


def test_sender_is_read_from_a_message_the_codec_would_refuse() -> None:
    event_id = str(uuid.uuid4())
    sender = sender_of(
        {
            "source": "mht-rv5",
            "event_id": event_id,
            "event_type": "referral.task.updated",
            "unexpected": True,
            "resource": {"resourceType": "Task", "id": "t-1"},
        }
    )
    assert sender is not None
    assert (sender.partner, sender.event_id, sender.resource_id) == ("mht-rv5", event_id, "t-1")


# --- refusals after acceptance: what only the worker knows ----------------------------------------


def task(referral: str, status: str, person: str = "p-1", task_id: str = "mht-task-1") -> dict:
    return {
        "resourceType": "Task",
        "id": task_id,
        "status": status,
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral}"},
        "for": {"identifier": {"system": "urn:concord:id:person", "value": person}},
    }


def task_message(partner: str, resource: dict, person: str = "p-1") -> dict:
    message, _ = envelope(partner, resource)
    message["subject"]["person_id"] = person
    return message


def test_task_for_a_referral_the_hub_does_not_hold_is_refused_to_its_sender() -> None:
    message = task_message("mht-rv5", task("ref-unknown", "accepted"))
    _, outs, _, _ = person_event(None, message, referral_ctx())

    [(to, refusal)] = told(outs)
    assert (to, refusal["event_type"]) == ("mht-rv5", "referral.task.refused")
    outcome = refusal["resource"]
    assert outcome["extension"][0]["valueReference"] == {"reference": "Task/mht-task-1"}
    assert outcome["extension"][1]["valueIdentifier"]["value"] == message["event_id"]
    assert outcome["issue"][0]["code"] == "not-found"
    assert "no referral 'ref-unknown'" in outcome["issue"][0]["diagnostics"]
    assert kept(outs) == [outcome["issue"][0]["diagnostics"]]


def test_illegal_transition_is_refused_as_referral_task_refused_not_an_alert() -> None:
    """The old `referral.update.refused` alert is folded into the one refusal message."""
    stored, _, _, _ = person_event(None, referral_message("p-1"), referral_ctx())
    message = task_message("mht-rv5", task("ref-9", "completed"))
    _, outs, _, _ = person_event(stored, message, referral_ctx())

    [(to, refusal)] = told(outs)
    assert (to, refusal["event_type"]) == ("mht-rv5", "referral.task.refused")
    issue = refusal["resource"]["issue"][0]
    assert (issue["code"], issue["diagnostics"]) == (
        "business-rule",
        "referral ref-9 is requested; it cannot become completed",
    )
    assert all(o.topic != topics.ALERTS for o in outs)


def test_stale_appointment_version_is_refused_and_the_calendar_keeps_the_newer() -> None:
    newer, _ = envelope(
        "gp-Y01234", appointment("gp-7", "booked", "11:00", "11:30", NHS, version=2)
    )
    older, _ = envelope(
        "gp-Y01234", appointment("gp-7", "booked", "10:00", "10:30", NHS, version=1)
    )
    for message in (newer, older):
        message["subject"]["person_id"] = "p-1"
    stored, _, _, _ = person_event(None, newer, CTX)

    again, outs, _, _ = person_event(stored, older, CTX)

    assert again is None, "nothing changes"
    [(to, refusal)] = told(outs)
    assert (to, refusal["event_type"]) == ("gp-Y01234", "appointment.booking.refused")
    diagnostics = refusal["resource"]["issue"][0]["diagnostics"]
    assert diagnostics.startswith("Appointment.meta: version 1 of ")
    assert "is older than version 2 of" in diagnostics
    assert decode_calendar(stored).slots["gp-Y01234/gp-7"].start.hour == 11


def test_the_same_appointment_event_again_is_a_silent_no_op() -> None:
    message, _ = envelope("gp-Y01234", appointment("gp-7", "booked", "10:00", "10:30", NHS))
    message["subject"]["person_id"] = "p-1"
    stored, _, _, _ = person_event(None, message, CTX)
    assert person_event(stored, message, CTX) == (None, [], None, True)


def consent_message(recorded: str, kind: str = "deny") -> dict:
    resource = {
        "resourceType": "Consent",
        "id": "consent-3",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"code": "INFA"}]}],
        "dateTime": recorded,
        "patient": {"identifier": {"system": NHS.system, "value": NHS.value}},
        "provision": {"type": kind},
    }
    message, _ = envelope("gp-Y01234", resource)
    message["subject"]["person_id"] = "p-1"
    return message


def test_older_version_of_a_consent_is_refused_to_its_sender() -> None:
    stored, _, _, _ = person_event(None, consent_message("2026-11-20T09:00:00Z", "deny"), CTX)
    older = consent_message("2026-11-01T09:00:00Z", "permit")
    again, outs, _, _ = person_event(stored, older, CTX)

    assert again is None
    [(to, refusal)] = told(outs)
    assert (to, refusal["event_type"]) == ("gp-Y01234", "governance.consent.refused")
    assert "not later than the version of this consent the hub holds" in str(refusal)


def test_the_same_consent_again_is_no_refusal() -> None:
    decision = decision_from_consent(
        consent_message("2026-11-20T09:00:00Z")["resource"], source="gp-Y01234", occurred_at=NOW
    )
    assert consent_stale_reason((decision,), decision) is None
    assert consent_stale_reason((decision,), replace(decision, permit=True)) is not None


def test_changed_referral_after_routing_is_refused_and_its_redelivery_is_not() -> None:
    first = referral_message("p-1")
    stored, _, _, _ = person_event(None, first, referral_ctx())

    assert person_event(stored, first, referral_ctx())[:2] == (None, [])
    changed = referral_message("p-1", priority="urgent")
    _, outs, _, _ = person_event(stored, changed, referral_ctx())
    [(to, refusal)] = told(outs)
    assert (to, refusal["event_type"]) == ("probation-london", "referral.request.refused")
    assert "already routed" in refusal["resource"]["issue"][0]["diagnostics"]


def test_referral_from_a_trust_that_reached_the_worker_is_refused_not_ignored() -> None:
    """A producer that bypassed the edge: the worker applies the same rule and says so."""
    message = referral_message("p-1")
    message["source"] = "mht-rv5"
    _, outs, _, _ = person_event(None, message, referral_ctx())
    [(to, refusal)] = told(outs)
    assert (to, refusal["event_type"]) == ("mht-rv5", "referral.request.refused")
    assert "from probation services only" in refusal["resource"]["issue"][0]["diagnostics"]


def test_stored_referral_keeps_the_event_it_was_routed_from_and_reads_older_rows() -> None:
    stored, _, _, _ = person_event(None, referral_message("p-1"), referral_ctx())
    calendar = decode_calendar(stored)
    [referral] = calendar.referrals.values()
    assert referral.event_id == referral_message("p-1")["event_id"]
    assert decode_calendar(encode_calendar(calendar)) == calendar

    value = orjson.loads(encode_calendar(calendar))
    value[6][0] = value[6][0][:13]  # a row stored before referrals kept their event id (and area)
    older: Referral = next(iter(decode_calendar(orjson.dumps(value)).referrals.values()))
    assert older == replace(referral, event_id=None, area=None)
    value[6][0] = orjson.loads(encode_calendar(calendar))[6][0][:14]  # one before they kept area
    assert next(iter(decode_calendar(orjson.dumps(value)).referrals.values())) == replace(
        referral, area=None
    )
    assert referral.area == "E09000022", "a referral keeps its area"


# --- versions -----------------------------------------------------------------------------------


def test_versions_order_by_version_id_then_last_updated_then_event_id() -> None:
    def at(number: str | None, updated: str | None, event: str) -> Version:
        meta = {k: v for k, v in (("versionId", number), ("lastUpdated", updated)) if v}
        return version_of({"resourceType": "Appointment", "meta": meta}, event, NOW)

    assert at("2", None, "a") > at("1", "2026-12-31T00:00:00Z", "b")
    assert at(None, "2026-12-02T00:00:00Z", "a") > at(None, "2026-12-01T00:00:00Z", "b")
    assert at(None, None, "a").updated == NOW, "no meta: when the event occurred"
    assert at("x7", None, "a").number == 0, "a version id that is not a number carries no order"


def test_stale_is_older_and_not_the_same_event() -> None:
    held = Version(2, NOW, "e-2")
    assert is_stale(Version(1, NOW, "e-1"), held)
    assert not is_stale(Version(3, NOW, "e-1"), held)
    assert not is_stale(Version(1, NOW, "e-2"), held), "the same event delivered again"


# --- the edge: what the worker would refuse, refused while the sender waits ------------------------


def decided(partner: str, resource: dict) -> Accepted | Rejected:
    [record] = read_text(orjson.dumps(resource).decode(), "in.json")
    decision = decide(record, partner, NOW)
    assert isinstance(decision, Accepted | Rejected)
    return decision


def reason(partner: str, resource: dict) -> str:
    decision = decided(partner, resource)
    assert isinstance(decision, Rejected), decision
    return decision.reason()


def test_appointment_without_an_id_inside_a_message_bundle_is_rejected_at_the_edge() -> None:
    resource = appointment("x", "booked", "10:00", "10:30", NHS)
    del resource["id"]
    bundle = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {
                "resource": {
                    "resourceType": "MessageHeader",
                    "id": "h-1",
                    "eventCoding": {"code": "x"},
                    "source": {"endpoint": "https://gp.example"},
                }
            },
            {"resource": resource},
        ],
    }
    [record] = read_text(orjson.dumps(bundle).decode(), "bundle.json")
    decision = decide(record, "gp-Y01234", NOW)
    assert isinstance(decision, Rejected)
    assert decision.reason() == (
        "Appointment.id: field required to track the appointment across updates"
    )


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        (
            {"role": {"coding": [{"system": "urn:concord:role", "code": "judge"}]}},
            "Consent.provision.actor[0].role: unknown role code 'judge'",
        ),
        (
            {"role": {"coding": [{"system": "http://example.org/roles", "code": "family"}]}},
            "Consent.provision.actor[0]: names neither a urn:concord:partner identifier nor a "
            "urn:concord:role role",
        ),
    ],
    ids=["unknown-role", "outside-the-vocabulary"],
)
def test_consent_the_hub_cannot_read_is_rejected_at_the_edge_with_its_reason(
    actor: dict, expected: str
) -> None:
    resource = consent_message("2026-11-20T09:00:00Z", "permit")["resource"]
    resource["provision"]["actor"] = [{**actor, "reference": {"display": "someone"}}]
    assert reason("gp-Y01234", resource) == expected


def test_consent_with_an_unknown_category_is_rejected_at_the_edge() -> None:
    resource = consent_message("2026-11-20T09:00:00Z")["resource"]
    resource["provision"]["code"] = [
        {"coding": [{"system": "urn:concord:disclosure-category", "code": "everything"}]}
    ]
    assert "unknown disclosure category 'everything'" in reason("gp-Y01234", resource)


def test_referral_from_a_partner_that_is_not_probation_is_rejected_at_the_edge() -> None:
    resource = referral_message("p-1")["resource"]
    assert reason("mht-rv5", resource) == (
        "ServiceRequest: the hub routes referrals from probation services only (the partner "
        "directory lists mht-rv5 as mht): refer to the service directly, or ask the person's "
        "probation officer to refer through the hub"
    )
    assert isinstance(decided("probation-london", resource), Accepted)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": None}, "Task.id: field required"),
        ({"focus": None}, "Task.focus: must reference the referral as ServiceRequest/<id>"),
        ({"focus": {"reference": "Appointment/a-1"}}, "Task.focus: must reference the referral"),
        ({"status": "on-hold"}, "Task.status: 'on-hold' is not a referral lifecycle status"),
    ],
    ids=["no-id", "no-focus", "focus-not-a-referral", "status-outside-the-lifecycle"],
)
def test_task_the_referral_steps_cannot_read_is_rejected_at_the_edge(
    change: dict, expected: str
) -> None:
    resource = {k: v for k, v in (task("ref-9", "accepted") | change).items() if v is not None}
    assert expected in reason("mht-rv5", resource)


def test_a_task_the_steps_can_read_is_accepted() -> None:
    assert isinstance(decided("mht-rv5", task("ref-9", "accepted")), Accepted)


# --- delivery: in the partner's format ----------------------------------------------------------


def refusal_envelope() -> Envelope:
    """The refusal as the delivery service decodes it from the outbound topic."""
    message = task_message("mht-rv5", task("ref-unknown", "accepted"))
    _, outs, _, _ = person_event(None, message, referral_ctx())
    [(_, refusal)] = told(outs)
    return decode(orjson.dumps(refusal))


def test_refusal_reaches_a_webhook_as_a_fhir_message_bundle() -> None:
    bundle = message_bundle(refusal_envelope(), "mht-rv5", "https://trust.example/fhir")
    header, focus = (entry["resource"] for entry in bundle["entry"])
    assert header["eventCoding"]["code"] == "referral.task.refused"
    assert focus["resourceType"] == "OperationOutcome"


def test_refusal_reaches_an_hl7_partner_as_a_result_naming_their_own_resource() -> None:
    text = hl7_message(refusal_envelope(), "mht-rv5", "e.1", NOW)
    msh, pid, obr, headline, *_ = (line.split("|") for line in text.split("\r") if line)
    assert msh[8] == "ORU^R01^ORU_R01"
    assert pid == ["PID", "1", "", ""], "no person"
    assert obr[2] == "Task/mht-task-1", "OBR-2: their own resource"
    assert obr[4].startswith("referral.task.refused^")
    assert headline[3] == "not-found^^http://hl7.org/fhir/issue-type"
    assert "no referral 'ref-unknown'" in headline[5]
