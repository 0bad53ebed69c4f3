"""A referral ended by its referrer, in any order of the messages about it, delivered any number of
times: the hub never cancels (or otherwise changes) a partner's appointment; the flag that a
booked appointment may no longer be needed goes only to the service that booked it, once per
ending, and whenever the referrer ends the referral while that appointment is still to come."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PROBATION_CRN
from services.domain.calendar import Calendar
from services.domain.decisions import CheckDeadlines, Decision, Disclose, PersonMessage, Rules
from services.domain.person import decide
from services.domain.referral_steps import ENDED, STILL_BOOKED
from services.runtime import ROOT, partner_directory, service_directory

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RULES = Rules(
    directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
    now=NOW,
    services=service_directory(ROOT / "deploy" / "services.yaml"),
)
PERSON = "p-1"
REFERRAL = "probation-london/ref-9"
WHO = {
    "probation-london": (PROBATION_CRN, "X123456"),
    "mht-rv5": (NHS_NUMBER, "9434765919"),
    "gp-Y01234": (NHS_NUMBER, "9434765919"),
}


def event(source: str, resource: dict[str, Any]) -> dict[str, Any]:
    """A partner's event resolved to the person; its id follows its content, as at the edge."""
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/{sorted(resource.items())}"))
    system, value = WHO[source]
    return {
        "event_id": event_id,
        "event_type": "x.y.updated",
        "source": source,
        "subject": {"identifiers": [{"system": system, "value": value}], "person_id": PERSON},
        "occurred_at": "2026-12-01T08:00:00Z",
        "recorded_at": "2026-12-01T08:00:00Z",
        "correlation_id": event_id,
        "resource": resource,
    }


def referral(status: str = "active") -> dict[str, Any]:
    return event(
        "probation-london",
        {
            "resourceType": "ServiceRequest",
            "id": "ref-9",
            "status": status,
            "intent": "order",
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
            "authoredOn": "2026-11-30T09:00:00Z",
        },
    )


def task(source: str, status: str) -> dict[str, Any]:
    return event(
        source,
        {
            "resourceType": "Task",
            "id": f"{source}-{status}",
            "status": status,
            "intent": "order",
            "focus": {"reference": "ServiceRequest/ref-9"},
            "for": {"identifier": {"system": HUB_PERSON, "value": PERSON}},
        },
    )


def appointment(source: str, fhir_id: str, status: str, version: int, day: int) -> dict[str, Any]:
    """An appointment based on the referral, on a day of December to come (day 0: in the past)."""
    system, value = WHO[source]
    date = f"2026-12-{day:02d}" if day > 0 else "2026-11-20"
    return event(
        source,
        {
            "resourceType": "Appointment",
            "id": fhir_id,
            "meta": {"versionId": str(version)},
            "status": status,
            "start": f"{date}T14:00:00Z",
            "end": f"{date}T15:00:00Z",
            "participant": [{"actor": {"identifier": {"system": system, "value": value}}}],
            "basedOn": [{"reference": "ServiceRequest/ref-9"}],
        },
    )


BOOKED = appointment("mht-rv5", "m-1", "booked", 1, 3)
MESSAGES: list[PersonMessage] = [
    referral(),
    *(task("mht-rv5", s) for s in ("received", "accepted", "in-progress", "completed")),
    task("mht-rv5", "rejected"),
    task("mht-rv5", "cancelled"),
    task("probation-london", "cancelled"),
    *(referral(s) for s in ("revoked", "completed", "entered-in-error")),
    # The service books (for days to come, or a past day), moves and cancels; another books too.
    BOOKED,
    appointment("mht-rv5", "m-1", "booked", 2, 0),
    appointment("mht-rv5", "m-1", "cancelled", 3, 3),
    appointment("mht-rv5", "m-2", "booked", 1, 4),
    appointment("gp-Y01234", "g-1", "booked", 1, 3),
    CheckDeadlines(PERSON, datetime(2026, 12, 9, tzinfo=UTC)),
]


def run(
    messages: list[PersonMessage],
) -> list[tuple[Calendar, PersonMessage, Calendar, list[Decision]]]:
    """Each message's step: the record before, the message, the record after, the decisions."""
    record = Calendar(PERSON)
    steps = []
    for message in messages:
        after, decisions = decide(record, message, RULES)
        steps.append((record, message, after, decisions))
        record = after
    return steps


def flags(decisions: list[Decision]) -> list[Disclose]:
    return [
        d
        for d in decisions
        if isinstance(d, Disclose) and d.event_type == "referral.appointment.flagged"
    ]


sequences = st.lists(st.sampled_from(MESSAGES), max_size=14).map(lambda rest: [referral(), *rest])


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_the_hub_never_cancels_or_changes_a_partners_appointment(
    messages: list[PersonMessage],
) -> None:
    for before, message, after, decisions in run(messages):
        sent = {d.resource["resourceType"] for d in decisions if isinstance(d, Disclose)}
        assert sent <= {"ServiceRequest", "Task", "DetectedIssue"}, "no Appointment ever sent"
        is_appointment = isinstance(message, dict) and (
            message["resource"]["resourceType"] == "Appointment"
        )
        if not is_appointment:
            assert after.slots == before.slots, "only a partner's own message changes its booking"


@settings(max_examples=300, deadline=None)
@given(sequences)
@example([referral(), BOOKED, referral("revoked"), task("probation-london", "cancelled")])
def test_the_flag_goes_only_to_the_booking_service_once_per_ending(
    messages: list[PersonMessage],
) -> None:
    raised: list[Disclose] = []
    for before, message, after, decisions in run(messages):
        held, now = before.referrals.get(REFERRAL), after.referrals.get(REFERRAL)
        ended_by_referrer = (
            isinstance(message, dict)
            and message["source"] == "probation-london"
            and held is not None
            and held.status not in ENDED
            and now is not None
            and now.status == "cancelled"
        )
        booked = before.slots.get(held.first_appointment or "") if held else None
        still_to_come = (
            booked is not None
            and booked.status in STILL_BOOKED
            and booked.start is not None
            and booked.start > NOW
        )
        step_flags = flags(decisions)
        assert len(step_flags) == (1 if ended_by_referrer and still_to_come else 0)
        for flag in step_flags:
            assert booked is not None
            assert flag.recipient == booked.partner == "mht-rv5", "only the service that booked"
            assert {"reference": f"Appointment/{booked.appointment_id.split('/', 1)[1]}"} in (
                flag.resource["implicated"]
            )
        raised += step_flags
    assert len(raised) <= 1, "once per ending: an ended referral does not end again"
