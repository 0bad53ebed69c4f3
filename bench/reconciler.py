"""The reconciler benchmark: how fast one worker drains a backlog of partner events, and how
soon a clash reaches the alerts topic, beside a raw Kafka consumer on the same broker.

`python -m bench.reconciler [--people N] [--events M] [--quick]` prints one table and writes
the figures as JSON to bench/results/. It reports figures; it never asserts on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from rocksdict import AccessType, Options, Rdict

from bench import faust_baselines, report
from bench.population import clash_pairs, generate
from bench.report import Row, number, say
from connectors.kafka_io import new_admin, new_consumer, new_producer, read_topic
from deploy.topics import create_topics
from schemas import fhir, topics
from schemas.envelope import wrap
from schemas.identifiers import NHS_NUMBER
from schemas.keys import home_partition
from services.ops.client import get_json
from services.runtime import aiokafka_client_config, person_key

ROOT = Path(__file__).resolve().parents[1]

# The table's rows, in order; the smoke test checks each is printed.
FIGURES = (
    "inbound events",
    "produce events/s",
    "raw consume events/s",
    "worker start to ready s",
    "drain seconds",
    "pipeline drain events/s",
    "faust do-nothing agent events/s",
    "faust naive per-event agent events/s",
    "drain alerts emitted",
    "worker peak RSS MiB",
    "alerts matched",
    "alert latency p50 ms",
    "alert latency p99 ms",
    "alert latency max ms",
    "calendars",
    "state bytes/person",
    "dead-lettered",
)

Message = tuple[bytes, bytes, str]  # Kafka key, value, and the envelope's event id

QUICK_SIZES = {"people": 2_000, "events": 10_000, "rate": 100.0, "seconds": 5.0}
FULL_SIZES = {"people": 20_000, "events": 200_000, "rate": 1_000.0, "seconds": 60.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick swaps in the small CI sizes."""
    parser = argparse.ArgumentParser(prog="python -m bench.reconciler", description=__doc__)
    report.add_size_options(parser, QUICK_SIZES, FULL_SIZES)
    parser.add_argument("--rate", type=float, default=None, help="alert phase events/s")
    parser.add_argument("--seconds", type=float, default=None, help="alert phase duration")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="skip the faust do-nothing and naive per-event agents (bench/faust_baselines.py)",
    )
    report.add_output_options(parser, results_help="where the JSON and worker log go")
    return report.parse_sized(parser, argv, QUICK_SIZES, FULL_SIZES)


# --- the backlog: envelopes built before any timing starts ---


def encode(partner: str, resource: dict[str, Any]) -> Message:
    """A resource as its partner's connector would publish it: wrapped, encoded, keyed."""
    envelope = wrap(
        resource,
        event_type=fhir.event_type_for(resource["resourceType"]),
        source=partner,
        subject=fhir.subject_of(resource),
    )
    return envelope.key(), envelope.model_dump_json().encode(), str(envelope.event_id)


@dataclass
class Backlog:
    """The inbound messages of a population, and what the worker should make of them."""

    messages: list[Message] = field(default_factory=list)
    patients: int = 0
    appointments: int = 0
    people: int = 0  # distinct people the messages name: the calendars the worker should hold

    @property
    def mean_bytes(self) -> float:
        """Mean envelope size."""
        return sum(len(v) for _, v, _ in self.messages) / max(1, len(self.messages))


def build_backlog(people: int, events: int, seed: int) -> Backlog:
    """Every envelope of the population, encoded; validates a sample against the hub's rules."""
    backlog = Backlog()
    named, linked = set(), set()
    total = events + people  # an upper bound, for progress only
    for n, (partner, resource) in enumerate(generate(people, events, seed)):
        if n < 200:
            fhir.validate(resource)  # a benchmark of rejected input would measure the wrong path
        key, value, event_id = encode(partner, resource)
        backlog.messages.append((key, value, event_id))
        named.add(key)  # the identifier token a message is keyed by (a Patient's: its CRN)
        if resource["resourceType"] == "Patient":
            backlog.patients += 1
            linked |= {i["value"] for i in resource["identifier"] if i["system"] == NHS_NUMBER}
        else:
            backlog.appointments += 1
        if n % 50_000 == 0 and n:
            say(f"building envelopes {n:,}/~{total:,}")
    # An NHS number that a Patient links to a CRN is the same person as that CRN.
    backlog.people = sum(1 for key in named if key.decode().rpartition("|")[2] not in linked)
    return backlog


# --- Kafka: produce, and the raw consumer baseline ---


def produce_all(messages: list[Message], topic: str) -> float:
    """Seconds to send every message with acks=all until the last is acknowledged."""
    # As the edge does (connectors/kafka_io.py): inbound events to their person's partition.
    # A generator, so working each one out stays inside the timed loop.
    keyed = (
        (key, value, home_partition(key, person_key()) if topic == topics.INBOUND.name else None)
        for key, value, _ in messages
    )
    return produce_timed(keyed, len(messages), topic)


def produce_timed(
    records: Iterable[tuple[bytes, bytes, int | None]],
    total: int,
    topic: str,
    progress: str = "producing",
    noun: str = "message",
) -> float:
    """Seconds to send `total` (key, value, partition) records with acks=all until the last is
    acknowledged; a partition of None is the producer's choice."""
    # Half the broker's default message.max.bytes: a full batch is still accepted.
    producer = new_producer(linger_ms=5, batch_size=512 * 1024)
    failures: list[Exception] = []
    step = max(1, total // 10)
    try:
        started = time.perf_counter()
        for n, (key, value, partition) in enumerate(records, start=1):
            producer.send(topic, key=key, value=value, partition=partition).add_errback(
                failures.append
            )
            if n % step == 0:
                say(f"{progress} {n:,}/{total:,}")
        producer.flush(timeout=300)
        elapsed = time.perf_counter() - started
    finally:
        producer.close()
    if failures:
        raise RuntimeError(f"Kafka refused {len(failures)} {noun}(s): {failures[0]!r}")
    return elapsed


async def _raw_consume(topic: str, partitions: int) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(**aiokafka_client_config(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [AioTopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        count = 0
        started = time.perf_counter()
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            count += sum(len(records) for records in batch.values())
        return count, time.perf_counter() - started
    finally:
        await consumer.stop()


def raw_consume(topic: str, partitions: int) -> tuple[int, float]:
    """(messages, seconds) for a group-less aiokafka consumer reading the topic to its end."""
    return asyncio.run(_raw_consume(topic, partitions))


def end_offsets(topic: str, partitions: int) -> dict[int, int]:
    """Partition -> end offset of a topic now."""
    consumer = new_consumer(group_id=None)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


# --- the worker under test ---


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(current RSS, peak RSS) of a process in KiB from /proc (psutil is not installed)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None  # the process has gone
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    try:
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (KeyError, ValueError, IndexError):
        return None


class MemorySampler(threading.Thread):
    """Samples a process's RSS every half second, keeping the peak seen."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_kib = self.current_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            sample = memory_kib(self.pid)
            if sample:
                self.current_kib = sample[0]
                self.peak_kib = max(self.peak_kib, sample[1])
            if self._stop_event.wait(self.every_s):
                return

    def stop(self) -> None:
        """Stop sampling."""
        self._stop_event.set()
        self.join()


@dataclass
class Worker:
    """One `concord worker` subprocess with a RocksDB store in its own data dir."""

    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log: Path

    def get(self, path: str) -> tuple[int, Any]:
        """(HTTP status, JSON body); 0 when nothing answers."""
        return get_json(self.url + path, timeout_s=60.0)

    def stop(self) -> float:
        """SIGTERM and wait; seconds the worker took to stop."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return time.monotonic() - started


def start_worker(tmp: Path, log: Path) -> Worker:
    """Start a worker on the run's topics; it answers /ready once tables are recovered."""
    port = free_port()
    env = {
        **os.environ,
        "CONCORD_WEB_PORT": str(port),
        "CONCORD_STORE": "rocksdb://",
        "CONCORD_DATA_DIR": str(tmp / "worker-data"),
        "CONCORD_LOG_LEVEL": "warning",
        "CONCORD_LOG_FORMAT": "json",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                *(
                    ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
                    if os.environ.get("BENCH_PROFILE")
                    else []
                ),
                "-m",
                "services.ops.cli",
                "worker",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, f"http://127.0.0.1:{port}", tmp / "worker-data", log)


def wait_ready(worker: Worker, timeout_s: float = 180.0) -> None:
    """Bounded poll of /ready; raise, naming the log, if the worker dies or never gets there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"the worker exited; see {worker.log}")
        if worker.get("/ready")[0] == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the worker was not ready within {timeout_s:.0f} s; see {worker.log}")


# --- the drain: committed offsets of the worker's group against the topics' ends ---


@dataclass
class Drain:
    """How the drain went: seconds from ready to caught up, or the progress when time ran out."""

    seconds: float
    caught_up: bool
    inbound_done: int  # inbound messages committed when it ended
    inbound_at_ready: int  # already committed when the clock started (processed during start-up)


def _positions(
    admin: KafkaAdminClient, consumer: KafkaConsumer, group: str, tps: list[TopicPartition]
) -> dict[str, list[int]]:
    """Topic -> [committed, end] summed over its partitions."""
    committed = admin.list_group_offsets({group: None}).get(group, {})
    ends = consumer.end_offsets(tps)
    totals: dict[str, list[int]] = {}
    for tp in tps:
        done = committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0
        pair = totals.setdefault(tp.topic, [0, 0])
        pair[0] += done
        pair[1] += ends[tp]
    return totals


def wait_drained(group: str, timeout_s: float) -> Drain:
    """Poll until the group has committed every topic it reads up to its end, twice running."""
    # Links and assignments too: a backlog is only drained once the linker has caught up.
    read = (topics.INBOUND, topics.ASSIGNMENTS, topics.LINKS, topics.PERSON_EVENTS)
    tps = [TopicPartition(t.name, p) for t in read for p in range(t.partitions)]
    admin = new_admin(client_id="concord-bench")
    consumer = new_consumer(group_id=None)
    started = time.monotonic()
    caught_up_at: float | None = None
    last_said = 0.0
    totals: dict[str, list[int]] = {t.name: [0, 0] for t in read}
    try:
        at_ready = (_look(admin, consumer, group, tps) or totals)[topics.INBOUND.name][0]
        while True:
            now = time.monotonic()
            looked = _look(admin, consumer, group, tps)
            totals = looked or totals
            if looked and all(done >= end for done, end in looked.values()):
                if caught_up_at is not None:  # the second look: nothing new was produced since
                    inbound = totals[topics.INBOUND.name][0]
                    return Drain(caught_up_at - started, True, inbound, at_ready)
                caught_up_at = now
            else:
                caught_up_at = None
            if now - last_said >= 5.0:
                last_said = now
                say(
                    "draining " + ", ".join(f"{t.short_name} {_pair(totals[t.name])}" for t in read)
                )
            if now - started > timeout_s:
                inbound = totals[topics.INBOUND.name][0]
                return Drain(now - started, False, inbound, at_ready)
            time.sleep(1.0)
    finally:
        consumer.close()
        admin.close()


def _look(
    admin: KafkaAdminClient, consumer: KafkaConsumer, group: str, tps: list[TopicPartition]
) -> dict[str, list[int]] | None:
    # A broker too busy to answer one poll is not the end of the drain; the timeout is.
    try:
        return _positions(admin, consumer, group, tps)
    except KafkaError as exc:
        say(f"offsets poll failed ({exc.__class__.__name__}); polling again")
        return None


def _pair(pair: list[int]) -> str:
    return f"{pair[0]:,}/{pair[1]:,}"


# --- alert latency: a paced stream of fresh clashes ---


@dataclass
class Offer:
    """What the paced stream sent: produce timestamps by event id, and the alerts' start."""

    sent_at: dict[str, int]  # event id -> Kafka timestamp (ms) of the inbound record
    pairs: int
    alerts_from: dict[int, int]  # alerts partition -> offset before the stream began
    seconds: float


def offer_clashes(first_person: int, rate: float, seconds: float, seed: int) -> Offer:
    """Send clashing pairs for new people at `rate` events/s; keep each record's timestamp."""
    pairs = max(1, int(rate * seconds) // 2)
    messages = [encode(p, r) for p, r in clash_pairs(first_person, pairs, seed)]
    alerts_from = end_offsets(topics.ALERTS.name, topics.ALERTS.partitions)
    producer = new_producer(linger_ms=5)
    futures = []
    try:
        started = time.monotonic()
        for n, (key, value, event_id) in enumerate(messages):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(
                (
                    event_id,
                    producer.send(
                        topics.INBOUND.name,
                        key=key,
                        value=value,
                        partition=home_partition(key, person_key()),
                    ),
                )
            )
        producer.flush(timeout=60)
        elapsed = time.monotonic() - started
        sent_at = {event_id: future.get(timeout=60).timestamp for event_id, future in futures}
    finally:
        producer.close()
    return Offer(sent_at, pairs, alerts_from, elapsed)


def collect_latencies(offer: Offer, timeout_s: float) -> tuple[list[int], int]:
    """(latency ms per matched alert, alerts seen that no offered event caused); bounded wait."""
    expected = 2 * offer.pairs  # a clash alert to each of the two bookers
    consumer = new_consumer(group_id=None, enable_auto_commit=False)
    latencies: list[int] = []
    unmatched = 0
    try:
        tps = [TopicPartition(topics.ALERTS.name, p) for p in offer.alerts_from]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, offer.alerts_from[tp.partition])
        deadline = time.monotonic() + timeout_s
        while len(latencies) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    cause = orjson.loads(record.value).get("correlation_id")
                    if cause in offer.sent_at:
                        latencies.append(record.timestamp - offer.sent_at[cause])
                    else:
                        unmatched += 1
    finally:
        consumer.close()
    return latencies, unmatched


def alert_kinds(total: int) -> dict[str, int]:
    """Alerts on the topic by event type (the first `total` of them)."""
    counts: dict[str, int] = {}
    if total:
        for _, value in read_topic(topics.ALERTS.name, max_messages=total, idle_timeout_s=5.0):
            kind = orjson.loads(value)["event_type"]
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


# --- afterwards: state size, the worker's complaints, clean-up ---


def dir_bytes(path: Path) -> dict[str, int]:
    """Bytes of the files under a RocksDB data dir: in total, in SST files, in write-ahead logs."""
    sizes = {"total": 0, "sst": 0, "wal": 0}
    for file in path.rglob("*"):
        if file.is_file():
            size = file.stat().st_size
            sizes["total"] += size
            if file.suffix == ".sst":
                sizes["sst"] += size
            elif file.suffix == ".log":
                sizes["wal"] += size
    return sizes


def live_calendar_bytes(data_dir: Path) -> int:
    """Key and value bytes the calendars table holds now, read from the stopped worker's RocksDB.

    The data dir also holds every superseded value still in a write-ahead log or not yet
    compacted away; this is the live state it would shrink towards.
    """
    total = 0
    for path in sorted(data_dir.rglob("calendars-*.db")):
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            total += sum(len(key) + len(value) for key, value in db.items())
        finally:
            db.close()
    return total


def log_problems(log: Path) -> tuple[int, int, list[str]]:
    """(errors, warnings, first error lines) in the worker's log (faust's and structlog's)."""
    errors, warnings, first = 0, 0, []
    for line in log.read_text(errors="replace").splitlines():
        lowered = line.lower()
        if "[error]" in lowered or '"level": "error"' in lowered or "traceback" in lowered:
            errors += 1
            if len(first) < 5:
                first.append(line[:300])
        elif "[warning]" in lowered or '"level": "warning"' in lowered:
            warnings += 1
    return errors, warnings, first


# --- the table ---


def times(value: float, base: float) -> str:
    """'0.49x', or 'n/a' when either is unknown."""
    ratio = value / base if base else math.nan
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"


def rows_of(f: dict[str, Any]) -> list[Row]:
    """The table rows from the figures dict (see run and measure_worker for its keys)."""
    raw, drain = f["raw consume events/s"], f["pipeline drain events/s"]
    ratio = drain / raw if raw else math.nan
    noop, naive = f["faust do-nothing agent events/s"], f["faust naive per-event agent events/s"]
    drained = "" if f["drain caught up"] else f" (TIMED OUT at {f['drain seconds']:.0f} s)"
    latency_base = f"{f['alert rate']:,.0f} events/s offered for {f['alert seconds']:.0f} s"
    return [
        (
            "inbound events",
            number(f["inbound events"]),
            f"{f['appointments']:,} appointment events + {f['patients']:,} link Patients",
        ),
        (
            "produce events/s",
            number(f["produce events/s"]),
            f"kafka-python, acks=all, linger 5 ms; mean envelope {f['mean envelope bytes']:,.0f} B",
        ),
        ("raw consume events/s", number(raw), "aiokafka, no group, no decoding"),
        ("worker start to ready s", number(f["worker start to ready s"], 1), "process start"),
        (
            "drain seconds",
            number(f["drain seconds"], 1) + drained,
            f"from ready; raw consumer {number(f['raw consume seconds'], 2)} s",
        ),
        (
            "pipeline drain events/s",
            number(drain),
            f"raw aiokafka consumer {number(raw)} (ratio {ratio:.3f});"
            f" {times(drain, noop)} do-nothing agent, {times(drain, naive)} naive agent",
        ),
        (
            "faust do-nothing agent events/s",
            number(noop),
            "faust agent on the inbound topic that does nothing; from its first commit",
        ),
        (
            "faust naive per-event agent events/s",
            number(naive),
            "one agent, per event: decode, route, calendar table, await send per output, log",
        ),
        (
            "drain alerts emitted",
            number(f["drain alerts emitted"]),
            ", ".join(
                f"{kind.removeprefix('alert.').replace('.', ' ')} {count:,}"
                for kind, count in sorted(f["drain alerts by type"].items())
            ),
        ),
        (
            "worker peak RSS MiB",
            number(f["worker peak RSS MiB"]),
            f"before stopping {number(f['worker RSS before stop MiB'])} MiB",
        ),
        (
            "alerts matched",
            number(f["alerts matched"]),
            f"of {f['alerts expected']:,} expected ({f['alerts unmatched']:,} others seen)",
        ),
        ("alert latency p50 ms", number(f["alert latency p50 ms"]), latency_base),
        ("alert latency p99 ms", number(f["alert latency p99 ms"]), latency_base),
        ("alert latency max ms", number(f["alert latency max ms"]), latency_base),
        (
            "calendars",
            number(f["calendars"]),
            f"expected {f['people expected']:,} people",
        ),
        (
            "state bytes/person",
            number(f["state bytes/person"]),
            f"RocksDB data dir {f['data dir total bytes'] / 1e6:,.1f} MB (SST"
            f" {f['data dir sst bytes'] / 1e6:,.1f}, WAL {f['data dir wal bytes'] / 1e6:,.1f});"
            f" live calendars {number(f['live calendar bytes/person'])} B/person",
        ),
        (
            "dead-lettered",
            number(f["dead-lettered"]),
            f"worker log: {f['log errors']} errors, {f['log warnings']} warnings",
        ),
    ]


# --- the run ---


def run(args: argparse.Namespace, prefix: str, tmp: Path, log: Path) -> dict[str, Any]:
    """Every phase in order: build, produce, raw baseline, then the worker; a flat dict of figures."""
    f: dict[str, Any] = {"alert rate": args.rate, "alert seconds": args.seconds}
    say(f"building {args.events:,} events for {args.people:,} people (seed {args.seed})")
    backlog = build_backlog(args.people, args.events, args.seed)
    f |= {
        "inbound events": len(backlog.messages),
        "appointments": backlog.appointments,
        "patients": backlog.patients,
        "mean envelope bytes": backlog.mean_bytes,
    }
    create_topics()
    say(f"topics {prefix}* created; producing {len(backlog.messages):,} envelopes")
    seconds = produce_all(backlog.messages, topics.INBOUND.name)
    f["produce events/s"] = len(backlog.messages) / seconds
    say(f"produced in {seconds:.1f} s; raw consumer baseline")
    count, seconds = raw_consume(topics.INBOUND.name, topics.INBOUND.partitions)
    f |= {"raw consume events/s": count / seconds, "raw consume seconds": seconds}
    say(f"raw consumer read {count:,} in {seconds:.1f} s")
    for mode, figure in (
        ("noop", "faust do-nothing agent"),
        ("naive", "faust naive per-event agent"),
    ):
        rate = math.nan
        if args.baselines:
            rate = faust_baselines.measure(mode, tmp, log)["events/s"]
            say(f"{figure}: {number(rate)} events/s")
        f[f"{figure} events/s"] = rate
    backlog.messages.clear()  # ~0.4 GB the worker may want
    f |= measure_worker(args, prefix, tmp, log)
    f["people expected"] = backlog.people + f["alerts expected"] // 2
    f["dead-lettered"] = sum(
        end_offsets(topics.DEADLETTER.name, topics.DEADLETTER.partitions).values()
    )
    f["log errors"], f["log warnings"], f["log first errors"] = log_problems(log)
    return f


def measure_worker(args: argparse.Namespace, prefix: str, tmp: Path, log: Path) -> dict[str, Any]:
    """Start one worker on the backlog; its drain, alert latency, memory and state size."""
    f: dict[str, Any] = {}
    say("starting the worker")
    started = time.monotonic()
    worker = start_worker(tmp, log)
    sampler = MemorySampler(worker.process.pid)
    sampler.start()
    try:
        wait_ready(worker)
        f["worker start to ready s"] = time.monotonic() - started
        say(f"worker ready in {f['worker start to ready s']:.1f} s; draining")
        f |= drain_figures(wait_drained(f"{prefix}hub", args.drain_timeout))
        f["drain alerts emitted"] = sum(
            end_offsets(topics.ALERTS.name, topics.ALERTS.partitions).values()
        )
        f["drain alerts by type"] = alert_kinds(f["drain alerts emitted"])
        say(f"offering clashes at {args.rate:,.0f} events/s for {args.seconds:.0f} s")
        f |= latency_figures(args, first_person=args.people)
        status, stats = worker.get("/stats")
        f["calendars"] = stats["calendars"] if status == 200 else math.nan
        disk = dir_bytes(worker.data_dir)
        f |= {f"data dir {kind} bytes": size for kind, size in disk.items()}
        f["state bytes/person"] = disk["total"] / max(1, f["calendars"])
        f["worker RSS before stop MiB"] = sampler.current_kib / 1024  # at most 0.5 s old
    finally:
        f["worker stop s"] = worker.stop()
        sampler.stop()
    f["live calendar bytes/person"] = live_calendar_bytes(worker.data_dir) / max(1, f["calendars"])
    f["worker peak RSS MiB"] = sampler.peak_kib / 1024
    return f


def drain_figures(drain: Drain) -> dict[str, Any]:
    """Drain rate; when time ran out, the rate of the part that was drained."""
    inbound = sum(end_offsets(topics.INBOUND.name, topics.INBOUND.partitions).values())
    drained = inbound if drain.caught_up else drain.inbound_done
    say(
        f"drained {drained:,}/{inbound:,} in {drain.seconds:.1f} s"
        + ("" if drain.caught_up else " (timed out)")
    )
    return {
        "drain seconds": drain.seconds,
        "drain caught up": drain.caught_up,
        # Only what was left when the clock started: a worker (or the first of two) may have
        # handled part of the backlog before every worker was ready.
        "pipeline drain events/s": (
            (drained - drain.inbound_at_ready) / drain.seconds if drain.seconds else math.nan
        ),
        "inbound committed at ready": drain.inbound_at_ready,
    }


def latency_figures(args: argparse.Namespace, first_person: int) -> dict[str, Any]:
    """Offer the paced clash stream and measure each alert against its cause."""
    offer = offer_clashes(first_person, args.rate, args.seconds, args.seed + 100)
    say(f"offered {len(offer.sent_at):,} events in {offer.seconds:.1f} s; collecting alerts")
    latencies, unmatched = collect_latencies(offer, timeout_s=60.0)
    return {
        "alerts expected": 2 * offer.pairs,
        "alerts matched": len(latencies),
        "alerts unmatched": unmatched,
        "alert offered seconds": offer.seconds,
        "alert latency p50 ms": percentile(latencies, 0.50),
        "alert latency p99 ms": percentile(latencies, 0.99),
        "alert latency max ms": float(max(latencies)) if latencies else math.nan,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on fresh topics; print the table; 3 when Kafka is unavailable."""
    args = parse_args(argv)
    stamp = report.start_run(args)
    prefix = f"bench-{stamp}."
    log = args.results / f"reconciler-{stamp}-worker.log"
    with tempfile.TemporaryDirectory(prefix="concord-bench-") as tmp:
        return report.run_and_report(
            "reconciler",
            stamp,
            args,
            prefix=prefix,
            measure=lambda: run(args, prefix, Path(tmp), log),
            rows_of=rows_of,
            footer=f"\nworker log: {log}",
        )


if __name__ == "__main__":
    sys.exit(main())
