"""What every concord process shares at run time: settings from the environment, the partner
and service directories, the broker address, the clock, partner sign-in and log set-up.

Connectors, stream workers and commands all import this module; none of them reads the
environment for these things anywhere else.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import holidays
import structlog
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from schemas.keys import PersonKey
from schemas.topics import app_id as topics_app_id
from services.domain.credentials import is_argon2id_hash, verify_secret
from services.domain.measure_reports import AreaMap
from services.domain.partners import Partner, PartnerDirectory
from services.domain.referrals import ServiceDirectory
from services.domain.signin import SignInRefused, check_secret

ROOT = Path(__file__).resolve().parent.parent
log = structlog.get_logger(__name__)
SECRET_ENV = "CONCORD_PARTNER_SECRET"  # noqa: S105 -- the variable's name, not a secret
# Settings the hub never guesses: a default would load the demo partners, whose secrets are in
# the repository, or key person ids with a secret anyone can read. `make run` sets demo values.
REQUIRED = {
    "CONCORD_PARTNERS": "the partner directory file",
    "CONCORD_PERSON_KEY": "the hub's secret person-id key",
}


class MissingConfiguration(ValueError):  # noqa: N818 -- reads as the condition it reports
    """A setting the hub needs and will not default, named with what to set."""


def required(name: str) -> str:
    """The value of a required setting; MissingConfiguration says what to set when it is unset."""
    value = os.environ.get(name)
    if value:
        return value
    missing = [n for n in REQUIRED if not os.environ.get(n)]
    wanted = " and ".join(f"{n} ({REQUIRED[n]})" for n in missing)
    raise MissingConfiguration(
        f"set {wanted}: the hub does not start on demo defaults "
        "(`make run` sets demo values; see the README's configuration table)"
    )


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a worker needs to know about its environment."""

    app_id: str
    broker: str
    store: str
    data_dir: Path
    web_host: str
    web_port: int
    travel_buffer: timedelta
    partners_file: Path
    services_file: Path
    areas_file: Path
    sla_working_days: dict[str, int]
    escalation_check: timedelta
    rocksdb_write_buffer_mb: int
    rocksdb_cache_mb: int
    standby_replicas: int
    audit_timeout_s: float

    @property
    def web_url(self) -> str:
        """Where this worker's HTTP endpoints answer."""
        return f"http://{self.web_host}:{self.web_port}"


def settings() -> Settings:
    """Settings from the environment (see the README's configuration table).

    MissingConfiguration when the partner directory or the person key is not set.
    """
    required("CONCORD_PERSON_KEY")
    web_port = int(os.environ.get("CONCORD_WEB_PORT", "6066"))
    cache_dir = Path(os.environ.get("CONCORD_CACHE_DIR", ROOT / ".cache"))
    brokers = ";".join(f"kafka://{server}" for server in bootstrap_servers().split(","))
    app_id = topics_app_id()
    # Faust keys its local table files by table name only: one folder per app, or they mix.
    default_data_dir = cache_dir / "workers" / f"{app_id}-{web_port}"
    return Settings(
        app_id=app_id,
        broker=brokers,
        store=os.environ.get("CONCORD_STORE", "rocksdb://"),
        data_dir=Path(os.environ.get("CONCORD_DATA_DIR", default_data_dir)),
        web_host=os.environ.get("CONCORD_WEB_HOST", "127.0.0.1"),
        web_port=web_port,
        travel_buffer=timedelta(
            minutes=float(os.environ.get("CONCORD_TRAVEL_BUFFER_MINUTES", "30"))
        ),
        partners_file=Path(required("CONCORD_PARTNERS")),
        services_file=Path(os.environ.get("CONCORD_SERVICES", ROOT / "deploy" / "services.yaml")),
        areas_file=Path(os.environ.get("CONCORD_AREAS", ROOT / "deploy" / "areas.yaml")),
        sla_working_days={
            "routine": int(os.environ.get("CONCORD_SLA_ROUTINE_DAYS", "5")),
            "urgent": int(os.environ.get("CONCORD_SLA_URGENT_DAYS", "1")),
        },
        escalation_check=timedelta(
            seconds=float(os.environ.get("CONCORD_ESCALATION_CHECK_SECONDS", "60"))
        ),
        rocksdb_write_buffer_mb=int(os.environ.get("CONCORD_ROCKSDB_WRITE_BUFFER_MB", "8")),
        rocksdb_cache_mb=int(os.environ.get("CONCORD_ROCKSDB_CACHE_MB", "16")),
        standby_replicas=int(os.environ.get("CONCORD_STANDBY_REPLICAS", "1")),
        audit_timeout_s=float(os.environ.get("CONCORD_AUDIT_TIMEOUT_S", "10")),
    )


@dataclass(frozen=True, slots=True)
class ProbationApi:
    """The probation API an HMPPS event's detail is fetched from, and the OAuth2 client (client
    credentials grant) the hub signs in to it as."""

    base_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout_s: float = 10.0


PROBATION_API_URL = "CONCORD_PROBATION_API_URL"
PROBATION_API_PARTS = {
    "CONCORD_PROBATION_API_TOKEN_URL": "its OAuth2 token endpoint",
    "CONCORD_PROBATION_API_CLIENT_ID": "the hub's client id",
    "CONCORD_PROBATION_API_CLIENT_SECRET": "the hub's client secret",
}


def probation_api() -> ProbationApi | None:
    """The probation API settings; None when CONCORD_PROBATION_API_URL is unset, and
    MissingConfiguration naming what else to set when it is set without the rest."""
    base_url = os.environ.get(PROBATION_API_URL, "").strip()
    if not base_url:
        return None
    missing = [f"{n} ({why})" for n, why in PROBATION_API_PARTS.items() if not os.environ.get(n)]
    if missing:
        raise MissingConfiguration(f"{PROBATION_API_URL} is set: set {' and '.join(missing)} too")
    return ProbationApi(
        base_url=base_url,
        token_url=os.environ["CONCORD_PROBATION_API_TOKEN_URL"].strip(),
        client_id=os.environ["CONCORD_PROBATION_API_CLIENT_ID"].strip(),
        client_secret=os.environ["CONCORD_PROBATION_API_CLIENT_SECRET"].strip(),
        timeout_s=float(os.environ.get("CONCORD_PROBATION_API_TIMEOUT_S", "10")),
    )


@cache
def person_key() -> PersonKey:
    """The hub's secret person-id key (CONCORD_PERSON_KEY); MissingConfiguration when unset."""
    return PersonKey.from_secret(required("CONCORD_PERSON_KEY"))


PAGES_SECRET_ENV = "CONCORD_PAGES_SECRET"  # noqa: S105 -- the variable's name, not a secret


def pages_secret() -> str:
    """The secret the pages process signs its statements of who is signed in with ("" = none:
    the workers then accept no statement, only partners' own credentials)."""
    return os.environ.get(PAGES_SECRET_ENV, "")


@cache
def partner_directory(path: Path) -> PartnerDirectory:
    """The partner directory from its YAML file, validated."""
    with path.open(encoding="utf-8") as handle:
        return PartnerDirectory.from_dict(yaml.safe_load(handle))


@cache
def service_directory(path: Path) -> ServiceDirectory:
    """The service directory from its YAML file, validated (a worker refuses to start on errors)."""
    with path.open(encoding="utf-8") as handle:
        return ServiceDirectory.from_dict(yaml.safe_load(handle))


@cache
def area_map(path: Path) -> AreaMap:
    """Local authorities and their ICBs, for the commissioners' figures (deploy/areas.yaml)."""
    with path.open(encoding="utf-8") as handle:
        return AreaMap.from_dict(yaml.safe_load(handle))


@cache
def bank_holidays() -> frozenset[date]:
    """England's bank holidays (the `holidays` package), for working days in the figures."""
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=range(2020, 2041)))


def worker_url() -> str:
    """The worker the CLI asks (CONCORD_WORKER_URL, default this machine's first worker)."""
    return os.environ.get(
        "CONCORD_WORKER_URL", f"http://127.0.0.1:{os.environ.get('CONCORD_WEB_PORT', '6066')}"
    )


# --- the broker ---


def local_kafka_port() -> int:
    """The local broker's port (CONCORD_KAFKA_PORT, default 9092); ValueError naming a bad one."""
    raw = os.environ.get("CONCORD_KAFKA_PORT", "").strip()
    if not raw:
        return 9092
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(
            f"CONCORD_KAFKA_PORT must be a TCP port number from 1 to 65535, not {raw!r}."
        )
    return int(raw)


def bootstrap_servers() -> str:
    """The brokers every process talks to: KAFKA_BOOTSTRAP_SERVERS, else the local broker."""
    return (
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or f"127.0.0.1:{local_kafka_port()}"
    )


# --- the clock ---


def now() -> datetime:
    """The current time as the hub sees it (aware, UTC): real time, shifted by
    CONCORD_CLOCK_SHIFT_HOURS for demos and tests of deadlines."""
    shift = float(os.environ.get("CONCORD_CLOCK_SHIFT_HOURS", "0"))
    return datetime.now(UTC) + timedelta(hours=shift)


# --- sign-in ---


_ARGON2 = PasswordHasher()  # argon2-cffi's defaults: RFC 9106's low-memory argon2id profile


def hash_partner_secret(secret: str) -> str:
    """The stored form of a new partner secret: an argon2id hash."""
    return _ARGON2.hash(secret)


def verify_partner_secret(secret: str, stored: str) -> bool:
    """True when `secret` matches a stored hash: argon2id, or PBKDF2 from an older directory."""
    if not is_argon2id_hash(stored):
        return verify_secret(secret, stored)
    try:
        return _ARGON2.verify(stored, secret)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(directory: PartnerDirectory, partner_id: str, secret: str | None) -> Partner:
    """The partner, when `secret` is one of its live secrets; AuthError otherwise, logged with the
    partner id (when it has a partner id's shape) and the reason only, never the secret."""
    try:
        return check_secret(directory, partner_id, secret, verify_partner_secret)
    except SignInRefused as refused:
        log.warning("auth.refused", partner=refused.shown_partner, reason=refused.reason)
        raise


def secret_from(secret_file: str | None) -> str | None:
    """A command's secret: from --secret-file, else the CONCORD_PARTNER_SECRET variable."""
    if secret_file:
        return Path(secret_file).read_text(encoding="utf-8").strip()
    return os.environ.get(SECRET_ENV)


# --- logs ---
# Log lines carry event ids, event types, partner ids and hub person ids only: never
# identifiers, names, dates of birth or clinical text.


class _CurrentStderr:
    """Whatever sys.stderr is when a line is written: a stream captured once would outlive a
    caller that swaps stderr and closes its own (a test's capture, a redirected command)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _CurrentStderr()


def configure_logging(level: str | None = None) -> None:
    """Configure structlog, and route the standard library's logging (faust, mode, aiokafka,
    kafka-python, aiohttp, warnings) through the same renderer: every line one JSON object when
    not on a terminal."""
    name = (level or os.environ.get("CONCORD_LOG_LEVEL", "info")).upper()
    numeric = logging.getLevelNamesMapping().get(name, logging.INFO)
    json_lines = os.environ.get("CONCORD_LOG_FORMAT", "auto") == "json" or not sys.stderr.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    stamped: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*stamped, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    # The libraries' own lines (faust, aiokafka, kafka-python...) from CONCORD_LIBRARY_LOG_LEVEL:
    # warnings and worse unless asked, as their info lines come several per message.
    library = os.environ.get("CONCORD_LIBRARY_LOG_LEVEL", "warning").upper()
    library_level = logging.getLevelNamesMapping().get(library, logging.WARNING)
    logging.basicConfig(level=library_level, handlers=[handler], force=True)
    logging.captureWarnings(True)  # Python's warnings too, as log lines rather than plain text
    # kafka-python's selector times its own polling and warns about it under load: noise to a reader.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
