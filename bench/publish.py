"""The publish benchmark: `concord publish`'s path (parse, validate, envelope, produce) beside
a raw kafka-python producer sending the same envelope bytes, with a per-stage profile.

`python -m bench.publish [--events N] [--quick]` prints one table and writes the figures
as JSON to bench/results/. It reports figures; it never asserts on speed. Every phase
publishes the same Appointment resources of bench.population on fresh topics, deleted
afterwards.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pickle
import resource
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from bench import report
from bench.population import generate
from bench.report import Row, number, say
from connectors.fhir_input import Record, read_text
from connectors.kafka_io import Publisher, new_producer
from connectors.parallel import _to_wire, default_workers
from connectors.publish import (
    Accepted,
    PublishSummary,
    Rejected,
    decide,
    publish_records,
    rejection_letter,
)
from deploy.topics import create_topics
from schemas import fhir, topics
from schemas.codec import encode, wrap_encoded
from schemas.envelope import content_event_id, utc_now, wrap
from services.runtime import configure_logging as configure_logs

PARTNER = "probation-london"
TARGET_RATIO = 0.33

# The table's rows, in order; the smoke test checks each is printed.
FIGURES = (
    "records",
    "raw producer msg/s",
    "publish path before msg/s",
    "optimised serial msg/s",
    "optimised parallel msg/s",
    "ratio before",
    "ratio after",
    "us/record JSON parse",
    "us/record fhir.resources validation",
    "us/record hub checks",
    "us/record subject extraction",
    "us/record wrap (Envelope + event id)",
    "us/record   of which content_event_id",
    "us/record encode",
    "us/record wrap+encode optimised",
    "us/record parallel hand-off",
    "us/record produce",
    "ceiling msg/s on all cores",
    "validation-only ceiling msg/s",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick swaps in the small CI size."""
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__)
    parser.add_argument("--events", type=int, default=None, help="Appointments (default 50,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3,000 Appointments")
    report.add_output_options(
        parser, results_help="where the JSON goes", keep_topics_help="leave the run's topics"
    )
    return report.parse_sized(parser, argv, {"events": 3_000}, {"events": 50_000})


def appointments(events: int, seed: int) -> list[dict[str, Any]]:
    """`events` Appointment resources of the seeded population, in recorded order."""
    people = max(500, events // 10)
    return [r for _, r in generate(people, events, seed) if r["resourceType"] == "Appointment"]


# --- the profile: each stage timed over every record, in this process ---


def per_record(seconds: float, count: int) -> float:
    """Microseconds per record."""
    return seconds / max(1, count) * 1e6


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    """(result, seconds)."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def profile(text: str) -> tuple[dict[str, float], list[tuple[bytes, bytes]]]:
    """µs/record of each stage of deciding, and the envelopes' (key, value) for the producer."""
    f: dict[str, float] = {}
    records, s = timed(lambda: list(read_text(text, "bench.ndjson")))
    n = len(records)
    f["us/record JSON parse"] = per_record(s, n)
    resources = [r.resource for r in records if r.resource is not None]
    model = importlib.import_module("fhir.resources.R4B.appointment").Appointment
    _, s = timed(lambda: [model.model_validate(r) for r in resources])
    f["us/record fhir.resources validation"] = per_record(s, n)
    _, s = timed(lambda: [_hub_checks(r) for r in resources])
    f["us/record hub checks"] = per_record(s, n)
    subjects, s = timed(lambda: [fhir.subject_of(r) for r in resources])
    f["us/record subject extraction"] = per_record(s, n)
    event_type = fhir.event_type_for("Appointment")
    now = utc_now()  # one clock for both ways of wrapping, so their bytes can be compared

    def wrap_all() -> list[Any]:
        return [
            wrap(r, event_type=event_type, source=PARTNER, subject=who, now=now)
            for r, who in zip(resources, subjects, strict=True)
        ]

    envelopes, s = timed(wrap_all)
    f["us/record wrap (Envelope + event id)"] = per_record(s, n)
    _, s = timed(lambda: [content_event_id(PARTNER, r) for r in resources])
    f["us/record   of which content_event_id"] = per_record(s, n)
    values, s = timed(lambda: [encode(e) for e in envelopes])
    f["us/record encode"] = per_record(s, n)

    def encode_all() -> list[tuple[bytes, bytes, str]]:
        return [
            wrap_encoded(r, event_type=event_type, source=PARTNER, subject=who, now=now)
            for r, who in zip(resources, subjects, strict=True)
        ]

    fast, s = timed(encode_all)
    f["us/record wrap+encode optimised"] = per_record(s, n)
    f["us/record parallel hand-off"] = per_record(_hand_off_seconds(records, fast), n)
    f["mean envelope bytes"] = sum(len(v) for v in values) / max(1, n)
    if any(value != fast_value for value, (_, fast_value, _) in zip(values, fast, strict=True)):
        raise AssertionError("the optimised envelope bytes differ from encode(wrap(...))")
    return f, [(e.key(), value) for e, value in zip(envelopes, values, strict=True)]


def _hub_checks(appointment: dict[str, Any]) -> list[fhir.Problem]:
    # problems_in without the model: value sets, cardinalities, times, identifiers.
    problems = fhir._code_problems("Appointment", appointment)
    problems += fhir._appointment_time_problems(appointment)
    problems += fhir._identifier_problems(dict(appointment), "Appointment")
    return problems


def _hand_off_seconds(records: list[Record], fast: list[tuple[bytes, bytes, str]]) -> float:
    """Pickling each record to a worker and its answer back, both ways, as the pool does."""
    chunk = 250
    started = time.perf_counter()
    for at in range(0, len(records), chunk):
        wire = pickle.dumps([_to_wire(r) for r in records[at : at + chunk]], 5)
        pickle.loads(wire)  # noqa: S301 -- our own bytes, as the pool unpickles them
        answers = [("e", *answer) for answer in fast[at : at + chunk]]
        pickle.loads(pickle.dumps(answers, 5))  # noqa: S301 -- our own bytes
    return time.perf_counter() - started


# --- Kafka: the raw producer, and the publish path before and after ---


def raw_produce(messages: list[tuple[bytes, bytes]], topic: str) -> float:
    """Seconds to send every (key, value) with acks=all until the last is acknowledged."""
    producer = new_producer(linger_ms=5, batch_size=512 * 1024)
    failures: list[Exception] = []
    try:
        started = time.perf_counter()
        for key, value in messages:
            producer.send(topic, key=key, value=value).add_errback(failures.append)
        producer.flush(timeout=300)
        elapsed = time.perf_counter() - started
    finally:
        producer.close()
    if failures:
        raise RuntimeError(f"Kafka refused {len(failures)} message(s): {failures[0]!r}")
    return elapsed


def publish_before(records: Iterable[Record], partner: str, publisher: Publisher) -> PublishSummary:
    """The publish loop as it was before optimising: decide, wrap with pydantic, encode, send."""
    summary = PublishSummary()
    for record in records:
        decision = decide(record, partner)
        if isinstance(decision, Accepted):
            publisher.send_envelope(decision.envelope)
            summary.accepted += 1
            summary.event_ids.append(str(decision.envelope.event_id))
        elif isinstance(decision, Rejected):
            publisher.send_dead_letter(rejection_letter(decision, partner))
            summary.rejected += 1
        else:
            summary.ignored += 1
    publisher.confirm()
    return summary


def cpu_seconds() -> float:
    """User and system CPU of this process and its reaped children (the pool's workers)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_publish(
    text: str, expected: int, run: Callable[[Iterable[Record], Publisher], PublishSummary]
) -> tuple[float, float]:
    """(seconds, CPU seconds) from reading the NDJSON text to Kafka's last acknowledgement."""
    publisher = Publisher()
    try:
        started, cpu = time.perf_counter(), cpu_seconds()
        summary = run(read_text(text, "bench.ndjson"), publisher)
        elapsed = time.perf_counter() - started
    finally:
        publisher.close()
    cpu = cpu_seconds() - cpu  # the pool's workers have exited by now: their CPU is counted
    if summary.accepted != expected:
        raise AssertionError(f"accepted {summary.accepted} of {expected}: {summary.errors[:3]}")
    return elapsed, cpu


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase in order; a flat dict of figures."""
    say(f"generating {args.events:,} Appointments (seed {args.seed})")
    resources = appointments(args.events, args.seed)
    n = len(resources)
    text = "\n".join(orjson.dumps(r).decode() for r in resources) + "\n"
    f: dict[str, Any] = {"records": n, "ndjson bytes": len(text), "workers": default_workers()}
    say("profiling each stage in-process")
    profiled, messages = profile(text)
    f |= profiled
    create_topics((topics.INBOUND, topics.DEADLETTER))
    inbound = topics.INBOUND.name
    say(f"raw producer: {n:,} envelopes to {inbound}")
    seconds = raw_produce(messages, inbound)
    f["raw producer msg/s"] = n / seconds
    f["us/record produce"] = per_record(seconds, n)
    del messages
    say("publish path before optimising")
    seconds, cpu = timed_publish(text, n, lambda rs, p: publish_before(rs, PARTNER, p))
    f["publish path before msg/s"] = n / seconds
    f["publish path before cpu us/record"] = per_record(cpu, n)
    say("optimised, serial")
    seconds, cpu = timed_publish(text, n, lambda rs, p: publish_records(rs, PARTNER, p, workers=1))
    f["optimised serial msg/s"] = n / seconds
    f["optimised serial cpu us/record"] = per_record(cpu, n)
    say(f"optimised, as publish_records chooses ({f['workers']} worker(s) above 2,000 records)")
    seconds, cpu = timed_publish(text, n, lambda rs, p: publish_records(rs, PARTNER, p))
    f["optimised parallel msg/s"] = n / seconds
    f["optimised parallel cpu us/record"] = per_record(cpu, n)
    raw = f["raw producer msg/s"]
    f["ratio before"] = f["publish path before msg/s"] / raw
    f["ratio after"] = max(f["optimised serial msg/s"], f["optimised parallel msg/s"]) / raw
    f |= ceilings(f)
    return f


def ceilings(f: dict[str, Any]) -> dict[str, float]:
    """The best rates the profile allows on every core, and the CPU budget the target leaves."""
    cores = f["workers"]
    deciding = (
        f["us/record fhir.resources validation"]
        + f["us/record hub checks"]
        + f["us/record subject extraction"]
        + f["us/record wrap+encode optimised"]
    )
    around = f["us/record JSON parse"] + f["us/record parallel hand-off"]
    total = deciding + around + f["us/record produce"]
    return {
        "cpu us/record optimised": total,
        "ceiling msg/s on all cores": cores * 1e6 / total,
        "validation-only ceiling msg/s": cores * 1e6 / f["us/record fhir.resources validation"],
        "cpu budget us/record for target": cores * 1e6 / (TARGET_RATIO * f["raw producer msg/s"]),
    }


# --- the table ---


def rows_of(f: dict[str, Any]) -> list[Row]:
    """The table rows from the figures dict."""
    raw = f["raw producer msg/s"]

    def vs_raw(key: str) -> str:
        cpu = f[key.replace("msg/s", "cpu us/record")]
        return f"{f[key] / raw:.3f} x raw producer; {number(cpu, 1)} CPU us/record (all processes)"

    validation = f["us/record fhir.resources validation"]
    rows: list[Row] = [
        (
            "records",
            number(f["records"]),
            f"Appointments, mean envelope {number(f['mean envelope bytes'])} B",
        ),
        (
            "raw producer msg/s",
            number(raw),
            "kafka-python acks=all, linger 5 ms, batch 512 KiB, crc32c",
        ),
        (
            "publish path before msg/s",
            number(f["publish path before msg/s"]),
            vs_raw("publish path before msg/s"),
        ),
        (
            "optimised serial msg/s",
            number(f["optimised serial msg/s"]),
            vs_raw("optimised serial msg/s"),
        ),
        (
            "optimised parallel msg/s",
            number(f["optimised parallel msg/s"]),
            vs_raw("optimised parallel msg/s") + f"; {f['workers']} worker processes",
        ),
        ("ratio before", number(f["ratio before"], 3), f"target {TARGET_RATIO}"),
        ("ratio after", number(f["ratio after"], 3), f"target {TARGET_RATIO}"),
    ]
    for name in FIGURES:
        if name.startswith("us/record"):
            rows.append((name, number(f[name], 1), "in-process, perf_counter, every record"))
    rows += [
        (
            "ceiling msg/s on all cores",
            number(f["ceiling msg/s on all cores"]),
            f"{f['workers']} cores / {number(f['cpu us/record optimised'], 1)} CPU us per record"
            f" = {f['ceiling msg/s on all cores'] / raw:.3f} x raw",
        ),
        (
            "validation-only ceiling msg/s",
            number(f["validation-only ceiling msg/s"]),
            f"{f['workers']} cores / {number(validation, 1)} us of R4B validation alone"
            f" = {f['validation-only ceiling msg/s'] / raw:.3f} x raw; target needs"
            f" <= {number(f['cpu budget us/record for target'], 1)} CPU us/record in all",
        ),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on fresh topics; print the table; 3 when Kafka is unavailable."""
    args = parse_args(argv)
    configure_logs("warning")  # the table alone on stdout; progress on stderr
    stamp = report.start_run(args)
    return report.run_and_report(
        "publish",
        stamp,
        args,
        prefix=f"bench-publish-{stamp}.",
        measure=lambda: run(args),
        rows_of=rows_of,
        # publish's JSON has always named just these options, and whether crc32c is installed.
        arguments={"events": args.events, "seed": args.seed, "quick": args.quick},
        machine={"crc32c": importlib.util.find_spec("crc32c") is not None},
    )


if __name__ == "__main__":
    sys.exit(main())
