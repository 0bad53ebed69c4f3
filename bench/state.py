"""The state benchmark: worker memory and state size for a large population, and whether a
calendars table rebuilt from its changelog comes back whole.

It seeds the calendars table's changelog (`<app id>-calendars-changelog`, on a fresh topic
prefix) with one record per person, each a calendar of five appointments from four partners,
keyed and encoded exactly as the worker stores it. Then:

  recover  one worker starts on an empty RocksDB data dir; seconds to /ready (it answers only
           once tables are recovered), /stats's calendar count, RSS;
  work     appointment events for seeded people (updates and new bookings, by CRN) go through
           the real inbound path; drain rate, peak RSS, RocksDB dir and live state per person;
  rebuild  that worker stops; a second one rebuilds every calendar on a NEW empty data dir, and
           a third restarts on the first one's data dir (resuming from RocksDB's persisted
           offsets). Each must count every seeded person.

A count short of the population is reported (with the missing people per partition, the
changelog's end offsets and the offsets RocksDB persisted, in the JSON), never raised: a
benchmark reports. It never asserts on speed either.

`python -m bench.state [--people N] [--events M] [--quick] [--keep-topics]` (defaults 250,000
people and 25,000 events; --quick 5,000 and 2,000) prints one table and writes the figures as
JSON to bench/results/state-<stamp>.json, beside each worker's log. Worker start-up and drain
detection are bench/reconciler.py's; the table is bench/report.py's.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from rocksdict import AccessType, Options, Rdict

from bench import report
from bench.population import (
    AGENCIES,
    DAY,
    EPOCH,
    GP,
    HOUR,
    MHT,
    MINUTE,
    PROBATION,
    VOLUNTARY,
    Person,
    appointment,
    crn_for,
)
from bench.reconciler import (
    MemorySampler,
    Message,
    Worker,
    dir_bytes,
    encode,
    end_offsets,
    live_calendar_bytes,
    log_problems,
    produce_all,
    produce_timed,
    start_worker,
    wait_drained,
    wait_ready,
)
from bench.report import Row, number, say
from connectors.kafka_io import new_admin
from deploy.topics import create_topics, replication_factor
from schemas import fhir, topics
from schemas.identifiers import PROBATION_CRN, PersonIdentifier
from schemas.keys import person_id_for, person_partition
from services.domain.calendar import Calendar, Slot, Version
from services.domain.signin import basic_header
from services.ops.client import get_json
from services.ops.demo import demo_secret
from services.runtime import partner_directory, person_key, settings
from services.stream.state import encode_calendar

# The table's rows, in order; the smoke test checks each is printed.
FIGURES = (
    "people seeded",
    "mean record bytes",
    "seed produce records/s",
    "recovery start-to-ready s",
    "calendars after recovery",
    "worker RSS after recovery MiB",
    "events offered",
    "drain events/s",
    "calendars after events",
    "peak RSS MiB",
    "RocksDB dir bytes/person",
    "live state bytes/person",
    "rebuild on empty dir s",
    "rebuild on empty dir calendars",
    "restart on own dir s",
    "restart on own dir calendars",
    "worker log errors/warnings",
)
# Rows whose value is "<counted> of <seeded>"; the smoke test checks they are whole.
COUNT_FIGURES = (
    "calendars after recovery",
    "calendars after events",
    "rebuild on empty dir calendars",
    "restart on own dir calendars",
)

RSS_TARGET_MIB = 512
STATE_TARGET_BYTES = 2048
READY_TIMEOUT_S = 600.0  # a rebuild of 250,000 calendars takes a while on two shared cores
STATS_TIMEOUT_S = 300.0  # /stats decodes every calendar on the worker's event loop

# Each person's five appointments: (partner, status). Probation twice, then the three others;
# the first is already over.
SEED_PLAN = (
    (PROBATION, "fulfilled"),
    (PROBATION, "booked"),
    (VOLUNTARY, "booked"),
    (GP, "booked"),
    (MHT, "booked"),
)
SEEDED_PROBATION_BOOKING = 1  # the appointment of SEED_PLAN the update events reschedule
NEW_BOOKING_NUMBER = 10_000_000  # appointment numbers of new bookings, clear of the seeded ones

# Each seeded partner's kind, from the partner directory the worker reads (the partner directory, CONCORD_PARTNERS).
KINDS = {p: partner_directory(settings().partners_file).kind_of(p) for p, _ in SEED_PLAN}

QUICK_SIZES = {"people": 5_000, "events": 2_000}
FULL_SIZES = {"people": 250_000, "events": 25_000}

Record = tuple[bytes, bytes, int]  # changelog key, value, partition


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick swaps in the small sizes."""
    parser = argparse.ArgumentParser(prog="python -m bench.state", description=__doc__)
    report.add_size_options(parser, QUICK_SIZES, FULL_SIZES)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    report.add_output_options(parser, results_help="where the JSON and worker logs go")
    return report.parse_sized(parser, argv, QUICK_SIZES, FULL_SIZES)


# --- phase A: the seeded changelog ---


def _at(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def appointment_number(index: int, position: int) -> int:
    """The appointment number of person `index`'s seeded appointment at `position` in SEED_PLAN."""
    return index * len(SEED_PLAN) + position


def seeded_times(index: int, position: int) -> tuple[int, int, int]:
    """(start, end, booked at) in seconds after EPOCH: a fortnight apart, so none overlap."""
    day = 7 + 14 * position + index % 10
    if day % 7 >= 5:  # a weekend: agencies book on weekdays
        day -= 2
    start = day * DAY + (9 + (index + 2 * position) % 8) * HOUR + (index % 4) * 15 * MINUTE
    return start, start + (30 + 15 * (index % 3)) * MINUTE, start - (3 + index % 5) * DAY


def seeded_slot(rng: random.Random, index: int, position: int) -> Slot:
    """A seeded appointment as the worker keeps it after the partner published it."""
    partner, status = SEED_PLAN[position]
    agency = AGENCIES[partner]
    n = appointment_number(index, position)
    # As bench.population.appointment picks them, so an update event matches its slot.
    service = agency.services[n % len(agency.services)]
    location = agency.locations[(index + n) % len(agency.locations)][0]
    start, end, booked_at = seeded_times(index, position)
    updated = end + HOUR if status == "fulfilled" else booked_at
    return Slot(
        appointment_id=f"{partner}/{agency.prefix}-{n:07d}",
        partner=partner,
        kind=KINDS[partner],
        status=status,
        start=_at(start),
        end=_at(end),
        location=f"{partner}/Location/{location}",
        version=Version(
            2 if status == "fulfilled" else 1,
            _at(updated),
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        ),
        service_type=service.specialty[1],
    )


def person_of(index: int) -> str:
    """Hub person id of person `index`: the provisional id of their CRN, as the worker makes it."""
    return person_id_for(PersonIdentifier(PROBATION_CRN, crn_for(index)), person_key())


def seed_record(rng: random.Random, index: int) -> Record:
    """Person `index`'s calendars-table record: JSON key, encoded calendar, person's partition."""
    person = person_of(index)
    slots = [seeded_slot(rng, index, position) for position in range(len(SEED_PLAN))]
    calendar = Calendar(
        person,
        slots={slot.appointment_id: slot for slot in slots},
        partners={slot.partner: slot.kind for slot in slots},
    )
    # The table's keys are str, so faust serialises them as JSON; its values are raw bytes.
    return orjson.dumps(person), encode_calendar(calendar), person_partition(person)


def seed_records(people: int, seed: int) -> list[Record]:
    """Every person's record, built before the produce clock starts."""
    rng = random.Random(seed)
    step = max(1, people // 10)
    records = []
    for index in range(people):
        records.append(seed_record(rng, index))
        if (index + 1) % step == 0:
            say(f"building records {index + 1:,}/{people:,}")
    return records


def calendars_changelog() -> str:
    """The calendars table's changelog topic, named as faust names it: <app id>-<table>-changelog."""
    return topics.CALENDARS.changelog.name


def create_changelog(name: str) -> None:
    """Create the changelog as faust would (compacted, person-events' partitions), before it does."""
    admin = new_admin(client_id="concord-bench")
    try:
        topic = NewTopic(
            name,
            topics.PERSON_EVENTS.partitions,
            replication_factor(),
            topic_configs={"cleanup.policy": "compact"},
        )
        admin.create_topics([topic])
    except TopicAlreadyExistsError:
        pass  # create_topics() makes the changelogs too: the same topic
    finally:
        admin.close()


def produce_records(records: list[Record], topic: str) -> float:
    """Seconds to send every record to its partition with acks=all until the last is acknowledged."""
    return produce_timed(records, len(records), topic, "producing records", "record")


def seed(args: argparse.Namespace) -> dict[str, Any]:
    """Phase A: build every person's record and produce it to the calendars changelog."""
    say(f"building {args.people:,} calendars of {len(SEED_PLAN)} appointments")
    records = seed_records(args.people, args.seed)
    changelog = calendars_changelog()
    create_topics()
    create_changelog(changelog)
    say(f"topics created; producing {len(records):,} records to {changelog}")
    seconds = produce_records(records, changelog)
    per_partition = Counter(partition for _, _, partition in records)
    return {
        "people seeded": len(records),
        "changelog": changelog,
        "mean record bytes": sum(len(v) for _, v, _ in records) / max(1, len(records)),
        "mean key bytes": sum(len(k) for k, _, _ in records) / max(1, len(records)),
        "seed produce seconds": seconds,
        "seed produce records/s": len(records) / seconds,
        "people by partition": dict(sorted(per_partition.items())),
    }


# --- phase C: events for seeded people, through the real inbound path ---


def build_events(people: int, events: int, seed: int) -> tuple[list[Message], int]:
    """(envelopes, how many are updates): half reschedule a seeded probation booking, half book
    something new with probation or the recovery service. All name the person by CRN."""
    rng = random.Random(seed + 1)
    versions: Counter[int] = Counter()  # person -> reschedules sent so far
    messages: list[Message] = []
    updates = 0
    for k in range(events):
        index = rng.randrange(people)
        person = Person(index, crn_for(index), None)
        if k % 2 == 0:
            versions[index] += 1
            partner, resource = PROBATION, reschedule(person, versions[index])
            updates += 1
        else:
            partner = (PROBATION, VOLUNTARY)[k % 4 // 2]
            resource = new_booking(partner, person, NEW_BOOKING_NUMBER + k, rng)
        if k < 200:
            fhir.validate(resource)  # a benchmark of rejected input would measure the wrong path
        messages.append(encode(partner, resource))
    return messages, updates


def reschedule(person: Person, times_moved: int) -> dict[str, Any]:
    """The seeded probation booking, moved on a day for each time it has been moved."""
    position = SEEDED_PROBATION_BOOKING
    start, end, booked_at = seeded_times(person.index, position)
    return appointment(
        PROBATION,
        person,
        appointment_number(person.index, position),
        version=1 + times_moved,
        status="booked",
        start=start + times_moved * DAY,
        end=end + times_moved * DAY,
        booked_at=booked_at,
        at=booked_at + times_moved * HOUR,
    )


def new_booking(partner: str, person: Person, n: int, rng: random.Random) -> dict[str, Any]:
    """A sixth (or later) appointment, after every seeded one."""
    day = 80 + rng.randrange(10)
    start = day * DAY + rng.randint(9, 16) * HOUR
    return appointment(
        partner,
        person,
        n,
        version=1,
        status="booked",
        start=start,
        end=start + 45 * MINUTE,
        booked_at=start - 7 * DAY,
        at=start - 7 * DAY,
    )


# --- the workers ---


@dataclass
class Running:
    """A started worker, its memory sampler, and when it was started."""

    worker: Worker
    sampler: MemorySampler
    started: float


def launch(tmp: Path, log: Path) -> Running:
    """Start a worker whose data dir is under `tmp` (reused if it exists), sampling its memory."""
    tmp.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    worker = start_worker(tmp, log)
    sampler = MemorySampler(worker.process.pid)
    sampler.start()
    return Running(worker, sampler, started)


def stop(running: Running) -> None:
    """SIGTERM the worker and stop sampling."""
    running.worker.stop()
    running.sampler.stop()


def count_calendars(worker: Worker) -> tuple[float, float]:
    """(people /stats counts, seconds it took); NaN when it does not answer."""
    started = time.monotonic()
    # /stats needs a signed-in partner, like every worker endpoint but /ready.
    officer = {"Authorization": basic_header("probation-london", demo_secret("probation-london"))}
    status, body = get_json(worker.url + "/stats", headers=officer, timeout_s=STATS_TIMEOUT_S)
    seconds = time.monotonic() - started
    return (float(body["calendars"]) if status == 200 else math.nan), seconds


def stored_people(data_dir: Path) -> dict[str, Any]:
    """Per partition, the people in the stopped worker's RocksDB and the changelog offset it
    says it has applied: where a short count went missing."""
    people: dict[int, int] = {}
    offsets: dict[int, int | None] = {}
    for path in sorted(data_dir.rglob("calendars-*.db")):
        partition = int(path.stem.rpartition("-")[2])
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            offset = db.get(b"__faust\0offset__")  # faust's RocksDB store keeps it in each db
            offsets[partition] = None if offset is None else int(offset)
            keys = db.keys()  # an Rdict is not iterable itself
            people[partition] = sum(1 for key in keys if key != b"__faust\0offset__")
        finally:
            db.close()
    return {"people by partition": people, "persisted offsets": offsets}


def recover_and_work(args: argparse.Namespace, prefix: str, tmp: Path, log: Path) -> dict[str, Any]:
    """Phases B and C on one worker: recover the seeded table, then drain events on top."""
    f: dict[str, Any] = {}
    say("recover: starting a worker on an empty data dir")
    running = launch(tmp, log)
    try:
        wait_ready(running.worker, READY_TIMEOUT_S)
        f["recovery start-to-ready s"] = time.monotonic() - running.started
        time.sleep(running.sampler.every_s + 0.1)  # a sample taken after ready
        f["RSS at ready MiB"] = running.sampler.current_kib / 1024
        say(f"ready in {f['recovery start-to-ready s']:.1f} s; counting calendars")
        f["calendars after recovery"], f["stats seconds"] = count_calendars(running.worker)
        f["worker RSS after recovery MiB"] = running.sampler.current_kib / 1024
        f["peak RSS after recovery MiB"] = running.sampler.peak_kib / 1024
        say(f"recovered {number(f['calendars after recovery'])} calendars")
        f |= work(args, prefix)
        f["calendars after events"], _ = count_calendars(running.worker)
        f["RSS before stop MiB"] = running.sampler.current_kib / 1024
    finally:
        stop(running)
    f["peak RSS MiB"] = running.sampler.peak_kib / 1024
    disk = dir_bytes(running.worker.data_dir)
    f |= {f"data dir {kind} bytes": size for kind, size in disk.items()}
    people = max(1, args.people)
    f["RocksDB dir bytes/person"] = disk["total"] / people
    f["live state bytes/person"] = live_calendar_bytes(running.worker.data_dir) / people
    f["worker after events"] = stored_people(running.worker.data_dir)
    return f


def work(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """Phase C: offer events for seeded people to the inbound topic and wait until drained."""
    say(f"work: building {args.events:,} events for seeded people")
    messages, updates = build_events(args.people, args.events, args.seed)
    started = time.monotonic()
    produce_seconds = produce_all(messages, topics.INBOUND.name)
    drain = wait_drained(f"{prefix}hub", args.drain_timeout)
    seconds = time.monotonic() - started
    say(f"drained in {seconds:.1f} s" + ("" if drain.caught_up else " (TIMED OUT)"))
    return {
        "events offered": len(messages),
        "event updates": updates,
        "event new bookings": len(messages) - updates,
        "mean envelope bytes": sum(len(v) for _, v, _ in messages) / max(1, len(messages)),
        "events produce seconds": produce_seconds,
        "drain seconds": seconds,
        "drain caught up": drain.caught_up,
        "drain events/s": len(messages) / seconds if drain.caught_up else math.nan,
        "alerts emitted": sum(end_offsets(topics.ALERTS.name, topics.ALERTS.partitions).values()),
    }


def rebuild(label: str, tmp: Path, log: Path) -> dict[str, Any]:
    """Phase D: start a worker on `tmp`'s data dir; seconds to ready, the people it counts."""
    say(f"{label}: starting a worker")
    running = launch(tmp, log)
    f: dict[str, Any] = {}
    try:
        wait_ready(running.worker, READY_TIMEOUT_S)
        f[f"{label} s"] = time.monotonic() - running.started
        f[f"{label} calendars"], _ = count_calendars(running.worker)
        say(f"{label}: ready in {f[f'{label} s']:.1f} s, {number(f[f'{label} calendars'])} people")
    finally:
        stop(running)
    f[f"{label} peak RSS MiB"] = running.sampler.peak_kib / 1024
    f[f"{label} stored"] = stored_people(running.worker.data_dir)
    return f


def run(args: argparse.Namespace, prefix: str, tmp: Path, logs: dict[str, Path]) -> dict[str, Any]:
    """Every phase in order; a flat dict of figures."""
    f = seed(args)
    f |= recover_and_work(args, prefix, tmp / "first", logs["first"])
    # Its end offsets now include what the first worker wrote while working.
    ends = end_offsets(f["changelog"], topics.PERSON_EVENTS.partitions)
    f["changelog end offsets"] = dict(sorted(ends.items()))
    f |= rebuild("rebuild on empty dir", tmp / "rebuild", logs["rebuild"])
    f |= rebuild("restart on own dir", tmp / "first", logs["restart"])
    errors = warnings = 0
    first_errors: list[str] = []
    for log in logs.values():
        if log.exists():
            e, w, lines = log_problems(log)
            errors, warnings, first_errors = errors + e, warnings + w, first_errors + lines
    f |= {"log errors": errors, "log warnings": warnings, "log first errors": first_errors[:5]}
    return f


# --- the table ---


def of_seeded(count: float, seeded: int) -> str:
    """'250,000 of 250,000', and how many are missing when some are."""
    if math.isnan(count):
        return f"n/a of {seeded:,} (/stats did not answer)"
    text = f"{number(count)} of {seeded:,}"
    if count < seeded:
        text += f" ({seeded - count:,.0f} MISSING)"
    elif count > seeded:
        text += f" ({count - seeded:,.0f} EXTRA)"
    return text


def rows_of(f: dict[str, Any]) -> list[Row]:
    """The table rows from the figures dict (see run for its keys)."""
    n = f["people seeded"]
    stored = f["worker after events"]["people by partition"]
    return [
        (
            "people seeded",
            number(n),
            f"{len(SEED_PLAN)} appointments each from {len({p for p, _ in SEED_PLAN})} partners",
        ),
        (
            "mean record bytes",
            number(f["mean record bytes"]),
            f"encoded calendar; key {number(f['mean key bytes'])} B",
        ),
        (
            "seed produce records/s",
            number(f["seed produce records/s"]),
            f"kafka-python, acks=all, to the calendars changelog ({f['seed produce seconds']:.1f} s)",
        ),
        ("recovery start-to-ready s", number(f["recovery start-to-ready s"], 1), "fresh data dir"),
        (
            "calendars after recovery",
            of_seeded(f["calendars after recovery"], n),
            f"/stats took {f['stats seconds']:.1f} s",
        ),
        (
            "worker RSS after recovery MiB",
            number(f["worker RSS after recovery MiB"]),
            f"at ready {number(f['RSS at ready MiB'])};"
            f" peak so far {number(f['peak RSS after recovery MiB'])}",
        ),
        (
            "events offered",
            number(f["events offered"]),
            f"{f['event updates']:,} reschedules + {f['event new bookings']:,} new bookings,"
            f" by CRN; {f['alerts emitted']:,} alerts",
        ),
        (
            "drain events/s",
            number(f["drain events/s"]) + ("" if f["drain caught up"] else " (TIMED OUT)"),
            f"from first produce to drained, {f['drain seconds']:.1f} s",
        ),
        ("calendars after events", of_seeded(f["calendars after events"], n), "/stats"),
        (
            "peak RSS MiB",
            number(f["peak RSS MiB"]),
            f"target <= {RSS_TARGET_MIB}; before stop {number(f['RSS before stop MiB'])}",
        ),
        (
            "RocksDB dir bytes/person",
            number(f["RocksDB dir bytes/person"]),
            f"{f['data dir total bytes'] / 1e6:,.1f} MB (SST {f['data dir sst bytes'] / 1e6:,.1f},"
            f" WAL {f['data dir wal bytes'] / 1e6:,.1f})",
        ),
        (
            "live state bytes/person",
            number(f["live state bytes/person"]),
            f"target <= {STATE_TARGET_BYTES:,}; {sum(stored.values()):,} keys in RocksDB",
        ),
        *rebuild_rows(f, "rebuild on empty dir", n, "a new data dir: every calendar from Kafka"),
        *rebuild_rows(f, "restart on own dir", n, "the first worker's dir: from persisted offsets"),
        (
            "worker log errors/warnings",
            f"{f['log errors']}/{f['log warnings']}",
            "three workers' logs",
        ),
    ]


def rebuild_rows(f: dict[str, Any], label: str, n: int, how: str) -> list[Row]:
    """Seconds to ready and the people counted, for one of phase D's workers."""
    stored = f[f"{label} stored"]["people by partition"]
    return [
        (
            f"{label} s",
            number(f[f"{label} s"], 1),
            f"{how}; peak RSS {number(f[f'{label} peak RSS MiB'])} MiB",
        ),
        (
            f"{label} calendars",
            of_seeded(f[f"{label} calendars"], n),
            f"{sum(stored.values()):,} keys in RocksDB",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on fresh topics; print the table; 3 when Kafka is unavailable."""
    args = parse_args(argv)
    stamp = report.start_run(args)
    prefix = f"bench-state-{stamp}."
    logs = {
        phase: args.results / f"state-{stamp}-{phase}.log"
        for phase in ("first", "rebuild", "restart")
    }
    with tempfile.TemporaryDirectory(prefix="concord-bench-state-") as tmp:
        return report.run_and_report(
            "state",
            stamp,
            args,
            prefix=prefix,
            measure=lambda: run(args, prefix, Path(tmp), logs),
            rows_of=rows_of,
            footer=f"\nworker logs: {', '.join(str(p) for p in logs.values())}",
        )


if __name__ == "__main__":
    sys.exit(main())
