"""The `concord` command: run the local broker, provision topics, publish, read, operate.

Each sub-command is a thin call into the module that does the work; errors a
person can fix are printed as one sentence with a non-zero exit, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from schemas.identifiers import PARTNER_ID, IdentifierError, configured_placeholders

# Long-running connector services with options of their own: `concord NAME ...` runs NAME's main.
SERVICES = {
    "gateway": ("connectors.gateway.app", "run the HTTP FHIR ingest gateway"),
    "deliver": (
        "connectors.delivery.service",
        "deliver alerts and outbound messages to partner endpoints",
    ),
    "mllp": ("connectors.hl7v2.listener", "run the HL7 v2 MLLP listener for a Mental Health Trust"),
    "pages": ("connectors.pages.app", "serve the web pages people sign in to"),
}

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND, EXIT_AUTH = 0, 1, 2, 3, 4, 5


class CommandError(Exception):
    """A failure the user can act on; its message is printed as is."""

    def __init__(self, message: str, code: int = EXIT_UNAVAILABLE) -> None:
        super().__init__(message)
        self.code = code


def _kafka(args: argparse.Namespace) -> int:
    from deploy.kafka import local

    try:
        if args.action == "start" and args.secure and args.brokers > 1:
            raise CommandError(
                "--secure starts one broker: give --secure or --brokers, not both", EXIT_USAGE
            )
        if args.action == "start" and args.secure:
            # Shell lines: `eval "$(concord kafka start --secure)"` configures this shell.
            print(f"# Kafka {local.KAFKA_VERSION} ready at {local.start(secure=True)} (SASL_SSL)")
            for name, value in local.secure_client_settings().items():
                print(f"export {name}={shlex.quote(value)}")
        elif args.action == "start" and args.brokers > 1:
            print(
                f"Kafka {local.KAFKA_VERSION} cluster ready at {local.start_cluster(args.brokers)}"
            )
        elif args.action == "start":
            print(f"Kafka {local.KAFKA_VERSION} ready at {local.start()}")
        elif args.action == "stop":
            stopped = [local.stop(), local.stop_cluster()]  # the single broker and the cluster
            print("Kafka stopped" if any(stopped) else "Kafka was not running")
        else:
            print(json.dumps(local.cluster_status() or local.status(), default=str))
    except local.KafkaSetupError as exc:
        raise CommandError(str(exc)) from exc
    return EXIT_OK


def _topics(args: argparse.Namespace) -> int:
    from deploy import topics as provision
    from schemas.topics import SettingError

    try:
        if args.action == "create":
            created = provision.create_topics()
            print(
                f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else "")
            )
        elif args.action == "plan":
            return _plan(args)
        elif args.action == "repartition":
            return _repartition(args)
        else:
            print("\n".join(provision.list_topics()))
    except provision.TopicSetupError as exc:
        raise CommandError(str(exc)) from exc
    except SettingError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    from deploy import topics as provision

    if (args.write or args.check) and args.format != "strimzi":
        raise CommandError("--write and --check go with --format strimzi", EXIT_USAGE)

    plan = provision.planned(partitions=args.partitions, replicas=args.replication_factor)
    if args.format == "json":
        print(json.dumps([t.as_dict() for t in plan], indent=2))
        return EXIT_OK
    if args.format == "table":
        print(provision.table(plan))
        return EXIT_OK
    made_by = "concord topics plan --format strimzi" + "".join(
        f" --{flag} {value}"
        for flag, value in (
            ("partitions", args.partitions),
            ("replication-factor", args.replication_factor),
        )
        if value
    )
    manifest = provision.strimzi_manifest(plan, f"{made_by} --write")
    target = Path(provision.__file__).resolve().parent.parent / provision.STRIMZI_FILE
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != manifest:
            raise CommandError(
                f"{provision.STRIMZI_FILE} is not what the catalogue gives: run `{made_by} --write`",
                EXIT_REJECTED,
            )
        print(f"{provision.STRIMZI_FILE} is current")
    elif args.write:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(manifest, encoding="utf-8")
        print(f"wrote {len(plan)} KafkaTopic resources to {provision.STRIMZI_FILE}")
    else:
        print(manifest, end="")
    return EXIT_OK


def _repartition(args: argparse.Namespace) -> int:
    from deploy.repartition import RepartitionError, repartition

    try:
        moved = repartition(to=args.to, into_prefix=args.into_prefix, into_app=args.into_app_id)
    except RepartitionError as exc:
        raise CommandError(str(exc), exc.code) from exc
    for line in moved.summary():
        print(line)
    return EXIT_OK


def _publish(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from connectors.kafka_io import DeliveryError, Publisher
    from connectors.publish import publish_files

    if not PARTNER_ID.match(args.partner):
        raise CommandError(f"--as {args.partner!r} is not a valid partner id", EXIT_USAGE)
    _sign_in(args)
    try:
        configured_placeholders()
    except IdentifierError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    paths = [Path(p) for p in args.files]
    for path in paths:
        if not path.is_file():
            raise CommandError(f"{path}: no such file", EXIT_USAGE)
    try:
        publisher = Publisher()
    except KafkaError as exc:
        raise CommandError(f"cannot reach Kafka: {exc.__class__.__name__}") from exc
    try:
        summary = publish_files(paths, args.partner, publisher, args.format)
    except DeliveryError as exc:
        raise CommandError(f"{exc}; nothing reported as accepted is lost, re-run to retry") from exc
    finally:
        publisher.close()
    for line in (*summary.warnings, *summary.errors):
        print(line, file=sys.stderr)
    print(
        f"accepted {summary.accepted}, rejected {summary.rejected}"
        + (f", ignored {summary.ignored} Bundle entr(y/ies)" if summary.ignored else "")
    )
    return EXIT_REJECTED if summary.rejected else EXIT_OK


def _sign_in(args: argparse.Namespace) -> str:
    """Prove the caller is the partner it claims to be; returns the secret for onward calls."""
    from services.domain.signin import AuthError
    from services.runtime import SECRET_ENV, authenticate, partner_directory, secret_from, settings

    try:
        secret = secret_from(args.secret_file)
    except OSError as exc:
        raise CommandError(f"cannot read --secret-file: {exc.strerror}", EXIT_USAGE) from exc
    if not secret:
        raise CommandError(
            f"a partner secret is needed: set {SECRET_ENV} or pass --secret-file", EXIT_AUTH
        )
    try:
        authenticate(partner_directory(settings().partners_file), args.partner, secret)
    except AuthError as exc:
        raise CommandError(f"refused: {exc}", EXIT_AUTH) from exc
    return secret


def _tail(args: argparse.Namespace) -> int:
    from connectors.kafka_io import read_topic
    from schemas.topics import resolve_name

    topic = resolve_name(args.topic)
    try:
        for _key, value in read_topic(topic, max_messages=args.max, idle_timeout_s=args.timeout):
            sys.stdout.write(value.decode() + "\n")
            sys.stdout.flush()
    except LookupError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from deploy.topics import TopicSetupError
    from services.ops.worker import main as run_worker
    from services.runtime import MissingConfiguration

    try:
        return run_worker(args.log_level or "warning")
    except TopicSetupError as exc:
        raise CommandError(str(exc)) from exc
    except MissingConfiguration:
        raise
    except (ValueError, OSError) as exc:  # a partner or service directory that does not load
        raise CommandError(f"cannot start: {exc}", EXIT_USAGE) from exc


def _breach_check(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    from services.domain.signin import basic_header
    from services.ops.client import get_json
    from services.runtime import worker_url

    auth = basic_header(args.partner, _sign_in(args))
    base = worker_url()
    # One question: the worker finds the person from the identifier and answers, or says 404.
    query = urlencode({"identifier": args.person, "appointment": args.appointment})
    status, answer = get_json(f"{base}/breach-check?{query}", headers={"Authorization": auth})
    if status == 0:
        raise CommandError(f"no worker answers at {base}: start one with `concord worker`")
    if status == 404:
        raise CommandError(str(answer.get("error", "not found")), EXIT_NOT_FOUND)
    if status in (401, 403):
        raise CommandError(str(answer.get("error", "refused")), EXIT_AUTH)
    if status == 503:
        raise CommandError(str(answer.get("error", "the worker is not ready")))
    if status != 200:
        raise CommandError(str(answer.get("error", f"worker answered {status}")), EXIT_USAGE)
    print(json.dumps(answer, indent=2))
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    from schemas.identifiers import parse_token
    from services.ops.audit_log import audit_line, audit_trail

    try:
        identifier = parse_token(args.person)
    except IdentifierError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    try:
        trail = audit_trail(identifier)
    except LookupError as exc:
        raise CommandError(str(exc)) from exc
    for envelope in trail:
        print(json.dumps(envelope) if args.json else audit_line(envelope))
    if not args.json:
        print(f"{len(trail)} disclosure(s)", file=sys.stderr)
    return EXIT_OK


def _referrals(args: argparse.Namespace) -> int:
    from connectors.kafka_io import read_topic
    from schemas.topics import REFERRALS
    from services.web.inbox import inbox, inbox_line, latest_entries

    if not PARTNER_ID.match(args.partner):
        raise CommandError(f"--for {args.partner!r} is not a valid partner id", EXIT_USAGE)
    _sign_in(args)
    try:
        entries = latest_entries(read_topic(REFERRALS.name, idle_timeout_s=2.0))
    except LookupError as exc:
        raise CommandError(str(exc)) from exc
    found = inbox(entries, args.partner, args.status)
    for entry in found:
        print(json.dumps(entry) if args.json else inbox_line(entry, args.partner))
    print(f"{len(found)} referral(s)", file=sys.stderr)
    return EXIT_OK


def _measures(args: argparse.Namespace) -> int:
    from connectors.kafka_io import read_topic
    from schemas.codec import CodecError
    from schemas.topics import MEASURES
    from services.domain.kinds import AGGREGATE_ONLY_KINDS
    from services.runtime import partner_directory, settings
    from services.web.measures import bundle_of, chosen_reports, report_of, reports_csv

    _sign_in(args)
    partner = partner_directory(settings().partners_file).get(args.partner)
    if partner is None or partner.kind not in AGGREGATE_ONLY_KINDS:
        raise CommandError("the figures are for commissioners: sign in as one", EXIT_AUTH)
    reports: dict[str, dict[str, object]] = {}
    try:
        for _key, value in read_topic(MEASURES.name, idle_timeout_s=2.0):
            try:
                report = report_of(value)
            except CodecError:
                continue  # not a record the hub wrote: passed by, as the worker does
            reports[str(report["id"])] = report
        chosen = chosen_reports(reports.values(), args.month, args.figure)
    except LookupError as exc:
        raise CommandError(str(exc)) from exc
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    print(
        reports_csv(chosen) if args.csv else json.dumps(bundle_of(chosen)),
        end="\n" * (not args.csv),
    )
    print(f"{len(chosen)} report(s)", file=sys.stderr)
    return EXIT_OK


def _conflict_entries() -> dict[str, dict[str, object]]:
    from connectors.kafka_io import read_topic
    from schemas.topics import IDENTITY_CONFLICTS
    from services.ops.conflicts import conflict_entry
    from services.web.inbox import latest_entries

    try:
        records = read_topic(IDENTITY_CONFLICTS.name, idle_timeout_s=2.0)
        return latest_entries(records, read=conflict_entry)
    except LookupError as exc:
        raise CommandError(str(exc)) from exc


def _identity(args: argparse.Namespace) -> int:
    from services.ops.conflicts import conflict_lines, open_conflicts

    if args.action == "resolve":
        return _resolve_conflict(args)
    found = open_conflicts(_conflict_entries())
    for entry in found:
        print(json.dumps(entry) if args.json else conflict_lines(entry))
    print(f"{len(found)} open identity conflict(s)", file=sys.stderr)
    return EXIT_OK


def _resolve_conflict(args: argparse.Namespace) -> int:
    import getpass
    import time
    from datetime import UTC, datetime

    from kafka.errors import KafkaError

    from connectors.kafka_io import DeliveryError, Publisher
    from schemas.topics import LINKS
    from services.domain.identity import Decision
    from services.ops.conflicts import resolve_command

    if not args.reason.strip():
        raise CommandError("--reason must say why", EXIT_USAGE)
    entry = _conflict_entries().get(args.conflict_id)
    if entry is None:
        raise CommandError(f"no identity conflict {args.conflict_id}", EXIT_NOT_FOUND)
    if entry["status"] != "open":
        raise CommandError(
            f"{args.conflict_id} is resolved already ({entry['status']})", EXIT_USAGE
        )
    decision: Decision = "link" if args.link else "keep-apart"
    command = resolve_command(
        args.conflict_id,
        decision,
        operator=args.operator or getpass.getuser(),
        reason=args.reason.strip(),
        at=datetime.now(UTC),
    )
    try:
        publisher = Publisher()
        publisher.send_encoded(LINKS.name, args.conflict_id.encode(), command)
        publisher.confirm()
        publisher.close()
    except (KafkaError, DeliveryError) as exc:
        raise CommandError(f"cannot reach Kafka: {exc.__class__.__name__}") from exc
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        status = _conflict_entries().get(args.conflict_id, entry)["status"]
        if status != "open":
            print(f"{args.conflict_id}: {status}")
            return EXIT_OK
    raise CommandError(
        f"decision sent, but no worker applied it within {args.wait:g} s; it takes effect when "
        "a worker runs (a refusal is kept on the dead-letter topic)"
    )


def _hash_secret(args: argparse.Namespace) -> int:
    import getpass

    from services.runtime import hash_partner_secret

    secret = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass("secret: ")
    if len(secret) < 12:
        raise CommandError("a partner secret must be at least 12 characters", EXIT_USAGE)
    print(hash_partner_secret(secret))
    return EXIT_OK


def _hash_password(args: argparse.Namespace) -> int:
    import getpass

    from connectors.pages.users import hash_password

    password = (
        sys.stdin.readline().rstrip("\n")
        if not sys.stdin.isatty()
        else getpass.getpass("password: ")
    )
    if len(password) < 12:
        raise CommandError("a password must be at least 12 characters", EXIT_USAGE)
    print(hash_password(password))
    return EXIT_OK


def _secret_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret-file",
        default=None,
        help="file holding the partner's secret (default: the CONCORD_PARTNER_SECRET variable)",
    )


def _measures_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    measures = commands.add_parser(
        "measures",
        help="the commissioners' figures (MeasureReports, small numbers suppressed) or CSV",
    )
    measures.add_argument(
        "--for", dest="partner", required=True, help="the commissioner (signs in as it)"
    )
    measures.add_argument("--month", default=None, help="only this month (YYYY-MM)")
    measures.add_argument("--figure", default=None, help="only this figure (e.g. referrals-made)")
    measures.add_argument(
        "--csv", action="store_true", help="CSV (schemas/measures/data-dictionary.md)"
    )
    _secret_option(measures)
    measures.set_defaults(run=_measures)


def _identity_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    identity = commands.add_parser(
        "identity", help="identity conflicts: list the open ones, or resolve one"
    )
    actions = identity.add_subparsers(dest="action", required=True)
    conflicts = actions.add_parser("conflicts", help="the open identity conflicts, oldest first")
    conflicts.add_argument("--json", action="store_true", help="print the records as JSON lines")
    resolve = actions.add_parser(
        "resolve", help="settle an identity conflict: keep the people apart, or link them"
    )
    resolve.add_argument("conflict_id", help="the conflict id, c-…")
    decision = resolve.add_mutually_exclusive_group(required=True)
    decision.add_argument("--keep-apart", action="store_true", help="they are different people")
    decision.add_argument(
        "--link", action="store_true", help="they are one person (e.g. a superseded NHS number)"
    )
    resolve.add_argument("--reason", required=True, help="why: kept on the conflict's record")
    resolve.add_argument(
        "--operator", default=None, help="who decides (default: the logged-in user)"
    )
    resolve.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for a worker to apply it"
    )
    identity.set_defaults(run=_identity)


def _topics_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = commands.add_parser(
        "topics", help="plan, create, list or repartition the hub's topics"
    )
    actions = topics.add_subparsers(dest="action", required=True)
    actions.add_parser("create", help="create the missing topics and table changelogs")
    actions.add_parser("list", help="list the cluster's topics")
    plan = actions.add_parser(
        "plan", help="print the topics an administrator must create: name, partitions, RF, configs"
    )
    plan.add_argument("--format", choices=["table", "json", "strimzi"], default="table")
    plan.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="per-person topics' partitions (default: CONCORD_PARTITIONS)",
    )
    plan.add_argument(
        "--replication-factor",
        type=int,
        default=None,
        help="replicas per topic (default: CONCORD_REPLICATION_FACTOR)",
    )
    written = plan.add_mutually_exclusive_group()
    written.add_argument(
        "--write", action="store_true", help="strimzi: write deploy/k8s/base/kafka-topics.yaml"
    )
    written.add_argument(
        "--check",
        action="store_true",
        help="strimzi: exit 1 unless deploy/k8s/base/kafka-topics.yaml is current",
    )
    move = actions.add_parser(
        "repartition",
        help="with every worker and deliverer stopped, copy the hub's topics into a new "
        "generation with another partition count (docs/operations-partitions.md)",
    )
    move.add_argument("--to", type=int, required=True, help="the new partition count")
    move.add_argument(
        "--into-prefix", required=True, help="the new generation's CONCORD_TOPIC_PREFIX"
    )
    move.add_argument(
        "--into-app-id",
        default=None,
        help="the new generation's CONCORD_APP_ID (default: PREFIXhub)",
    )
    topics.set_defaults(run=_topics)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="concord", description=__doc__)
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error")
    commands = parser.add_subparsers(dest="command", required=True)

    kafka = commands.add_parser("kafka", help="run the local Apache Kafka broker")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    kafka.add_argument(
        "--secure",
        action="store_true",
        help="start: a SASL_SSL listener (SCRAM-SHA-512, a CA made for this machine); "
        "prints the settings a client needs",
    )
    kafka.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="start a KRaft cluster of this many nodes on ports from CONCORD_KAFKA_PORT up",
    )
    kafka.set_defaults(run=_kafka)

    _topics_parser(commands)

    publish = commands.add_parser(
        "publish",
        help="validate partner files (FHIR JSON/NDJSON/XML, probation feed, CSV, HL7 v2) and publish them",
    )
    publish.add_argument("--as", dest="partner", required=True, help="the publishing partner id")
    publish.add_argument(
        "--format",
        choices=["auto", "fhir", "probation", "csv", "hl7"],
        default="auto",
        help="input format; auto: .csv is the voluntary-sector CSV, .hl7 is HL7 v2, anything else FHIR",
    )
    _secret_option(publish)
    publish.add_argument("files", nargs="+", help="FHIR JSON, Bundle, NDJSON or XML files")
    publish.set_defaults(run=_publish)

    tail = commands.add_parser("tail", help="print a topic's messages as JSON lines")
    tail.add_argument("topic", help="short name (inbound, alerts, deadletter…) or full name")
    tail.add_argument("--max", type=int, default=None, help="stop after N messages")
    tail.add_argument(
        "--timeout", type=float, default=5.0, help="stop after S seconds with no message"
    )
    tail.set_defaults(run=_tail)

    worker = commands.add_parser("worker", help="run the stream processors and the HTTP API")
    worker.set_defaults(run=_worker)

    check = commands.add_parser(
        "breach-check", help="was a missed appointment explained by attendance elsewhere?"
    )
    check.add_argument(
        "--person",
        required=True,
        help="SYSTEM|VALUE in your own system: a CRN (probation), your local id "
        "(urn:concord:id:local:PARTNER|ID) or the hub person id (urn:concord:id:person|ID)",
    )
    check.add_argument("--appointment", required=True, help="your appointment's id")
    check.add_argument("--as", dest="partner", required=True, help="the asking partner id")
    _secret_option(check)
    check.set_defaults(run=_breach_check)

    audit = commands.add_parser("audit", help="every disclosure about a person, newest first")
    audit.add_argument("--person", required=True, help="SYSTEM|VALUE")
    audit.add_argument(
        "--json", action="store_true", help="print the AuditEvent envelopes as JSON lines"
    )
    audit.set_defaults(run=_audit)

    referrals = commands.add_parser(
        "referrals", help="a partner's referral inbox: referrals sent or received, and their state"
    )
    referrals.add_argument(
        "--for", dest="partner", required=True, help="the partner (signs in as it)"
    )
    referrals.add_argument(
        "--status", default=None, help="only referrals in this status (e.g. requested)"
    )
    referrals.add_argument("--json", action="store_true", help="print entries as JSON lines")
    _secret_option(referrals)
    referrals.set_defaults(run=_referrals)

    _measures_parser(commands)
    _identity_parser(commands)

    for name, (_module, summary) in SERVICES.items():
        commands.add_parser(name, help=f"{summary} (its own options: concord {name} --help)")

    partners = commands.add_parser("partners", help="partner credentials")
    partners.add_argument(
        "action", choices=["hash-secret"], help="hash a secret read from stdin for partners.yaml"
    )
    partners.set_defaults(run=_hash_secret)

    users = commands.add_parser("users", help="the pages' user directory")
    users.add_argument(
        "action",
        choices=["hash-password"],
        help="hash a password read from stdin for the user directory (CONCORD_USERS)",
    )
    users.set_defaults(run=_hash_password)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `concord` console command."""
    from services.runtime import InvalidSetting, config

    try:
        config()  # every setting is checked before any command starts
    except InvalidSetting as exc:
        print(f"concord: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _command(list(sys.argv[1:] if argv is None else argv))


def _command(words: list[str]) -> int:
    from services.runtime import MissingConfiguration
    from services.runtime import configure_logging as configure

    if words and words[0] in SERVICES:
        import importlib

        service_main: Callable[[list[str]], int] = importlib.import_module(
            SERVICES[words[0]][0]
        ).main
        try:
            return service_main(words[1:])
        except MissingConfiguration as exc:
            print(f"concord {words[0]}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    args = build_parser().parse_args(words)
    configure(args.log_level)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except CommandError as exc:
        print(f"concord {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except MissingConfiguration as exc:
        print(f"concord {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
