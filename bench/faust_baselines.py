"""Faust baselines for the reconciler benchmark: how fast faust itself drains the inbound topic.

Two agents run, one at a time, in a worker subprocess of their own (own consumer group, own
data dir) on the run's inbound topic:

- `noop`: a faust agent that does nothing with each event — faust's own ceiling here;
- `naive`: a per-event agent doing the pipeline's work the plain way — decode, route to a
  person, apply the event to that person's calendar in a table, await a send per output,
  an info log line per event — the shape the hub's agents had before they were batched.

`python -m bench.faust_baselines worker MODE` is the worker (run by `measure`);
`python -m bench.faust_baselines [--people N] [--events M]` builds and produces a backlog
on fresh topics and prints both rates beside a raw aiokafka consumer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from connectors.kafka_io import new_admin, new_consumer
from schemas import topics

ROOT = Path(__file__).resolve().parents[1]
MODES = ("noop", "naive")


def out_topic(mode: str) -> str:
    """Where the naive agent sends its outputs (never the hub's topics: they are measured)."""
    return f"{topics.INBOUND.name}.bench-{mode}-out"


# --- the worker (its own process: faust wants one app per process) ---


def run_worker(mode: str) -> None:
    """Run one baseline agent in the foreground until SIGTERM."""
    import faust
    import orjson
    import structlog

    from schemas.codec import peek
    from services import runtime
    from services.domain.decisions import Rules
    from services.domain.identity import person_of, to_linker
    from services.runtime import configure_logging as configure
    from services.runtime import partner_directory, service_directory, settings
    from services.stream.outbox import routed
    from services.stream.pipeline import identifiers_of, person_event

    configure()
    conf = settings()
    app = faust.App(
        os.environ["BENCH_APP_ID"],
        broker=conf.broker,
        store="rocksdb://",
        datadir=os.environ["BENCH_DATA_DIR"],
        web_port=int(os.environ["BENCH_WEB_PORT"]),
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_in_thread=False,
        topic_partitions=topics.INBOUND.partitions,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=True,
        # Commits are what `measure` watches: often, so the rate is not rounded to the interval.
        broker_commit_interval=0.25,
    )
    inbound = app.topic(
        topics.INBOUND.name,
        key_type=bytes,
        value_type=bytes,
        partitions=topics.INBOUND.partitions,
        internal=False,
    )
    out = app.topic(out_topic(mode), key_type=bytes, value_type=bytes, internal=False)
    calendars = app.Table(
        "bench-calendars",
        default=None,
        partitions=topics.INBOUND.partitions,
        key_type=str,
        value_type=bytes,
    )
    log = structlog.get_logger("bench.naive")
    directory = partner_directory(conf.partners_file)
    services = service_directory(conf.services_file)

    if mode == "noop":

        @app.agent(inbound)
        async def noop(stream: Any) -> None:
            async for _ in stream.events():
                pass

    else:

        @app.agent(inbound)
        async def naive(stream: Any) -> None:
            async for event in stream.events():
                envelope = peek(event.value)
                identifiers = identifiers_of(envelope)  # the person index's lookup key
                key = runtime.person_key()
                person = (
                    None if to_linker(envelope, identifiers) else person_of(identifiers, None, key)
                )
                for sent in routed(envelope, event.value, identifiers, person):
                    if sent.topic is not topics.PERSON_EVENTS:
                        await out.send(key=sent.key, value=sent.value)
                        continue
                    person = sent.key.decode()
                    rules = Rules(
                        directory=directory,
                        now=runtime.now(),
                        services=services,
                        sla=conf.sla_working_days,
                        buffer=conf.travel_buffer,
                    )
                    message = orjson.loads(sent.value)
                    stored, outs, *_ = person_event(calendars.get(person), message, rules)
                    for emitted in outs:
                        await out.send(key=emitted.key, value=emitted.value)
                    if stored is not None:
                        calendars[person] = stored
                    log.info(
                        "naive.handled",
                        event_id=message.get("event_id"),
                        person_id=person,
                        alerts=len(outs),
                    )

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.spinner = None  # as services/ops/worker.py: no DEBUG root logger
    worker.execute_from_commandline()


# --- measuring a baseline against the inbound topic ---


def _ensure_topic(name: str, partitions: int) -> None:
    admin = new_admin(client_id="concord-bench")
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def _committed(admin: KafkaAdminClient, group: str) -> int:
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError:
        return -1
    return sum(
        o.offset
        for tp, o in offsets.items()
        if tp.topic == topics.INBOUND.name and o.offset is not None and o.offset >= 0
    )


def measure(mode: str, tmp: Path, log: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    """Start the mode's worker; events/s from its first commit to the inbound topic's end."""
    from bench.reconciler import free_port

    inbound = topics.INBOUND
    consumer = new_consumer(group_id=None)
    ends = consumer.end_offsets(
        [TopicPartition(inbound.name, p) for p in range(inbound.partitions)]
    )
    consumer.close()
    total = sum(ends.values())
    _ensure_topic(out_topic(mode), inbound.partitions)
    group = f"{inbound.name}.bench-{mode}-{time.strftime('%H%M%S')}"
    env = {
        **os.environ,
        "BENCH_APP_ID": group,
        "BENCH_DATA_DIR": str(tmp / f"{mode}-data"),
        "BENCH_WEB_PORT": str(free_port()),
        "CONCORD_LOG_LEVEL": os.environ.get("BENCH_BASELINE_LOG_LEVEL", "warning"),
        "CONCORD_LOG_FORMAT": "json",
    }
    admin = new_admin(client_id="concord-bench")
    started = time.monotonic()
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.faust_baselines", "worker", mode],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    first: tuple[float, int] | None = None  # (when, committed) at the first commit seen
    done, last = 0, (started, 0)
    try:
        while time.monotonic() - started < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"the {mode} baseline worker exited; see {log}")
            done = _committed(admin, group)
            now = time.monotonic()
            if done > 0 and first is None:
                first = (now, done)
            if done >= total:
                last = (now, done)
                break
            time.sleep(0.25)
    finally:
        admin.close()
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if first is None or last[1] < total:
        return {"events/s": float("nan"), "events": done, "caught up": False}
    # From the first commit: worker start-up (imports, joining the group) is not faust's rate.
    seconds = max(last[0] - first[0], 1e-3)
    return {"events/s": (last[1] - first[1]) / seconds, "events": total, "caught up": True}


def main(argv: list[str] | None = None) -> int:
    """`worker MODE` runs a baseline agent; otherwise produce a backlog and measure both."""
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["worker"]:
        run_worker(argv[1])
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.faust_baselines", description=__doc__)
    parser.add_argument("--people", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = f"bench-{stamp}."
    os.environ["CONCORD_TOPIC_PREFIX"] = prefix
    from bench.reconciler import build_backlog, produce_all, raw_consume
    from bench.report import RESULTS
    from deploy.topics import create_topics, delete_topics_with_prefix

    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"faust-baselines-{stamp}-worker.log"
    try:
        backlog = build_backlog(args.people, args.events, args.seed)
        create_topics()
        produce_all(backlog.messages, topics.INBOUND.name)
        count, seconds = raw_consume(topics.INBOUND.name, topics.INBOUND.partitions)
        print(f"raw aiokafka consumer   {count / seconds:>10,.0f} events/s")
        with tempfile.TemporaryDirectory(prefix="concord-baselines-") as tmp:
            for mode in MODES:
                figure = measure(mode, Path(tmp), log)
                print(f"faust {mode:<17} {figure['events/s']:>10,.0f} events/s")
    finally:
        delete_topics_with_prefix(prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
