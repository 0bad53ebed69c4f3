"""A partner merging its own records of a person (HL7 ADT A40): joined when only its own ids
differ, kept apart and raised as a conflict when an NHS number or CRN disagrees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.hl7v2.to_fhir import map_message
from schemas.envelope import wrap
from schemas.fhir import subject_of
from schemas.identifiers import NHS_NUMBER, PROBATION_CRN, PersonIdentifier, local_system
from services.domain import linking
from services.domain.decisions import ConflictChanged, Disclose, Forward, Rules
from services.domain.identity import (
    PersonIndex,
    RefusedLink,
    Resolution,
    conflict_from_record,
    conflict_record,
    own_records,
    resolve,
    settle,
)
from services.runtime import ROOT, partner_directory
from tests.keys import KEY

TRUST = "mht-rv5"
SURVIVOR = PersonIdentifier(local_system(TRUST), "RV5123456")
MERGED = PersonIdentifier(local_system(TRUST), "RV5000111")
NHS = PersonIdentifier(NHS_NUMBER, "9434765919")
OTHER_NHS = PersonIdentifier(NHS_NUMBER, "9434765870")
CRN = PersonIdentifier(PROBATION_CRN, "X123456")
OTHER_CRN = PersonIdentifier(PROBATION_CRN, "X654321")
RULES = Rules(
    directory=partner_directory(ROOT / "deploy" / "demo" / "partners.yaml"),
    now=datetime(2026, 12, 1, tzinfo=UTC),
    buffer=timedelta(minutes=30),
)
A40 = (
    "MSH|^~\\&|RIO|RV5|CONCORD|HUB|20261202093500||ADT^A40|M-1|P|2.4\r"
    "EVN|A40|20261202093500\r"
    "PID|1||RV5123456^^^RV5^MR\r"
    "MRG|RV5000111^^^RV5^MR\r"
)


def merge(index: PersonIndex, *also: PersonIdentifier) -> tuple[PersonIndex, Any]:
    """The trust's A40: SURVIVOR replaces MERGED."""
    return resolve(
        index, [SURVIVOR, MERGED, *also], source=TRUST, merging=frozenset({MERGED.token()})
    )


def two_records(first: list[PersonIdentifier], second: list[PersonIdentifier]) -> PersonIndex:
    """The trust's two records of one person, each already linked as the trust said then."""
    index, _ = resolve(PersonIndex(KEY), [SURVIVOR, *first], source=TRUST)
    index, _ = resolve(index, [MERGED, *second], source=TRUST)
    return index


def test_a_merge_joins_the_trusts_two_records_and_later_events_reach_the_survivor() -> None:
    index = two_records([NHS], [])
    before = index.person_of[MERGED.token()]
    assert before != index.person_of[SURVIVOR.token()]

    index, resolution = merge(index)

    assert isinstance(resolution, Resolution)
    person = resolution.person_id
    assert index.person_of[MERGED.token()] == index.person_of[SURVIVOR.token()] == person
    assert index.person_of[NHS.token()] == person, "the merged record gains the NHS number"
    [record] = [c for c in index.conflicts.values() if c.status == "merged"]
    assert (record.resolved_by, record.systems) == (TRUST, (local_system(TRUST),))
    # A later message naming the merged number with the NHS number links, not conflicts.
    index, later = resolve(index, [MERGED, NHS], source=TRUST)
    assert isinstance(later, Resolution)
    assert later.person_id == person


def test_a_merge_of_records_holding_different_nhs_numbers_keeps_them_apart() -> None:
    index = two_records([NHS], [OTHER_NHS])

    index, refused = merge(index)

    assert isinstance(refused, RefusedLink)
    assert refused.conflict.status == "open"
    assert refused.conflict.systems == (NHS_NUMBER,)
    assert index.person_of[MERGED.token()] != index.person_of[SURVIVOR.token()]


def test_a_merge_of_records_holding_different_crns_keeps_them_apart() -> None:
    index, _ = resolve(PersonIndex(KEY), [CRN, SURVIVOR], source="probation-london")
    index, _ = resolve(index, [OTHER_CRN, MERGED], source="probation-london")

    index, refused = merge(index)

    assert isinstance(refused, RefusedLink)
    assert PROBATION_CRN in refused.conflict.systems


def test_two_local_ids_without_the_partners_merge_are_still_a_conflict() -> None:
    _, refused = resolve(PersonIndex(KEY), [SURVIVOR, MERGED], source=TRUST)
    assert isinstance(refused, RefusedLink)


def test_a_partner_cannot_merge_another_partners_records() -> None:
    theirs = PersonIdentifier(local_system("mht-north"), "N-1")
    mine = PersonIdentifier(local_system("mht-north"), "N-2")
    _, refused = resolve(
        PersonIndex(KEY), [theirs, mine], source=TRUST, merging=frozenset({mine.token()})
    )
    assert isinstance(refused, RefusedLink)


def test_a_merge_does_not_undo_the_operator_keeping_the_people_apart() -> None:
    index = two_records([], [])
    index, refused = resolve(index, [SURVIVOR, MERGED], source=TRUST)
    assert isinstance(refused, RefusedLink)
    index, _ = settle(
        index,
        refused.conflict.conflict_id,
        "keep-apart",
        operator="op",
        reason="different people",
        at=RULES.now,
    )
    index, again = merge(index)
    assert isinstance(again, RefusedLink)
    assert index.person_of[MERGED.token()] != index.person_of[SURVIVOR.token()]


def test_the_merge_record_survives_its_round_trip() -> None:
    index, _ = merge(two_records([], []))
    [record] = index.conflicts.values()
    assert conflict_from_record(conflict_record(record)) == record


def test_own_records_are_the_partners_local_ids_its_patient_links_to() -> None:
    [patient] = map_message(A40, TRUST).resources
    assert own_records(patient, TRUST) == {MERGED.token()}
    assert own_records(patient, "mht-north") == frozenset(), "not that partner's records"
    assert own_records({**patient, "link": [{**patient["link"][0], "type": "refer"}]}, TRUST) == (
        frozenset()
    )
    assert own_records({"resourceType": "Encounter", "link": patient["link"]}, TRUST) == (
        frozenset()
    )


def test_the_linker_joins_an_a40_and_tells_nobody_of_a_conflict() -> None:
    """Through the linker: the merge is recorded for the operator, no partner is told."""
    [patient] = map_message(A40, TRUST).resources
    wrapped = wrap(
        patient,
        event_type="identity.patient.updated",
        source=TRUST,
        subject=subject_of(patient, partner=TRUST),
    )
    envelope = wrapped.model_dump(mode="json")
    index = two_records([NHS], [])

    index, resolution, decisions = linking.link_event(
        index, envelope, subject_of(patient, partner=TRUST), RULES
    )

    assert isinstance(resolution, Resolution)
    [changed] = [d for d in decisions if isinstance(d, ConflictChanged)]
    assert changed.conflict.status == "merged"
    assert not [d for d in decisions if isinstance(d, Disclose)]
    assert [d for d in decisions if isinstance(d, Forward)]
