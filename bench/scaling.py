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
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.reconciler import (
    MemorySampler,
    Message,
    Worker,
    build_backlog,
    drain_figures,
    end_offsets,
    log_problems,
    produce_all,
    start_worker,
    wait_drained,
    wait_ready,
)
from bench.report import number, say
from deploy.topics import TopicSetupError, create_topics
from schemas import topics

WORKER_COUNTS = (1, 2)
QUICK_SIZES = {"people": 1_000, "events": 8_000}
FULL_SIZES = {"people": 5_000, "events": 50_000}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick swaps in the small sizes."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    report.add_size_options(parser, QUICK_SIZES, FULL_SIZES)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    report.add_output_options(
        parser,
        results_help="where the JSON and worker logs go",
        keep_topics_help="leave each run's topics on the broker",
    )
    return report.parse_sized(parser, argv, QUICK_SIZES, FULL_SIZES)


def measure(
    workers: int, messages: list[Message], args: argparse.Namespace, stamp: str, tmp: Path
) -> dict[str, Any]:
    """One run on fresh topics: produce the backlog, start `workers` workers, time the drain."""
    prefix = f"bench-{stamp}-w{workers}."
    f: dict[str, Any] = {"workers": workers, "topic prefix": prefix}
    logs = [args.results / f"scaling-{stamp}-w{workers}-{n}.log" for n in range(workers)]
    with report.fresh_topics(prefix, keep=args.keep_topics, tag=f"[{workers} worker(s)] "):
        create_topics()
        say(f"[{workers} worker(s)] topics {prefix}* created; producing {len(messages):,}")
        seconds = produce_all(messages, topics.INBOUND.name)
        f["produce events/s"] = len(messages) / seconds
        f |= run_workers(workers, prefix, args, tmp / f"w{workers}", logs)
        f["dead-lettered"] = sum(
            end_offsets(topics.DEADLETTER.name, topics.DEADLETTER.partitions).values()
        )
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


def main(argv: list[str] | None = None) -> int:
    """Run one worker, then two, each on fresh topics; print the table; 3 without Kafka."""
    args = parse_args(argv)
    stamp = report.start_run(args)
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
    path = report.write_results("scaling", stamp, args, backlog=backlog, runs=runs)
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
