"""Worker settings, read once from the environment, with the defaults documented in the README."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path

import yaml

from deploy.kafka.local import bootstrap_servers
from schemas.topics import topic_prefix
from services.domain.partners import PartnerDirectory
from services.domain.referrals import ServiceDirectory

ROOT = Path(__file__).resolve().parent.parent
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
    app_id = os.environ.get("CONCORD_APP_ID", f"{topic_prefix()}hub")
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


def worker_url() -> str:
    """The worker the CLI asks (CONCORD_WORKER_URL, default this machine's first worker)."""
    return os.environ.get(
        "CONCORD_WORKER_URL", f"http://127.0.0.1:{os.environ.get('CONCORD_WEB_PORT', '6066')}"
    )
