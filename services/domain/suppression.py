"""Statistical disclosure control for the commissioners' figures, as NHS statistics below national
level do it: a count from 1 to 7 is shown as `*`, any other count is rounded to the nearest 5, and
more cells are suppressed until no suppressed cell can be worked out from the cells and totals
shown. Medians and percentiles are not shown over fewer than 8 people.

A table is its cells' values and its totals (each total the sum of some cells, which may be
totals themselves). A suppressed cell can be worked out exactly when the published cells and
the sums pin it down: that is, when no change to the suppressed cells that keeps every sum
balances moves it (it is zero in every solution of the homogeneous system). `protect` adds the
smallest cells next to such a cell until none is left.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Final, TypeVar

K = TypeVar("K", bound=Hashable)

SMALLEST_SHOWN: Final = 8  # counts 1..7 are suppressed
ROUND_TO: Final = 5
SUPPRESSED: Final = "*"
Sum = tuple[K, Sequence[K]]  # a total and the cells it adds up


def is_small(count: int) -> bool:
    """A count that may not be shown: from 1 to 7 (none is no one, and is shown)."""
    return 0 < count < SMALLEST_SHOWN


def rounded(count: int) -> int:
    """A count to the nearest 5 (halves up: 8 shows as 10, 12 as 10, 13 as 15)."""
    return ((count + ROUND_TO // 2) // ROUND_TO) * ROUND_TO


def shown(count: int, suppressed: bool) -> int | str:
    """What is published for a count: `*` when suppressed, else rounded to the nearest 5."""
    return SUPPRESSED if suppressed or is_small(count) else rounded(count)


def _null_space(unknowns: Sequence[K], sums: Sequence[Sum[K]]) -> list[dict[K, Fraction]]:
    """A basis of the changes to the unknown cells that keep every sum: the attacker's freedom."""
    index = {key: i for i, key in enumerate(unknowns)}
    rows: list[list[Fraction]] = []
    for total, parts in sums:
        row = [Fraction(0)] * len(unknowns)
        for key, sign in ((total, -1), *((p, 1) for p in parts)):
            if key in index:
                row[index[key]] += sign
        if any(row):
            rows.append(row)
    pivots: list[int] = []
    rank = 0
    for col in range(len(unknowns)):  # reduced row echelon form, exact
        pivot = next((r for r in range(rank, len(rows)) if rows[r][col] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        lead = rows[rank][col]
        rows[rank] = [v / lead for v in rows[rank]]
        for r in range(len(rows)):
            if r != rank and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[rank], strict=True)]
        pivots.append(col)
        rank += 1
    basis = []
    for free in (c for c in range(len(unknowns)) if c not in pivots):
        vector = {unknowns[free]: Fraction(1)}
        for r, col in enumerate(pivots):
            if rows[r][free] != 0:
                vector[unknowns[col]] = -rows[r][free]
        basis.append(vector)
    return basis


def exposed(suppressed: Iterable[K], sums: Sequence[Sum[K]]) -> list[K]:
    """The suppressed cells that the cells shown and the sums pin down exactly."""
    unknowns = sorted(set(suppressed), key=repr)
    free = _null_space(unknowns, sums)
    return [key for key in unknowns if all(vector.get(key, 0) == 0 for vector in free)]


def _smallest_beside(
    cell: K,
    within: Sequence[tuple[K, ...]],
    lines: Sequence[tuple[K, ...]],
    values: Mapping[K, int],
    suppressed: set[K],
) -> K | None:
    """The cell to hide next to `cell`, from the sums `within` (else from anywhere): the one
    whose hiding leaves fewest other sums with a single hidden cell (so hiding stays local),
    then the smallest. Never a zero: hidden cells that add up to a shown 0 are all 0 (counts are
    not negative), so a zero hides nothing."""
    candidates = [
        key
        for line in within
        if cell in line
        for key in line
        if key not in suppressed and values.get(key, 0) > 0
    ] or [key for key, value in values.items() if key not in suppressed and value > 0]
    if not candidates:
        return None

    def cost(key: K) -> tuple[int, int, str]:
        opened = sum(1 for line in lines if key in line and not any(k in suppressed for k in line))
        return (opened, values[key], repr(key))

    return min(candidates, key=cost)


def protect(values: Mapping[K, int], sums: Sequence[Sum[K]]) -> frozenset[K]:
    """The cells to suppress: every small count, and small neighbours enough that none of them
    can be worked out from what is shown (secondary suppression).

    First the quick rule: a sum with one hidden cell hides another. Then the exact test: each
    hidden cell still pinned down by the sums hides a neighbour too; again until none is.
    """
    suppressed = {key for key, count in values.items() if is_small(count)}
    lines = [(total, *parts) for total, parts in sums]
    while True:
        # One at a time: the cell hidden for one sum often mends others too.
        lonely = next((line for line in lines if sum(k in suppressed for k in line) == 1), None)
        if lonely is not None:
            pinned, within = next(k for k in lonely if k in suppressed), [lonely]
        else:
            exact = exposed(suppressed, sums)
            if not exact:
                return frozenset(suppressed)
            pinned, within = exact[0], lines
        extra = _smallest_beside(pinned, within, lines, values, suppressed)
        if extra is None:  # every non-zero cell is hidden already: nothing more to hide
            return frozenset(suppressed)
        suppressed.add(extra)


def percentile(days: Mapping[int, int], fraction: float) -> float | None:
    """The `fraction` percentile (0.5 the median) of a histogram of days, linear between ranks
    (as Python's statistics.quantiles, "inclusive"); None when it may not be shown (under 8)."""
    n = sum(days.values())
    if n < SMALLEST_SHOWN:
        return None
    ordered = [d for d, count in sorted(days.items()) for _ in range(count)]
    position = (n - 1) * fraction
    low = int(position)
    high = min(low + 1, n - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
