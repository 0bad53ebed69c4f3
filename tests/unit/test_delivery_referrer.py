"""Who is told when a referral cannot be delivered: the rule, the notice and its audit record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.detectedissue import DetectedIssue
from hypothesis import given
from hypothesis import strategies as st

from connectors.delivery.rules import (
    OPERATOR,
    REFERRAL_NOT_DELIVERED_EVENT,
    ReferralParties,
    ReferralSent,
    notice_audit,
    referral_sent,
    referrer_notice,
    referrer_to_tell,
)
from schemas.codec import decode, encode
from schemas.envelope import Envelope, Subject
from services.domain.disclosure import person_as_known
from services.domain.referral_messages import referral_alert
from services.domain.referrals import Referral

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
PERSON = "p-468c6e946e3611ce49a1"
EVENT_ID = "6b8d5b15-1c78-5fce-932d-db0b55753365"
REFERRAL = ReferralParties("ref-2001", PERSON, "probation-london", "mht-rv5")
SENT = ReferralSent("mht-rv5", "ref-2001", PERSON)


def message(event_type: str, resource: dict[str, Any], person: str | None = PERSON) -> Envelope:
    return Envelope(
        event_id=uuid.UUID(EVENT_ID),
        event_type=event_type,
        source="concord-hub",
        subject=Subject(person_id=person) if person else None,
        occurred_at=NOW,
        recorded_at=NOW,
        correlation_id=uuid.UUID(EVENT_ID),
        resource=resource,
    )


def service_request(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": "ref-2001",
        "status": "active",
        "intent": "order",
        "subject": {"identifier": {"system": "urn:concord:id:person", "value": PERSON}},
        **extra,
    }


def test_a_referral_to_a_service_names_what_was_sent_to_whom() -> None:
    sent = referral_sent(message("referral.request.delivered", service_request()), "mht-rv5")
    assert sent == SENT


def test_the_person_is_read_from_the_resource_when_the_envelope_has_none() -> None:
    envelope = message("referral.request.delivered", service_request(), person=None)
    assert referral_sent(envelope, "mht-rv5") == SENT


def test_other_messages_are_not_referrals_to_a_service() -> None:
    task = {"resourceType": "Task", "id": "referral-ref-2001", "status": "requested"}
    notice = referrer_notice(
        SENT, referrer="probation-london", event_id=EVENT_ID, reason="x", now=NOW
    )
    assert referral_sent(message("referral.task.updated", task), "probation-london") is None
    assert (
        referral_sent(message("alert.clash.raised", {"resourceType": "DetectedIssue"}), "x") is None
    )
    assert referral_sent(notice, "probation-london") is None
    # A ServiceRequest without an id names no referral: nobody can be told which.
    assert referral_sent(message("referral.request.delivered", service_request(id="")), "m") is None


def test_the_referrer_of_that_referral_is_told() -> None:
    others = [
        ReferralParties("ref-2001", PERSON, "probation-kent", "vol-recovery"),  # another service
        ReferralParties("ref-2002", PERSON, "probation-kent", "mht-rv5"),  # another referral
        ReferralParties("ref-2001", "p-000000000000000000ff", "probation-kent", "mht-rv5"),
        ReferralParties("ref-2001", PERSON, "probation-kent", None),  # not routed
    ]
    assert referrer_to_tell(SENT, [*others, REFERRAL]) == "probation-london"
    assert referrer_to_tell(SENT, others) is None


def test_two_referrers_matching_tells_neither() -> None:
    """A notice to the wrong one would tell it of another agency's referral."""
    twin = ReferralParties("ref-2001", PERSON, "probation-kent", "mht-rv5")
    assert referrer_to_tell(SENT, [REFERRAL, twin]) is None
    assert referrer_to_tell(SENT, [REFERRAL, REFERRAL]) == "probation-london"


PARTNERS = st.sampled_from(["probation-london", "probation-kent", "mht-rv5", "gp-Y01234", OPERATOR])
PARTIES = st.builds(
    ReferralParties,
    request_id=st.sampled_from(["ref-1", "ref-2"]),
    person_id=st.sampled_from([PERSON, "p-000000000000000000ff"]),
    referrer=PARTNERS,
    recipient=st.one_of(st.none(), PARTNERS),
)


@given(
    referrals=st.lists(PARTIES, max_size=8),
    recipient=PARTNERS,
    request_id=st.sampled_from(["ref-1", "ref-2"]),
)
def test_a_referrer_told_is_the_only_one_that_sent_exactly_that_referral(
    referrals: list[ReferralParties], recipient: str, request_id: str
) -> None:
    sent = ReferralSent(recipient, request_id, PERSON)
    told = referrer_to_tell(sent, referrals)
    matching = {
        r.referrer
        for r in referrals
        if (r.recipient, r.request_id, r.person_id) == (recipient, request_id, PERSON)
    }
    if told is not None:
        assert matching - {recipient, OPERATOR} == {told}
        assert told not in (recipient, OPERATOR)
    else:
        assert len(matching - {recipient, OPERATOR}) != 1


@given(
    event_type=st.sampled_from(
        ["referral.request.delivered", "referral.task.updated", REFERRAL_NOT_DELIVERED_EVENT]
    ),
    reason=st.text(max_size=40),
    referrer=PARTNERS,
)
def test_a_notice_that_cannot_be_delivered_raises_no_notice_of_its_own(
    event_type: str, reason: str, referrer: str
) -> None:
    """Whatever failed, the notice it produces is not itself a referral to a service: so a
    failure to deliver a notice ends at the dead letter and the operator alert."""
    notice = referrer_notice(SENT, referrer=referrer, event_id=EVENT_ID, reason=reason, now=NOW)
    assert referral_sent(notice, referrer) is None


def test_notice_has_the_shape_of_the_referral_alerts_the_referrer_already_gets() -> None:
    notice = referrer_notice(
        SENT,
        referrer="probation-london",
        event_id=EVENT_ID,
        reason="refused: HTTP 400",
        now=NOW,
    )
    assert decode(encode(notice)) == notice
    assert notice.event_type == "referral.delivery.failed"
    assert notice.subject == Subject(person_id=PERSON)
    assert str(notice.correlation_id) == EVENT_ID
    DetectedIssue.model_validate(notice.resource)
    referral = Referral(
        referral_id="probation-london/ref-2001",
        fhir_id="ref-2001",
        referrer="probation-london",
        recipient="mht-rv5",
        status="requested",
        category="mental-health-assessment",
        urgency="routine",
        requested=NOW,
        deadline=None,
    )
    routing_alert = referral_alert(
        referral,
        code="referral-not-routed",
        detail="d",
        recipient="probation-london",
        person=person_as_known((), PERSON),
        now=NOW,
    )
    assert set(notice.resource) == set(routing_alert)
    for same in ("contained", "extension", "patient", "implicated", "identifiedDateTime", "status"):
        assert notice.resource[same] == routing_alert[same], same
    assert notice.resource["code"]["coding"][0]["code"] == "referral-not-delivered"
    assert notice.resource["detail"] == (
        "Referral ref-2001 could not be delivered to mht-rv5 (refused: HTTP 400). "
        "The service does not have it; the hub's operators have been alerted."
    )


def test_notice_is_the_same_message_when_raised_again() -> None:
    """After a restart the failure may be handled again: the referrer can drop the repeat."""
    first = referrer_notice(
        SENT, referrer="probation-london", event_id=EVENT_ID, reason="a", now=NOW
    )
    again = referrer_notice(
        SENT, referrer="probation-london", event_id=EVENT_ID, reason="b", now=NOW
    )
    assert first.event_id == again.event_id


def test_notice_is_audited_as_a_disclosure_to_the_referrer() -> None:
    notice = referrer_notice(
        SENT, referrer="probation-london", event_id=EVENT_ID, reason="r", now=NOW
    )
    audit = notice_audit(notice, referrer="probation-london", now=NOW)
    assert decode(encode(audit)) == audit
    assert audit.event_type == "audit.disclosure.recorded"
    assert audit.subject == Subject(person_id=PERSON)
    assert audit.correlation_id == notice.event_id
    AuditEvent.model_validate(audit.resource)
    agent = audit.resource["agent"][0]
    assert agent["who"]["identifier"]["value"] == "probation-london"
    assert agent["type"]["coding"][0]["code"] == "probation-officer"
    assert f"DetectedIssue/{notice.resource['id']}" in str(audit.resource["entity"])


def test_the_referrer_is_found_for_what_the_hub_itself_sends_about_a_routed_referral() -> None:
    """The hub's referral step and outbox write the ServiceRequest to the service and the
    referral's entry on the referrals topic; from those two records alone, delivery names the
    referrer."""
    from schemas import topics
    from schemas.codec import decode_internal
    from schemas.internal import ReferralInboxEntry
    from services.domain.calendar import Calendar
    from services.domain.decisions import Rules
    from services.domain.referral_steps import on_service_request
    from services.runtime import ROOT, partner_directory, service_directory
    from services.stream.outbox import render

    rules = Rules(
        directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
        services=service_directory(ROOT / "deploy" / "services.yaml"),
        now=NOW,
    )
    referral = {
        "resourceType": "ServiceRequest",
        "id": "ref-77",
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "category": [
            {
                "coding": [
                    {
                        "system": "urn:concord:referral-category",
                        "code": "mental-health-assessment",
                    }
                ]
            }
        ],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "subject": {"identifier": {"system": "urn:concord:id:probation-crn", "value": "X123456"}},
        "authoredOn": "2026-12-01T09:00:00Z",
    }
    message = {"resource": referral, "source": "probation-london", "event_id": EVENT_ID}
    _calendar, decisions = on_service_request(Calendar(PERSON), message, rules, NOW)
    outs = render(decisions, NOW)

    [(recipient, delivered)] = [
        (o.key.decode(), decode(o.value))
        for o in outs
        if o.topic is topics.OUTBOUND and decode(o.value).event_type == "referral.request.delivered"
    ]
    entries = [
        decode_internal(o.value, ReferralInboxEntry) for o in outs if o.topic is topics.REFERRALS
    ]
    parties = [ReferralParties(e.id, e.person_id, e.referrer, e.recipient) for e in entries]
    sent = referral_sent(delivered, recipient)
    assert sent == ReferralSent(recipient, "ref-77", PERSON)
    assert referrer_to_tell(sent, parties) == "probation-london"
