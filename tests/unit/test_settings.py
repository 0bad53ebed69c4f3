"""The hub's settings: one typed object, checked once per environment; a bad or unknown setting
stops a command with one sentence naming it; Kafka clients get the configured TLS and SASL; faust
reads none of its own environment names."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.net.sasl.oauth import AbstractTokenProvider

from deploy.kafka import secure
from services import runtime
from services.runtime import InvalidSetting, config, kafka_client_config, setting_names

ROOT = Path(__file__).parents[2]


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message
    assert message.endswith(".")


def test_each_setting_is_read_typed_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONCORD_WEB_PORT", raising=False)
    assert config().web_port == 6066
    monkeypatch.setenv("CONCORD_WEB_PORT", "6070")
    monkeypatch.setenv("CONCORD_CREATE_TOPICS", "true")
    monkeypatch.setenv("CONCORD_CLOCK_SHIFT_HOURS", "-2.5")
    current = config()
    assert (current.web_port, current.create_topics, current.clock_shift_hours) == (
        6070,
        True,
        -2.5,
    )
    assert config() is current, "read once while the environment is the same"


def test_an_empty_value_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCORD_GATEWAY_PORT", "")
    assert config().gateway_port == 8080


@pytest.mark.parametrize(
    ("name", "value", "wanted"),
    [
        ("CONCORD_WEB_PORT", "tcp://10.0.0.1:80", "a TCP port number from 1 to 65535"),
        ("CONCORD_KAFKA_PORT", "0", "a TCP port number from 1 to 65535"),
        ("CONCORD_REPLICATION_FACTOR", "three", "a whole number, 1 or more"),
        ("CONCORD_DELIVERY_TIMEOUT_S", "-1", "a number greater than 0"),
        ("CONCORD_PAGES_SECURE_COOKIES", "perhaps", "true or false"),
        ("CONCORD_KAFKA_SECURITY_PROTOCOL", "TLS", "one of 'PLAINTEXT', 'SSL'"),
        ("CONCORD_KAFKA_SASL_MECHANISM", "GSSAPI", "one of 'SCRAM-SHA-512'"),
        ("CONCORD_LOG_FORMAT", "xml", "one of 'auto', 'json'"),
    ],
)
def test_an_invalid_value_names_the_setting_and_what_it_wants(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, wanted: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSetting) as caught:
        config()
    message = str(caught.value)
    assert message.startswith(f"{name} must be {wanted}")
    assert repr(value) in message
    assert_one_sentence(message)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("CONCORD_WEB_PROT", "CONCORD_WEB_PORT"), ("CONCORD_PARTNER", "CONCORD_PARTNERS")],
)
def test_an_unknown_concord_name_is_refused_with_the_likely_one(
    monkeypatch: pytest.MonkeyPatch, typo: str, meant: str
) -> None:
    monkeypatch.setenv(typo, "1")
    with pytest.raises(InvalidSetting, match=f"^{typo} is not a concord setting") as caught:
        config()
    assert f"did you mean {meant}?" in str(caught.value)
    assert_one_sentence(str(caught.value))


NUMERIC = [n for n, f in runtime.Config.model_fields.items() if f.annotation in (int, float)]


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(setting_names())), value=st.text(min_size=1, max_size=20))
def test_any_value_is_taken_or_refused_in_one_sentence_naming_it(field: str, value: str) -> None:
    name = setting_names()[field]
    if "\x00" in value or value.strip() == "":
        return  # the environment cannot hold a NUL; empty is unset
    with pytest.MonkeyPatch.context() as env:
        for required in runtime.REQUIRED:
            env.setenv(required, "x")
        env.setenv(name, value)
        try:
            config()
        except InvalidSetting as refused:
            message = str(refused)
            assert name in message, message
            assert_one_sentence(message)


def test_required_settings_keep_saying_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONCORD_PERSON_KEY", raising=False)
    monkeypatch.delenv("CONCORD_PARTNERS", raising=False)
    with pytest.raises(
        runtime.MissingConfiguration, match=r"set CONCORD_PARTNERS .* and CONCORD_PERSON_KEY"
    ):
        runtime.settings()


def test_the_readme_documents_every_setting() -> None:
    table = (ROOT / "README.md").read_text(encoding="utf-8").split("## Configuration", 1)[1]
    documented = set(re.findall(r"`((?:CONCORD|KAFKA)_[A-Z0-9_]+)`", table))
    assert set(setting_names().values()) - documented == set()
    assert documented - set(setting_names().values()) == set(), "a documented setting is read"


# --- Kafka clients ---


def test_plaintext_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    assert kafka_client_config() == {
        "bootstrap_servers": "kafka-1:9092,kafka-2:9092",
        "security_protocol": "PLAINTEXT",
    }


@pytest.fixture
def pki(tmp_path: Path) -> secure.SecureFiles:
    return secure.ensure_files(tmp_path / "pki")


def test_scram_over_tls_reads_the_password_file_and_trusts_the_ca(
    monkeypatch: pytest.MonkeyPatch, pki: secure.SecureFiles
) -> None:
    for name, value in secure.client_settings(pki).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CONCORD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    options = kafka_client_config()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "concord"
    assert options["sasl_plain_password"] == pki.client_password.read_text().strip()
    context = options["ssl_context"]
    assert context.check_hostname is True
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("organizationName", "concord (local)"),), (("commonName", "concord local Kafka CA"),))
    ]
    aio = runtime.aiokafka_client_config()
    assert aio["sasl_plain_password"] == options["sasl_plain_password"]
    assert aio["ssl_context"] is not None


def test_mutual_tls_loads_the_client_certificate(
    monkeypatch: pytest.MonkeyPatch, pki: secure.SecureFiles, tmp_path: Path
) -> None:
    # The broker's keystore holds a key and a certificate chain: enough to load as a client's.
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    pem = pki.keystore.read_text()
    key.write_text(pem[: pem.index("-----END PRIVATE KEY-----") + 26])
    cert.write_text(pem[pem.index("-----BEGIN CERTIFICATE-----") :])
    monkeypatch.setenv("CONCORD_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("CONCORD_KAFKA_CA_FILE", str(pki.ca))
    monkeypatch.setenv("CONCORD_KAFKA_CERT_FILE", str(cert))
    monkeypatch.setenv("CONCORD_KAFKA_KEY_FILE", str(key))
    options = kafka_client_config()
    assert options["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in options
    monkeypatch.setenv("CONCORD_KAFKA_KEY_FILE", "")
    with pytest.raises(InvalidSetting, match="go together"):
        config()


def test_sasl_without_its_credentials_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCORD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(InvalidSetting) as caught:
        config()
    assert str(caught.value) == (
        "CONCORD_KAFKA_SECURITY_PROTOCOL=SASL_SSL (mechanism SCRAM-SHA-512) needs "
        "CONCORD_KAFKA_USERNAME and CONCORD_KAFKA_PASSWORD_FILE set too."
    )
    monkeypatch.setenv("CONCORD_KAFKA_USERNAME", "concord")
    monkeypatch.setenv("CONCORD_KAFKA_PASSWORD_FILE", "/nowhere/password")
    with pytest.raises(InvalidSetting, match="CONCORD_KAFKA_PASSWORD_FILE names /nowhere/password"):
        kafka_client_config()


class _TokenEndpoint(BaseHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.requests.append((self.headers["Authorization"], body))
        answer = json.dumps({"access_token": f"token-{len(self.requests)}", "expires_in": 3600})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def token_url() -> Iterator[str]:
    _TokenEndpoint.requests = []
    server = HTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/token"
    server.shutdown()


def test_oauthbearer_fetches_a_client_credentials_token_once(
    monkeypatch: pytest.MonkeyPatch, token_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "client.secret"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("CONCORD_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CONCORD_KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    monkeypatch.setenv("CONCORD_KAFKA_OAUTH_TOKEN_URL", token_url)
    monkeypatch.setenv("CONCORD_KAFKA_OAUTH_CLIENT_ID", "concord-hub")
    monkeypatch.setenv("CONCORD_KAFKA_OAUTH_CLIENT_SECRET_FILE", str(secret))
    provider = kafka_client_config()["sasl_oauth_token_provider"]
    assert isinstance(provider, AbstractTokenProvider)
    assert provider.token() == "token-1"
    assert provider.token() == "token-1", "kept until it nears expiry"
    [(authorization, body)] = _TokenEndpoint.requests
    assert body == "grant_type=client_credentials"
    assert authorization.startswith("Basic ")  # client id and secret, never in the body


def test_faust_ignores_its_own_environment_names() -> None:
    """Kubernetes sets WEB_PORT=tcp://... for a service called `web`; faust would read it."""
    code = (
        "from services.stream.app import app\n"
        "c = app.conf\n"
        "print(c.web_port, c.web_host, c.broker[0], c.store, c.topic_partitions)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "CONCORD_PARTNERS": str(ROOT / "deploy" / "demo" / "partners.yaml"),
        "CONCORD_PERSON_KEY": "k",
        "WEB_PORT": "tcp://10.0.0.1:80",
        "WEB_HOST": "10.0.0.1",
        "BROKER_URL": "kafka://elsewhere:1",
        "APP_STORE": "memory://",
        "TOPIC_PARTITIONS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["6066", "127.0.0.1", "kafka://127.0.0.1:9092", "rocksdb:", "4"]


def test_a_command_stops_on_a_bad_setting_before_it_starts() -> None:
    env = {"PATH": "/usr/bin:/bin", "CONCORD_WEB_PORT": "tcp://10.0.0.1:80"}
    done = subprocess.run(
        [sys.executable, "-m", "services.ops.cli", "kafka", "status"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "concord: CONCORD_WEB_PORT must be a TCP port number from 1 to 65535, "
        "not 'tcp://10.0.0.1:80'.\n"
    )
    assert done.stdout == ""


def test_faust_connects_as_every_other_client(
    monkeypatch: pytest.MonkeyPatch, pki: secure.SecureFiles, token_url: str, tmp_path: Path
) -> None:
    from faust.auth import OAuthCredentials, SASLCredentials

    from services.stream.kafka_auth import broker_credentials

    assert broker_credentials() is None  # plaintext
    for name, value in secure.client_settings(pki).items():
        monkeypatch.setenv(name, value)
    scram = broker_credentials()
    assert isinstance(scram, SASLCredentials)
    assert (scram.protocol.value, scram.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-512")
    assert scram.password == pki.client_password.read_text().strip()
    secret = tmp_path / "client.secret"
    secret.write_text("s3cret")
    monkeypatch.setenv("CONCORD_KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    monkeypatch.setenv("CONCORD_KAFKA_OAUTH_TOKEN_URL", token_url)
    monkeypatch.setenv("CONCORD_KAFKA_OAUTH_CLIENT_ID", "concord-hub")
    monkeypatch.setenv("CONCORD_KAFKA_OAUTH_CLIENT_SECRET_FILE", str(secret))
    oauth = broker_credentials()
    assert isinstance(oauth, OAuthCredentials)
    assert oauth.protocol.value == "SASL_SSL"
    assert asyncio.run(oauth.oauth_cb.token()) == "token-1"
