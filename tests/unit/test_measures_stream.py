"""The figures' stream steps without Kafka: an identity conflict is counted once, a fact is counted
into its cell once, a month's ids are forgotten when it closes, a bad fact is refused by name."""

from __future__ import annotations

import orjson
import pytest

from schemas.codec import CodecError
from schemas.topics import IDENTITY_CONFLICTS
from services.domain.identity import PersonIndex
from services.domain.measures import Counted, decode_cell
from services.stream.outbox import fact_outs
from services.stream.pipeline import (
    LATEST_MONTH,
    cells_of,
    count_step,
    counted_person_event,
    fact_of,
    link_step,
)
from tests.keys import KEY
from tests.unit.test_pipeline import CRN, CTX, NHS, patient_message


def test_an_identity_conflict_is_counted_once_with_no_area_and_no_identifier() -> None:
    from schemas.identifiers import NHS_NUMBER, PersonIdentifier

    linked = link_step(
        patient_message("probation-london", CRN, NHS, fhir_id="case-1"), PersonIndex(KEY), CTX
    ).updated
    other = PersonIdentifier(NHS_NUMBER, "9434765870")
    step = link_step(patient_message("mht-rv5", other, CRN, fhir_id="rv5-7"), linked, CTX)
    [fact] = [fact_of(out.value) for out in step.counted]
    [record] = [orjson.loads(o.value) for o in step.outs if o.topic is IDENTITY_CONFLICTS]
    raised = record["raised_at"][:7]  # the month the conflict was raised in
    assert (fact.figure, fact.area, fact.month) == ("identity-conflicts", "unknown", raised)
    for out in step.counted:
        assert CRN.value.encode() not in out.value
        assert NHS.value.encode() not in out.value
        assert b"9434765870" not in out.value
    again = link_step(patient_message("mht-rv5", other, CRN, fhir_id="rv5-7"), step.updated, CTX)
    assert [fact_of(o.value).counted_id for o in again.counted] in ([], [fact.counted_id])


class Table(dict):
    """The measure-cells table as the measures processor reads and writes it."""

    def count(self, fact: Counted) -> str:
        [out] = fact_outs([fact])
        month, writes = count_step(out.value, self.get, lambda: list(self.items()))
        self.update(writes)
        return month


def fact(n: int, month: str = "2026-11", **more: object) -> Counted:
    return Counted(
        f"id-{n}", "referrals-made", month, "E09000022", "crisis-support", "routine", **more
    )  # type: ignore[arg-type]


def test_a_fact_is_counted_once_and_the_month_closes_to_counts_alone() -> None:
    table = Table()
    for n in (1, 2, 2, 3, 1):  # two delivered twice
        table.count(fact(n))
    [cell] = cells_of(table.items()).values()
    assert cell.count == 3
    assert cell.seen == {"id-1", "id-2", "id-3"}

    table.count(fact(9, month="2026-12"))  # November is still open: a late duplicate is known
    table.count(fact(1))
    assert (
        cells_of(table.items())[
            ("referrals-made", "2026-11", "E09000022", "crisis-support", "routine", "")
        ].count
        == 3
    )

    table.count(fact(10, month="2027-01"))  # now November is closed: its ids are dropped
    november = cells_of(table.items())[
        ("referrals-made", "2026-11", "E09000022", "crisis-support", "routine", "")
    ]
    assert (november.count, november.seen) == (3, frozenset())
    assert table[LATEST_MONTH] == b"2027-01"
    december = decode_cell(
        orjson.loads(table["referrals-made|2026-12|E09000022|crisis-support|routine|"])
    )
    assert december.seen == {"id-9"}, "the month before the latest stays open"


def test_working_days_are_kept_as_a_histogram() -> None:
    table = Table()
    for n, days in enumerate([0, 2, 2, 5]):
        table.count(
            Counted(
                f"d{n}",
                "days-to-acceptance",
                "2026-11",
                "E09000022",
                "crisis-support",
                "routine",
                days=days,
            )
        )
    [cell] = cells_of(table.items()).values()
    assert dict(cell.days) == {0: 1, 2: 2, 5: 1}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"{}", "MeasureFact"),
        (
            orjson.dumps({"counted_id": "x", "figure": "beds", "month": "2026-11", "area": "E1"}),
            "figure 'beds'",
        ),
        (b"not json", "MeasureFact"),
    ],
)
def test_a_fact_the_processor_cannot_count_is_refused_naming_why(
    value: bytes, problem: str
) -> None:
    with pytest.raises(CodecError, match=problem):
        count_step(value, {}.get, list)


def test_a_record_handed_over_on_a_merge_counts_its_referrals_nowhere_again() -> None:
    """Its referrals were counted on the record they began on; the survivor's record taking
    them over must not count them a second time (nor file an acceptance at the merge's time)."""
    from schemas.codec import decode_person_message
    from schemas.internal import MergeCommand
    from tests.unit.test_pipeline import referral_ctx, referral_message

    absorbed, survivor = "p-b-absorbed", "p-a-survivor"
    stored, first = counted_person_event(None, referral_message(absorbed), referral_ctx())
    assert {fact_of(o.value).figure for o in first} == {"referrals-made", "referrals-routed"}
    tombstone, _ = counted_person_event(
        stored.stored, MergeCommand(absorbed=absorbed, survivor=survivor), CTX
    )
    [transfer] = tombstone.outs
    taken, counted = counted_person_event(
        None, decode_person_message(transfer.value), referral_ctx()
    )
    assert taken.stored is not None, "the survivor's record took the referral over"
    assert counted == ()
