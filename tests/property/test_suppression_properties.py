"""Small numbers in the commissioners' figures: every count from 1 to 7 is hidden, every count
shown is rounded to 5, and an attacker differencing the published rows, columns and totals
recovers no hidden cell, even knowing every shown cell's exact value."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.measures import BY_CODE
from schemas.referrals import CATEGORIES
from services.domain.measure_reports import AreaMap, Table, table
from services.domain.measures import Cell
from services.domain.suppression import percentile, rounded, shown

AREAS = AreaMap(
    icb_of={"E1": "Q1", "E2": "Q1", "E3": "Q2"},
    names={"E1": "One", "E2": "Two", "E3": "Three", "Q1": "ICB one", "Q2": "ICB two"},
)
MONTH = "2026-11"
REASONS = ("no-capacity", "not-eligible", "other")
# Mostly small counts: they are what suppression is about.
COUNTS = st.one_of(st.integers(0, 9), st.integers(0, 40))


@st.composite
def cells(draw: st.DrawFn, figure: str) -> dict:
    areas = draw(st.lists(st.sampled_from(["E1", "E2", "E3", "SE11"]), min_size=1, unique=True))
    chosen = {}
    for area in areas:
        for category in draw(st.lists(st.sampled_from(list(CATEGORIES)), min_size=1, unique=True)):
            for urgency in draw(
                st.lists(st.sampled_from(["routine", "urgent"]), min_size=1, unique=True)
            ):
                reason = draw(st.sampled_from(REASONS)) if figure == "referrals-rejected" else ""
                key = (figure, MONTH, area, category, urgency, reason)
                chosen[key] = Cell(draw(COUNTS))
    return chosen


def published(t: Table) -> dict:
    return {key: shown(t.counts[key], key in t.suppressed) for key in t.counts}


def equations(t: Table) -> list[tuple[dict, int]]:
    """Each published sum as the attacker sees it: hidden cells as unknowns (coefficient +1 for a
    part, -1 for the total), everything shown moved to the constant at its exact value."""
    found = []
    for total, parts in t.sums:
        unknowns: dict = {}
        constant = 0
        for key, sign in [(total, -1), *((p, 1) for p in parts)]:
            if key in t.suppressed:
                unknowns[key] = unknowns.get(key, 0) + sign
            else:
                constant -= sign * t.counts[key]
        found.append(({k: c for k, c in unknowns.items() if c}, constant))
    return found


def differencing_attack(t: Table) -> dict:
    """Hidden cells worked out by differencing: any sum with one unknown left, any sum or
    difference of two sums that leaves one unknown, and hidden cells that add up to 0 (counts
    are not negative); repeated with what is learned."""
    known: dict = {}
    pool = equations(t)
    changed = True
    while changed:
        changed = False
        reduced = []
        for unknowns, constant in pool:
            rest = {k: c for k, c in unknowns.items() if k not in known}
            learned = sum(c * known[k] for k, c in unknowns.items() if k in known)
            reduced.append((rest, constant - learned))
        candidates = list(reduced)
        for (u1, c1), (u2, c2) in combinations(reduced, 2):
            for sign in (1, -1):
                combined = dict(u1)
                for k, c in u2.items():
                    combined[k] = combined.get(k, 0) + sign * c
                candidates.append(({k: c for k, c in combined.items() if c}, c1 + sign * c2))
        for unknowns, constant in candidates:
            # Counts are not negative: hidden cells of one sign adding up to 0 are all 0.
            if unknowns and constant == 0 and len({c > 0 for c in unknowns.values()}) == 1:
                for key in unknowns:
                    if key not in known:
                        known[key] = Fraction(0)
                        changed = True
                continue
            if len(unknowns) == 1:
                [(key, coefficient)] = unknowns.items()
                if key not in known:
                    known[key] = Fraction(constant, coefficient)
                    changed = True
        pool = reduced
    return known


@settings(max_examples=60, deadline=None)
@given(cells("referrals-made"))
def test_no_count_from_1_to_7_is_published(chosen: dict) -> None:
    t = table(BY_CODE["referrals-made"], MONTH, chosen, AREAS)
    for key, value in published(t).items():
        assert value in {"*", 0} or (value >= 10 and value % 5 == 0), key
        if 0 < t.counts[key] < 8:
            assert value == "*", f"{key} holds {t.counts[key]} and must be hidden"
        if value != "*":
            assert value == rounded(t.counts[key])


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["referrals-made", "referrals-rejected", "people-assessed"]).flatmap(
        lambda figure: st.tuples(st.just(figure), cells(figure))
    )
)
def test_differencing_rows_columns_and_totals_recovers_no_hidden_cell(drawn: tuple) -> None:
    figure, chosen = drawn
    t = table(BY_CODE[figure], MONTH, chosen, AREAS)
    recovered = differencing_attack(t)
    assert recovered == {}, f"worked out from the totals: {recovered}"


def test_the_attacker_does_recover_a_cell_hidden_without_secondary_suppression() -> None:
    """The attack works: hiding only the small count in a row lets the total give it away."""
    chosen = {
        ("referrals-made", MONTH, "E1", "crisis-support", "routine", ""): Cell(3),
        ("referrals-made", MONTH, "E1", "housing-support", "routine", ""): Cell(20),
    }
    t = table(BY_CODE["referrals-made"], MONTH, chosen, AREAS)
    small = (("local-authority", "E1"), ("category", "crisis-support"))
    assert small in t.suppressed
    primary_only = Table(
        t.figure, t.month, t.rows, t.columns, t.counts, t.days, frozenset({small}), t.sums
    )
    assert differencing_attack(primary_only)[small] == 3
    assert small not in differencing_attack(t)
    assert len(t.suppressed) > 1, "secondary suppression hid more than the small cell"


@given(st.dictionaries(st.integers(0, 30), st.integers(1, 5), max_size=6))
def test_medians_are_not_shown_over_fewer_than_8(days: dict) -> None:
    n = sum(days.values())
    median = percentile(days, 0.5)
    if n < 8:
        assert median is None
    else:
        ordered = sorted(d for d, count in days.items() for _ in range(count))
        middle = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
        assert median == middle
