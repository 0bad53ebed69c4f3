"""The fault suite (`make faults`): the hub's real processes on a three-broker Kafka cluster,
a paced stream of partner events, one fault injected mid-stream per scenario, and a table of
what was sent, acknowledged, alerted, delivered, lost and duplicated, and how long the hub took
to recover.

Each run takes fresh topics (replication factor 3 on the cluster), starts `concord deliver`
and one or two `concord worker` processes, and publishes clashing pairs of appointments (two
agencies booking one person at one time: each pair owes an alert to both bookers) through the
connectors' Publisher (acks=all). A stand-in partner endpoint (bench/partner_stub.py) records
every delivery. The suite supervises the processes as a service manager would: a process that
exits on its own is started again, and counted as a crash.

    python -m bench.faults                 # every scenario; starts the cluster on --kafka-port
    python -m bench.faults --short         # the short version
    python -m bench.faults --only broker-kill --runs 1

Figures per run: events sent, acknowledged by Kafka, alerts expected (two per pair of which
both events were acknowledged), alerts delivered (distinct recipient and pair), lost
(acknowledged events missing from the inbound topic, expected alerts never delivered),
duplicated (deliveries beyond the first of one recipient and pair, raw and after the partner
drops repeats by Idempotency-Key), recover s (the longest publish-to-partner delay of an alert
whose event was published after the fault began) and crashes. Progress goes to stderr; the
table to stdout; the figures as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka.admin import KafkaAdminClient

from bench import report
from bench.partner_stub import Delivery, PartnerStub
from bench.population import GP, MHT, PROBATION, VOLUNTARY, clash_pairs
from bench.reconciler import Worker, encode, free_port, start_worker, wait_ready
from bench.report import say
from connectors.kafka_io import Publisher, new_producer, read_topic
from deploy.kafka import local
from deploy.topics import create_topics
from schemas import topics

ROOT = Path(__file__).resolve().parents[1]
PARTNERS = [PROBATION, VOLUNTARY, GP, MHT]
STUB_PORT = 20700
KAFKA_PORT = 19720  # the suite's own cluster: nodes on 19720-19722, controllers 19723-19725

COLUMNS = (
    "scenario",
    "run",
    "sent",
    "acked",
    "alerts expected",
    "delivered",
    "events lost",
    "alerts lost",
    "dup raw",
    "dup by key",
    "recover s",
    "p50 s",
    "crashes",
)


# --- the hub's processes, supervised ---


@dataclass
class Process:
    """A hub process the suite runs: started by `spawn`, started again after a crash."""

    name: str
    spawn: Callable[[], subprocess.Popen[bytes]]
    ready: Callable[[], None] = lambda: None  # returns once the latest start is serving
    process: subprocess.Popen[bytes] | None = None
    crashes: int = 0
    paused: bool = False  # stopped on purpose: not a crash

    def start(self) -> None:
        self.process = self.spawn()
        self.paused = False

    def kill9(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost node would; not restarted by itself."""
        self.paused = True
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        self.paused = True
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Supervisor(threading.Thread):
    """Starts again any process that exits on its own, as systemd or Kubernetes would."""

    def __init__(self, processes: list[Process]) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(1.0):
            for p in self.processes:
                if not p.paused and p.process is not None and p.process.poll() is not None:
                    p.crashes += 1
                    say(f"  {p.name} exited ({p.process.returncode}); starting it again")
                    p.start()

    def stop(self) -> None:
        self._done.set()
        self.join()


def _worker_process(tmp: Path, n: int) -> Process:
    folder = tmp / f"worker-{n}"
    folder.mkdir(parents=True, exist_ok=True)
    holder: dict[str, Worker] = {}

    def spawn() -> subprocess.Popen[bytes]:
        holder["worker"] = start_worker(folder, folder / "worker.log")
        return holder["worker"].process

    return Process(f"worker {n}", spawn, ready=lambda: wait_ready(holder["worker"], 240.0))


def _deliverer_process(tmp: Path, endpoints: Path) -> Process:
    env = {
        **os.environ,
        "CONCORD_ENDPOINTS": str(endpoints),
        "CONCORD_DELIVERY_TIMEOUT_S": "5",
        "CONCORD_DELIVERY_BACKOFF_CAP_S": "5",
        "CONCORD_DELIVERY_HTTP_PORT": str(free_port()),
        "CONCORD_LOG_LEVEL": "warning",
        "CONCORD_LOG_FORMAT": "json",
    }

    def spawn() -> subprocess.Popen[bytes]:
        with (tmp / "deliverer.log").open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "services.ops.cli", "deliver"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    return Process("deliverer", spawn)


# --- the stream of events ---


@dataclass
class Feed:
    """Clashing pairs published at a steady rate; what was sent, acknowledged and when."""

    rate: float  # events per second
    seconds: float
    sent_at: dict[str, float] = field(default_factory=dict)  # event id -> monotonic send time
    acked: set[str] = field(default_factory=set)
    pairs: list[tuple[str, str, str, str]] = field(default_factory=list)  # ids and bookers
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        events = list(clash_pairs(0, max(1, int(self.rate * self.seconds) // 2)))
        publisher = Publisher()
        futures = []
        started = time.monotonic()
        try:
            for n in range(0, len(events), 2):
                ids = []
                for k, (partner, resource) in enumerate(events[n : n + 2]):
                    delay = started + (n + k) / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    key, value, event_id = encode(partner, resource)
                    self.sent_at[event_id] = time.monotonic()
                    ids.append(event_id)
                    try:
                        futures.append(
                            (event_id, publisher.send_encoded(topics.INBOUND.name, key, value))
                        )
                    except Exception as exc:  # not sent: counted as not acknowledged
                        say(f"  publish refused at once: {type(exc).__name__}")
                self.pairs.append((ids[0], ids[1], events[n][0], events[n + 1][0]))
            for event_id, future in futures:
                with contextlib.suppress(Exception):  # not acknowledged: counted so
                    future.get(timeout=180)
                    self.acked.add(event_id)
        finally:
            with contextlib.suppress(Exception):
                publisher.close()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join()

    def pair_of(self) -> dict[str, int]:
        """Event id -> the number of its pair."""
        return {event_id: k for k, pair in enumerate(self.pairs) for event_id in pair[:2]}

    def expected(self) -> dict[tuple[str, int], float]:
        """(recipient, pair) -> when the pair's clash could first be seen: the alerts owed."""
        owed = {}
        for k, (first, second, booker_a, booker_b) in enumerate(self.pairs):
            if first in self.acked and second in self.acked:
                owed[(booker_a, k)] = owed[(booker_b, k)] = self.sent_at[second]
        return owed


# --- one run of a scenario ---


@dataclass
class Run:
    """What a fault can act on: the processes, the partner and the cluster."""

    workers: list[Process]
    deliverer: Process
    stub: PartnerStub
    cluster: bool
    fault_started: float = math.nan
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    workers: int
    fault: Callable[[Run], None]
    needs_cluster: bool = False


def kill_worker_and_restart(run: Run) -> None:
    run.workers[0].kill9()
    run.workers[0].start()  # the service manager starts it again at once


def kill_one_of_two_workers(run: Run) -> None:
    run.workers[0].kill9()  # the survivor must take its partitions over


def kill_deliverer(run: Run) -> None:
    run.deliverer.kill9()
    run.deliverer.start()


def partner_fault(mode: str, seconds: float = 20.0) -> Callable[[Run], None]:
    def fault(run: Run) -> None:
        run.stub.set_mode(mode)
        time.sleep(seconds)
        run.stub.set_mode("up")

    return fault


def _inbound_leader() -> int:
    admin = KafkaAdminClient(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    try:
        [described] = admin.describe_topics([topics.INBOUND.name])
    finally:
        admin.close()
    return int(next(p["leader_id"] for p in described["partitions"] if p["partition_index"] == 0))


def kill_broker_and_restart(run: Run) -> None:
    """kill -9 the leader of inbound partition 0; start it again 15 s later."""
    victim = _inbound_leader()
    with _cluster_env():
        status = local.cluster_status()
        assert status is not None
        [node] = [n for n in status["nodes"] if n["node"] == victim]  # type: ignore[attr-defined]
        os.kill(node["pid"], signal.SIGKILL)
        run.notes.append(f"killed node {victim}")
        time.sleep(15)
        local.start_node(victim)


def restart_cluster(run: Run) -> None:
    """Every broker stopped (SIGTERM) at once, then the cluster started again."""
    with _cluster_env():
        local.stop_cluster()
        local.start_cluster(3)


def poison_every_topic(run: Run) -> None:
    """Undecodable values, the wrong shape and tombstones on every partition of every topic."""
    poison: list[bytes | None] = [
        b"\xff\xfenot json",
        b'{"subject": "a string", "event_type": 7}',
        b"[]",
        b"{}",
        None,  # a tombstone
    ]
    producer = new_producer()
    sent = 0
    try:
        for topic in topics.CATALOGUE:
            for partition in range(topic.partitions):
                for value in poison:
                    producer.send(topic.name, key=b"poison", value=value, partition=partition)
                    sent += 1
        producer.flush(timeout=60)
    finally:
        producer.close()
    run.notes.append(f"{sent} poison records on {len(topics.CATALOGUE)} topics")
    # Workers read the compacted topics whole as they start: poison there must not stop them.
    for worker in run.workers:
        worker.stop()
        worker.start()


SCENARIOS = (
    Scenario("worker-kill-1", "kill -9 of the only worker, started again", 1,
             kill_worker_and_restart),
    Scenario("worker-kill-2", "kill -9 of one of two workers, not started again", 2,
             kill_one_of_two_workers),
    Scenario("broker-kill", "kill -9 of a broker (inbound leader), started again 15 s later", 1,
             kill_broker_and_restart, needs_cluster=True),
    Scenario("cluster-restart", "all three brokers stopped and started again", 1,
             restart_cluster, needs_cluster=True),
    Scenario("partner-down", "partner endpoint not listening for 20 s", 1,
             partner_fault("down")),
    Scenario("partner-error", "partner endpoint answering 500 for 20 s", 1,
             partner_fault("error")),
    Scenario("partner-hang", "partner endpoint not answering for 20 s", 1,
             partner_fault("hang")),
    Scenario("deliverer-kill", "kill -9 of the deliverer, started again", 1, kill_deliverer),
    Scenario("poison", "5 poison records on every partition of every topic; workers restarted", 1,
             poison_every_topic),
)  # fmt: skip
BY_NAME = {s.name: s for s in SCENARIOS}
FULL_RUNS = {"worker-kill-1": 3, "worker-kill-2": 3}
SHORT = ("worker-kill-2", "deliverer-kill", "partner-error")


@contextlib.contextmanager
def _cluster_env() -> Iterator[None]:
    # deploy.kafka.local manages the cluster on CONCORD_KAFKA_PORT; the hub's processes reach
    # it through KAFKA_BOOTSTRAP_SERVERS, which would make local treat it as external.
    saved = os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = saved


def run_scenario(
    scenario: Scenario, number: int, args: argparse.Namespace, stub: PartnerStub, tmp: Path
) -> dict[str, Any]:
    """One run on fresh topics: processes up, stream, fault, settle, count."""
    tag = f"[{scenario.name} #{number}]"
    prefix = f"faults-{time.strftime('%H%M%S')}-{scenario.name}-{number}."
    folder = tmp / prefix.rstrip(".")
    folder.mkdir(parents=True)
    stub.clear()
    stub.set_mode("up")
    endpoints = folder / "endpoints.yaml"
    endpoints.write_text(stub.endpoints_yaml(PARTNERS))
    with report.fresh_topics(prefix, keep=args.keep_topics, tag=f"{tag} "):
        create_topics()
        run = Run(
            workers=[_worker_process(folder, n) for n in range(scenario.workers)],
            deliverer=_deliverer_process(folder, endpoints),
            stub=stub,
            cluster=args.cluster,
        )
        everyone = [*run.workers, run.deliverer]
        for p in everyone:
            p.start()
        supervisor = Supervisor(everyone)
        try:
            for worker in run.workers:
                worker.ready()
            supervisor.start()
            say(f"{tag} {scenario.workers} worker(s) ready; streaming {args.seconds:g} s")
            feed = Feed(args.rate, args.seconds)
            feed.start()
            time.sleep(args.fault_at)
            say(f"{tag} fault: {scenario.what}")
            run.fault_started = time.monotonic()
            scenario.fault(run)
            feed.join()
            say(f"{tag} stream done: {len(feed.sent_at)} sent, {len(feed.acked)} acknowledged")
            figures = settle(feed, run, args.settle, tag)
        finally:
            if supervisor.is_alive():
                supervisor.stop()
            for p in everyone:
                p.stop()
        figures["crashes"] = sum(p.crashes for p in everyone)
        figures["notes"] = run.notes
        if args.keep_logs:
            shutil.copytree(folder, args.results / f"faults-logs-{prefix.rstrip('.')}",
                            ignore=shutil.ignore_patterns("worker-data"))  # fmt: skip
    return {"scenario": scenario.name, "run": number, **figures}


def settle(feed: Feed, run: Run, timeout_s: float, tag: str) -> dict[str, Any]:
    """Wait (bounded) until every owed alert has reached the partner; then count."""
    owed = feed.expected()
    pair_of = feed.pair_of()
    deadline = time.monotonic() + timeout_s
    last_said = 0.0
    while missing := [k for k in owed if k not in first_deliveries(run.stub.deliveries, pair_of)]:
        if time.monotonic() > deadline:
            break
        if time.monotonic() - last_said > 10:
            say(f"{tag} waiting for {len(missing)} of {len(owed)} alerts")
            last_said = time.monotonic()
        time.sleep(1.0)
    on_inbound = {
        _event_id(value) for _, value in read_topic(topics.INBOUND.name, idle_timeout_s=3.0)
    }
    return tally(feed, list(run.stub.deliveries), on_inbound, run.fault_started)


def tally(
    feed: Feed, deliveries: list[Delivery], on_inbound: set[str | None], fault_started: float
) -> dict[str, Any]:
    """The figures of one run, from what was sent, what the partner got and what is on inbound."""
    owed = feed.expected()
    pair_of = feed.pair_of()
    first_at = first_deliveries(deliveries, pair_of)
    ours = [d for d in deliveries if d.correlation_id in pair_of]
    by_alert = {(d.partner, pair_of[str(d.correlation_id)], d.event_type) for d in ours}
    # What is left once the partner drops a delivery whose Idempotency-Key it has seen.
    by_key = {(d.partner, d.idempotency_key or d.event_id) for d in ours}
    delays = {k: at - owed[k] for k, at in first_at.items() if k in owed}
    after_fault = [delay for k, delay in delays.items() if owed[k] >= fault_started]
    return {
        "sent": len(feed.sent_at),
        "acked": len(feed.acked),
        "alerts expected": len(owed),
        "delivered": len(delays),
        "events lost": len(feed.acked - on_inbound),
        "alerts lost": len(owed) - len(delays),
        "dup raw": len(ours) - len(by_alert),
        "dup by key": len(by_key) - len(by_alert),
        "recover s": max(after_fault) if after_fault else math.nan,
        "p50 s": _median(list(delays.values())),
        # For the JSON: when each lost alert's event was published, relative to the fault.
        "lost alerts sent at s": sorted(
            round(owed[k] - fault_started, 1) for k in owed if k not in delays
        ),
    }


def _event_id(value: bytes | None) -> str | None:
    try:
        return str(orjson.loads(value or b"null")["event_id"])
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None  # a poison record


def first_deliveries(
    deliveries: list[Delivery], pair_of: dict[str, int]
) -> dict[tuple[str, int], float]:
    """(recipient, pair) -> when its first clash alert arrived."""
    first: dict[tuple[str, int], float] = {}
    for d in list(deliveries):
        if d.correlation_id in pair_of and d.event_type.startswith("alert.clash"):
            first.setdefault((d.partner, pair_of[d.correlation_id]), d.at)
    return first


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else math.nan


# --- the table ---


def render(rows: list[dict[str, Any]]) -> str:
    """One line per run, the columns of COLUMNS."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if math.isnan(value) else f"{value:.1f}"
        return str(value)

    table = [list(COLUMNS), *[[cell(row.get(c, "")) for c in COLUMNS] for row in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [" | ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in
                        enumerate(zip(line, widths, strict=True))) for line in table]  # fmt: skip
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


# --- the suite ---


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--short", action="store_true", help=f"only {', '.join(SHORT)}, once")
    parser.add_argument("--only", action="append", choices=list(BY_NAME), help="these scenarios")
    parser.add_argument("--runs", type=int, default=None, help="runs of each (default 3 for "
                        "the worker kills, 1 otherwise; 1 with --short)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=None, help="stream length (60; short 30)")
    parser.add_argument("--fault-at", type=float, default=10.0, help="seconds into the stream")
    parser.add_argument("--settle", type=float, default=150.0, help="most seconds to wait for "
                        "owed alerts after the stream")  # fmt: skip
    parser.add_argument("--kafka-port", type=int, default=KAFKA_PORT, help="the cluster's first "
                        "node (the next two follow; controllers above them)")  # fmt: skip
    parser.add_argument("--no-cluster", dest="cluster", action="store_false", help="use the "
                        "broker KAFKA_BOOTSTRAP_SERVERS names; skip broker scenarios")  # fmt: skip
    parser.add_argument("--stop-cluster", action="store_true", help="stop it afterwards")
    parser.add_argument("--stub-port", type=int, default=STUB_PORT)
    parser.add_argument("--keep-logs", action="store_true", help="copy each run's logs to results")
    report.add_output_options(parser, results_help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 30.0 if args.short else 60.0
    return args


def plan(args: argparse.Namespace) -> list[tuple[Scenario, int]]:
    """(scenario, run number) in order."""
    names = args.only or (list(SHORT) if args.short else [s.name for s in SCENARIOS])
    chosen = [BY_NAME[n] for n in names if args.cluster or not BY_NAME[n].needs_cluster]
    runs = (
        (lambda s: args.runs)
        if args.runs
        else (lambda s: 1 if args.short else FULL_RUNS.get(s.name, 1))
    )
    return [(s, n) for s in chosen for n in range(1, runs(s) + 1)]


def start_cluster(args: argparse.Namespace) -> None:
    """The suite's three-broker cluster; every process it starts knows all three nodes."""
    os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    os.environ["CONCORD_KAFKA_PORT"] = str(args.kafka_port)
    os.environ.pop("CONCORD_KAFKA_CONTROLLER_PORT", None)
    say(f"starting the three-broker cluster on 127.0.0.1:{args.kafka_port}")
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = local.start_cluster(3)
    os.environ["CONCORD_REPLICATION_FACTOR"] = "3"


def run_suite(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every planned run, one at a time; the rows of the table."""
    if args.cluster:
        start_cluster(args)
    stub = PartnerStub(args.stub_port)
    stub.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="concord-faults-") as tmp:
            for scenario, number in plan(args):
                rows.append(run_scenario(scenario, number, args, stub, Path(tmp)))
                say("  " + ", ".join(f"{k} {v}" for k, v in rows[-1].items() if k in COLUMNS))
    finally:
        stub.stop()
        if args.cluster and args.stop_cluster:
            with _cluster_env():
                local.stop_cluster()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = report.start_run(args)
    rows = run_suite(args)
    path = report.write_results("faults", stamp, args, runs=rows)
    print(render(rows))
    print(f"\nfigures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
