"""Unit tests for alert messages: who gets them, what they say, and what they never say."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.fhir import problems_in
from services.domain.alerts import AlertMessage, alert_messages
from services.domain.appointments import slot_from_appointment
from services.domain.calendar import AgencyKind, Calendar, Slot, Version
from services.domain.consent import ConsentDecision
from services.domain.partners import PartnerDirectory
from services.domain.reconciliation import Alert, reconcile
from services.domain.relationships import Relationship

DEMO = Path(__file__).parents[2] / "deploy" / "demo"
DIRECTORY = PartnerDirectory.from_dict(
    {
        "partners": [
            {
                "id": "probation-london",
                "kind": "probation",
                "name": "London Probation Delivery Unit",
            },
            {"id": "gp-Y01234", "kind": "gp", "name": "High Street Surgery"},
            {"id": "vol-recovery", "kind": "voluntary", "name": "Recovery Hub addiction service"},
        ]
    }
)
DAY = datetime(2026, 12, 3, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# Explained absences go only to related partners: the service the person was referred to.
REFERRED = {"vol-recovery": Relationship("voluntary", "referral", "probation-london/ref-2001")}
CASE_RECORD = {"probation-london": Relationship("probation", "case-record", "e-1")}
PARTNERS: dict[AgencyKind, str] = {
    "probation": "probation-london",
    "gp": "gp-Y01234",
    "mht": "mht-rv5",
    "voluntary": "vol-recovery",
}


def slot(
    kind: AgencyKind,
    status: str = "booked",
    *,
    at: str = "10:00",
    minutes: int = 30,
    day: datetime = DAY,
    version: int = 1,
) -> Slot:
    partner = PARTNERS[kind]
    hours, mins = (int(part) for part in at.split(":"))
    start = day + timedelta(hours=hours, minutes=mins)
    return Slot(
        appointment_id=f"{partner}/{kind}-1",
        partner=partner,
        kind=kind,
        status=status,
        start=start,
        end=start + timedelta(minutes=minutes),
        location=None,
        version=Version(version, NOW, f"event-{kind}-{status}-{version}"),
        service_type="Psychiatry: psychosis follow-up",
        based_on="ServiceRequest/ref-2001",
    )


def alerts_for(*changes: Slot, related: dict[str, Relationship] = REFERRED) -> list[Alert]:
    calendar, alerts = Calendar("p-0a1b2c3d", relationships=related), []
    for change in changes:
        calendar, new = reconcile(calendar, change)
        alerts += new
    return alerts


GP = slot("gp", at="10:00", minutes=30)
KEYWORK = slot("voluntary", at="10:15", minutes=45)
CLASH_RAISED = alerts_for(GP, KEYWORK)[-1]
CLASH_RESOLVED = alerts_for(
    GP, KEYWORK, replace(KEYWORK, status="cancelled", version=Version(2, NOW, "e-cancel"))
)[-1]
ABSENCE_RAISED = alerts_for(replace(GP, status="fulfilled"), replace(KEYWORK, status="noshow"))[-1]
ABSENCE_WITHDRAWN = alerts_for(
    replace(GP, status="fulfilled"),
    replace(KEYWORK, status="noshow"),
    replace(GP, status="entered-in-error", version=Version(2, NOW, "e-error")),
)[-1]
EVERY_ALERT = [CLASH_RAISED, CLASH_RESOLVED, ABSENCE_RAISED, ABSENCE_WITHDRAWN]


def strings_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in [key, *strings_in(value)]]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return [node] if isinstance(node, str) else []


def only(alert: Alert) -> AlertMessage:
    (message,) = alert_messages(alert, DIRECTORY, NOW)
    return message


def test_the_scenarios_produce_the_alerts_under_test() -> None:
    assert [(a.kind, a.action) for a in EVERY_ALERT] == [
        ("clash", "raised"),
        ("clash", "resolved"),
        ("explained-absence", "raised"),
        ("explained-absence", "resolved"),
    ]


def test_clash_alert_goes_to_both_bookers() -> None:
    messages = alert_messages(CLASH_RAISED, DIRECTORY, NOW)
    assert [m.recipient for m in messages] == ["gp-Y01234", "vol-recovery"]
    for message in messages:
        assert message.resource["extension"] == [
            {"url": "urn:concord:extension:recipient", "valueString": message.recipient}
        ]


def test_explained_absence_goes_only_to_the_booker_of_the_missed_appointment() -> None:
    assert only(ABSENCE_RAISED).recipient == "vol-recovery"


@pytest.mark.parametrize(
    ("alert", "event_type", "status", "severity", "code"),
    [
        (CLASH_RAISED, "alert.clash.raised", "final", "moderate", "appointment-clash"),
        (CLASH_RESOLVED, "alert.clash.resolved", "cancelled", "moderate", "appointment-clash"),
        (ABSENCE_RAISED, "alert.absence.explained", "final", "high", "explained-absence"),
        (ABSENCE_WITHDRAWN, "alert.absence.withdrawn", "cancelled", "high", "explained-absence"),
    ],
)
def test_event_type_status_severity_and_code_follow_the_alert(
    alert: Alert, event_type: str, status: str, severity: str, code: str
) -> None:
    for message in alert_messages(alert, DIRECTORY, NOW):
        issue = message.resource
        assert message.event_type == event_type
        assert (issue["status"], issue["severity"]) == (status, severity)
        assert issue["code"] == {"coding": [{"system": "urn:concord:alert", "code": code}]}


@pytest.mark.parametrize("alert", EVERY_ALERT, ids=lambda a: f"{a.kind}-{a.action}")
def test_every_alert_is_a_valid_detected_issue(alert: Alert) -> None:
    for message in alert_messages(alert, DIRECTORY, NOW):
        assert problems_in(message.resource) == []


def test_officer_alert_has_time_generic_org_type_and_attendance_but_no_specialty() -> None:
    issue = only(ABSENCE_RAISED).resource
    evidence = issue["contained"][1]
    assert evidence == {
        "resourceType": "Appointment",
        "id": "a2",
        "status": "fulfilled",
        "start": "2026-12-03T10:00:00Z",
        "end": "2026-12-03T10:30:00Z",
        "serviceCategory": [
            {
                "coding": [
                    {
                        "system": "urn:concord:organisation-type",
                        "code": "health-service",
                        "display": "Health service",
                    }
                ]
            }
        ],
        "participant": [{"actor": {"display": "Health service"}, "status": "accepted"}],
    }
    text = json.dumps(evidence)
    assert "High Street Surgery" not in text, "another agency is shown by a generic type only"
    assert "gp-Y01234" not in text, "a partner id names the organisation"
    assert "GP practice" not in text
    assert "Psychiatry" not in text
    assert "ServiceRequest" not in text


def test_issue_implicates_the_two_contained_appointments_in_alert_order() -> None:
    issue = alert_messages(CLASH_RAISED, DIRECTORY, NOW)[0].resource
    assert [a["id"] for a in issue["contained"]] == ["a1", "a2", "patient"]
    appointments = issue["contained"][:2]
    assert [a["participant"][0]["actor"].get("identifier") for a in appointments] == [
        {"system": "urn:concord:partner", "value": "gp-Y01234"},  # the GP's own appointment
        None,  # the other agency's partner id is not shown
    ]
    assert issue["implicated"] == [{"reference": "#a1"}, {"reference": "#a2"}]


def test_with_no_identifier_of_its_own_known_the_person_is_named_by_the_hub_person_id() -> None:
    issue = only(ABSENCE_RAISED).resource
    hub = {"system": "urn:concord:id:person", "value": "p-0a1b2c3d"}
    assert issue["patient"] == {"reference": "#patient", "identifier": hub}
    assert issue["contained"][-1] == {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [hub],
    }
    assert issue["identifiedDateTime"] == "2026-12-01T09:00:00Z"


NHS = "https://fhir.nhs.uk/Id/nhs-number|9434765919"
CRN = "urn:concord:id:probation-crn|X123456"
GP_LOCAL = "urn:concord:id:local:gp-Y01234|G-77"
VOL_LOCAL = "urn:concord:id:local:vol-recovery|client-9"
KNOWN_AS = {
    "gp-Y01234": frozenset({GP_LOCAL}),
    "vol-recovery": frozenset({VOL_LOCAL}),
    "probation-london": frozenset({CRN, NHS}),
}


def identifiers(message: AlertMessage) -> list[str]:
    (patient,) = [c for c in message.resource["contained"] if c["resourceType"] == "Patient"]
    return [f"{i['system']}|{i['value']}" for i in patient["identifier"]]


def test_each_recipient_is_told_the_person_by_the_identifiers_it_holds() -> None:
    """The GP: its own local id and the NHS number (a health service's); the voluntary service:
    its own client id only, not the NHS number nor the CRN another partner sent."""
    to_gp, to_service = alert_messages(CLASH_RAISED, DIRECTORY, NOW, known_as=KNOWN_AS)
    hub = "urn:concord:id:person|p-0a1b2c3d"
    assert identifiers(to_gp) == [GP_LOCAL, NHS, hub]
    assert to_gp.resource["patient"] == {
        "reference": "#patient",
        "identifier": {"system": "urn:concord:id:local:gp-Y01234", "value": "G-77"},
    }
    assert identifiers(to_service) == [VOL_LOCAL, hub]
    assert problems_in(to_gp.resource) == []


def test_an_officer_is_told_the_crn_and_what_it_sent_nothing_else() -> None:
    alert = replace(ABSENCE_RAISED, recipients=("probation-london",))
    known = {**KNOWN_AS, "probation-london": frozenset({CRN})}
    (to_officer,) = alert_messages(alert, DIRECTORY, NOW, known_as=known)
    assert identifiers(to_officer) == [CRN, "urn:concord:id:person|p-0a1b2c3d"]


def test_a_recipients_own_appointment_carries_the_id_it_sent_and_the_other_none() -> None:
    to_gp, to_service = alert_messages(CLASH_RAISED, DIRECTORY, NOW)
    gp_own, service_other = to_gp.resource["contained"][:2]
    assert gp_own["identifier"] == [
        {"system": "urn:concord:record:gp-Y01234:Appointment", "value": "gp-1"}
    ]
    assert "identifier" not in service_other
    gp_other, service_own = to_service.resource["contained"][:2]
    assert "identifier" not in gp_other
    assert service_own["identifier"] == [
        {"system": "urn:concord:record:vol-recovery:Appointment", "value": "voluntary-1"}
    ]


def test_an_encounter_is_named_as_the_encounter_its_partner_sent() -> None:
    stay = replace(GP, appointment_id="gp-Y01234/Encounter/enc-5", status="fulfilled")
    alert = alerts_for(stay, replace(KEYWORK, status="noshow"))[-1]
    to_gp = [m for m in alert_messages(alert, DIRECTORY, NOW) if m.recipient == "vol-recovery"]
    assert to_gp, "the voluntary service booked the missed appointment"
    evidence = to_gp[0].resource["contained"][1]
    assert "identifier" not in evidence, "another agency's encounter id is never shown"
    own = alert_messages(replace(alert, recipients=("gp-Y01234",)), DIRECTORY, NOW)
    assert own[0].resource["contained"][1]["identifier"] == [
        {"system": "urn:concord:record:gp-Y01234:Encounter", "value": "enc-5"}
    ]


def test_alert_id_is_stable_for_the_same_alert() -> None:
    """Reprocessing the same changes yields the same id, used for every recipient and as the issue id."""
    again = alerts_for(GP, KEYWORK)[-1]
    first, second = alert_messages(CLASH_RAISED, DIRECTORY, NOW)
    assert alert_messages(again, DIRECTORY, NOW + timedelta(hours=1))[0].alert_id == first.alert_id
    assert first.alert_id == second.alert_id == first.resource["id"]


def test_alert_id_differs_for_a_resolution_or_a_later_version() -> None:
    moved = replace(KEYWORK, version=Version(2, NOW, "e-moved"))
    later = alerts_for(GP, replace(KEYWORK, status="cancelled"), moved)[-1]
    ids = {only_id(a) for a in (CLASH_RAISED, CLASH_RESOLVED, later)}
    assert len(ids) == 3


def test_alert_id_differs_when_earlier_content_returns_as_a_later_version() -> None:
    """Moved back: the old content (so its old event id) raises the clash again, under a new id."""
    # No meta.versionId: arrival orders the versions; the content decides the event id.
    first = replace(KEYWORK, version=Version(0, NOW, "e-at-10-15"))
    moved = replace(
        KEYWORK,
        start=KEYWORK.start + timedelta(hours=4),
        end=KEYWORK.end + timedelta(hours=4),
        version=Version(0, NOW + timedelta(hours=1), "e-at-14-15"),
    )
    back = replace(first, version=Version(0, NOW + timedelta(hours=2), "e-at-10-15"))
    raised, resolved, raised_again = alerts_for(GP, first, moved, back)
    assert [a.action for a in (raised, resolved, raised_again)] == ["raised", "resolved", "raised"]
    assert only_id(raised_again) != only_id(raised)


def only_id(alert: Alert) -> str:
    return alert_messages(alert, DIRECTORY, NOW)[0].alert_id


def test_clash_detail_names_times_and_organisation_types_but_nothing_clinical() -> None:
    assert CLASH_RAISED.slots[0].kind == "gp"
    to_gp, to_service = alert_messages(CLASH_RAISED, DIRECTORY, NOW)
    assert to_gp.resource["detail"] == (
        "Appointment clash: your appointment 10:00–10:30 on 2026-12-03 overlaps a "
        "support service appointment 10:15–11:00 on 2026-12-03."
    )
    assert to_service.resource["detail"] == (
        "Appointment clash: your appointment 10:15–11:00 on 2026-12-03 overlaps a "
        "health service appointment 10:00–10:30 on 2026-12-03."
    )


def test_recipient_sees_its_own_organisation_name_and_only_the_generic_type_of_the_other() -> None:
    to_gp, to_service = alert_messages(CLASH_RAISED, DIRECTORY, NOW)
    names = [a["participant"][0]["actor"]["display"] for a in to_gp.resource["contained"][:2]]
    assert names == ["High Street Surgery", "Support service"]
    names = [a["participant"][0]["actor"]["display"] for a in to_service.resource["contained"][:2]]
    assert names == ["Health service", "Recovery Hub addiction service"]


def test_a_mental_health_appointment_is_a_health_service_to_probation_without_consent() -> None:
    """The kind of care alone discloses mental-health service use."""
    alert = alerts_for(slot("mht", "booked", at="10:00"), slot("probation", at="10:15"))[-1]
    to_officer = next(
        m for m in alert_messages(alert, DIRECTORY, NOW) if m.role == "probation-officer"
    )
    text = json.dumps(to_officer.resource)
    assert "Health service" in text
    for revealing in ("mht", "Mental health", "mental health", "mht-rv5"):
        assert revealing not in text


def test_with_detail_consent_the_officer_sees_the_organisation_type_and_id() -> None:
    alert = alerts_for(slot("mht", "booked", at="10:00"), slot("probation", at="10:15"))[-1]
    to_officer = next(
        m
        for m in alert_messages(alert, DIRECTORY, NOW, (consent("appointment-detail"),))
        if m.role == "probation-officer"
    )
    mht = to_officer.resource["contained"][0]
    assert mht["serviceCategory"][0]["coding"][0]["code"] == "mht"
    assert mht["participant"][0]["actor"]["identifier"]["value"] == "mht-rv5"
    assert to_officer.basis == "gp-Y01234/c-1"
    assert "mental health trust appointment" in to_officer.resource["detail"]


@pytest.mark.parametrize("category", ["appointment-times", "appointment-detail"])
def test_a_deny_to_probation_stops_every_alert_to_the_officer(category: str) -> None:
    alert = alerts_for(
        slot("mht", "fulfilled", at="10:00"), slot("probation", "noshow"), related=CASE_RECORD
    )[-1]
    messages = alert_messages(alert, DIRECTORY, NOW, (consent(category, permit=False),))
    assert alert.recipients == ("probation-london",)
    assert messages == []


def test_a_deny_to_probation_leaves_the_health_bookers_alert() -> None:
    alert = alerts_for(slot("mht", "booked", at="10:00"), slot("probation", at="10:15"))[-1]
    messages = alert_messages(alert, DIRECTORY, NOW, (consent("appointment-times", permit=False),))
    assert [m.recipient for m in messages] == ["mht-rv5"]


def consent(category: str, *, permit: bool = True) -> ConsentDecision:
    """The person's decision about what probation officers see, recorded by their GP."""
    return ConsentDecision(
        consent_id="gp-Y01234/c-1",
        source="gp-Y01234",
        permit=permit,
        denies=not permit,
        recipients=frozenset(),
        roles=frozenset({"probation-officer"}),
        categories=frozenset({category}),  # type: ignore[arg-type]
        start=None,
        end=None,
        recorded=NOW - timedelta(days=1),
    )


def test_clash_within_travel_time_says_so() -> None:
    near = alerts_for(GP, slot("voluntary", at="10:45", minutes=30))[-1]
    assert only_id(near)
    assert alert_messages(near, DIRECTORY, NOW)[0].resource["detail"] == (
        "Appointment clash: your appointment 10:00–10:30 on 2026-12-03 leaves too little "
        "travel time to or from a support service appointment 10:45–11:15 on 2026-12-03."
    )


def test_explained_absence_detail() -> None:
    assert only(ABSENCE_RAISED).resource["detail"] == (
        "Explained absence: the missed appointment 10:15–11:00 on 2026-12-03 overlaps a "
        "health service appointment that was attended (fulfilled)."
    )


def test_resolutions_say_the_condition_no_longer_holds() -> None:
    assert "no longer clash" in alert_messages(CLASH_RESOLVED, DIRECTORY, NOW)[0].resource["detail"]
    assert only(ABSENCE_WITHDRAWN).resource["detail"].startswith("Explained absence withdrawn:")


def test_detail_times_are_uk_time_in_summer() -> None:
    summer = datetime(2026, 7, 3, tzinfo=UTC)
    alert = alerts_for(
        slot("gp", day=summer), slot("voluntary", at="10:15", minutes=45, day=summer)
    )[-1]
    detail = alert_messages(alert, DIRECTORY, NOW)[0].resource["detail"]
    assert "11:00–11:30 on 2026-07-03" in detail
    assert alert_messages(alert, DIRECTORY, NOW)[0].resource["contained"][0]["start"] == (
        "2026-07-03T10:00:00Z"
    )


def test_partner_missing_from_the_directory_is_shown_by_its_id() -> None:
    alert = alerts_for(slot("mht", at="10:00"), slot("probation", at="10:15"))[-1]
    messages = alert_messages(alert, DIRECTORY, NOW)
    mht = messages[0].resource["contained"][0]
    assert messages[0].recipient == "mht-rv5"
    assert mht["participant"][0]["actor"]["display"] == "mht-rv5"
    assert mht["serviceCategory"][0]["coding"][0]["display"] == "Mental health trust"
    assert all(problems_in(m.resource) == [] for m in messages)


def test_untimed_cancelled_appointment_in_a_resolution_has_no_times() -> None:
    untimed = replace(
        KEYWORK, status="cancelled", start=None, end=None, version=Version(2, NOW, "e-x")
    )
    resolved = alerts_for(GP, KEYWORK, untimed)[-1]
    for message in alert_messages(resolved, DIRECTORY, NOW):
        cancelled = message.resource["contained"][1]
        assert "start" not in cancelled
        assert "end" not in cancelled
        assert "at an unknown time" in message.resource["detail"]
        assert problems_in(message.resource) == []


def test_demo_feed_raises_clash_then_explained_absence_without_clinical_text() -> None:
    """The demo's partner files, end to end through mapping, reconciliation and alerts."""
    feed = json.loads((DEMO / "feed.json").read_text(encoding="utf-8"))
    calendar, messages = Calendar("p-demo", relationships=REFERRED), []
    clinical: set[str] = set()
    for number, item in enumerate(feed):
        resource = json.loads((DEMO / item["file"]).read_text(encoding="utf-8"))
        if resource["resourceType"] != "Appointment":
            continue
        change = slot_from_appointment(
            resource,
            source=item["as"],
            kind=DIRECTORY.kind_of(item["as"]),
            event_id=f"event-{number}",
            occurred_at=NOW,
        )
        clinical |= {c for c in (change.service_type,) if c}
        calendar, alerts = reconcile(calendar, change)
        messages += [m for a in alerts for m in alert_messages(a, DIRECTORY, NOW)]
    assert [(m.event_type, m.recipient) for m in messages] == [
        ("alert.clash.raised", "gp-Y01234"),
        ("alert.clash.raised", "vol-recovery"),
        ("alert.clash.resolved", "gp-Y01234"),
        ("alert.clash.resolved", "vol-recovery"),
        ("alert.absence.explained", "vol-recovery"),
        ("alert.clash.raised", "mht-rv5"),
        ("alert.clash.raised", "probation-london"),
        ("alert.clash.resolved", "mht-rv5"),
        ("alert.clash.resolved", "probation-london"),
    ]
    assert clinical
    for message in messages:
        assert problems_in(message.resource) == []
        assert not any(c in s for c in clinical for s in strings_in(message.resource))
