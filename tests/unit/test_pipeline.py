"""The stream steps, decided and rendered without Kafka: routing, linking, merging, reconciling."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas import topics
from schemas.codec import decode_link_message, decode_person_message, peek
from schemas.envelope import wrap
from schemas.fhir import event_type_for, subject_of
from schemas.identifiers import HUB_PERSON, NHS_NUMBER, PROBATION_CRN, PersonIdentifier
from schemas.internal import IdentityFlagsCommand, MergeCommand, ResolveConflictCommand
from schemas.keys import person_partition, referral_home, referral_token
from services.domain import linking
from services.domain.decisions import Rules
from services.domain.identity import PersonIndex, RefusedLink, Resolution, person_of
from services.runtime import ROOT, partner_directory
from services.stream.outbox import Out, flags_entry, render
from services.stream.pipeline import (
    UnknownReferralError,
    by_referral,
    identifiers_of,
    person_event,
)
from services.stream.state import decode_calendar
from tests.audit import basis_of
from tests.keys import KEY, person_id_for
from tests.streams import index_event

CTX = Rules(
    directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
    now=datetime(2026, 12, 1, tzinfo=UTC),
    buffer=timedelta(minutes=30),
)
CRN = PersonIdentifier(PROBATION_CRN, "X123456")
NHS = PersonIdentifier(NHS_NUMBER, "9434765919")


def envelope(partner: str, resource: dict) -> tuple[dict, bytes]:
    wrapped = wrap(
        resource,
        event_type=event_type_for(resource["resourceType"]),
        source=partner,
        subject=subject_of(resource),
    )
    raw = wrapped.model_dump_json().encode()
    return peek(raw), raw


def appointment(
    appointment_id: str,
    status: str,
    start: str,
    end: str,
    who: PersonIdentifier,
    *,
    version: int = 1,
) -> dict:
    return {
        "resourceType": "Appointment",
        "id": appointment_id,
        "meta": {"versionId": str(version)},
        "status": status,
        "start": f"2026-12-03T{start}:00Z",
        "end": f"2026-12-03T{end}:00Z",
        "participant": [
            {
                "actor": {"identifier": {"system": who.system, "value": who.value}},
                "status": "accepted",
            }
        ],
    }


def link_event(
    message: dict, index: PersonIndex, rules: Rules = CTX
) -> tuple[PersonIndex, Any, list[Out]]:
    """The linker's decision on one event, rendered."""
    updated, resolution, decisions = linking.link_event(
        index, message, identifiers_of(message), rules
    )
    return updated, resolution, render(decisions, rules.now)


LINK = {
    "resourceType": "Patient",
    "identifier": [
        {"system": CRN.system, "value": CRN.value},
        {"system": NHS.system, "value": NHS.value},
    ],
}


def test_single_identifier_event_goes_to_its_provisional_person() -> None:
    message, raw = envelope("gp-Y01234", appointment("a", "booked", "10:00", "10:30", NHS))
    [out] = index_event(message, raw, None)
    assert out.topic is topics.PERSON_EVENTS
    assert out.key == person_id_for(NHS).encode()
    assert peek(out.value)["subject"]["person_id"] == person_id_for(NHS)


def test_linked_identifier_goes_to_the_person_it_was_assigned() -> None:
    message, raw = envelope("gp-Y01234", appointment("a", "booked", "10:00", "10:30", NHS))
    [out] = index_event(message, raw, "p-survivor")
    assert out.key == b"p-survivor"


def test_event_naming_several_identifiers_goes_to_the_linker() -> None:
    message, raw = envelope("probation-london", LINK)
    [out] = index_event(message, raw, None)
    assert out.topic is topics.LINKS


def test_first_link_merges_both_provisional_people_into_one() -> None:
    message, _ = envelope("probation-london", LINK)
    _, resolution, outs = link_event(message, PersonIndex(KEY), CTX)
    survivor = min(person_id_for(CRN), person_id_for(NHS))
    absorbed = max(person_id_for(CRN), person_id_for(NHS))
    assert resolution.person_id == survivor
    assignments = {o.key for o in outs if o.topic is topics.ASSIGNMENTS}
    assert assignments == {CRN.token().encode(), NHS.token().encode()}
    merges = [
        peek(o.value) for o in outs if o.topic is topics.PERSON_EVENTS and b'"command"' in o.value
    ]
    assert merges == [{"command": "merge", "absorbed": absorbed, "survivor": survivor}]


def test_assignments_go_where_their_identifiers_events_arrive() -> None:
    message, _ = envelope("probation-london", LINK)
    _, _, outs = link_event(message, PersonIndex(KEY), CTX)
    placed = {o.key: o.partition for o in outs if o.topic is topics.ASSIGNMENTS}
    assert placed == {t.token().encode(): person_partition(person_id_for(t)) for t in (CRN, NHS)}


def test_person_of_one_identifier_is_its_assignment_or_its_own_provisional_person() -> None:
    assert person_of([NHS], None, KEY) == person_id_for(NHS)
    assert person_of([NHS], "p-survivor", KEY) == "p-survivor"
    assert person_of([PersonIdentifier(HUB_PERSON, "p-named")], None, KEY) == "p-named"
    assert person_of([CRN, NHS], None, KEY) is None
    assert person_of([], None, KEY) is None


def test_merge_then_transfer_moves_a_calendar_and_raises_the_clash_found_across_people() -> None:
    gp_msg, _ = envelope("gp-Y01234", appointment("g", "booked", "10:00", "10:30", NHS))
    vol_msg, _ = envelope("vol-recovery", appointment("v", "booked", "10:15", "11:00", CRN))
    gp_person, vol_person = person_id_for(NHS), person_id_for(CRN)
    gp_msg["subject"]["person_id"], vol_msg["subject"]["person_id"] = gp_person, vol_person
    gp_cal, no_alerts, *_ = person_event(None, gp_msg, CTX)
    vol_cal, _, *_ = person_event(None, vol_msg, CTX)
    assert no_alerts == []

    survivor, absorbed = sorted([gp_person, vol_person])
    stored = {gp_person: gp_cal, vol_person: vol_cal}
    tombstone, [transfer], *_ = person_event(
        stored[absorbed], MergeCommand(absorbed=absorbed, survivor=survivor), CTX
    )
    assert decode_calendar(tombstone).merged_into == survivor
    assert transfer.key == survivor.encode()
    merged, alerts, *_ = person_event(stored[survivor], decode_person_message(transfer.value), CTX)
    calendar = decode_calendar(merged)
    assert set(calendar.slots) == {"gp-Y01234/g", "vol-recovery/v"}
    assert sorted(a.key for a in alerts if a.topic is topics.ALERTS) == [
        b"gp-Y01234",
        b"vol-recovery",
    ]
    assert [a.key for a in alerts if a.topic is topics.AUDIT] == [survivor.encode()] * 2, (
        "one audit each"
    )


def test_event_for_a_merged_person_is_forwarded_to_the_survivor() -> None:
    from services.domain.calendar import Calendar
    from services.stream.state import encode_calendar

    message, _ = envelope("gp-Y01234", appointment("g", "booked", "10:00", "10:30", NHS))
    message["subject"]["person_id"] = "p-old"
    stored, [out], *_ = person_event(
        encode_calendar(Calendar("p-old", merged_into="p-new")), message, CTX
    )
    assert stored is None
    assert out.key == b"p-new"
    assert peek(out.value)["subject"]["person_id"] == "p-new"


def consent_for(
    partner: str, *, status: str = "active", recorded: str = "2026-11-20T09:00:00Z"
) -> dict:
    """The person's consent to `partner` seeing appointment times (recorded by probation)."""
    return {
        "resourceType": "Consent",
        "id": f"c-{partner}",
        "status": status,
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": CRN.system, "value": CRN.value}},
        "dateTime": recorded,
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {"coding": [{"code": "IRCP"}]},
                    "reference": {
                        "identifier": {"system": "urn:concord:partner", "value": partner}
                    },
                }
            ],
            "code": [
                {
                    "coding": [
                        {"system": "urn:concord:disclosure-category", "code": "appointment-times"}
                    ]
                }
            ],
        },
    }


def test_explained_absence_goes_to_the_booker_and_the_persons_probation_officer() -> None:
    person = person_id_for(CRN)
    stored = None
    for partner, resource in [
        ("probation-london", LINK),
        ("probation-london", consent_for("vol-recovery")),
        ("gp-Y01234", appointment("g", "fulfilled", "10:00", "10:30", CRN)),
        ("vol-recovery", appointment("v", "noshow", "10:15", "11:00", CRN)),
    ]:
        message, _ = envelope(partner, resource)
        message["subject"]["person_id"] = person
        stored, outs, *_ = person_event(stored, message, CTX)
    explained = [o for o in outs if peek(o.value)["event_type"] == "alert.absence.explained"]
    assert sorted(o.key for o in explained) == [b"probation-london", b"vol-recovery"]
    assert len({peek(o.value)["event_id"] for o in explained}) == 2, "one event per recipient"


def test_duplicate_event_changes_nothing_and_says_nothing() -> None:
    message, _ = envelope("gp-Y01234", appointment("g", "booked", "10:00", "10:30", NHS))
    message["subject"]["person_id"] = "p-1"
    stored, _, *_ = person_event(None, message, CTX)
    assert person_event(stored, message, CTX)[:2] == (None, [])


def test_invalid_nhs_number_that_bypassed_the_edge_is_refused_by_the_person_index() -> None:
    import pytest

    from schemas.identifiers import IdentifierError

    message, raw = envelope("gp-Y01234", appointment("a", "booked", "10:00", "10:30", NHS))
    message["subject"]["identifiers"][0]["value"] = "9434765918"
    with pytest.raises(IdentifierError, match="check digit"):
        index_event(message, raw, None)


def test_a_placeholder_that_bypassed_the_edge_never_reaches_the_person_index() -> None:
    """A producer skipping the edge: the link goes by its other identifiers, or not at all."""
    import pytest

    from schemas.identifiers import IdentifierError

    message, raw = envelope("probation-london", LINK)
    message["subject"]["identifiers"][1]["value"] = "9999999999"
    _, resolution, outs = link_event(message, PersonIndex(KEY), CTX)
    assert resolution.person_id == person_id_for(CRN)
    assert {o.key for o in outs if o.topic is topics.ASSIGNMENTS} == {CRN.token().encode()}
    message["subject"]["identifiers"] = message["subject"]["identifiers"][1:]
    with pytest.raises(IdentifierError, match="placeholder"):
        index_event(message, raw, None)


def referral_message(person: str, **overrides: object) -> dict:
    resource = {
        "resourceType": "ServiceRequest",
        "id": "ref-9",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "category": [
            {
                "coding": [
                    {"system": "urn:concord:referral-category", "code": "mental-health-assessment"}
                ]
            }
        ],
        "locationCode": [{"coding": [{"system": "urn:concord:area", "code": "E09000022"}]}],
        "subject": {"identifier": {"system": CRN.system, "value": CRN.value}},
        "authoredOn": "2026-11-30T09:00:00Z",
    } | overrides
    message, _ = envelope("probation-london", resource)
    message["subject"]["person_id"] = person
    return message


def referral_ctx() -> Rules:
    import yaml

    from services.domain.referrals import ServiceDirectory

    services = ServiceDirectory.from_dict(
        yaml.safe_load((ROOT / "deploy" / "services.yaml").read_text())
    )
    return replace(CTX, services=services)


def test_a_merge_moves_the_escalation_deadline_of_a_pending_referral_to_the_survivor() -> None:
    """The escalation timer reads the deadlines table: a pending referral's deadline must follow
    it to the survivor, and leave the absorbed person."""
    absorbed, survivor = "p-b-absorbed", "p-a-survivor"
    stored, _, deadline, _ = person_event(None, referral_message(absorbed), referral_ctx())
    assert deadline is not None

    tombstone = person_event(stored, MergeCommand(absorbed=absorbed, survivor=survivor), CTX)
    assert tombstone.has_referrals, "the absorbed person's entry is written: cleared"
    assert tombstone.next_deadline is None
    [transfer] = tombstone.outs
    taken = person_event(None, decode_person_message(transfer.value), referral_ctx())
    assert taken.has_referrals
    assert taken.next_deadline == deadline


def test_referral_is_delivered_minimised_and_audited_and_the_referrer_gets_its_task() -> None:
    message = referral_message("p-1", reasonCode=[{"text": "hears voices"}])
    stored, outs, deadline, _ = person_event(None, message, referral_ctx())
    kinds = [
        (o.topic.short_name, o.key.decode(), peek(o.value).get("event_type"))
        for o in outs
        if o.topic != topics.ASSIGNMENTS
    ]
    # Reason without consent: held, and only the referrer is told.
    assert ("alerts", "probation-london", "referral.routing.held") in kinds
    assert all(k[0] != "outbound" for k in kinds)
    assert deadline is None

    stored, outs, deadline, _ = person_event(None, referral_message("p-1"), referral_ctx())
    by_topic = {}
    for out in outs:
        by_topic.setdefault(out.topic.short_name, []).append(out)
    delivered = [peek(o.value) for o in by_topic["outbound"] if o.key == b"mht-rv5"]
    assert delivered[0]["event_type"] == "referral.request.delivered"
    assert delivered[0]["resource"]["subject"]["identifier"]["system"] == "urn:concord:id:person"
    # The referral, then its one Task to the referrer and to the service it is to update.
    assert [o.key for o in by_topic["outbound"]] == [b"mht-rv5", b"probation-london", b"mht-rv5"]
    tasks = [peek(o.value)["resource"] for o in by_topic["outbound"][1:]]
    assert tasks[0] == tasks[1], "the same Task, same id, for both"
    audits = [peek(o.value) for o in by_topic["audit"]]
    disclosures = [a for a in audits if a["event_type"] == "audit.disclosure.recorded"]
    assert len(disclosures) == 3, "every disclosure audited"
    # The referral's person, filed under the referral as each party names it, where a Task
    # naming no person arrives (schemas/keys.py).
    filed = {(o.key, o.value, o.partition) for o in by_topic["assignments"]}
    assert filed == {
        (token.encode(), b"p-1", referral_home(token))
        for token in (
            referral_token("probation-london", "ref-9"),
            referral_token("mht-rv5", "ref-9"),
        )
    }
    relationships = {
        (a["resource"]["agent"][0]["who"]["identifier"]["value"], basis_of(a["resource"]))
        for a in audits
        if a["event_type"] == "audit.relationship.recorded"
    }
    assert relationships == {("probation-london", "case-record"), ("mht-rv5", "referral")}
    assert deadline == datetime(2026, 12, 7, 9, 0, tzinfo=UTC), "five working days"
    assert decode_calendar(stored).referrals["probation-london/ref-9"].recipient == "mht-rv5"


# --- identity conflicts through the linker ----------------------------------------------------

OTHER_NHS = PersonIdentifier(NHS_NUMBER, "4010232137")


def patient_message(partner: str, *identifiers: PersonIdentifier, fhir_id: str) -> dict:
    resource = {
        "resourceType": "Patient",
        "id": fhir_id,
        "identifier": [{"system": i.system, "value": i.value} for i in identifiers],
    }
    message, _ = envelope(partner, resource)
    return message


def raised_conflict() -> tuple[PersonIndex, PersonIndex, list]:
    """Probation links CRN and NHS number; the MHT's record names the CRN with another."""
    linked, _, _ = link_event(
        patient_message("probation-london", CRN, NHS, fhir_id="case-1"), PersonIndex(KEY), CTX
    )
    message = patient_message("mht-rv5", OTHER_NHS, CRN, fhir_id="rv5-7")
    after, decision, outs = link_event(message, linked, CTX)
    assert isinstance(decision, RefusedLink)
    return linked, after, outs


def by_topic(outs: list, topic: topics.Topic) -> list:
    return [o for o in outs if o.topic is topic]


def test_a_disagreeing_link_is_applied_nowhere_and_each_source_told_its_own_identifiers() -> None:
    from schemas.fhir import problems_in

    linked, after, outs = raised_conflict()

    assert after.person_of == linked.person_of
    assert by_topic(outs, topics.ASSIGNMENTS) == []
    forwarded = [o for o in by_topic(outs, topics.PERSON_EVENTS) if b'"command"' not in o.value]
    assert forwarded == [], "the event is not reconciled into anyone's calendar"
    notices = {o.key.decode(): peek(o.value) for o in by_topic(outs, topics.ALERTS)}
    assert set(notices) == {"probation-london", "mht-rv5"}
    for recipient, own, foreign, other_source in [
        ("probation-london", {CRN, NHS}, OTHER_NHS, "mht"),
        ("mht-rv5", {OTHER_NHS, CRN}, NHS, "probation-london"),
    ]:
        notice = notices[recipient]
        assert notice["event_type"] == "identity.conflict.raised"
        issue = notice["resource"]
        assert problems_in(issue) == []
        named = {(i["system"], i["value"]) for i in issue["contained"][0]["identifier"]}
        assert named == set(own)
        text = orjson.dumps(notice).decode()
        assert foreign.value not in text, "never the other source's identifier"
        assert other_source not in text, "nor which partner disagrees"
        assert "breach" not in text, "nor, to a clinician, that the person is on probation"
    assert len(by_topic(outs, topics.AUDIT)) == 2, "each notice is a disclosure, audited"


def test_the_operator_sees_a_conflict_record_and_the_people_involved_are_flagged() -> None:
    _, _after, outs = raised_conflict()

    [record] = by_topic(outs, topics.IDENTITY_CONFLICTS)
    entry = orjson.loads(record.value)
    assert record.key.decode() == entry["conflict_id"]
    assert entry["status"] == "open"
    assert set(entry["identifiers"]) == {CRN.token(), NHS.token(), OTHER_NHS.token()}
    assert set(entry["sources"]) == {"probation-london", "mht-rv5"}
    flagged = {
        o.key.decode(): peek(o.value)
        for o in by_topic(outs, topics.PERSON_EVENTS)
        if b'"identity-conflicts"' in o.value
    }
    assert set(flagged) == set(entry["people"])
    assert all(m["open"] == [entry["conflict_id"]] for m in flagged.values())
    commands = [decode_person_message(o.value) for o in by_topic(outs, topics.PERSON_EVENTS)]
    flags = [c for c in commands if isinstance(c, IdentityFlagsCommand)]
    assert flags
    assert all(flags_entry(c) is not None for c in flags)
    assert flags_entry(IdentityFlagsCommand(person_id="p-1", open=())) is None


def test_a_patient_naming_one_identifier_goes_to_the_linker() -> None:
    message, raw = envelope(
        "mht-rv5",
        {"resourceType": "Patient", "identifier": [{"system": NHS.system, "value": NHS.value}]},
    )
    [out] = index_event(message, raw, None)
    assert out.topic is topics.LINKS


def test_the_source_re_sending_its_record_corrected_resolves_the_conflict() -> None:
    _, after, _ = raised_conflict()
    message = patient_message("mht-rv5", NHS, CRN, fhir_id="rv5-7")
    _corrected, decision, outs = link_event(message, after, CTX)

    assert isinstance(decision, Resolution)
    [record] = by_topic(outs, topics.IDENTITY_CONFLICTS)
    assert orjson.loads(record.value)["status"] == "corrected"
    resolved = [peek(o.value)["event_type"] for o in by_topic(outs, topics.ALERTS)]
    assert resolved == ["identity.conflict.resolved"] * 2
    cleared = [
        peek(o.value)
        for o in by_topic(outs, topics.PERSON_EVENTS)
        if b'"identity-conflicts"' in o.value
    ]
    assert cleared
    assert all(m["open"] == [] for m in cleared)


def operator_command(conflict_id: str, decision: str) -> ResolveConflictCommand:
    """The operator's decision as the linker reads it off the links topic."""
    return decode_link_message(
        orjson.dumps(
            {
                "command": "resolve-conflict",
                "conflict_id": conflict_id,
                "decision": decision,
                "operator": "ops-ann",
                "reason": "checked with both services",
                "at": "2026-12-02T09:00:00Z",
                "request_id": "0b1e3f2a-1111-4222-8333-944455556666",
            }
        )
    )


def test_the_operator_keeping_people_apart_is_told_to_the_sources_and_audited() -> None:
    from services.stream.pipeline import link_step

    _, after, outs = raised_conflict()
    conflict_id = orjson.loads(by_topic(outs, topics.IDENTITY_CONFLICTS)[0].value)["conflict_id"]
    step = link_step(operator_command(conflict_id, "keep-apart"), after, CTX)

    assert step.updated.person_of == after.person_of
    [record] = by_topic(step.outs, topics.IDENTITY_CONFLICTS)
    entry = orjson.loads(record.value)
    assert (entry["status"], entry["resolved_by"]) == ("kept-apart", "ops-ann")
    assert entry["reason"] == "checked with both services"
    assert {o.key.decode() for o in by_topic(step.outs, topics.ALERTS)} == {
        "probation-london",
        "mht-rv5",
    }
    audits = [peek(o.value) for o in by_topic(step.outs, topics.AUDIT)]
    operator = [a for a in audits if a["event_type"] == "audit.identity.resolved"]
    assert {a["subject"]["person_id"] for a in operator} == set(entry["people"])
    assert operator[0]["resource"]["agent"][0]["who"]["identifier"]["value"] == "ops-ann"
    assert "checked with both" not in orjson.dumps(operator).decode()
    assert step.summary == {
        "command": "resolve-conflict",
        "conflict_id": conflict_id,
        "status": "kept-apart",
    }
    again = link_step(operator_command(conflict_id, "link"), step.updated, CTX)
    assert again.outs == [], "a conflict is settled once"


def test_the_operator_linking_joins_the_people() -> None:
    from services.stream.pipeline import link_step

    _, after, outs = raised_conflict()
    conflict_id = orjson.loads(by_topic(outs, topics.IDENTITY_CONFLICTS)[0].value)["conflict_id"]
    step = link_step(operator_command(conflict_id, "link"), after, CTX)

    assert step.updated.person_of[OTHER_NHS.token()] == step.updated.person_of[CRN.token()]
    assert OTHER_NHS.token().encode() in {o.key for o in by_topic(step.outs, topics.ASSIGNMENTS)}


def test_an_invented_appointment_earns_no_relationship_and_no_word_of_attendance_elsewhere() -> (
    None
):
    """A voluntary service naming an NHS number is told nothing of the trust's appointment."""
    person = person_id_for(NHS)
    stored, outs = None, []
    for partner, resource in [
        ("mht-rv5", appointment("m", "fulfilled", "10:00", "11:00", NHS)),
        ("vol-recovery", appointment("v", "noshow", "10:15", "11:00", NHS)),
    ]:
        message, _ = envelope(partner, resource)
        message["subject"]["person_id"] = person
        stored, step_outs, *_ = person_event(stored, message, CTX)
        outs += step_outs
    assert [o.key for o in outs if o.topic is topics.ALERTS] == []
    assert [o for o in outs if o.topic is topics.AUDIT] == [], "no relationship, nothing disclosed"
    calendar = decode_calendar(stored)
    assert calendar.relationships == {}
    assert set(calendar.partners) == {"mht-rv5", "vol-recovery"}


def test_a_new_relationship_is_audited_once() -> None:
    message, _ = envelope("probation-london", appointment("p", "booked", "09:00", "09:30", CRN))
    message["subject"]["person_id"] = "p-1"
    stored, outs, *_ = person_event(None, message, CTX)
    [audit] = [peek(o.value) for o in outs if o.topic is topics.AUDIT]
    assert audit["event_type"] == "audit.relationship.recorded"
    assert audit["resource"]["agent"][0]["who"]["identifier"]["value"] == "probation-london"
    assert basis_of(audit["resource"]) == "case-record"
    assert audit["resource"]["entity"][-1]["what"]["reference"] == f"urn:uuid:{message['event_id']}"
    again, _ = envelope("probation-london", appointment("p", "booked", "09:00", "09:45", CRN))
    again["subject"]["person_id"] = "p-1"
    _, outs, *_ = person_event(stored, again, CTX)
    assert [o for o in outs if o.topic is topics.AUDIT] == []


def test_a_service_referred_after_the_absence_was_explained_is_told_then() -> None:
    person = person_id_for(CRN)
    stored, outs = None, []
    for partner, resource in [
        ("probation-london", LINK),
        ("gp-Y01234", appointment("g", "fulfilled", "10:00", "10:30", CRN)),
        ("vol-recovery", appointment("v", "noshow", "10:15", "11:00", CRN)),
        ("probation-london", consent_for("vol-recovery")),
    ]:
        message, _ = envelope(partner, resource)
        message["subject"]["person_id"] = person
        stored, step_outs, *_ = person_event(stored, message, CTX)
        outs += [(partner, o) for o in step_outs]
    explained = [
        (partner, o.key)
        for partner, o in outs
        if o.topic is topics.ALERTS and peek(o.value)["event_type"] == "alert.absence.explained"
    ]
    assert explained == [
        ("vol-recovery", b"probation-london"),  # when the no-show arrived: the officer only
        ("probation-london", b"vol-recovery"),  # when the consent related the service
    ]


def test_a_merge_tells_an_officer_of_the_absence_explained_on_the_other_side() -> None:
    nhs_person, crn_person = person_id_for(NHS), person_id_for(CRN)
    health = None
    for partner, resource in [
        ("mht-rv5", appointment("m", "fulfilled", "10:00", "11:00", NHS)),
        ("vol-recovery", appointment("v", "noshow", "10:15", "11:00", NHS)),
    ]:
        message, _ = envelope(partner, resource)
        message["subject"]["person_id"] = nhs_person
        health, outs, *_ = person_event(health, message, CTX)
        assert [o for o in outs if o.topic is topics.ALERTS] == [], "nobody related yet"
    case, _ = envelope("probation-london", appointment("p", "booked", "14:00", "15:00", CRN))
    case["subject"]["person_id"] = crn_person
    probation, *_ = person_event(None, case, CTX)

    for absorbed, survivor in ((nhs_person, crn_person), (crn_person, nhs_person)):
        stored = {nhs_person: health, crn_person: probation}
        _, [transfer], *_ = person_event(
            stored[absorbed], MergeCommand(absorbed=absorbed, survivor=survivor), CTX
        )
        _, outs, *_ = person_event(stored[survivor], decode_person_message(transfer.value), CTX)
        told = [peek(o.value) for o in outs if o.topic is topics.ALERTS]
        assert [(t["event_type"], t["subject"]["person_id"]) for t in told] == [
            ("alert.absence.explained", survivor)
        ]
        assert [o.key for o in outs if o.topic is topics.ALERTS] == [b"probation-london"]


def test_a_relationship_held_on_either_side_of_a_merge_is_not_audited_again() -> None:
    """It was audited when it began; the merged person is the same person."""
    nhs_person, crn_person = person_id_for(NHS), person_id_for(CRN)
    gp, _ = envelope("gp-Y01234", appointment("g", "booked", "10:00", "10:30", NHS))
    gp["subject"]["person_id"] = nhs_person
    health, *_ = person_event(None, gp, CTX)
    case, _ = envelope("probation-london", appointment("p", "booked", "14:00", "15:00", CRN))
    case["subject"]["person_id"] = crn_person
    probation, first, *_ = person_event(None, case, CTX)
    assert [peek(o.value)["event_type"] for o in first if o.topic is topics.AUDIT] == [
        "audit.relationship.recorded"
    ]

    for absorbed, survivor in ((nhs_person, crn_person), (crn_person, nhs_person)):
        stored = {nhs_person: health, crn_person: probation}
        _, [transfer], *_ = person_event(
            stored[absorbed], MergeCommand(absorbed=absorbed, survivor=survivor), CTX
        )
        _, outs, *_ = person_event(stored[survivor], decode_person_message(transfer.value), CTX)
        assert [o for o in outs if o.topic is topics.AUDIT] == []


# --- a referral's Task found by its referral -----------------------------------------------------

FOUND_BY_REFERRAL = {
    "event_id": "00000000-0000-5000-8000-000000000001",
    "source": "mht-rv5",
    "subject": None,
    "resource": {
        "resourceType": "Task",
        "id": "mht-own-1",
        "status": "accepted",
        "intent": "order",
        "focus": {"reference": "ServiceRequest/ref-9"},
    },
}
TOKEN = referral_token("mht-rv5", "ref-9")


def test_a_task_found_by_its_referral_goes_to_the_person_filed_under_it() -> None:
    home = referral_home(TOKEN)
    person = next(f"p-{n}" for n in range(100) if person_partition(f"p-{n}") == home)
    elsewhere = next(f"p-{n}" for n in range(100) if person_partition(f"p-{n}") != home)
    assert by_referral(FOUND_BY_REFERRAL, b"raw", TOKEN, person.encode(), home) == (person, [])
    found, [out] = by_referral(FOUND_BY_REFERRAL, b"raw", TOKEN, elsewhere.encode(), home)
    assert (found, out.topic, out.key) == (elsewhere, topics.PERSON_EVENTS, elsewhere.encode())
    assert peek(out.value)["subject"]["person_id"] == elsewhere


def test_a_task_found_by_its_referral_arriving_elsewhere_takes_a_second_hop_home() -> None:
    """A producer that did not key it by its referral: sent on to where the referral is kept."""
    home = referral_home(TOKEN)
    other = (home + 1) % topics.INBOUND.partitions
    found, [hop] = by_referral(FOUND_BY_REFERRAL, b"raw", TOKEN, None, other)
    assert (found, hop.topic, hop.key, hop.value, hop.partition) == (
        None,
        topics.INBOUND,
        TOKEN.encode(),
        b"raw",
        home,
    )


def test_a_task_for_a_referral_the_hub_does_not_hold_is_refused_where_it_would_be_kept() -> None:
    with pytest.raises(UnknownReferralError) as refused:
        by_referral(FOUND_BY_REFERRAL, b"raw", TOKEN, None, referral_home(TOKEN))
    assert str(refused.value).startswith(
        "Task.focus: no referral ServiceRequest/ref-9 sent by or delivered to mht-rv5"
    )
