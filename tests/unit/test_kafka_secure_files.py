"""The secure local broker's files: a CA and a broker certificate that verify for 127.0.0.1,
owner-only keys and passwords, kept across starts, and a listener with no plaintext for clients."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from deploy.kafka import secure


def test_the_files_are_made_once_and_kept(tmp_path: Path) -> None:
    files = secure.ensure_files(tmp_path / "secure")
    made = {p.name: p.read_bytes() for p in files.folder.iterdir()}
    assert set(made) == {
        "ca.pem",
        "ca.key",
        "broker-keystore.pem",
        "concord.password",
        "broker.password",
    }
    again = secure.ensure_files(tmp_path / "secure")
    assert {p.name: p.read_bytes() for p in again.folder.iterdir()} == made


def test_keys_and_passwords_are_the_owners_only(tmp_path: Path) -> None:
    files = secure.ensure_files(tmp_path / "secure")
    assert files.folder.stat().st_mode & 0o777 == 0o700
    for private in (files.ca_key, files.keystore, files.client_password, files.broker_password):
        assert private.stat().st_mode & 0o777 == 0o600, private.name
    assert len(files.client_password.read_text().strip()) >= 32
    assert files.client_password.read_text() != files.broker_password.read_text()


def test_the_broker_certificate_verifies_for_127_0_0_1_against_the_ca(tmp_path: Path) -> None:
    files = secure.ensure_files(tmp_path / "secure")
    pem = files.keystore.read_bytes()
    broker, ca = x509.load_pem_x509_certificates(pem)
    assert ca.public_bytes(serialization.Encoding.PEM) == files.ca.read_bytes()
    sans = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    # The chain verifies as a TLS client would check it.
    store = x509.verification.Store([x509.load_pem_x509_certificate(files.ca.read_bytes())])
    verifier = (
        x509.verification.PolicyBuilder()
        .store(store)
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    )
    verifier.verify(broker, [])
    # and ssl loads the keystore as the broker's key and chain
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(files.keystore)


def test_the_listener_takes_sasl_ssl_only(tmp_path: Path) -> None:
    files = secure.ensure_files(tmp_path / "secure")
    props = secure.listener_properties(19400, 19401, files)
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19400,CONTROLLER://127.0.0.1:19401"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19400"
    assert "PLAINTEXT://" not in props["listeners"]
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    users = secure.scram_users(files)
    password = files.client_password.read_text().strip()
    assert users[:2] == ["--add-scram", f"SCRAM-SHA-512=[name=concord,password={password}]"]
    assert secure.client_settings(files)["CONCORD_KAFKA_PASSWORD_FILE"] == str(
        files.client_password
    )
