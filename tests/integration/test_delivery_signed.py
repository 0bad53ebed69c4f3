"""Signed and authenticated delivery against the real broker and stub partners that check it.

The stub partners refuse, with 401, a request without the bearer token they expect, or without
a Standard Webhooks signature made with their secret less than five minutes ago by their own
clock; the TLS ones accept only the hub's client certificate. Certificates are made per test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web
from structlog.testing import capture_logs

from connectors.delivery.credentials import resolve_credentials
from connectors.delivery.rules import DeliverySettings
from connectors.delivery.service import Clock, Deliverer, read_endpoints, utc_now
from connectors.hl7v2.framing import FrameDecoder, Oversized, frame
from connectors.kafka_io import read_topic
from schemas import topics as catalogue
from schemas.codec import decode, decode_dead_letter
from tests.integration.test_delivery import WAIT_S, Logs, attempts, publish, wait_until
from tests.tls import make_pki

FAST = DeliverySettings(
    max_attempts=2, backoff_base_s=0.02, backoff_cap_s=0.05, timeout_s=2.0, commit_interval_s=0.1
)
TOLERANCE_S = 300  # the partners' freshness window: five minutes


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_problem(
    secret: str, headers: Mapping[str, str], body: bytes, now: float
) -> str | None:
    """A partner's check of the Standard Webhooks signature (as the README shows partners)."""
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (message_id and timestamp and signatures):
        return "unsigned"
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_S:
        return "stale"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "bad signature"


@dataclass
class CheckingPartner:
    """A webhook that accepts only requests the hub authenticated as it expects."""

    token: str | None = None
    secret: str | None = None
    requests: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why, per refused request
    client_names: list[str] = field(default_factory=list)  # the TLS client certificate's CN

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        problem = None
        if self.token is not None and request.headers.get("Authorization") != (
            f"Bearer {self.token}"
        ):
            problem = "no valid bearer token"
        if problem is None and self.secret is not None:
            problem = signature_problem(self.secret, request.headers, body, time.time())
        if problem is not None:
            self.refused.append(problem)
            return web.Response(status=401, text=f"partner says: {problem}")
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:
            self.client_names += [v for rdn in peer["subject"] for k, v in rdn if k == "commonName"]
        self.accepted.append(orjson.loads(body))
        return web.Response(status=200)


@contextlib.asynccontextmanager
async def serving(
    partner: CheckingPartner, tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """The partner's webhook on a 127.0.0.1 port, over TLS when given a context; its URL."""
    app = web.Application()
    app.router.add_post("/hook", partner.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, ssl_context=tls)
    await site.start()
    try:
        scheme = "https" if tls else "http"
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}/hook"
    finally:
        await runner.cleanup()


def endpoints_file(folder: Path, entries: list[dict[str, Any]]) -> Path:
    path = folder / "endpoints.yaml"
    path.write_text(yaml.safe_dump({"endpoints": entries}))
    return path


@contextlib.asynccontextmanager
async def delivering(
    path: Path, env: Mapping[str, str], clock: Clock = utc_now
) -> AsyncIterator[None]:
    """A deliverer for the endpoints file at `path`, its secrets resolved from `env`."""
    endpoints = read_endpoints(path)
    credentials = resolve_credentials(endpoints, path.parent, env)
    stop = asyncio.Event()
    task = asyncio.create_task(Deliverer(endpoints, FAST, credentials, clock).run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)


def dead_letters() -> dict[str, Any]:
    return {
        str(letter.event_id): letter
        for letter in (
            decode_dead_letter(v)
            for _k, v in read_topic(catalogue.DEADLETTER.name, idle_timeout_s=1.0)
        )
    }


def operator_alerts(logs: Logs) -> int:
    return sum(line["event"] == "delivery.operator_alert" for line in logs)


# --- bearer token and signature -----------------------------------------------------------


def test_signed_requests_are_accepted_by_partners_that_check_them(
    topics: str, tmp_path: Path
) -> None:
    """Bearer token alone (json), signature alone (fhir), and both together (json)."""
    keys = {"probation-london": "tok-" + secrets.token_hex(8), "gp-Y01234": webhook_secret()}
    both = ("tok-" + secrets.token_hex(8), webhook_secret())
    sent = {
        "probation-london": publish(catalogue.OUTBOUND, "probation-london", 2),
        "gp-Y01234": publish(catalogue.ALERTS, "gp-Y01234", 2),
        "vol-recovery": publish(catalogue.OUTBOUND, "vol-recovery", 2),
    }
    env = {
        "PROBATION_TOKEN": keys["probation-london"],
        "GP_HOOK": keys["gp-Y01234"],
        "VOL_TOKEN": both[0],
    }
    (tmp_path / "vol.secret").write_text(both[1] + "\n")
    partners = {
        "probation-london": CheckingPartner(token=keys["probation-london"]),
        "gp-Y01234": CheckingPartner(secret=keys["gp-Y01234"]),
        "vol-recovery": CheckingPartner(token=both[0], secret=both[1]),
    }

    async def scenario() -> Logs:
        with capture_logs() as logs:
            async with (
                serving(partners["probation-london"]) as probation_url,
                serving(partners["gp-Y01234"]) as gp_url,
                serving(partners["vol-recovery"]) as vol_url,
            ):
                path = endpoints_file(
                    tmp_path,
                    [
                        {
                            "partner": "probation-london",
                            "format": "json",
                            "url": probation_url,
                            "auth": {"bearer": {"secret": {"env": "PROBATION_TOKEN"}}},
                        },
                        {
                            "partner": "gp-Y01234",
                            "format": "fhir",
                            "url": gp_url,
                            "auth": {"hmac": {"secret": {"env": "GP_HOOK"}}},
                        },
                        {
                            "partner": "vol-recovery",
                            "format": "json",
                            "url": vol_url,
                            "auth": {
                                "bearer": {"secret": {"env": "VOL_TOKEN"}},
                                "hmac": {"secret": {"file": "vol.secret"}},
                            },
                        },
                    ],
                )
                async with delivering(path, env):
                    await wait_until(
                        lambda: all(len(p.accepted) == 2 for p in partners.values()),
                        "every partner's two messages",
                    )
        return logs

    logs = asyncio.run(scenario())

    for partner, checking in partners.items():
        assert checking.refused == [], partner
        ids = [body.get("event_id") or body["id"] for body in checking.accepted]
        assert ids == sent[partner]
    assert [line["status"] for line in attempts(logs)] == ["delivered"] * 6
    # No log line carries a secret.
    text = repr(logs)
    for secret in (*keys.values(), *both):
        assert secret not in text


def test_unsigned_or_wrongly_signed_requests_are_refused_and_dead_lettered(
    topics: str, tmp_path: Path
) -> None:
    """A partner expecting a signature gets none; another gets one made with the wrong secret;
    a third expects a bearer token and is sent another. Each 401 is a refusal: no retry."""
    [unsigned] = publish(catalogue.ALERTS, "gp-Y01234", 1)
    [wrong_key] = publish(catalogue.ALERTS, "gp-A99999", 1)
    [wrong_token] = publish(catalogue.OUTBOUND, "probation-london", 1)
    partners = {
        "gp-Y01234": CheckingPartner(secret=webhook_secret()),
        "gp-A99999": CheckingPartner(secret=webhook_secret()),
        "probation-london": CheckingPartner(token="tok-expected"),
    }
    env = {"HOOK": webhook_secret(), "TOKEN": "tok-other"}

    async def scenario() -> Logs:
        with capture_logs() as logs:
            async with (
                serving(partners["gp-Y01234"]) as unsigned_url,
                serving(partners["gp-A99999"]) as wrong_key_url,
                serving(partners["probation-london"]) as wrong_token_url,
            ):
                path = endpoints_file(
                    tmp_path,
                    [
                        {"partner": "gp-Y01234", "format": "fhir", "url": unsigned_url},
                        {
                            "partner": "gp-A99999",
                            "format": "fhir",
                            "url": wrong_key_url,
                            "auth": {"hmac": {"secret": {"env": "HOOK"}}},
                        },
                        {
                            "partner": "probation-london",
                            "format": "json",
                            "url": wrong_token_url,
                            "auth": {"bearer": {"secret": {"env": "TOKEN"}}},
                        },
                    ],
                )
                async with delivering(path, env):
                    await wait_until(lambda: operator_alerts(logs) >= 3, "three operator alerts")
        return logs

    logs = asyncio.run(scenario())

    assert partners["gp-Y01234"].refused == ["unsigned"]
    assert partners["gp-A99999"].refused == ["bad signature"]
    assert partners["probation-london"].refused == ["no valid bearer token"]
    assert all(p.accepted == [] and p.requests == 1 for p in partners.values())
    letters = dead_letters()
    for event_id in (unsigned, wrong_key, wrong_token):
        assert letters[event_id].reason.startswith("refused: HTTP 401; partner said: partner says")
    assert sorted(line["status"] for line in attempts(logs)) == ["refused"] * 3


def test_a_request_signed_more_than_five_minutes_ago_is_refused_as_stale(
    topics: str, tmp_path: Path
) -> None:
    """The hub's clock is ten minutes behind the partner's: the signature is right, the
    timestamp too old, and the partner refuses it; delivery dead-letters the message."""
    secret = webhook_secret()
    [event_id] = publish(catalogue.ALERTS, "gp-Y01234", 1)
    partner = CheckingPartner(secret=secret)

    def behind() -> datetime:
        return datetime.now(UTC) - timedelta(minutes=10)

    async def scenario() -> Logs:
        with capture_logs() as logs:
            async with serving(partner) as url:
                path = endpoints_file(
                    tmp_path,
                    [
                        {
                            "partner": "gp-Y01234",
                            "format": "fhir",
                            "url": url,
                            "auth": {"hmac": {"secret": {"env": "HOOK"}}},
                        }
                    ],
                )
                async with delivering(path, {"HOOK": secret}, clock=behind):
                    await wait_until(lambda: operator_alerts(logs) >= 1, "the operator alert")
        return logs

    logs = asyncio.run(scenario())

    assert partner.refused == ["stale"]
    assert dead_letters()[event_id].reason.startswith("refused: HTTP 401")
    [alert] = [
        decode(v)
        for k, v in read_topic(catalogue.ALERTS.name, idle_timeout_s=1.0)
        if k == b"hub-operator"
    ]
    assert alert.resource["detail"].endswith("failed: refused: HTTP 401")
    assert [line["status"] for line in attempts(logs)] == ["refused"]


# --- mutual TLS ---------------------------------------------------------------------------


def test_https_partner_requiring_a_client_certificate_gets_the_hubs(
    topics: str, tmp_path: Path
) -> None:
    """One partner is configured with the hub's certificate and receives; another, behind the
    same kind of server, is configured without one: the handshake fails, delivery retries and
    gives up, and the message is dead-lettered."""
    pki = make_pki(tmp_path / "pki")
    [with_cert] = publish(catalogue.ALERTS, "gp-Y01234", 1)
    [without_cert] = publish(catalogue.ALERTS, "gp-A99999", 1)
    holder, stranger = CheckingPartner(), CheckingPartner()

    async def scenario() -> Logs:
        server = pki.server_context(require_client_cert=True)
        with capture_logs() as logs:
            async with serving(holder, server) as holder_url, serving(stranger, server) as s_url:
                tls = {"ca": str(pki.ca)}
                path = endpoints_file(
                    tmp_path,
                    [
                        {
                            "partner": "gp-Y01234",
                            "format": "fhir",
                            "url": holder_url,
                            "tls": {
                                **tls,
                                "client_cert": "pki/test-client.pem",  # relative to the file
                                "client_key": "pki/test-client.key",
                            },
                        },
                        {"partner": "gp-A99999", "format": "fhir", "url": s_url, "tls": tls},
                    ],
                )
                async with delivering(path, {}):
                    await wait_until(
                        lambda: bool(holder.accepted) and operator_alerts(logs) >= 1,
                        "one delivery and one operator alert",
                    )
        return logs

    logs = asyncio.run(scenario())

    assert [b["id"] for b in holder.accepted] == [with_cert]
    assert holder.client_names == ["concord-hub"]
    assert stranger.requests == 0  # no request got past the handshake
    assert dead_letters()[without_cert].reason.startswith("gave up after 2 attempts")
    assert with_cert not in dead_letters()
    assert {line["status"] for line in attempts(logs) if line["partner"] == "gp-A99999"} == {
        "retry",
        "gave-up",
    }


# --- MLLP over TLS ------------------------------------------------------------------------


@dataclass
class TlsMllpPartner:
    """An MLLP listener behind TLS that ACKs every message AA."""

    controls: list[str] = field(default_factory=list)
    client_names: list[str] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        if peer:
            self.client_names += [v for rdn in peer["subject"] for k, v in rdn if k == "commonName"]
        decoder = FrameDecoder()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                for item in decoder.feed(data):
                    assert not isinstance(item, Oversized)
                    control = item.data.decode().split("\r", 1)[0].split("|")[9]
                    self.controls.append(control)
                    ack = f"MSH|^~\\&|MHT|RV5|CONCORD|CONCORD-HUB|20261201093000||ACK^R01|a|P|2.5.1\rMSA|AA|{control}\r"
                    writer.write(frame(ack))
                await writer.drain()
        writer.close()


def test_mllp_over_tls_checks_the_partners_certificate_and_presents_the_hubs(
    topics: str, tmp_path: Path
) -> None:
    """mht-rv5's listener (TLS, client certificate required) receives over TLS. Another
    partner's listener presents a certificate from a CA the hub was not told to trust: the hub
    refuses the connection, retries, and gives up."""
    trust, other = make_pki(tmp_path / "trust", "trust"), make_pki(tmp_path / "other", "other")
    sent = publish(catalogue.ALERTS, "mht-rv5", 2)
    [untrusted] = publish(catalogue.ALERTS, "vol-housing", 1)
    mht, impostor = TlsMllpPartner(), TlsMllpPartner()

    async def scenario() -> Logs:
        good = await asyncio.start_server(
            mht.serve, "127.0.0.1", 0, ssl=trust.server_context(require_client_cert=True)
        )
        bad = await asyncio.start_server(
            impostor.serve, "127.0.0.1", 0, ssl=other.server_context(require_client_cert=False)
        )
        tls = {"ca": str(trust.ca), "client_cert": str(trust.client_cert)}
        path = endpoints_file(
            tmp_path,
            [
                {
                    "partner": "mht-rv5",
                    "format": "hl7",
                    "host": "127.0.0.1",
                    "port": good.sockets[0].getsockname()[1],
                    "tls": {**tls, "client_key": str(trust.client_key)},
                },
                {
                    "partner": "vol-housing",
                    "format": "hl7",
                    "host": "127.0.0.1",
                    "port": bad.sockets[0].getsockname()[1],
                    "tls": {"ca": str(trust.ca)},
                },
            ],
        )
        try:
            with capture_logs() as logs:
                async with delivering(path, {}):
                    await wait_until(
                        lambda: (
                            len(attempts(logs, "delivered")) >= 2 and operator_alerts(logs) >= 1
                        ),
                        "two deliveries over TLS and one operator alert",
                    )
            return logs
        finally:
            good.close()
            bad.close()

    logs = asyncio.run(scenario())

    assert [c.rsplit(".", 1)[0] for c in mht.controls] == sent
    assert mht.client_names
    assert set(mht.client_names) == {"concord-hub"}
    assert impostor.controls == []  # nothing was sent to a server the hub could not verify
    refused = [line for line in attempts(logs) if line["partner"] == "vol-housing"]
    assert [line["detail"] for line in refused] == ["SSLCertVerificationError"] * 2
    assert dead_letters()[untrusted].reason == (
        "gave up after 2 attempts: SSLCertVerificationError"
    )
