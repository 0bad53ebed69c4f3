"""The edges under abuse: what a good partner sees while others misbehave.

`python -m bench.edges [--wrong N] [--good N]` prints, against the real broker on fresh topics
(deleted afterwards):

1. the gateway: p50 and p99 latency of a good partner's POST, alone and while N wrong-secret
   sign-ins run at once (with the refused-sign-in rate as configured, and with it lifted so that
   every wrong secret is hashed: the sign-in threads alone keep the good partner's answer fast);
2. the MLLP listener: the ACK time of small messages on one connection while a 550 kB message
   (within the caps, slow to parse) is processed on another, and that message's own ACK time;
3. a broker outage (nothing listening at the broker's address): the time to the MLLP AE and to
   the gateway's 503, each against its 10 s timeout.

It reports figures; it never asserts on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import time
import uuid

import aiohttp

from connectors.abuse import EdgeLimits
from connectors.gateway.app import GatewayConfig, build_app
from connectors.gateway.guards import GuardSettings
from connectors.hl7v2.framing import frame
from connectors.hl7v2.listener import ListenerSettings, listener_producer, start_server
from connectors.kafka_io import new_producer
from deploy.demo import use_demo_settings
from deploy.topics import create_topics, delete_topics_with_prefix
from services.domain import signin
from services.runtime import ROOT, bootstrap_servers

GP = "gp-Y01234"
APPOINTMENT = (ROOT / "tests" / "fixtures" / "gp" / "appointment-booked.json").read_bytes()
MHT = ROOT / "tests" / "fixtures" / "mht"


def basic(partner: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{partner}:{secret}".encode()).decode()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


# --- 1. the gateway under wrong secrets ---------------------------------------------------------


async def gateway_latency(good: int, wrong: int, limits: EdgeLimits) -> list[float]:
    """Latencies of `good` sequential good POSTs while `wrong` wrong-secret POSTs run at once."""
    signin._proven.clear()
    secrets = json.loads((ROOT / "deploy" / "demo" / "secrets.json").read_text())
    app = build_app(GatewayConfig(guards=GuardSettings(limits=limits)))
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/fhir/Appointment"
    headers = {"Content-Type": "application/fhir+json"}
    good_auth = {**headers, "Authorization": basic(GP, secrets[GP])}
    bad_auth = {**headers, "Authorization": basic(GP, "not-the-secret")}
    connector = aiohttp.TCPConnector(limit=wrong + 10)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(url, data=APPOINTMENT, headers=good_auth) as first:
            await first.read()  # proves the secret once, as a partner's first request does

        async def attempt() -> None:
            async with session.post(url, data=APPOINTMENT, headers=bad_auth) as reply:
                await reply.read()

        attack = [asyncio.create_task(attempt()) for _ in range(wrong)]
        await asyncio.sleep(0.05)
        latencies = []
        for _ in range(good):
            started = time.perf_counter()
            async with session.post(url, data=APPOINTMENT, headers=good_auth) as reply:
                await reply.read()
            latencies.append(time.perf_counter() - started)
        await asyncio.gather(*attack)
    await runner.cleanup()
    return latencies


# --- 2. the MLLP listener and a slow big message ------------------------------------------------


def _fixture(name: str) -> str:
    return (MHT / name).read_text().replace("|||AL|NE", "|||", 1)


async def _ack(host: str, port: int, payload: bytes) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    await writer.drain()
    await reader.readuntil(b"\x1c\r")
    writer.close()
    return time.perf_counter() - started


async def mllp_big_message(small: int) -> tuple[float, list[float]]:
    """The 550 kB message's ACK time, and the small messages' ACK times meanwhile."""
    notes = "".join(f"NTE|{n}||" + "~".join(["x" * 300] * 100) + "\r" for n in range(1, 19))
    big = _fixture("siu-s12.hl7").replace("RV5-0001", "RV5-BIG") + notes
    producer = listener_producer()
    server = await start_server("127.0.0.1", 0, lambda _peer: "mht-rv5", producer)
    host, port = server.sockets[0].getsockname()[:2]
    await _ack(host, port, frame(_fixture("siu-s13.hl7")))  # warm: hl7apy loads its tables
    big_task = asyncio.create_task(_ack(host, port, frame(big)))
    await asyncio.sleep(0.2)
    smalls = [await _ack(host, port, frame(_fixture("siu-s13.hl7"))) for _ in range(small)]
    big_s = await big_task
    server.close()
    await server.wait_closed()
    producer.close()
    return big_s, smalls


# --- 3. a broker outage -------------------------------------------------------------------------


async def outage() -> tuple[float, float]:
    """Seconds to the MLLP AE and to the gateway's 503 while nothing listens at the broker."""
    producer = new_producer(bootstrap_servers="127.0.0.1:1", api_version=(3, 9), max_block_ms=9000)
    server = await start_server(
        "127.0.0.1", 0, lambda _peer: "mht-rv5", producer, ListenerSettings(ack_timeout_s=10)
    )
    host, port = server.sockets[0].getsockname()[:2]
    mllp_s = await _ack(host, port, frame(_fixture("siu-s12.hl7")))
    server.close()
    await server.wait_closed()
    producer.close(timeout=0)

    signin._proven.clear()
    secrets = json.loads((ROOT / "deploy" / "demo" / "secrets.json").read_text())
    saved = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"
    try:
        app = build_app(GatewayConfig(kafka_timeout_s=10))
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/fhir/Appointment"
        headers = {"Content-Type": "application/fhir+json", "Authorization": basic(GP, secrets[GP])}
        async with aiohttp.ClientSession() as session:
            started = time.perf_counter()
            async with session.post(url, data=APPOINTMENT, headers=headers) as reply:
                await reply.read()
                status = reply.status
            gateway_s = time.perf_counter() - started
        await runner.cleanup()
    finally:
        if saved is None:
            os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        else:
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = saved
    print(f"  (the gateway answered {status})")
    return mllp_s, gateway_s


def main(argv: list[str] | None = None) -> int:
    """Run the three figures and print them."""
    parser = argparse.ArgumentParser(prog="python -m bench.edges", description=__doc__)
    parser.add_argument("--wrong", type=int, default=200, help="wrong-secret sign-ins at once")
    parser.add_argument("--good", type=int, default=40, help="good requests timed")
    args = parser.parse_args(argv)
    use_demo_settings()
    prefix = f"bench-edges-{uuid.uuid4().hex[:8]}."
    os.environ["CONCORD_TOPIC_PREFIX"] = prefix
    broker = bootstrap_servers()
    create_topics()
    try:
        print("1. gateway: a good partner's POST latency")
        lifted = EdgeLimits(sign_in_check_rate="1000000/minute", source_rate="1000000/minute")
        for label, wrong, limits in (
            ("alone", 0, lifted),
            (f"with {args.wrong} wrong secrets, each hashed", args.wrong, lifted),
            (f"with {args.wrong} wrong secrets, default rates", args.wrong, EdgeLimits()),
        ):
            times = asyncio.run(gateway_latency(args.good, wrong, limits))
            print(
                f"   {label:45} p50 {ms(statistics.median(times))}  p99 {ms(percentile(times, 0.99))}"
            )
        print("2. MLLP: small messages while a 550 kB message is processed")
        big_s, smalls = asyncio.run(mllp_big_message(10))
        print(f"   small ACK p50 {ms(statistics.median(smalls))}  max {ms(max(smalls))}")
        print(f"   the 550 kB message's own ACK {ms(big_s)}")
        print("3. broker outage (nothing listening at the broker's address), 10 s timeouts")
        mllp_s, gateway_s = asyncio.run(outage())
        print(f"   MLLP AE after {ms(mllp_s)}; gateway 503 after {ms(gateway_s)}")
    finally:
        delete_topics_with_prefix(prefix, bootstrap=broker)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
