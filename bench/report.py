"""What the benchmarks share: progress lines, the figure | value | baseline table, their common
options, the run's topics (deleted afterwards) and the results JSON.

The scripts keep their own measurements, rows and figure names; this module only says, prints
and files them the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deploy.topics import TopicSetupError, delete_topics_with_prefix

RESULTS = Path(__file__).resolve().parent / "results"

# Taken when a benchmark first imports this module, i.e. as its run starts.
_STARTED = time.monotonic()
_LOAD_AT_START = os.getloadavg()

Row = tuple[str, str, str]  # figure, value, baseline
Figures = dict[str, Any]


def say(message: str) -> None:
    """A progress line on stderr: a full run takes minutes."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def number(value: float, digits: int = 0) -> str:
    """Thousands separated; 'n/a' for NaN."""
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def render(rows: Iterable[Row]) -> str:
    """Plain aligned columns: figure | value | baseline."""
    table = [("figure", "value", "baseline"), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(2)]
    lines = [f"{f:<{widths[0]}} | {v:>{widths[1]}} | {b}" for f, v, b in table]
    lines.insert(1, f"{'-' * widths[0]}-+-{'-' * widths[1]}-+-{'-' * 40}")
    return "\n".join(lines)


# --- command-line options ---


def add_size_options(
    parser: argparse.ArgumentParser, quick: Mapping[str, float], full: Mapping[str, float]
) -> None:
    """--people, --events, --seed and --quick, as the worker benchmarks take them."""
    parser.add_argument(
        "--people", type=int, default=None, help=f"population (default {full['people']:,})"
    )
    parser.add_argument(
        "--events", type=int, default=None, help=f"appointment events (default {full['events']:,})"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{quick['people']:,} people, {quick['events']:,} events",
    )


def add_output_options(
    parser: argparse.ArgumentParser,
    *,
    results_help: str,
    keep_topics_help: str = "leave the run's topics on the broker",
) -> None:
    """--keep-topics and --results, the last options of every benchmark."""
    parser.add_argument("--keep-topics", action="store_true", help=keep_topics_help)
    parser.add_argument("--results", type=Path, default=RESULTS, help=results_help)


def parse_sized(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    quick: Mapping[str, float],
    full: Mapping[str, float],
) -> argparse.Namespace:
    """Parse; each size not given takes its --quick value, or its full one."""
    args = parser.parse_args(argv)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


# --- the run: its stamp, its topics ---


def start_run(args: argparse.Namespace) -> str:
    """The run's stamp, which names its topic prefix and files; makes the results folder."""
    args.results.mkdir(parents=True, exist_ok=True)
    return time.strftime("%Y%m%d-%H%M%S")


@contextmanager
def fresh_topics(prefix: str, *, keep: bool, tag: str = "") -> Iterator[None]:
    """Name every topic under `prefix` from here on; delete them all on the way out unless kept.

    A failed clean-up is said, never raised: it must not hide the error that ended the run.
    """
    os.environ["CONCORD_TOPIC_PREFIX"] = prefix  # topic names, app id and consumer group follow it
    try:
        yield
    finally:
        if not keep:
            try:
                say(f"{tag}deleted {len(delete_topics_with_prefix(prefix))} topics of the run")
            except Exception as exc:  # reported, never raised
                say(f"clean-up failed: {exc!r}")


def run_and_report(
    benchmark: str,
    stamp: str,
    args: argparse.Namespace,
    *,
    prefix: str,
    measure: Callable[[], Figures],
    rows_of: Callable[[Figures], Iterable[Row]],
    footer: str = "",
    **results: Any,
) -> int:
    """`measure()` on fresh topics under `prefix`, then its JSON written and its table printed;
    the exit status, 3 (said on stderr) when Kafka is unavailable.

    `results` goes on to write_results; `footer` follows the JSON's path under the table.
    """
    with fresh_topics(prefix, keep=args.keep_topics):
        try:
            figures = measure()
        except TopicSetupError as exc:
            print(f"bench.{benchmark}: {exc}", file=sys.stderr)
            return 3
    path = write_results(benchmark, stamp, args, figures=figures, **results)
    print(render(rows_of(figures)))
    print(f"\nfigures: {path}{footer}")
    return 0


# --- the results JSON ---


def json_safe(value: Any) -> Any:
    """`value` with every NaN (a figure that could not be measured) as None: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_results(
    benchmark: str,
    stamp: str,
    args: argparse.Namespace,
    *,
    arguments: dict[str, Any] | None = None,
    machine: dict[str, Any] | None = None,
    **sections: Any,
) -> Path:
    """<results>/<benchmark>-<stamp>.json: the options, the machine, then `sections` (the
    figures; scaling's backlog and runs).

    `arguments` replaces the full options under the key bench.publish has always written;
    `machine` adds to the machine block.
    """
    document: dict[str, Any] = {"benchmark": benchmark, "started": stamp}
    if arguments is None:
        document["options"] = {**vars(args), "results": str(args.results)}
    else:
        document["arguments"] = arguments
    document["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        **(machine or {}),
        # The machine may be shared: a busy neighbour shows here before it skews a figure.
        "load average at start": _LOAD_AT_START,
        "load average at end": os.getloadavg(),
    }
    document |= sections
    path: Path = args.results / f"{benchmark}-{stamp}.json"
    path.write_text(json.dumps(json_safe(document), indent=2) + "\n")
    return path
