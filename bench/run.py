"""Every benchmark in turn, for `make bench` (`--quick` is passed on): publish, pipeline, scaling, state.

Each runs in its own process on its own topics, so one's state never colours another's figures.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("bench.publish", "bench.reconciler", "bench.scaling", "bench.state")


def main(argv: list[str] | None = None) -> int:
    """Run each benchmark; the exit status is the first failure's, else 0."""
    args = list(sys.argv[1:] if argv is None else argv)
    failed = 0
    for module in BENCHMARKS:
        print(f"\n== {module} {' '.join(args)}", flush=True)
        code = subprocess.run([sys.executable, "-m", module, *args], check=False).returncode
        failed = failed or code
    return failed


if __name__ == "__main__":
    sys.exit(main())
