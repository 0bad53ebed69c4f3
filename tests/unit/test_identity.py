"""Unit tests of the person index: exact-match linking, provisional persons and merges."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import keys
from schemas.identifiers import NHS_NUMBER, PROBATION_CRN, PersonIdentifier, local_system
from services.domain.identity import (
    ConflictError,
    Merge,
    PersonIndex,
    RefusedLink,
    Resolution,
    UnknownConflict,
    canonical,
    conflict_from_record,
    conflict_record,
    flag_changes,
    flags,
    holder,
    record_of,
    resolve,
    settle,
)
from tests.keys import KEY, person_id_for

NHS = PersonIdentifier(NHS_NUMBER, "9434765919")
CRN = PersonIdentifier(PROBATION_CRN, "X123456")
MRN = PersonIdentifier(local_system("mht-north"), "MRN-0042")
ROOT = Path(__file__).parents[2]


def lookup(index: PersonIndex, identifier: PersonIdentifier) -> str | None:
    """The person holding `identifier`, or None when no event has named it yet."""
    return index.person_of.get(identifier.token())


def test_probation_patient_links_crn_and_nhs_number() -> None:
    index, resolution = resolve(PersonIndex(KEY), [CRN, NHS])

    assert lookup(index, CRN) == lookup(index, NHS) == resolution.person_id
    assert resolution.person_id == min(person_id_for(CRN), person_id_for(NHS))
    assert resolution.new_tokens == tuple(sorted([CRN.token(), NHS.token()]))
    assert resolution.merges == ()


def test_unknown_identifier_gets_provisional_person() -> None:
    index, resolution = resolve(PersonIndex(KEY), [CRN])

    assert resolution.person_id == person_id_for(CRN)
    assert lookup(index, CRN) == person_id_for(CRN)
    assert lookup(index, NHS) is None
    again, repeat = resolve(index, [CRN])
    assert again is index
    assert repeat.person_id == resolution.person_id
    assert repeat.merges == ()
    assert repeat.new_tokens == ()


def test_link_after_appointments_merges_two_provisional_people() -> None:
    """Probation and the MHT each booked appointments before anyone knew it was one person."""
    index, from_probation = resolve(PersonIndex(KEY), [CRN])
    index, from_mht = resolve(index, [MRN])
    assert from_probation.person_id != from_mht.person_id

    index, link = resolve(index, [CRN, NHS, MRN])

    survivor = min(from_probation.person_id, from_mht.person_id, person_id_for(NHS))
    assert link.person_id == survivor
    assert lookup(index, CRN) == lookup(index, NHS) == lookup(index, MRN) == survivor
    assert index.members == {survivor: frozenset({CRN.token(), NHS.token(), MRN.token()})}
    absorbed = sorted({from_probation.person_id, from_mht.person_id} - {survivor})
    assert link.merges == tuple(Merge(person, survivor) for person in absorbed)
    assert canonical(index, from_probation.person_id) == survivor
    assert canonical(index, from_mht.person_id) == survivor


def test_merge_survivor_is_deterministic() -> None:
    first, _ = resolve(PersonIndex(KEY), [CRN])
    first, _ = resolve(first, [MRN])
    first, one_way = resolve(first, [CRN, MRN])

    second, _ = resolve(PersonIndex(KEY), [MRN])
    second, _ = resolve(second, [CRN])
    second, other_way = resolve(second, [MRN, CRN])

    assert one_way.person_id == other_way.person_id == min(person_id_for(CRN), person_id_for(MRN))
    assert one_way.merges == other_way.merges
    assert first == second


def test_old_person_id_resolves_to_survivor_after_chain_of_merges() -> None:
    """Each link brings in an identifier with a smaller id, so the person is renamed twice."""
    highest, middle, lowest = sorted([CRN, NHS, MRN], key=person_id_for, reverse=True)
    index, start = resolve(PersonIndex(KEY), [highest])
    index, first_link = resolve(index, [highest, middle])
    index, second_link = resolve(index, [middle, lowest])

    assert first_link.merges == (Merge(person_id_for(highest), person_id_for(middle)),)
    assert second_link.merges == (Merge(person_id_for(middle), person_id_for(lowest)),)
    assert canonical(index, start.person_id) == person_id_for(lowest)
    assert canonical(index, first_link.person_id) == person_id_for(lowest)
    assert canonical(index, person_id_for(lowest)) == person_id_for(lowest)


def test_same_value_in_different_systems_is_not_the_same_person() -> None:
    in_mht = PersonIdentifier(local_system("mht-north"), "X123456")
    in_charity = PersonIdentifier(local_system("vcs-step-forward"), "X123456")

    index, _ = resolve(PersonIndex(KEY), [CRN])
    index, _ = resolve(index, [in_mht])
    index, _ = resolve(index, [in_charity])

    assert len({lookup(index, CRN), lookup(index, in_mht), lookup(index, in_charity)}) == 3


def test_event_without_identifiers_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one identifier"):
        resolve(PersonIndex(KEY), [])


def test_person_id_reveals_nothing_of_the_identifier() -> None:
    person_id = person_id_for(NHS)

    assert person_id.startswith("p-")
    assert len(person_id) == 22
    assert NHS.value not in person_id
    assert person_id == person_id_for(PersonIdentifier(NHS_NUMBER, "9434765919"))


def _person_id_with_key(secret: str) -> str:
    return keys.person_id_for(NHS, keys.PersonKey.from_secret(secret))


def test_person_ids_are_keyed_with_the_hubs_secret() -> None:
    # Without the key nobody can recompute a person id by trying every NHS number.
    one = _person_id_with_key("one hub's secret")
    assert one == _person_id_with_key("one hub's secret")
    assert one != _person_id_with_key("another hub's secret")
    unkeyed = hashlib.blake2b(
        f"{NHS_NUMBER}|9434765919".encode(), digest_size=16, person=b"concord-person"
    ).hexdigest()
    assert one != f"p-{unkeyed[:20]}"
    assert "one hub" not in repr(keys.PersonKey.from_secret("one hub's secret"))


def test_without_a_key_no_person_id_is_made() -> None:
    """A default key in the source would let anyone recompute person ids: the runtime asks for
    CONCORD_PERSON_KEY, and an empty key is refused."""
    env = {k: v for k, v in os.environ.items() if k != "CONCORD_PERSON_KEY"}
    code = "from services.runtime import person_key\nperson_key()"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "MissingConfiguration: set CONCORD_PERSON_KEY" in done.stderr
    with pytest.raises(ValueError, match="empty"):
        keys.PersonKey.from_secret("")


# --- identity conflicts ------------------------------------------------------------------------

OTHER_NHS = PersonIdentifier(NHS_NUMBER, "4010232137")
OTHER_CRN = PersonIdentifier(PROBATION_CRN, "Y654321")
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def probation_linked() -> PersonIndex:
    index, _ = resolve(PersonIndex(KEY), [CRN, NHS], source="probation-london", record="Patient/p1")
    return index


def mht_disagrees(index: PersonIndex) -> tuple[PersonIndex, RefusedLink]:
    index, refused = resolve(
        index, [OTHER_NHS, CRN, MRN], source="mht-north", record="Patient/m1", at=AT
    )
    assert isinstance(refused, RefusedLink)
    return index, refused


def test_a_crn_linked_to_one_nhs_number_arriving_with_another_is_a_conflict_not_a_merge() -> None:
    before = probation_linked()
    index, refused = mht_disagrees(before)

    assert refused.raised
    conflict = refused.conflict
    assert conflict.status == "open"
    assert conflict.systems == (NHS_NUMBER,)
    assert conflict.raised_at == AT
    # Nothing joined: the CRN keeps its NHS number, the other NHS number and the MRN stay apart.
    assert index.person_of == before.person_of
    assert index.members == before.members
    assert lookup(index, OTHER_NHS) is None
    linked = lookup(index, CRN)
    assert conflict.people == tuple(sorted({linked, person_id_for(OTHER_NHS), person_id_for(MRN)}))
    assert conflict.tokens == {t.token() for t in (CRN, NHS, OTHER_NHS, MRN)}


def test_each_source_is_told_only_the_identifiers_it_sent() -> None:
    _, refused = mht_disagrees(probation_linked())

    assert refused.conflict.told == {
        "probation-london": frozenset({CRN.token(), NHS.token()}),
        "mht-north": frozenset({OTHER_NHS.token(), CRN.token(), MRN.token()}),
    }


def test_a_source_that_only_linked_an_undisputed_system_is_not_told() -> None:
    index, _ = resolve(PersonIndex(KEY), [CRN, MRN], source="mht-north")
    index, _ = resolve(index, [CRN, NHS], source="probation-london")
    _, refused = resolve(index, [MRN, OTHER_NHS], source="gp-Y01234")

    assert isinstance(refused, RefusedLink)
    assert set(refused.conflict.told) == {"probation-london", "gp-Y01234"}


def test_a_second_crn_for_one_nhs_number_is_a_conflict_too() -> None:
    _, refused = resolve(probation_linked(), [OTHER_CRN, NHS], source="probation-london")

    assert isinstance(refused, RefusedLink)
    assert refused.conflict.systems == (PROBATION_CRN,)


def test_one_partner_may_not_give_a_person_two_local_ids() -> None:
    """Two of a partner's records for one NHS number may be two people with one NHS number typo."""
    index, _ = resolve(PersonIndex(KEY), [NHS, MRN], source="mht-north")
    _, refused = resolve(index, [NHS, PersonIdentifier(MRN.system, "MRN-0043")], source="mht-north")

    assert isinstance(refused, RefusedLink)
    assert refused.conflict.systems == (MRN.system,)


def test_a_link_naming_two_nhs_numbers_itself_is_a_conflict() -> None:
    index, refused = resolve(PersonIndex(KEY), [NHS, OTHER_NHS], source="gp-Y01234")

    assert isinstance(refused, RefusedLink)
    assert index.person_of == {}


def test_the_same_disagreeing_link_again_is_the_same_conflict_raised_once() -> None:
    index, first = mht_disagrees(probation_linked())
    again, second = resolve(
        index, [OTHER_NHS, CRN, MRN], source="mht-north", record="Patient/m1", at=LATER
    )

    assert again == index
    assert isinstance(second, RefusedLink)
    assert not second.raised
    assert second.conflict == first.conflict


def test_the_source_correcting_its_record_settles_the_conflict_and_applies_the_link() -> None:
    index, refused = mht_disagrees(probation_linked())
    corrected, resolution = resolve(
        index, [NHS, CRN, MRN], source="mht-north", record="Patient/m1", at=LATER
    )

    assert isinstance(resolution, Resolution)
    [settled] = resolution.settled
    assert settled.conflict_id == refused.conflict.conflict_id
    assert (settled.status, settled.resolved_at, settled.resolved_by) == (
        "corrected",
        LATER,
        "mht-north",
    )
    assert lookup(corrected, MRN) == lookup(corrected, CRN)
    assert set(flags(corrected, refused.conflict.tokens).values()) == {()}


def test_the_source_withdrawing_the_disputed_identifier_settles_the_conflict() -> None:
    index, _ = mht_disagrees(probation_linked())
    corrected, resolution = resolve(index, [MRN], source="mht-north", record="Patient/m1")

    assert isinstance(resolution, Resolution)
    assert [c.status for c in resolution.settled] == ["corrected"]
    assert lookup(corrected, OTHER_NHS) is None
    assert lookup(corrected, MRN) != lookup(corrected, CRN)


def test_another_record_of_the_same_source_does_not_settle_the_conflict() -> None:
    index, _ = mht_disagrees(probation_linked())
    _, resolution = resolve(index, [MRN], source="mht-north", record="Patient/other")
    assert isinstance(resolution, Resolution)
    assert resolution.settled == ()
    _, resolution = resolve(index, [MRN], source="gp-Y01234", record="Patient/m1")
    assert isinstance(resolution, Resolution)
    assert resolution.settled == ()


def test_a_correction_that_still_disagrees_replaces_the_conflict_with_a_new_one() -> None:
    index, refused = mht_disagrees(probation_linked())
    third_nhs = PersonIdentifier(NHS_NUMBER, "9000000009")
    _, again = resolve(index, [third_nhs, CRN, MRN], source="mht-north", record="Patient/m1")

    assert isinstance(again, RefusedLink)
    assert again.raised
    assert again.conflict.conflict_id != refused.conflict.conflict_id
    assert [c.conflict_id for c in again.settled] == [refused.conflict.conflict_id]


def test_the_operator_keeping_people_apart_is_remembered() -> None:
    index, refused = mht_disagrees(probation_linked())
    conflict_id = refused.conflict.conflict_id
    kept, settlement = settle(
        index, conflict_id, "keep-apart", operator="ops-ann", reason="two people", at=LATER
    )

    assert settlement.resolution is None
    assert (settlement.conflict.status, settlement.conflict.resolved_by) == (
        "kept-apart",
        "ops-ann",
    )
    assert settlement.conflict.reason == "two people"
    assert kept.person_of == index.person_of
    assert set(flags(kept, refused.conflict.tokens).values()) == {()}
    # The source sending the same record again is not a new conflict.
    again, resent = resolve(kept, [OTHER_NHS, CRN, MRN], source="mht-north", record="Patient/m1")
    assert again == kept
    assert isinstance(resent, RefusedLink)
    assert not resent.raised


def test_the_operator_linking_joins_the_people_and_allows_their_identifiers() -> None:
    index, refused = mht_disagrees(probation_linked())
    linked, settlement = settle(
        index,
        refused.conflict.conflict_id,
        "link",
        operator="ops-ann",
        reason="PDS merge",
        at=LATER,
    )

    assert settlement.resolution is not None
    assert lookup(linked, OTHER_NHS) == lookup(linked, NHS) == lookup(linked, MRN)
    again, resent = resolve(linked, [OTHER_NHS, CRN, MRN], source="mht-north")
    assert isinstance(resent, Resolution)
    assert again.person_of == linked.person_of
    # A third NHS number was never allowed.
    _, third = resolve(linked, [CRN, PersonIdentifier(NHS_NUMBER, "9000000009")], source="x-1")
    assert isinstance(third, RefusedLink)


def test_settling_twice_changes_nothing_and_an_unknown_conflict_is_an_error() -> None:
    index, refused = mht_disagrees(probation_linked())
    once, _ = settle(
        index, refused.conflict.conflict_id, "keep-apart", operator="a", reason="r", at=LATER
    )
    twice, second = settle(
        once, refused.conflict.conflict_id, "link", operator="b", reason="r", at=LATER
    )
    assert twice == once
    assert not second.changed
    with pytest.raises(UnknownConflict):
        settle(index, "c-unknown", "link", operator="a", reason="r", at=LATER)


def test_linking_people_who_have_since_gained_other_disagreeing_identifiers_is_refused() -> None:
    index, refused = mht_disagrees(probation_linked())
    index, _ = resolve(index, [OTHER_NHS, OTHER_CRN], source="probation-london")
    with pytest.raises(ConflictError, match="keep them apart"):
        settle(index, refused.conflict.conflict_id, "link", operator="a", reason="r", at=LATER)


def test_everyone_holding_an_identifier_of_an_open_conflict_is_flagged() -> None:
    before = probation_linked()
    index, refused = mht_disagrees(before)
    conflict_id = refused.conflict.conflict_id

    changes = flag_changes(before, index, refused.conflict.tokens)
    assert changes == dict.fromkeys(refused.conflict.people, (conflict_id,))
    # A person joining a flagged one later carries the flag to the survivor.
    joined, resolution = resolve(index, [OTHER_NHS, OTHER_CRN], source="gp-Y01234")
    assert isinstance(resolution, Resolution)
    assert flags(joined, [OTHER_CRN.token()]) == {resolution.person_id: (conflict_id,)}


def test_a_link_between_people_without_conflicts_changes_no_flags() -> None:
    before, _ = resolve(PersonIndex(KEY), [CRN])
    after, _ = resolve(before, [CRN, NHS], source="probation-london")
    assert flag_changes(before, after, [CRN.token(), NHS.token()]) == {}


def test_the_record_a_link_comes_from() -> None:
    tokens = [CRN.token(), MRN.token()]
    assert record_of("mht-north", "Patient", "m1", tokens) == "Patient/m1"
    assert record_of("mht-north", "Patient", None, tokens) == MRN.token()
    assert record_of("gp-Y01234", "Appointment", "a1", tokens) is None


def test_a_conflict_survives_its_record_round_trip() -> None:
    index, refused = mht_disagrees(probation_linked())
    _, settlement = settle(
        index, refused.conflict.conflict_id, "keep-apart", operator="a", reason="r", at=LATER
    )
    for conflict in (refused.conflict, settlement.conflict):
        assert conflict_from_record(conflict_record(conflict)) == conflict


def test_a_conflict_id_reveals_nothing_of_the_identifiers() -> None:
    _, refused = mht_disagrees(probation_linked())
    conflict_id = refused.conflict.conflict_id
    assert conflict_id.startswith("c-")
    assert not any(t.value in conflict_id for t in (CRN, NHS, OTHER_NHS))
    assert holder(PersonIndex(KEY), NHS.token()) == person_id_for(NHS)
