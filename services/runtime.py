"""What every concord process shares at run time: settings from the environment, the partner
and service directories, the broker address and how to connect to it (TLS, SASL), the clock,
partner sign-in and log set-up.

Every setting is a field of `Config`, read and checked by `config()`; connectors, stream workers
and commands read the environment through it. Every Kafka client is built from
`kafka_client_config()` (kafka-python) or `aiokafka_client_config()` (aiokafka).
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import holidays
import httpx
import structlog
import yaml
from aiokafka.abc import AbstractTokenProvider as AIOKafkaTokenProvider
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from kafka.net.sasl.oauth import AbstractTokenProvider as KafkaPythonTokenProvider
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    current, names = config(), {v: k for k, v in setting_names().items()}
    value = str(getattr(current, names[name]))
    if value:
        return value
    missing = [n for n in REQUIRED if not getattr(current, names[n])]
    wanted = " and ".join(f"{n} ({REQUIRED[n]})" for n in missing)
    raise MissingConfiguration(
        f"set {wanted}: the hub does not start on demo defaults "
        "(`make run` sets demo values; see the README's configuration table)"
    )


# --- settings ---
# Every setting the hub reads from its environment is a field here: CONCORD_<FIELD> (upper case),
# or its alias. `config()` reads and checks them once per environment.

Port = Annotated[int, Field(ge=1, le=65535, description="a TCP port number from 1 to 65535")]
Positive = Annotated[float, Field(gt=0, description="a number greater than 0")]
NonNegative = Annotated[float, Field(ge=0, description="a number, 0 or more")]
Count = Annotated[int, Field(ge=0, description="a whole number, 0 or more")]
AtLeastOne = Annotated[int, Field(ge=1, description="a whole number, 1 or more")]
Flag = Annotated[bool, Field(description="true or false")]
KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "OAUTHBEARER"]


class Config(BaseSettings):
    """The hub's settings, one field per environment variable (the README's configuration
    table describes each); faust's own variable names (WEB_PORT, BROKER, ...) are not read."""

    model_config = SettingsConfigDict(
        env_prefix="CONCORD_", env_ignore_empty=True, frozen=True, extra="ignore"
    )

    # the broker and its security
    kafka_bootstrap_servers: str = Field(default="", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    kafka_port: Port = 9092
    kafka_controller_port: Port | None = Field(
        default=None, description="a TCP port number from 1 to 65535"
    )
    kafka_heap: str = "1g"
    maven_opts: str = ""
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_username: str = ""
    kafka_password_file: Path | None = None
    kafka_ca_file: Path | None = None
    kafka_cert_file: Path | None = None
    kafka_key_file: Path | None = None
    kafka_oauth_token_url: str = ""
    kafka_oauth_client_id: str = ""
    kafka_oauth_client_secret_file: Path | None = None
    # topics
    topic_prefix: str = "concord."
    replication_factor: AtLeastOne = 1
    partitions: AtLeastOne = 4
    create_topics: Flag = False
    producer_linger_ms: Count = 5
    # workers
    app_id: str = ""
    cache_dir: Path = ROOT / ".cache"
    store: str = "rocksdb://"
    data_dir: Path | None = None
    web_host: str = "127.0.0.1"
    web_port: Port = 6066
    worker_url: str = ""
    worker_linger_ms: NonNegative = 1
    fetch_max_wait_ms: Count = 100
    rocksdb_write_buffer_mb: AtLeastOne = 8
    rocksdb_cache_mb: AtLeastOne = 16
    standby_replicas: Count = 1
    audit_timeout_s: Positive = 10
    session_timeout_s: Positive = 8
    heartbeat_interval_s: Positive = 1
    rebalance_timeout_s: Positive = 60
    test_crash_at: Literal["", "state-written", "outputs-confirmed", "changelog-confirmed"] = ""
    # the rules' parameters and directories
    partners: str = Field(default="", repr=False)
    person_key: str = Field(default="", repr=False)
    services: Path = ROOT / "deploy" / "services.yaml"
    areas: Path = ROOT / "deploy" / "areas.yaml"
    placeholder_identifiers: str = ""
    travel_buffer_minutes: NonNegative = 30
    sla_routine_days: Count = 5
    sla_urgent_days: Count = 1
    escalation_check_seconds: Positive = 60
    clock_shift_hours: float = 0
    # commands
    partner_secret: str = Field(default="", repr=False)
    # the probation API
    probation_api_url: str = ""
    probation_api_token_url: str = ""
    probation_api_client_id: str = ""
    probation_api_client_secret: str = Field(default="", repr=False)
    probation_api_timeout_s: Positive = 10
    # the pages
    pages_secret: str = Field(default="", repr=False)
    users: Path | None = None
    pages_host: str = "127.0.0.1"
    pages_port: Port = 8090
    pages_cookie_key: str = Field(default="", repr=False)
    pages_secure_cookies: Flag = True
    pages_idle_minutes: Positive = 20
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret_file: Path | None = None
    oidc_redirect_url: str = ""
    oidc_partner_claim: str = "concord_partner"
    oidc_role_claim: str = "concord_role"
    # the gateway, the MLLP listener and the deliverer
    gateway_host: str = "127.0.0.1"
    gateway_port: Port = 8080
    gateway_max_body: AtLeastOne = 1024 * 1024
    gateway_kafka_timeout_s: Positive = 10
    gateway_producers: AtLeastOne = 4
    gateway_public_url: str = ""
    gateway_idle_timeout_s: Positive = 15
    gateway_read_timeout_s: Positive = 30
    gateway_max_connections: AtLeastOne = 512
    rate_source: str = "1200/minute"
    rate_partner: str = "600/minute"
    rate_sign_in_check: str = "10/minute"
    rate_failed_sign_in: str = "10/minute"
    sign_in_threads: AtLeastOne = 1
    sign_in_queue: AtLeastOne = 64
    mllp_http_port: Port = 8082
    mllp_ack_timeout_s: Positive = 10
    mllp_read_timeout_s: Positive = 30
    mllp_idle_timeout_s: Positive = 300
    mllp_max_connections: AtLeastOne = 64
    mllp_max_bytes: AtLeastOne = 1024 * 1024
    mllp_max_segments: AtLeastOne = 500
    mllp_max_repetitions: AtLeastOne = 100
    mllp_max_elements: AtLeastOne = 2000
    mllp_tls_cert_file: Path | None = None
    mllp_tls_key_file: Path | None = None
    mllp_tls_client_ca_file: Path | None = None
    health_host: str = "127.0.0.1"
    endpoints: Path = ROOT / "deploy" / "endpoints.yaml"
    delivery_http_port: Port = 8083
    delivery_max_attempts: AtLeastOne = 60
    delivery_backoff_base_s: Positive = 1
    delivery_backoff_cap_s: Positive = 120
    delivery_timeout_s: Positive = 10
    delivery_max_backlog: AtLeastOne = 1000
    delivery_commit_interval_s: Positive = 0.2
    delivery_journal: str = ""
    delivery_journal_keys: AtLeastOne = 100_000
    operator_webhook_url: str = ""
    silence_check_seconds: Positive = 60
    # logs
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    library_log_level: Literal["debug", "info", "warning", "error", "critical"] = "warning"
    # the fuzz tests (tests/fuzz)
    fuzz_seed: Count = 0
    fuzz_inputs: Count = 0

    @field_validator("log_level", "log_format", "library_log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Config:
        if bool(self.kafka_cert_file) != bool(self.kafka_key_file):
            raise ValueError(
                "CONCORD_KAFKA_CERT_FILE and CONCORD_KAFKA_KEY_FILE go together (mutual TLS): "
                "set both or neither."
            )
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        if protocol.startswith("SASL_") and mechanism == "OAUTHBEARER":
            wanted = {
                "CONCORD_KAFKA_OAUTH_TOKEN_URL": self.kafka_oauth_token_url,
                "CONCORD_KAFKA_OAUTH_CLIENT_ID": self.kafka_oauth_client_id,
                "CONCORD_KAFKA_OAUTH_CLIENT_SECRET_FILE": self.kafka_oauth_client_secret_file,
            }
        elif protocol.startswith("SASL_"):
            wanted = {
                "CONCORD_KAFKA_USERNAME": self.kafka_username,
                "CONCORD_KAFKA_PASSWORD_FILE": self.kafka_password_file,
            }
        else:
            wanted = {}
        missing = [name for name, value in wanted.items() if not value]
        if missing:
            raise ValueError(
                f"CONCORD_KAFKA_SECURITY_PROTOCOL={protocol} (mechanism {mechanism}) "
                f"needs {' and '.join(missing)} set too."
            )
        return self


def setting_names() -> dict[str, str]:
    """Each setting's environment variable name, by field name."""
    return {
        name: str(field.validation_alias or f"CONCORD_{name.upper()}")
        for name, field in Config.model_fields.items()
    }


class InvalidSetting(MissingConfiguration):
    """A setting that is set but unusable (a bad value, or a CONCORD_ name the hub does not
    know), named with what is wanted."""


def config() -> Config:
    """The hub's settings from the environment, checked once per environment (an environment
    that changes, as in tests, is read again); InvalidSetting names the first bad one."""
    return _config(tuple(sorted(_relevant(os.environ).items())))


def _relevant(env: Mapping[str, str]) -> dict[str, str]:
    return {
        k: v for k, v in env.items() if k.startswith("CONCORD_") or k == "KAFKA_BOOTSTRAP_SERVERS"
    }


@cache
def _config(env: tuple[tuple[str, str], ...]) -> Config:
    given = dict(env)
    known = set(setting_names().values())
    for name in sorted(given.keys() - known):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise InvalidSetting(
            f"{name} is not a concord setting{hint}: correct or remove it "
            "(the README's configuration table lists every setting)."
        )
    try:
        return Config()
    except ValidationError as invalid:
        raise InvalidSetting(_first_problem(invalid, given)) from None


def _first_problem(invalid: ValidationError, given: Mapping[str, str]) -> str:
    error = invalid.errors()[0]
    names = setting_names()
    field = str(error["loc"][0]) if error["loc"] else ""
    if field not in names:  # a rule across fields: its message names them
        return str(error["msg"]).removeprefix("Value error, ")
    name, value = names[field], given.get(names[field], "")
    wanted = Config.model_fields[field].description or _WANTED.get(error["type"])
    if "expected" in error.get("ctx", {}):
        wanted = f"one of {error['ctx']['expected']}"
    if wanted is None:
        return f"{name}={value!r} is refused: {str(error['msg']).lower()}."
    return f"{name} must be {wanted}, not {value!r}."


_WANTED = {
    "int_parsing": "a whole number",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
}


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
    """A worker's settings (see the README's configuration table).

    MissingConfiguration when the partner directory or the person key is not set,
    InvalidSetting when a setting is unusable.
    """
    required("CONCORD_PERSON_KEY")
    current = config()
    brokers = ";".join(f"kafka://{server}" for server in bootstrap_servers().split(","))
    app_id = topics_app_id()
    # Faust keys its local table files by table name only: one folder per app, or they mix.
    default_data_dir = current.cache_dir / "workers" / f"{app_id}-{current.web_port}"
    return Settings(
        app_id=app_id,
        broker=brokers,
        store=current.store,
        data_dir=current.data_dir or default_data_dir,
        web_host=current.web_host,
        web_port=current.web_port,
        travel_buffer=timedelta(minutes=current.travel_buffer_minutes),
        partners_file=Path(required("CONCORD_PARTNERS")),
        services_file=current.services,
        areas_file=current.areas,
        sla_working_days={
            "routine": current.sla_routine_days,
            "urgent": current.sla_urgent_days,
        },
        escalation_check=timedelta(seconds=current.escalation_check_seconds),
        rocksdb_write_buffer_mb=current.rocksdb_write_buffer_mb,
        rocksdb_cache_mb=current.rocksdb_cache_mb,
        standby_replicas=current.standby_replicas,
        audit_timeout_s=current.audit_timeout_s,
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
    current = config()
    base_url = current.probation_api_url.strip()
    if not base_url:
        return None
    names = {v: k for k, v in setting_names().items()}
    missing = [
        f"{n} ({why})" for n, why in PROBATION_API_PARTS.items() if not getattr(current, names[n])
    ]
    if missing:
        raise MissingConfiguration(f"{PROBATION_API_URL} is set: set {' and '.join(missing)} too")
    return ProbationApi(
        base_url=base_url,
        token_url=current.probation_api_token_url.strip(),
        client_id=current.probation_api_client_id.strip(),
        client_secret=current.probation_api_client_secret.strip(),
        timeout_s=current.probation_api_timeout_s,
    )


@cache
def person_key() -> PersonKey:
    """The hub's secret person-id key (CONCORD_PERSON_KEY); MissingConfiguration when unset."""
    return PersonKey.from_secret(required("CONCORD_PERSON_KEY"))


PAGES_SECRET_ENV = "CONCORD_PAGES_SECRET"  # noqa: S105 -- the variable's name, not a secret


def pages_secret() -> str:
    """The secret the pages process signs its statements of who is signed in with ("" = none:
    the workers then accept no statement, only partners' own credentials)."""
    return config().pages_secret


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
    current = config()
    return current.worker_url or f"http://127.0.0.1:{current.web_port}"


# --- the broker ---


def local_kafka_port() -> int:
    """The local broker's port (CONCORD_KAFKA_PORT, default 9092)."""
    return config().kafka_port


def bootstrap_servers() -> str:
    """The brokers every process talks to: KAFKA_BOOTSTRAP_SERVERS, else the local broker."""
    return config().kafka_bootstrap_servers.strip() or f"127.0.0.1:{local_kafka_port()}"


def _secret_file(path: Path | None, name: str) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InvalidSetting(
            f"{name} names {path}, which cannot be read ({exc.strerror})"
        ) from None


def kafka_ssl_context() -> ssl.SSLContext | None:
    """The TLS context of every Kafka connection (None in plaintext): the CA file's
    certificates (else the system's) and, for mutual TLS, the client certificate and key."""
    current = config()
    if not current.kafka_security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(
        cafile=str(current.kafka_ca_file) if current.kafka_ca_file else None
    )
    if current.kafka_cert_file and current.kafka_key_file:
        context.load_cert_chain(current.kafka_cert_file, current.kafka_key_file)
    return context


def kafka_client_config() -> dict[str, Any]:
    """kafka-python keyword arguments for any producer, consumer or admin client: the brokers,
    and TLS and SASL as the CONCORD_KAFKA_* settings say."""
    current = config()
    protocol = current.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(),
        "security_protocol": protocol,
    }
    context = kafka_ssl_context()
    if context is not None:
        options["ssl_context"] = context
    if protocol.startswith("SASL_"):
        options |= _sasl(current, KafkaOAuthToken)
    return options


def aiokafka_client_config() -> dict[str, Any]:
    """The same for aiokafka's clients (the deliverer, the pages, the views' readers)."""
    current = config()
    protocol = current.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(),
        "security_protocol": protocol,
        "ssl_context": kafka_ssl_context(),
    }
    if protocol.startswith("SASL_"):
        options |= _sasl(current, AsyncKafkaOAuthToken)
    return options


def _sasl(current: Config, token_provider: Callable[[ClientCredentials], object]) -> dict[str, Any]:
    mechanism = current.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        return {
            "sasl_mechanism": mechanism,
            "sasl_oauth_token_provider": token_provider(oauth_client()),
        }
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": current.kafka_username,
        "sasl_plain_password": kafka_password(),
    }


def kafka_password() -> str:
    """The SASL password, from CONCORD_KAFKA_PASSWORD_FILE."""
    return _secret_file(config().kafka_password_file, "CONCORD_KAFKA_PASSWORD_FILE")


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """An OAuth2 client the hub signs in to Kafka as (client credentials grant)."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)


def oauth_client() -> ClientCredentials:
    """The OAuth2 client of CONCORD_KAFKA_OAUTH_*."""
    current = config()
    return ClientCredentials(
        token_url=current.kafka_oauth_token_url,
        client_id=current.kafka_oauth_client_id,
        client_secret=_secret_file(
            current.kafka_oauth_client_secret_file, "CONCORD_KAFKA_OAUTH_CLIENT_SECRET_FILE"
        ),
    )


class _TokenCache:
    """An access token from the token URL, kept until 30 s before it expires."""

    def __init__(self, client: ClientCredentials) -> None:
        self._client = client
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if time.monotonic() >= self._expires:
                response = httpx.post(
                    self._client.token_url,
                    data={"grant_type": "client_credentials"},
                    auth=(self._client.client_id, self._client.client_secret),
                    timeout=10.0,
                )
                response.raise_for_status()
                body = response.json()
                self._token = str(body["access_token"])
                self._expires = time.monotonic() + float(body.get("expires_in", 300)) - 30
            return self._token


class KafkaOAuthToken(KafkaPythonTokenProvider):  # type: ignore[misc]
    """kafka-python's OAUTHBEARER token provider."""

    def __init__(self, client: ClientCredentials) -> None:
        self._tokens = _TokenCache(client)

    def token(self) -> str:
        return self._tokens.get()


class AsyncKafkaOAuthToken(AIOKafkaTokenProvider):  # type: ignore[misc]
    """aiokafka's (and faust's) OAUTHBEARER token provider: the request runs off the loop."""

    def __init__(self, client: ClientCredentials) -> None:
        self._tokens = _TokenCache(client)

    async def token(self) -> str:
        return await asyncio.to_thread(self._tokens.get)


# --- the clock ---


def now() -> datetime:
    """The current time as the hub sees it (aware, UTC): real time, shifted by
    CONCORD_CLOCK_SHIFT_HOURS for demos and tests of deadlines."""
    return datetime.now(UTC) + timedelta(hours=config().clock_shift_hours)


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
    return config().partner_secret or None


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
    current = config()
    name = (level or current.log_level).upper()
    numeric = logging.getLevelNamesMapping().get(name, logging.INFO)
    json_lines = current.log_format == "json" or (
        current.log_format == "auto" and not sys.stderr.isatty()
    )
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
    library = current.library_log_level.upper()
    library_level = logging.getLevelNamesMapping().get(library, logging.WARNING)
    logging.basicConfig(level=library_level, handlers=[handler], force=True)
    logging.captureWarnings(True)  # Python's warnings too, as log lines rather than plain text
    # kafka-python's selector times its own polling and warns about it under load: noise to a reader.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
