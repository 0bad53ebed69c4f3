"""A referral that cannot be delivered to the service ends with a notice to the referrer: on the
real broker, with the referral's entry on the referrals topic as the hub's worker writes it."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

from structlog.testing import capture_logs

from connectors.delivery.rules import DeliverySettings, Endpoint
from connectors.kafka_io import Publisher, read_topic
from schemas import topics as catalogue
from schemas.codec import decode, encode_internal
from schemas.envelope import Envelope, Subject
from schemas.internal import ReferralInboxEntry
from tests.integration.test_delivery import Logs, delivering, wait_until, webhook

SETTINGS = DeliverySettings(
    max_attempts=2, backoff_base_s=0.02, backoff_cap_s=0.05, timeout_s=2.0, commit_interval_s=0.1
)
PERSON = "p-00112233445566778899"


def refer(request_id: str, recipient: str, referrer: str = "probation-london") -> str:
    """What the worker writes for a routed referral: its referrals-topic entry, and the
    ServiceRequest to the service on the outbound topic. The latter's event id."""
    now = datetime.now(UTC)
    entry = ReferralInboxEntry(
        referral_id=f"{referrer}/{request_id}",
        id=request_id,
        person_id=PERSON,
        referrer=referrer,
        recipient=recipient,
        status="requested",
        category="mental-health-assessment",
        urgency="urgent",
        requested=now.isoformat().replace("+00:00", "Z"),
    )
    event_id = uuid.uuid4()
    delivered = Envelope(
        event_id=event_id,
        event_type="referral.request.delivered",
        source="concord-hub",
        subject=Subject(person_id=PERSON),
        occurred_at=now,
        recorded_at=now,
        correlation_id=event_id,
        resource={
            "resourceType": "ServiceRequest",
            "id": request_id,
            "status": "active",
            "intent": "order",
            "priority": "urgent",
            "subject": {"identifier": {"system": "urn:concord:id:person", "value": PERSON}},
        },
    )
    publisher = Publisher()
    try:
        publisher.send_encoded(
            catalogue.REFERRALS.name, entry.referral_id.encode(), encode_internal(entry)
        )
        publisher.send(catalogue.OUTBOUND.name, recipient.encode(), delivered)
        publisher.confirm()
    finally:
        publisher.close()
    return str(event_id)


def closed_port() -> int:
    """A port nothing listens on: the service is unreachable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def topic(name: str, key: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [
        (k.decode() if k else "", decode(v).model_dump(mode="json"))
        for k, v in read_topic(name, idle_timeout_s=1.0)
        if key is None or k == key.encode()
    ]


def operator_alerts(logs: Logs) -> int:
    return sum(line["event"] == "delivery.operator_alert" for line in logs)


def test_referrals_to_an_unreachable_and_a_refusing_service_are_told_to_the_referrer(
    topics: str,
) -> None:
    unreachable = refer("ref-1", "mht-rv5")
    refused = refer("ref-2", "vol-recovery")

    async def scenario() -> tuple[list[dict[str, Any]], Logs]:
        with capture_logs() as logs:
            async with (
                webhook(lambda n: 400) as (_service, service_url),
                webhook(lambda n: 200) as (probation, probation_url),
                delivering(
                    [
                        Endpoint("mht-rv5", "hl7", host="127.0.0.1", port=closed_port()),
                        Endpoint("vol-recovery", "json", url=service_url),
                        Endpoint("probation-london", "json", url=probation_url),
                    ],
                    SETTINGS,
                ),
            ):
                await wait_until(lambda: len(probation.accepted) >= 2, "two notices to probation")
        return probation.accepted, logs

    received, logs = asyncio.run(scenario())

    notices = {body["correlation_id"]: body for body in received}
    assert set(notices) == {unreachable, refused}
    for body in received:
        assert body["event_type"] == "referral.delivery.failed"
        assert body["subject"]["person_id"] == PERSON
        issue = body["resource"]
        assert issue["resourceType"] == "DetectedIssue"
        assert issue["code"]["coding"][0]["code"] == "referral-not-delivered"
        assert issue["patient"]["identifier"]["value"] == PERSON
    assert notices[unreachable]["resource"]["implicated"] == [{"reference": "ServiceRequest/ref-1"}]
    assert notices[unreachable]["resource"]["detail"] == (
        "Referral ref-1 could not be delivered to mht-rv5 (gave up after 2 attempts: "
        "ConnectionRefusedError). The service does not have it; the hub's operators have been "
        "alerted."
    )
    detail = notices[refused]["resource"]["detail"]
    assert detail.startswith(
        "Referral ref-2 could not be delivered to vol-recovery (refused: HTTP 400)"
    )
    assert "partner says" not in detail  # the service's response text stays in the dead letter
    # Each notice is audited as a disclosure to the referrer.
    audits = [body for _key, body in topic(catalogue.AUDIT.name, PERSON)]
    assert {a["correlation_id"] for a in audits} == {n["event_id"] for n in received}
    assert all(
        a["resource"]["agent"][0]["who"]["identifier"]["value"] == "probation-london"
        for a in audits
    )
    told = [line for line in logs if line["event"] == "delivery.referrer_told"]
    assert {line["event_id"] for line in told} == {unreachable, refused}
    assert operator_alerts(logs) == 2


def test_a_notice_the_referrer_cannot_receive_raises_no_further_notice(topics: str) -> None:
    """The service refuses the referral; the referrer refuses the notice too. The notice is
    dead-lettered with an operator alert like any message, and no notice about the notice."""
    referral = refer("ref-3", "vol-recovery")

    async def scenario() -> tuple[int, int, Logs]:
        with capture_logs() as logs:
            async with (
                webhook(lambda n: 400) as (service, service_url),
                webhook(lambda n: 403) as (probation, probation_url),
                delivering(
                    [
                        Endpoint("vol-recovery", "json", url=service_url),
                        Endpoint("probation-london", "json", url=probation_url),
                    ],
                    SETTINGS,
                ),
            ):
                # The second operator alert is the notice's: its handling is over by then.
                await wait_until(lambda: operator_alerts(logs) >= 2, "two operator alerts")
        return service.requests, probation.requests, logs

    to_service, to_referrer, logs = asyncio.run(scenario())

    assert (to_service, to_referrer) == (1, 1)
    notices = [
        body
        for _key, body in topic(catalogue.ALERTS.name)
        if body["event_type"] == "referral.delivery.failed"
    ]
    assert [n["correlation_id"] for n in notices] == [referral]
    letters = {line["partner"] for line in logs if line["event"] == "delivery.dead_lettered"}
    assert letters == {"vol-recovery", "probation-london"}
    assert len([line for line in logs if line["event"] == "delivery.referrer_told"]) == 1
    assert operator_alerts(logs) == 2


def test_without_the_referrals_entry_only_the_operator_is_told(topics: str) -> None:
    """A referral whose entry is not on the referrals topic: the hub does not guess who
    referred it, and only the operator is alerted."""
    now = datetime.now(UTC)
    event_id = uuid.uuid4()
    publisher = Publisher()
    try:
        publisher.send(
            catalogue.OUTBOUND.name,
            b"vol-recovery",
            Envelope(
                event_id=event_id,
                event_type="referral.request.delivered",
                source="concord-hub",
                subject=Subject(person_id=PERSON),
                occurred_at=now,
                recorded_at=now,
                correlation_id=event_id,
                resource={
                    "resourceType": "ServiceRequest",
                    "id": "ref-9",
                    "status": "active",
                    "intent": "order",
                },
            ),
        )
        publisher.confirm()
    finally:
        publisher.close()

    async def scenario() -> Logs:
        with capture_logs() as logs:
            async with (
                webhook(lambda n: 400) as (_service, url),
                delivering([Endpoint("vol-recovery", "json", url=url)], SETTINGS),
            ):
                await wait_until(lambda: operator_alerts(logs) >= 1, "the operator alert")
        return logs

    logs = asyncio.run(scenario())

    assert [line["event_id"] for line in logs if line["event"] == "delivery.referrer_unknown"] == [
        str(event_id)
    ]
    assert not [
        b for _k, b in topic(catalogue.ALERTS.name) if b["event_type"] == "referral.delivery.failed"
    ]
