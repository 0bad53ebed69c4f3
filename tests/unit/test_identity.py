"""Unit tests of the person index: exact-match linking, provisional persons and merges."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.identifiers import NHS_NUMBER, PROBATION_CRN, PersonIdentifier, local_system
from services.domain.identity import (
    Merge,
    PersonIndex,
    canonical,
    lookup,
    person_id_for,
    resolve,
)

NHS = PersonIdentifier(NHS_NUMBER, "9434765919")
CRN = PersonIdentifier(PROBATION_CRN, "X123456")
MRN = PersonIdentifier(local_system("mht-north"), "MRN-0042")
ROOT = Path(__file__).parents[2]


def test_probation_patient_links_crn_and_nhs_number() -> None:
    index, resolution = resolve(PersonIndex(), [CRN, NHS])

    assert lookup(index, CRN) == lookup(index, NHS) == resolution.person_id
    assert resolution.person_id == min(person_id_for(CRN), person_id_for(NHS))
    assert resolution.new_tokens == tuple(sorted([CRN.token(), NHS.token()]))
    assert resolution.merges == ()


def test_unknown_identifier_gets_provisional_person() -> None:
    index, resolution = resolve(PersonIndex(), [CRN])

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
    index, from_probation = resolve(PersonIndex(), [CRN])
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
    first, _ = resolve(PersonIndex(), [CRN])
    first, _ = resolve(first, [MRN])
    first, one_way = resolve(first, [CRN, MRN])

    second, _ = resolve(PersonIndex(), [MRN])
    second, _ = resolve(second, [CRN])
    second, other_way = resolve(second, [MRN, CRN])

    assert one_way.person_id == other_way.person_id == min(person_id_for(CRN), person_id_for(MRN))
    assert one_way.merges == other_way.merges
    assert first == second


def test_old_person_id_resolves_to_survivor_after_chain_of_merges() -> None:
    """Each link brings in an identifier with a smaller id, so the person is renamed twice."""
    highest, middle, lowest = sorted([CRN, NHS, MRN], key=person_id_for, reverse=True)
    index, start = resolve(PersonIndex(), [highest])
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

    index, _ = resolve(PersonIndex(), [CRN])
    index, _ = resolve(index, [in_mht])
    index, _ = resolve(index, [in_charity])

    assert len({lookup(index, CRN), lookup(index, in_mht), lookup(index, in_charity)}) == 3


def test_event_without_identifiers_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one identifier"):
        resolve(PersonIndex(), [])


def test_person_id_reveals_nothing_of_the_identifier() -> None:
    person_id = person_id_for(NHS)

    assert person_id.startswith("p-")
    assert len(person_id) == 22
    assert NHS.value not in person_id
    assert person_id == person_id_for(PersonIdentifier(NHS_NUMBER, "9434765919"))


def _person_id_with_key(key: str | None) -> subprocess.CompletedProcess[str]:
    """person_id_for in a fresh interpreter, with CONCORD_PERSON_KEY set to `key` (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != "CONCORD_PERSON_KEY"}
    if key is not None:
        env["CONCORD_PERSON_KEY"] = key
    code = (
        "from schemas.identifiers import PersonIdentifier, NHS_NUMBER\n"
        "from services.domain.identity import person_id_for\n"
        "print(person_id_for(PersonIdentifier(NHS_NUMBER, '9434765919')))"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_person_ids_are_keyed_with_the_hubs_secret() -> None:
    # Without the key nobody can recompute a person id by trying every NHS number.
    one = _person_id_with_key("one hub's secret").stdout.strip()
    assert one == _person_id_with_key("one hub's secret").stdout.strip()
    assert one != _person_id_with_key("another hub's secret").stdout.strip()
    unkeyed = hashlib.blake2b(
        f"{NHS_NUMBER}|9434765919".encode(), digest_size=16, person=b"concord-person"
    ).hexdigest()
    assert one != f"p-{unkeyed[:20]}"


def test_without_a_key_no_person_id_is_made() -> None:
    """A default key in the source would let anyone recompute person ids."""
    done = _person_id_with_key(None)
    assert done.returncode != 0
    assert "PersonKeyMissing: set CONCORD_PERSON_KEY" in done.stderr
