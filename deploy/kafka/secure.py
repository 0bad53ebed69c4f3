"""The local broker's SASL_SSL listener: a certificate authority made for this machine, the
broker's certificate, and the SCRAM-SHA-512 users it knows (`concord kafka start --secure`).

Everything is made once, under the cache directory, and kept: the users are written into the
broker's storage when it is formatted, so their passwords must outlive a restart. Keys and
passwords are readable by their owner only (0600).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MECHANISM = "SCRAM-SHA-512"
CLIENT_USER = "concord"
BROKER_USER = "broker"  # the broker's own identity on its listener (replication, admin)
VALID_FOR = timedelta(days=825)  # the longest a TLS server certificate is trusted by browsers


@dataclass(frozen=True, slots=True)
class SecureFiles:
    """Where the secure broker's CA, certificate and passwords are kept."""

    folder: Path

    @property
    def ca(self) -> Path:
        """The CA certificate clients trust (CONCORD_KAFKA_CA_FILE)."""
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def keystore(self) -> Path:
        """The broker's key and certificate chain, one PEM file (ssl.keystore.type=PEM)."""
        return self.folder / "broker-keystore.pem"

    @property
    def client_password(self) -> Path:
        """The client user's password (CONCORD_KAFKA_PASSWORD_FILE)."""
        return self.folder / f"{CLIENT_USER}.password"

    @property
    def broker_password(self) -> Path:
        return self.folder / f"{BROKER_USER}.password"


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start: never readable by others, even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True)
    else:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = (
            builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "concord (local)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def ensure_files(folder: Path) -> SecureFiles:
    """The CA, the broker's certificate for 127.0.0.1 and the users' passwords, made where
    missing (a file already there is kept, so a restarted broker keeps its users)."""
    files = SecureFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    if not (files.ca.is_file() and files.keystore.is_file()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("concord local Kafka CA")
        ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
        broker_key = ec.generate_private_key(ec.SECP256R1())
        broker = _certificate(_name("127.0.0.1"), broker_key, ca_name, ca_key, ca=False)
        pem = serialization.Encoding.PEM
        _write_private(files.ca_key, _pem_key(ca_key))
        _write_private(
            files.keystore, _pem_key(broker_key) + broker.public_bytes(pem) + ca.public_bytes(pem)
        )
        files.ca.write_bytes(ca.public_bytes(pem))
    for password in (files.client_password, files.broker_password):
        if not password.is_file():
            _write_private(password, secrets.token_urlsafe(32).encode())
    return files


def _password(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def listener_properties(port: int, controller_port: int, files: SecureFiles) -> dict[str, str]:
    """Broker properties replacing the plaintext listener with SASL_SSL (SCRAM-SHA-512, TLS
    with the project's certificate); the controller listener stays plaintext on 127.0.0.1."""
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_USER}" password="{_password(files.broker_password)}";'
    )
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(files.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(files.ca),
        "ssl.client.auth": "none",
    }


def scram_users(files: SecureFiles) -> list[str]:
    """`kafka-storage format` arguments creating the client's and the broker's SCRAM users."""
    arguments = []
    for user, password in (
        (CLIENT_USER, files.client_password),
        (BROKER_USER, files.broker_password),
    ):
        arguments += ["--add-scram", f"{MECHANISM}=[name={user},password={_password(password)}]"]
    return arguments


def client_options(files: SecureFiles) -> dict[str, str]:
    """kafka-python keyword arguments for the client user (the broker's own readiness check)."""
    return {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(files.ca),
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": CLIENT_USER,
        "sasl_plain_password": _password(files.client_password),
    }


def client_settings(files: SecureFiles) -> dict[str, str]:
    """The settings a client of the secure broker needs (the README's configuration table)."""
    return {
        "CONCORD_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CONCORD_KAFKA_SASL_MECHANISM": MECHANISM,
        "CONCORD_KAFKA_USERNAME": CLIENT_USER,
        "CONCORD_KAFKA_PASSWORD_FILE": str(files.client_password),
        "CONCORD_KAFKA_CA_FILE": str(files.ca),
    }
