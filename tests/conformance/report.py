"""Print how the hub fares on the public corpus: per format and in total, how many files it
accepts (or passes by) as a user wants, refuses correctly, refuses wrongly, accepts wrongly,
refuses for another reason, or takes with other content than a user wants.

    python -m tests.conformance.report [--files]

`--files` also lists each file that is not handled as wanted, with the first reason.
"""

from __future__ import annotations

import sys
from collections import Counter

from tests.conformance.manifest import VERDICTS, entries, verdict
from tests.conformance.paths import PUBLIC, outcomes


def main(argv: list[str]) -> int:
    """Print the counts table (and with --files, each file not handled as wanted)."""
    counts: dict[str, Counter[str]] = {}
    misses = []
    for name, entry in sorted(entries().items()):
        result = verdict(entry, outcomes(PUBLIC / name, entry["partner"], entry["format"]))
        counts.setdefault(name.split("/")[0], Counter())[result.name] += 1
        if not result.met:
            misses.append(f"{name}: {result.name}: {result.detail}")
    total = sum(counts.values(), Counter())
    width = max(len(v) for v in VERDICTS)
    formats = sorted(counts)
    print(" " * width + "".join(f"{f:>14}" for f in [*formats, "total"]))
    for name in VERDICTS:
        row = [counts[f][name] for f in formats] + [total[name]]
        print(f"{name:<{width}}" + "".join(f"{n:>14}" for n in row))
    files = [sum(counts[f].values()) for f in formats] + [sum(total.values())]
    print(f"{'files':<{width}}" + "".join(f"{n:>14}" for n in files))
    if "--files" in argv:
        print()
        print("\n".join(misses))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
