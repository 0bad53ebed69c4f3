"""Outbound credentials: the endpoints file's auth and tls fields, secret references, and the
headers a partner checks (verified here the way the README tells partners to, with the stdlib)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.delivery import service as delivery
from connectors.delivery.credentials import (
    Credentials,
    auth_headers,
    credentials_for,
    resolve_credentials,
)
from connectors.delivery.rules import EndpointConfigError, HmacAuth, SecretRef, load_endpoints

ROOT = Path(__file__).parents[2]
KEY = bytes(range(32))
WHSEC = "whsec_" + base64.b64encode(KEY).decode()
NOW = datetime(2026, 12, 1, 9, 30, 15, 700000, tzinfo=UTC)
GP = {"partner": "gp-Y01234", "format": "fhir", "url": "https://gp.example/fhir"}


def endpoint(**fields: Any) -> Any:
    return load_endpoints({"endpoints": [{**GP, **fields}]}, "endpoints.yaml")["gp-Y01234"]


def partner_verifies(secret: str, headers: dict[str, str], body: bytes, now: datetime) -> bool:
    """What a partner does (the README's example): recompute the signature, compare in constant
    time, and refuse a timestamp more than five minutes from its own clock."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    fresh = abs(now.timestamp() - int(headers["webhook-timestamp"])) <= 300
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s[:3] == "v1,"]
    return fresh and any(hmac.compare_digest(expected, s) for s in offered)


# --- the endpoints file -------------------------------------------------------------------


def test_auth_and_tls_are_read_with_their_references() -> None:
    found = endpoint(
        auth={
            "bearer": {"secret": {"env": "GP_TOKEN"}},
            "hmac": {"secret": {"file": "s.json", "key": "gp"}, "header": "X-Signature"},
        },
        tls={"ca": "ca.pem", "client_cert": "hub.pem", "client_key": "hub.key"},
    )
    assert found.bearer == SecretRef(env="GP_TOKEN")
    assert found.hmac == HmacAuth(SecretRef(file="s.json", key="gp"), "X-Signature")
    assert (found.tls.ca, found.tls.client_cert, found.tls.client_key) == (
        "ca.pem",
        "hub.pem",
        "hub.key",
    )
    assert found.describe_auth() == (
        "auth: bearer token (env GP_TOKEN) + hmac-sha256 X-Signature (file s.json key gp) "
        "+ client certificate; tls: server checked against ca.pem, client certificate hub.pem"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"auth": {"bearer": {"secret": "s3cr3t-token"}}}, r"auth.bearer.secret: an inline secret"),
        ({"auth": {"bearer": "s3cr3t-token"}}, r"auth.bearer: an inline secret"),
        ({"auth": {"hmac": {"secret": 12345}}}, r"auth.hmac.secret: an inline secret"),
        ({"auth": {"bearer": {}}}, r"auth.bearer: must be a mapping of secret"),
        ({"auth": {"bearer": {"secret": {"env": "A", "file": "b"}}}}, "exactly one of env"),
        ({"auth": {"bearer": {"secret": {"env": "not a name"}}}}, r"secret: env: must be"),
        ({"auth": {"bearer": {"secret": {"env": "A", "key": "k"}}}}, r"key: only with file"),
        ({"auth": {"bearer": {"secret": {"vault": "x"}}}}, r"vault: not a field"),
        ({"auth": {"basic": {}}}, r"auth.basic: not a field of auth \(bearer, hmac\)"),
        ({"auth": {}}, r"auth: must be a mapping of bearer, hmac"),
        (
            {"auth": {"hmac": {"secret": {"env": "H"}, "header": "Authorization"}}},
            r"auth.hmac.header: must be an HTTP header name that delivery does not set",
        ),
        ({"url": "http://gp.example/fhir", "tls": {"ca": "ca.pem"}}, r"tls: needs an https"),
        ({"tls": {"client_key": "k.pem"}}, r"tls.client_key: needs tls.client_cert"),
        ({"tls": {"ca": ""}}, r"tls.ca: must be a file path"),
        ({"tls": {"verify": False}}, r"tls.verify: not a field of tls"),
    ],
)
def test_a_bad_auth_or_tls_field_is_named_with_its_entry(fields: Any, message: str) -> None:
    with pytest.raises(EndpointConfigError, match=r"endpoints.yaml: endpoints\[0\] \(gp-Y01234\)"):
        endpoint(**fields)
    with pytest.raises(EndpointConfigError, match=message):
        endpoint(**fields)


def test_an_inline_secret_is_never_repeated_in_the_error() -> None:
    with pytest.raises(EndpointConfigError) as raised:
        endpoint(auth={"hmac": {"secret": WHSEC}})
    assert WHSEC not in str(raised.value)
    assert "whsec" not in str(raised.value)


def test_mllp_takes_tls_but_not_auth() -> None:
    mllp = {"partner": "mht-rv5", "format": "hl7", "host": "h", "port": 2575}
    found = load_endpoints({"endpoints": [{**mllp, "tls": {"ca": "ca.pem"}}]}, "e.yaml")["mht-rv5"]
    assert found.describe() == "mllps://h:2575"
    with pytest.raises(EndpointConfigError, match=r"\(mht-rv5\): auth: not a field of a hl7"):
        load_endpoints({"endpoints": [{**mllp, "auth": {"bearer": {}}}]}, "e.yaml")


# --- resolving references -----------------------------------------------------------------


def test_secrets_come_from_the_environment_a_file_or_a_json_member(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("tok-from-file\n")
    (tmp_path / "secrets.json").write_text(json.dumps({"gp": WHSEC}))
    from_env = endpoint(auth={"bearer": {"secret": {"env": "GP_TOKEN"}}})
    from_file = endpoint(auth={"bearer": {"secret": {"file": "token.txt"}}})
    from_json = endpoint(auth={"hmac": {"secret": {"file": "secrets.json", "key": "gp"}}})

    assert credentials_for(from_env, tmp_path, {"GP_TOKEN": " tok-env "}).bearer == "tok-env"
    assert credentials_for(from_file, tmp_path, {}).bearer == "tok-from-file"
    signer = credentials_for(from_json, tmp_path, {})
    headers = auth_headers(signer, "evt-1", b"{}", NOW)
    assert partner_verifies(WHSEC, headers, b"{}", NOW)


@pytest.mark.parametrize(
    ("auth", "files", "env", "message"),
    [
        ({"bearer": {"secret": {"env": "GP_TOKEN"}}}, {}, {}, "GP_TOKEN is not set"),
        ({"bearer": {"secret": {"file": "missing.txt"}}}, {}, {}, r"cannot read .*missing.txt"),
        ({"bearer": {"secret": {"file": "t.txt"}}}, {"t.txt": "a b"}, {}, "has no spaces"),
        ({"bearer": {"secret": {"file": "t.txt"}}}, {"t.txt": "\n"}, {}, "no secret there"),
        (
            {"bearer": {"secret": {"file": "s.json", "key": "gp"}}},
            {"s.json": '{"other": "x"}'},
            {},
            r"s.json member gp: no secret there",
        ),
        (
            {"bearer": {"secret": {"file": "s.json", "key": "gp"}}},
            {"s.json": "[1]"},
            {},
            "not a JSON object",
        ),
        (
            {"hmac": {"secret": {"env": "H"}}},
            {},
            {"H": "whsec_" + base64.b64encode(b"short").decode()},
            r"auth.hmac.secret: must be a Standard Webhooks secret",
        ),
        ({"hmac": {"secret": {"env": "H"}}}, {}, {"H": "not base64!"}, "Standard Webhooks"),
    ],
)
def test_an_unresolvable_secret_is_named_with_its_entry_and_field(
    tmp_path: Path, auth: Any, files: dict[str, str], env: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(EndpointConfigError, match=r"endpoints\[0\] \(gp-Y01234\): auth\."):
        credentials_for(endpoint(auth=auth), tmp_path, env)
    with pytest.raises(EndpointConfigError, match=message):
        credentials_for(endpoint(auth=auth), tmp_path, env)


def test_a_missing_certificate_is_named_with_its_field(tmp_path: Path) -> None:
    with pytest.raises(EndpointConfigError, match=r"\(gp-Y01234\): tls.ca: "):
        credentials_for(endpoint(tls={"ca": "nowhere.pem"}), tmp_path, {})
    (tmp_path / "hub.pem").write_text("not a certificate")
    with pytest.raises(EndpointConfigError, match=r"tls.client_cert: not a usable certificate"):
        credentials_for(endpoint(tls={"client_cert": "hub.pem"}), tmp_path, {})


def test_credentials_never_show_their_secrets() -> None:
    credentials = credentials_for(
        endpoint(auth={"bearer": {"secret": {"env": "T"}}, "hmac": {"secret": {"env": "H"}}}),
        ROOT,
        {"T": "bearer-value-1", "H": WHSEC},
    )
    assert "bearer-value-1" not in repr(credentials)
    assert WHSEC not in repr(credentials)


# --- the headers --------------------------------------------------------------------------


def test_signature_follows_standard_webhooks_and_a_partner_can_verify_it() -> None:
    credentials = credentials_for(
        endpoint(auth={"hmac": {"secret": {"env": "H"}}}), ROOT, {"H": WHSEC}
    )
    body = '{"resourceType": "Bundle", "note": "café"}'.encode()
    headers = auth_headers(credentials, "b496c2f1-1bc3-57e0-b9ca-b383b70589b3", body, NOW)

    assert headers["webhook-id"] == "b496c2f1-1bc3-57e0-b9ca-b383b70589b3"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert "Authorization" not in headers
    assert partner_verifies(WHSEC, headers, body, NOW)
    assert partner_verifies(WHSEC, headers, body, NOW + timedelta(minutes=4))
    # Stale, tampered, or signed with another secret: the partner refuses.
    assert not partner_verifies(WHSEC, headers, body, NOW + timedelta(minutes=6))
    assert not partner_verifies(WHSEC, headers, body + b" ", NOW)
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    assert not partner_verifies(other, headers, body, NOW)


def test_the_time_is_signed_as_utc_whatever_the_clocks_zone() -> None:
    credentials = Credentials(
        signer=credentials_for(
            endpoint(auth={"hmac": {"secret": {"env": "H"}}}), ROOT, {"H": WHSEC}
        ).signer
    )
    local = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert auth_headers(credentials, "e", b"x", local) == auth_headers(credentials, "e", b"x", NOW)


def test_bearer_and_a_renamed_signature_header_go_together() -> None:
    credentials = credentials_for(
        endpoint(
            auth={
                "bearer": {"secret": {"env": "T"}},
                "hmac": {"secret": {"env": "H"}, "header": "X-Concord-Signature"},
            }
        ),
        ROOT,
        {"T": "tok", "H": WHSEC},
    )
    headers = auth_headers(credentials, "e-1", b"{}", NOW)
    assert headers["Authorization"] == "Bearer tok"
    assert headers["X-Concord-Signature"].startswith("v1,")
    assert "webhook-signature" not in headers


def test_no_auth_adds_no_headers() -> None:
    assert auth_headers(Credentials(), "e-1", b"{}", NOW) == {}


# --- `concord deliver --check` ------------------------------------------------------------


def test_check_prints_each_partners_auth_mode_and_no_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert delivery.main(["--check", "--endpoints", str(ROOT / "deploy" / "endpoints.yaml")]) == 0
    out = capsys.readouterr().out
    assert "probation-london: json http://127.0.0.1:9101/concord/events auth: bearer token" in out
    assert "gp-Y01234: fhir" in out
    assert "hmac-sha256 webhook-signature" in out
    assert "gp-A99999: fhir http://127.0.0.1:9103/fhir/$process-message auth: none" in out
    secrets = json.loads((ROOT / "deploy" / "demo" / "delivery-secrets.json").read_text())
    for value in secrets.values():
        assert value not in out


def test_check_fails_naming_an_unset_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GP_HOOK_SECRET", raising=False)
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "endpoints:\n  - partner: gp-Y01234\n    format: fhir\n    url: https://gp.example/f\n"
        "    auth: {hmac: {secret: {env: GP_HOOK_SECRET}}}\n"
    )
    assert delivery.main(["--check", "--endpoints", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"concord deliver: {path}: endpoints[0] (gp-Y01234): auth.hmac.secret: "
        "environment variable GP_HOOK_SECRET is not set"
    )


def test_every_demo_secret_reference_resolves() -> None:
    path = ROOT / "deploy" / "endpoints.yaml"
    endpoints = delivery.read_endpoints(path)
    credentials = resolve_credentials(endpoints, path.parent, {})
    assert credentials["probation-london"].bearer
    assert credentials["gp-Y01234"].signer is not None
