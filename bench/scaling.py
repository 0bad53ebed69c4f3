"""The scaling benchmark: how fast two workers drain a backlog of partner events, beside one.

For N in (1, 2) it takes a fresh topic prefix (so each run starts from an empty hub), produces
the same backlog to the 4-partition inbound topic, starts N `concord worker` processes (each
its own web port and RocksDB data dir, all in one consumer group), times from the moment all
are ready until the group's committed offsets reach every topic's end, stops them and deletes
the run's topics. Drain detection, the backlog and the worker start-up are bench/reconciler.py's.

`python -m bench.scaling [--people N] [--events M] [--quick]` (defaults 5,000 people and 50,000
appointment events; --quick 1,000 and 8,000) prints one table, workers | drain seconds |
events/s (of what was left when all were ready) | speed-up vs one | first start to drained,
and writes the figures as JSON to bench/results/. It reports
figures; it never asserts on speed. On a small machine shared with the broker, two workers
compete with each other and with Kafka for the same cores: expect a speed-up well short of 2x.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.reconciler import (
    RESULTS,
    MemorySampler,
    Message,
    Worker,
    build_backlog,
    drain_figures,
    end_offsets,
    log_problems,
    number,
    produce_all,
    say,
    start_worker,
    wait_drained,
    wait_ready,
)
from deploy.topics import TopicSetupError, create_topics, delete_topics_with_prefix
from schemas import topics

WORKER_COUNTS = (1, 2)

_LOAD_AT_START = os.getloadavg()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick swaps in the small sizes."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--people", type=int, default=None, help="population (default 5,000)")
    parser.add_argument(
        "--events", type=int, default=None, help="appointment events (default 50,000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1,000 people, 8,000 events")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument(
        "--keep-topics", action="store_true", help="leave each run's topics on the broker"
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where the JSON and worker logs go"
    )
    args = parser.parse_args(argv)
    sizes = (
        {"people": 1_000, "events": 8_000} if args.quick else {"people": 5_000, "events": 50_000}
    )
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def measure(
    workers: int, messages: list[Message], args: argparse.Namespace, stamp: str, tmp: Path
) -> dict[str, Any]:
    """One run on fresh topics: produce the backlog, start `workers` workers, time the drain."""
    prefix = f"bench-{stamp}-w{workers}."
    os.environ["CONCORD_TOPIC_PREFIX"] = prefix  # topic names and the workers' group follow it
    f: dict[str, Any] = {"workers": workers, "topic prefix": prefix}
    logs = [args.results / f"scaling-{stamp}-w{workers}-{n}.log" for n in range(workers)]
    try:
        create_topics()
        say(f"[{workers} worker(s)] topics {prefix}* created; producing {len(messages):,}")
        seconds = produce_all(messages, topics.INBOUND.name)
        f["produce events/s"] = len(messages) / seconds
        f |= run_workers(workers, prefix, args, tmp / f"w{workers}", logs)
        f["dead-lettered"] = sum(
            end_offsets(topics.DEADLETTER.name, topics.DEADLETTER.partitions).values()
        )
    finally:
        if not args.keep_topics:
            try:
                gone = delete_topics_with_prefix(prefix)
                say(f"[{workers} worker(s)] deleted {len(gone)} topics of the run")
            except Exception as exc:  # clean-up must not hide the error that ended the run
                say(f"clean-up failed: {exc!r}")
    errors = warnings = 0
    for log in logs:
        if log.exists():
            e, w, _ = log_problems(log)
            errors, warnings = errors + e, warnings + w
    f |= {"log errors": errors, "log warnings": warnings, "logs": [str(p) for p in logs]}
    return f


def run_workers(
    workers: int, prefix: str, args: argparse.Namespace, tmp: Path, logs: list[Path]
) -> dict[str, Any]:
    """Start the workers together; seconds from all ready to drained, and their peak memory."""
    f: dict[str, Any] = {}
    started = time.monotonic()
    procs: list[Worker] = []
    samplers: list[MemorySampler] = []
    try:
        for n in range(workers):
            worker_tmp = tmp / f"worker-{n}"  # start_worker puts its data dir under this
            worker_tmp.mkdir(parents=True, exist_ok=True)
            procs.append(start_worker(worker_tmp, logs[n]))
            samplers.append(MemorySampler(procs[-1].process.pid))
            samplers[-1].start()
        for worker in procs:
            wait_ready(worker)
        f["start to all ready s"] = time.monotonic() - started
        say(f"[{workers} worker(s)] all ready in {f['start to all ready s']:.1f} s; draining")
        f |= drain_figures(wait_drained(f"{prefix}hub", args.drain_timeout))
        f["start to drained s"] = f["start to all ready s"] + f["drain seconds"]
        f["exited during drain"] = sum(1 for w in procs if w.process.poll() is not None)
    finally:
        f["stop s"] = [w.stop() for w in procs]
        for sampler in samplers:
            sampler.stop()
    f["peak RSS MiB"] = [s.peak_kib / 1024 for s in samplers]
    return f


def render(runs: list[dict[str, Any]]) -> str:
    """workers | drain seconds | events/s | speed-up vs one | first start to drained."""
    base = runs[0]["pipeline drain events/s"] if runs and runs[0]["drain caught up"] else math.nan
    table = [("workers", "drain seconds", "events/s", "speed-up vs one", "start to drained s")]
    for run in runs:
        late = "" if run["drain caught up"] else " (TIMED OUT)"
        rate = run["pipeline drain events/s"]
        speedup = rate / base if run["drain caught up"] and base else math.nan
        table.append(
            (
                str(run["workers"]),
                number(run["drain seconds"], 1) + late,
                number(rate),
                "n/a" if math.isnan(speedup) else f"{speedup:.2f}x",
                number(run["start to drained s"], 1),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        " | ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in table
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def write_results(
    stamp: str, args: argparse.Namespace, backlog: dict[str, Any], runs: list[dict[str, Any]]
) -> Path:
    """The options, the backlog and each run's figures as JSON in the results folder."""
    path = args.results / f"scaling-{stamp}.json"
    document = {
        "benchmark": "scaling",
        "started": stamp,
        "options": {**vars(args), "results": str(args.results)},
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load average at start": _LOAD_AT_START,
            "load average at end": os.getloadavg(),
        },
        "backlog": backlog,
        "runs": [{k: _json_safe(v) for k, v in run.items()} for run in runs],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """Run one worker, then two, each on fresh topics; print the table; 3 without Kafka."""
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.results.mkdir(parents=True, exist_ok=True)
    say(f"building {args.events:,} events for {args.people:,} people (seed {args.seed})")
    built = build_backlog(args.people, args.events, args.seed)
    backlog = {
        "inbound events": len(built.messages),
        "appointments": built.appointments,
        "patients": built.patients,
        "mean envelope bytes": built.mean_bytes,
    }
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="concord-bench-scaling-") as tmp:
            for workers in WORKER_COUNTS:
                runs.append(measure(workers, built.messages, args, stamp, Path(tmp)))
    except TopicSetupError as exc:
        print(f"bench.scaling: {exc}", file=sys.stderr)
        return 3
    path = write_results(stamp, args, backlog, runs)
    print(
        f"{backlog['inbound events']:,} inbound events ({backlog['appointments']:,} appointments"
        f" + {backlog['patients']:,} link Patients), {topics.INBOUND.partitions} partitions,"
        f" {os.cpu_count()} CPUs"
    )
    print(render(runs))
    for run in runs:  # what the ready-to-drained clock does not see
        print(
            f"{run['workers']} worker(s): {run['inbound committed at ready']:,} inbound events"
            f" committed before all were ready; first start to drained"
            f" {run['start to drained s']:.1f} s"
        )
    print(f"\nfigures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
