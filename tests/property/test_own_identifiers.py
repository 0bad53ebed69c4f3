"""Each partner is told the person by its own words, and only the referral's service learns more.

For any order of appointments, encounters and a referral from any partners, each naming the
person by any of the identifiers it may hold, through the person record's one entry point
(`person.decide`):

- everything sent to partner P names the person only by identifiers P sent itself, or of a
  system P knows people by (its own local ids, the NHS number for a health service, the CRN for
  probation), and by the hub person id;
- an appointment is named by its partner's own id only in what is sent to that partner;
- the person's details and the referrer's contact go only to the service a referral is sent
  to, in the referral itself; an officer is sent nothing it did not send.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PROBATION_CRN, local_system
from services.domain.calendar import Calendar
from services.domain.decisions import Decision, Disclose, Rules
from services.domain.person import decide
from services.runtime import ROOT, partner_directory, service_directory

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
RULES = Rules(
    directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
    now=NOW,
    services=service_directory(ROOT / "deploy" / "services.yaml"),
)
PERSON = "p-0a1b2c3d"
NHS = (NHS_NUMBER, "9434765919")
CRN = (PROBATION_CRN, "X123456")
KINDS = {
    "probation-london": "probation",
    "gp-Y01234": "gp",
    "mht-rv5": "mht",
    "vol-recovery": "voluntary",
    "vol-housing": "voluntary",
}
SENDERS = ["probation-london", "gp-Y01234", "mht-rv5", "vol-recovery"]
# Words that appear only in the details a referral carries.
DETAILS = ("Zebedee", "Quixley", "1961-02-03", "Nowhere Lane", "SE11 5AB", "020 7946 0999")
REFERRAL_DETAILS = [
    {
        "resourceType": "Patient",
        "id": "who",
        "identifier": [{"system": CRN[0], "value": CRN[1]}],
        "name": [{"family": "Quixley", "given": ["Zebedee"]}],
        "birthDate": "1961-02-03",
        "address": [{"line": ["1 Nowhere Lane"], "postalCode": "SE11 5AB"}],
    },
    {
        "resourceType": "PractitionerRole",
        "id": "by",
        "telecom": [{"system": "phone", "value": "020 7946 0999"}],
    },
]


def words_of(partner: str) -> list[tuple[str, str]]:
    """Every identifier a partner could name the person by: its own, and the national ones."""
    return [(local_system(partner), f"L-{partner[:3]}"), NHS, CRN]


@st.composite
def appointment_events(draw: st.DrawFn, number: int) -> dict[str, Any]:
    source = draw(st.sampled_from(SENDERS))
    named = draw(st.lists(st.sampled_from(words_of(source)), min_size=1, max_size=3, unique=True))
    start = DAY + timedelta(minutes=15 * draw(st.integers(0, 8)))
    status = draw(st.sampled_from(["booked", "arrived", "fulfilled", "noshow", "cancelled"]))
    resource = {
        "resourceType": "Appointment",
        "id": f"appt-{number}",
        "meta": {"versionId": str(draw(st.integers(1, 3)))},
        "status": status,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=45)).isoformat(),
    }
    return envelope(source, resource, named, number)


def envelope(
    source: str, resource: dict[str, Any], named: list[tuple[str, str]], number: int
) -> dict[str, Any]:
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{number}/{source}/{resource}/{named}"))
    return {
        "event_id": event_id,
        "event_type": "x.y.updated",
        "source": source,
        "subject": {
            "identifiers": [{"system": system, "value": value} for system, value in named],
            "person_id": PERSON,
        },
        "occurred_at": NOW.isoformat(),
        "recorded_at": NOW.isoformat(),
        "correlation_id": event_id,
        "resource": resource,
    }


@st.composite
def referral_events(draw: st.DrawFn) -> dict[str, Any]:
    """A probation referral to a mental health trust or a voluntary service, with details."""
    category = draw(st.sampled_from(["mental-health-assessment", "housing-support"]))
    resource = {
        "resourceType": "ServiceRequest",
        "id": "ref-1",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "contained": REFERRAL_DETAILS,
        "subject": {"reference": "#who"},
        "requester": {"reference": "#by"},
        "category": [{"coding": [{"system": "urn:concord:referral-category", "code": category}]}],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "authoredOn": "2026-11-30T09:00:00Z",
    }
    named = draw(st.lists(st.sampled_from([CRN, NHS]), min_size=1, unique=True).map(sorted))
    return envelope("probation-london", resource, [CRN, *[n for n in named if n != CRN]], 99)


@st.composite
def scenarios(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(2, 7))
    events = [draw(appointment_events(number)) for number in range(count)]
    if draw(st.booleans()):
        events.insert(draw(st.integers(0, len(events))), draw(referral_events()))
    return events


def played(events: list[dict[str, Any]]) -> list[tuple[Decision, dict[str, Any]]]:
    """Each disclosure decided, with the event that caused it."""
    record, sent = Calendar(PERSON), []
    for event in events:
        record, decisions = decide(record, event, RULES)
        sent += [(d, event) for d in decisions if isinstance(d, Disclose)]
    return sent


def tokens_in(node: Any) -> set[tuple[str, str]]:
    """Every (system, value) Identifier anywhere in a resource."""
    if isinstance(node, dict):
        found = {(node["system"], node["value"])} if {"system", "value"} <= node.keys() else set()
        return found.union(*(tokens_in(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(tokens_in(item) for item in node))
    return set()


def entitled(partner: str, sent: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """What `partner` may be told the person by, given what every partner has sent."""
    kind = KINDS[partner]
    systems = {local_system(partner)}
    systems |= {NHS_NUMBER} if kind in ("gp", "mht") else set()
    systems |= {PROBATION_CRN} if kind == "probation" else set()
    return {t for t in sent if t[0] in systems} | {(HUB_PERSON, PERSON)}


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_a_partner_is_told_the_person_only_by_identifiers_it_holds(
    events: list[dict[str, Any]],
) -> None:
    by_partner: dict[str, set[tuple[str, str]]] = {}
    sent_so_far: set[tuple[str, str]] = set()
    record, told = Calendar(PERSON), []
    for event in events:
        named = {(i["system"], i["value"]) for i in event["subject"]["identifiers"]}
        by_partner.setdefault(event["source"], set()).update(named)
        sent_so_far |= named
        record, decisions = decide(record, event, RULES)
        for d in decisions:
            if isinstance(d, Disclose):
                allowed = by_partner.get(d.recipient, set()) | entitled(d.recipient, sent_so_far)
                told.append((d, allowed))
    for disclosure, allowed in told:
        people = {t for t in tokens_in(disclosure.resource) if t[0] in PERSON_SYSTEMS}
        assert people <= allowed, (disclosure.recipient, people - allowed)
        assert all(
            not t[0].startswith("urn:concord:id:local:")
            or t[0] == local_system(disclosure.recipient)
            for t in people
        ), "another partner's local id"


PERSON_SYSTEMS = {NHS_NUMBER, PROBATION_CRN, HUB_PERSON} | {local_system(p) for p in KINDS}


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_an_appointment_is_named_by_its_own_id_only_to_its_own_partner(
    events: list[dict[str, Any]],
) -> None:
    for disclosure, _ in played(events):
        for contained in disclosure.resource.get("contained", ()):
            if contained["resourceType"] != "Appointment":
                continue
            for identifier in contained.get("identifier", ()):
                assert identifier["system"] == (
                    f"urn:concord:record:{disclosure.recipient}:Appointment"
                )
                assert identifier["value"].startswith("appt-")


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_a_referrals_details_go_only_to_its_service_in_the_referral(
    events: list[dict[str, Any]],
) -> None:
    for disclosure, _ in played(events):
        text = json.dumps(disclosure.resource)
        carries = [word for word in DETAILS if word in text]
        if disclosure.event_type == "referral.request.delivered":
            assert KINDS[disclosure.recipient] != "probation"
            assert carries == list(DETAILS)
            assert disclosure.basis == "direct-care"
        else:
            assert carries == [], (disclosure.event_type, disclosure.recipient)
        if KINDS[disclosure.recipient] == "probation":
            assert (NHS_NUMBER, NHS[1]) not in tokens_in(disclosure.resource) or any(
                (i["system"], i["value"]) == NHS
                for e in events
                if e["source"] == disclosure.recipient
                for i in e["subject"]["identifiers"]
            ), "an officer is told an NHS number only if it sent it"
