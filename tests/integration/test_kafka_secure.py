"""The hub on a broker that takes only SASL_SSL: `concord kafka start --secure` on its own ports,
topics created, events published and a worker alerting a clash, all with TLS and SCRAM-SHA-512;
a plaintext client, a client with the wrong password and one that does not trust the project's
CA are refused."""

from __future__ import annotations

import json
import socket
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from connectors.fhir_input import read_text
from connectors.kafka_io import Publisher, new_admin
from connectors.publish import publish_records
from deploy.kafka import local
from deploy.topics import create_topics, planned
from tests.conftest import run_concord
from tests.e2e.conftest import CRN, DEMO_SECRETS, NHS, Worker, alerts, appointment, patient

PORT, CONTROLLER_PORT = 19410, 19411
GP_TIME = ("2026-12-03T10:00:00Z", "2026-12-03T10:30:00Z")
PROBATION_TIME = ("2026-12-03T10:15:00Z", "2026-12-03T11:00:00Z")  # overlaps the GP's
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh secure broker (its own cache: CA, users, data), and its clients' settings set."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        env.delenv("CONCORD_CACHE_DIR", raising=False)
        jars = local.fetch().parent  # fetched once into the normal cache, shared
        cache = tmp_path_factory.mktemp("secure-cache")
        (cache / "kafka").mkdir()
        (cache / "kafka" / jars.name).symlink_to(jars)
        env.setenv("CONCORD_CACHE_DIR", str(cache))
        env.setenv("CONCORD_KAFKA_PORT", str(PORT))
        env.setenv("CONCORD_KAFKA_CONTROLLER_PORT", str(CONTROLLER_PORT))
        local.start(timeout_s=120.0, secure=True)
        try:
            settings = local.secure_client_settings()
            for name, value in settings.items():
                env.setenv(name, value)
            env.setenv("CONCORD_TOPIC_PREFIX", f"secure-{uuid.uuid4().hex[:8]}.")
            yield settings
        finally:
            local.stop(timeout_s=20.0)


def broker_log() -> str:
    return local._files(PORT).log.read_text(errors="replace")


def publish_cli(partner: str, resource: dict[str, object], folder: Path) -> None:
    """`concord publish --as partner`: the publish path, as an operator runs it."""
    path = folder / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(resource))
    result = run_concord(
        "publish",
        "--as",
        partner,
        str(path),
        env={"CONCORD_PARTNER_SECRET": DEMO_SECRETS[partner]},
    )
    assert result.returncode == 0, result.stderr


def test_publish_and_a_worker_alert_a_clash_over_sasl_ssl(
    secure_broker: dict[str, str], tmp_path: Path
) -> None:
    assert secure_broker["CONCORD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert (Path(secure_broker["CONCORD_KAFKA_PASSWORD_FILE"]).stat().st_mode & 0o777) == 0o600
    assert len(create_topics()) == len(planned())  # the catalogue's and the changelogs
    # Kubernetes sets WEB_PORT=tcp://... for a service called `web`: faust must not read it.
    worker = Worker(tmp_path, WEB_PORT="tcp://10.0.0.1:80", BROKER_URL="kafka://nowhere:1")
    worker.start(timeout_s=120.0)
    try:
        person_crn, person_nhs = (CRN, "X123456"), (NHS, "9434765919")
        publish_cli("probation-london", patient(person_crn, person_nhs), tmp_path)
        publisher = Publisher()  # the same path in-process, as the gateway uses it
        for partner, resource in (
            ("gp-Y01234", appointment("gp-1", "booked", *GP_TIME, person_nhs)),
            ("probation-london", appointment("prob-1", "booked", *PROBATION_TIME, person_crn)),
        ):
            summary = publish_records(read_text(json.dumps(resource), "a.json"), partner, publisher)
            assert summary.accepted == 1, summary.errors
        publisher.close()
        found = alerts(2, timeout_s=60.0)  # read back over SASL_SSL too
        assert {(a["event_type"], a["recipient"]) for a in found} == {
            ("alert.clash.raised", "gp-Y01234"),
            ("alert.clash.raised", "probation-london"),
        }
    finally:
        worker.stop()


def test_start_secure_prints_the_client_settings(secure_broker: dict[str, str]) -> None:
    result = run_concord("kafka", "start", "--secure")  # already up: answers at once
    assert result.returncode == 0, result.stderr
    header, *exports = result.stdout.splitlines()
    assert header == f"# Kafka {local.KAFKA_VERSION} ready at 127.0.0.1:{PORT} (SASL_SSL)"
    assert exports == [f"export {name}={value}" for name, value in secure_broker.items()]


def test_a_plaintext_client_is_refused(secure_broker: dict[str, str]) -> None:
    before = broker_log().count("SSL handshake failed")
    with pytest.raises(KafkaError):
        KafkaAdminClient(
            bootstrap_servers=f"127.0.0.1:{PORT}",
            request_timeout_ms=2000,
            bootstrap_timeout_ms=4000,
        )
    assert broker_log().count("SSL handshake failed") > before


def test_a_wrong_password_is_refused(
    secure_broker: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert new_admin().list_topics() is not None  # the right password is let in
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password")
    monkeypatch.setenv("CONCORD_KAFKA_PASSWORD_FILE", str(wrong))
    refused = "invalid credentials with SASL mechanism SCRAM-SHA-512"
    before = broker_log().count(refused)
    with pytest.raises(KafkaError):
        new_admin(request_timeout_ms=2000, bootstrap_timeout_ms=4000)
    assert broker_log().count(refused) > before


def test_the_broker_proves_itself_with_the_projects_ca_only(secure_broker: dict[str, str]) -> None:
    trusting = ssl.create_default_context(cafile=secure_broker["CONCORD_KAFKA_CA_FILE"])
    with (
        socket.create_connection(("127.0.0.1", PORT), timeout=10) as raw,
        trusting.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", PORT), timeout=10) as raw,
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass
