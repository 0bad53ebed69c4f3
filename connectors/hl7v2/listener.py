"""The MLLP listener: Mental Health Trust HL7 v2 messages over TCP, mapped, published, then acknowledged.

A message is answered AA (in enhanced mode CA) only once Kafka has stored every resource it
carried; anything rejected goes to the dead-letter topic with the reason and is answered AE or AR
(CR) with ERR segments. Which ACKs are sent is the sender's choice (MSH-15, MSH-16: `ack.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from connectors.fhir_input import Record
from connectors.hl7v2.ack import ApplicationAckCode, Outcome, acknowledgements
from connectors.hl7v2.caps import MessageCaps, over_caps
from connectors.hl7v2.framing import (
    MAX_FRAME_BYTES,
    Frame,
    FrameDecoder,
    Oversized,
    decode_text,
    frame,
)
from connectors.hl7v2.message import (
    APPLICATION_INTERNAL_ERROR,
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    ErrorReport,
    Header,
    Hl7Error,
    read_header,
)
from connectors.hl7v2.to_fhir import map_message
from connectors.kafka_io import DeliveryError, Publisher, new_producer
from connectors.publish import Accepted, Rejected, decide, partner_kind, rejection_letter
from schemas.envelope import DeadLetter, Envelope, utc_now
from schemas.fhir import Problem
from schemas.identifiers import PARTNER_ID
from services.domain.peers import Subject, refusal
from services.observe.health import MLLP_HTTP, KafkaProbe, http_address, serve_health
from services.observe.metrics import count_message

log = structlog.get_logger(__name__)

DEFAULT_PORT = 2575
READ_CHUNK = 64 * 1024
CAPPED_KEPT_CHARS = 64 * 1024  # of a message over a shape cap, kept on the dead-letter topic
# Of the partner's ACK timeout, what is kept back to write the ACK after Kafka's answer.
ACK_MARGIN_S = 1.0
TRY_AGAIN = (
    "the hub could not store the message (Kafka unavailable); nothing was accepted: send it again"
)
_LOGGABLE_CONTROL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Exit statuses shared with the `concord` command (README, "Exit status").
EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH = 0, 2, 3, 5

# The partner a connecting peer speaks for, or None to refuse it (see `peer_check`).
PartnerForPeer = Callable[["Peer"], str | None]


# --- deciding (pure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MllpReply:
    """What to do with one message: publish these envelopes, or dead-letter it; and how to answer."""

    code: ApplicationAckCode
    message_type: str = ""
    envelopes: tuple[Envelope, ...] = ()
    letter: DeadLetter | None = None
    errors: tuple[ErrorReport, ...] = ()


def _problem_report(problem: Problem) -> ErrorReport:
    """An ERR for a hub validation problem, located back in the HL7 message where it can be."""
    location = ""
    if "identifier" in problem.path:
        location = "PID^1^3"  # the only identifiers the mapping writes come from PID-3
    elif problem.path.startswith(("Appointment.start", "Appointment.end")):
        location = "SCH^1^11"
    code = REQUIRED_FIELD_MISSING if "required" in problem.message else DATA_TYPE_ERROR
    return ErrorReport(str(problem), location, code)


def _rejection(
    code: ApplicationAckCode,
    text: str,
    origin: str,
    partner: str,
    *,
    problems: Sequence[Problem],
    reports: Sequence[ErrorReport],
    message_type: str = "",
) -> MllpReply:
    letter = rejection_letter(Rejected(origin, text, tuple(problems)), partner)
    return MllpReply(code, message_type, letter=letter, errors=tuple(reports))


def reply_to(text: str, partner: str, origin: str, now: datetime | None = None) -> MllpReply:
    """Map one message and validate every resource: all of it is accepted, or none of it."""
    try:
        mapped = map_message(text, partner, kind=partner_kind(partner))
    except Hl7Error as exc:
        code: ApplicationAckCode = "AR" if exc.rejects_message else "AE"
        return _rejection(
            code,
            text,
            origin,
            partner,
            problems=[Problem(exc.where, exc.reason)],
            reports=[exc.report()],
        )
    message = mapped.message
    message_type = f"{message.message_type}^{message.trigger}"
    decisions = [
        decide(Record(origin, text, resource, correlation=message.control_id), partner, now)
        for resource in mapped.resources
    ]
    problems = [p for d in decisions if isinstance(d, Rejected) for p in d.problems]
    if problems:
        reports = [_problem_report(p) for p in problems]
        return _rejection(
            "AE",
            text,
            origin,
            partner,
            problems=problems,
            reports=reports,
            message_type=message_type,
        )
    envelopes = tuple(d.envelope for d in decisions if isinstance(d, Accepted))
    return MllpReply("AA", message_type, envelopes=envelopes)


def reply_to_over_caps(text: str, reason: str, partner: str, origin: str) -> MllpReply:
    """An AR for a message over a cap on its segments, repetitions or elements (`caps.py`),
    refused without being parsed; it goes whole to the dead-letter topic."""
    report = ErrorReport(f"message refused unread: {reason}", "", APPLICATION_INTERNAL_ERROR)
    problem = Problem("(message)", f"message refused unread: {reason}")
    # Enough for an operator to see what it was, and small enough for the dead-letter topic.
    kept = text if len(text) <= CAPPED_KEPT_CHARS else f"{text[:CAPPED_KEPT_CHARS]}\n…[not kept]"
    return _rejection("AR", kept, origin, partner, problems=[problem], reports=[report])


def reply_to_oversized(item: Oversized, partner: str, origin: str, max_bytes: int) -> MllpReply:
    """An AR for a message over the size limit; its first bytes go to the dead-letter topic."""
    head = decode_text(item.head)
    reason = f"message of {item.size} bytes is over the {max_bytes}-byte limit"
    report = ErrorReport(reason, "", APPLICATION_INTERNAL_ERROR)
    raw = f"{head}\n…[{item.size - len(item.head)} more bytes not kept]"
    return _rejection(
        "AR", raw, origin, partner, problems=[Problem("(message)", reason)], reports=[report]
    )


# --- doing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """Limits and timeouts of the listener; `listener_settings()` reads them from CONCORD_MLLP_*
    (README, "Limits")."""

    max_bytes: int = MAX_FRAME_BYTES  # of one message; the rest of a longer one is discarded
    caps: MessageCaps = field(default_factory=MessageCaps)
    # The partner's engine waits this long for an ACK: every message is answered within it,
    # AE ("send it again") when Kafka has not stored it by then.
    ack_timeout_s: float = 10.0
    read_timeout_s: float = 30.0  # a message begun must have arrived whole within this
    idle_timeout_s: float = 300.0  # a connection sending nothing for this long is closed
    max_connections: int = 64
    tls_cert_file: str | None = None  # with the key: MLLP over TLS
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None  # with it, a client certificate from this CA is required

    def tls_context(self) -> ssl.SSLContext | None:
        """The server's TLS context when a certificate is configured, else None (plain TCP)."""
        if not self.tls_cert_file:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert_file, self.tls_key_file)
        if self.tls_client_ca_file:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.tls_client_ca_file)
        return context


_NUMBERS = {
    "CONCORD_MLLP_MAX_BYTES": "max_bytes",
    "CONCORD_MLLP_ACK_TIMEOUT_S": "ack_timeout_s",
    "CONCORD_MLLP_READ_TIMEOUT_S": "read_timeout_s",
    "CONCORD_MLLP_IDLE_TIMEOUT_S": "idle_timeout_s",
    "CONCORD_MLLP_MAX_CONNECTIONS": "max_connections",
}
_CAPS = {
    "CONCORD_MLLP_MAX_SEGMENTS": "segments",
    "CONCORD_MLLP_MAX_REPETITIONS": "repetitions",
    "CONCORD_MLLP_MAX_ELEMENTS": "elements",
}


def listener_settings(env: Mapping[str, str] | None = None) -> ListenerSettings:
    """The settings from the environment; ValueError names a malformed or missing one."""
    env = os.environ if env is None else env

    def number(name: str, default: float) -> float:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if value <= 0:
            raise ValueError(f"{name} must be a positive number, not {raw!r}")
        return value

    defaults, cap_defaults = ListenerSettings(), MessageCaps()
    found = {f: number(n, getattr(defaults, f)) for n, f in _NUMBERS.items()}
    caps = MessageCaps(**{f: int(number(n, getattr(cap_defaults, f))) for n, f in _CAPS.items()})
    tls = {
        "tls_cert_file": env.get("CONCORD_MLLP_TLS_CERT_FILE") or None,
        "tls_key_file": env.get("CONCORD_MLLP_TLS_KEY_FILE") or None,
        "tls_client_ca_file": env.get("CONCORD_MLLP_TLS_CLIENT_CA_FILE") or None,
    }
    if bool(tls["tls_cert_file"]) != bool(tls["tls_key_file"]):
        raise ValueError("set CONCORD_MLLP_TLS_CERT_FILE and CONCORD_MLLP_TLS_KEY_FILE together")
    if tls["tls_client_ca_file"] and not tls["tls_cert_file"]:
        raise ValueError("CONCORD_MLLP_TLS_CLIENT_CA_FILE needs CONCORD_MLLP_TLS_CERT_FILE")
    return ListenerSettings(
        max_bytes=int(found["max_bytes"]),
        caps=caps,
        ack_timeout_s=found["ack_timeout_s"],
        read_timeout_s=found["read_timeout_s"],
        idle_timeout_s=found["idle_timeout_s"],
        max_connections=int(found["max_connections"]),
        **tls,
    )


def listener_producer(ack_timeout_s: float = 10.0) -> KafkaProducer:
    """A producer that gives up within the partner's ACK timeout, so it is answered in time."""
    budget_ms = int(_store_budget(ack_timeout_s) * 1000)
    return new_producer(
        client_id="concord-mllp",
        max_block_ms=budget_ms,
        request_timeout_ms=max(budget_ms, 1000),
        delivery_timeout_ms=max(budget_ms, 1000) + 5_000,
    )


def _store_budget(ack_timeout_s: float) -> float:
    """Of the ACK timeout, what Kafka may take: the rest is kept to write the ACK in time."""
    return max(0.5, ack_timeout_s - ACK_MARGIN_S)


def _store(producer: KafkaProducer, reply: MllpReply, deadline: float) -> None:
    if time.monotonic() >= deadline:  # waited too long for a thread: the partner is answered AE
        raise DeliveryError("no time left to store the message")
    # A publisher of its own on the shared producer: its confirm() answers for this message only.
    publisher = Publisher(producer)
    for envelope in reply.envelopes:
        publisher.send_envelope(envelope)
    if reply.letter is not None:
        publisher.send_dead_letter(reply.letter)
    publisher.confirm(max(0.0, deadline - time.monotonic()))


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end of a connection: its address and, over TLS with client
    certificates, its verified certificate's subject."""

    host: str
    port: int
    subject: Subject | None = None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _peer(writer: asyncio.StreamWriter) -> Peer:
    address = writer.get_extra_info("peername")
    host, port = (str(address[0]), int(address[1])) if address else ("?", 0)
    certificate = writer.get_extra_info("peercert")
    if not certificate:
        return Peer(host, port)
    subject = tuple((str(k), str(v)) for rdn in certificate.get("subject", ()) for k, v in rdn)
    return Peer(host, port, subject)


class Listener:
    """The shell around `reply_to`: parses each message off the event loop, stores its reply's
    messages in Kafka within the ACK timeout, then answers the partner."""

    def __init__(
        self,
        producer: KafkaProducer,
        partner_for_peer: PartnerForPeer,
        settings: ListenerSettings | None = None,
    ) -> None:
        self._producer = producer
        self._partner_for_peer = partner_for_peer
        self._settings = settings or ListenerSettings()
        # Parsing is CPU work (hl7apy): threads of its own keep the loop answering others.
        self._parsing = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mllp-parse")
        # Each message waits only for its own Kafka acknowledgements, on a thread of its own.
        self._storing = ThreadPoolExecutor(
            max_workers=self._settings.max_connections, thread_name_prefix="mllp-kafka"
        )
        self._open = 0

    async def stored(self, reply: MllpReply, deadline: float) -> bool:
        """Send the reply's messages and wait for Kafka's acknowledgement until `deadline`
        (time.monotonic()), off the event loop; False when Kafka has not stored them by then."""
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._storing, _store, self._producer, reply, deadline)
        try:
            await asyncio.wait_for(job, max(0.0, deadline - time.monotonic()) + 0.2)
        except (KafkaError, DeliveryError, TimeoutError, AssertionError) as exc:
            # AssertionError: kafka-python's answer to a send on a producer already closed.
            log.error("mllp.kafka_unavailable", error=exc.__class__.__name__)
            return False
        return True

    async def answer(self, item: Frame | Oversized, partner: str, peer: str) -> list[str]:
        """Decide, store, and return the ACKs for one frame (one in original mode, as the
        sender's MSH-15 and MSH-16 ask in enhanced mode), within the ACK timeout; logs one line."""
        deadline = time.monotonic() + _store_budget(self._settings.ack_timeout_s)
        text = decode_text(item.head if isinstance(item, Oversized) else item.data)
        header = read_header(text)  # the one reading of MSH the reply, ACK and log share
        origin = _origin(peer, header)
        if isinstance(item, Oversized):
            reply = reply_to_oversized(item, partner, origin, self._settings.max_bytes)
        elif (over := over_caps(text, self._settings.caps)) is not None:
            reply = reply_to_over_caps(text, over, partner, origin)
        else:
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(self._parsing, _replied, text, partner, origin)
        outcome = Outcome(reply.code, reply.errors)
        if not await self.stored(reply, deadline):
            try_again = ErrorReport(TRY_AGAIN, "", APPLICATION_INTERNAL_ERROR)
            outcome = Outcome("AE", (*reply.errors, try_again), stored=False)
        count_message(
            partner,
            "hl7v2",
            stage="mllp",
            events=len(reply.envelopes),
            stored=outcome.stored,
            refused=reply.code != "AA",
            dead_lettered=reply.letter is not None,
        )
        # An ACK control id of 19 characters leaves room for enhanced mode's C and A suffixes.
        acks = acknowledgements(
            header, outcome, ack_control_id=uuid.uuid4().hex[:19], now=utc_now()
        )
        log.info(
            "mllp.message",
            partner=partner,
            control_id=_loggable(header.control_id),
            message_type=reply.message_type or None,
            ack=outcome.code,
            acks=[_msa_code(ack) for ack in acks],
            event_ids=[str(e.event_id) for e in reply.envelopes],
            # Where and which HL7 error code only: reasons may quote the message.
            errors=[f"{e.location or '-'}:{e.code}" for e in outcome.errors],
        )
        return acks

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one partner connection: answer each frame in order until it closes, goes idle,
        or stalls mid-message. A peer the partner's allow-list does not name, or one over the
        connection cap, is closed before anything is read."""
        peer = _peer(writer)
        if self._open >= self._settings.max_connections:
            log.warning("mllp.refused", peer=str(peer), reason="connection cap")
            await _close(writer)
            return
        partner = self._partner_for_peer(peer)
        if partner is None:
            log.warning("mllp.refused", peer=str(peer), reason="not on the allow-list")
            await _close(writer)
            return
        self._open += 1
        try:
            await self._serve(reader, writer, partner, str(peer))
        except ConnectionError as exc:
            log.warning(
                "mllp.connection_lost", partner=partner, peer=str(peer), error=type(exc).__name__
            )
        finally:
            self._open -= 1
            await _close(writer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, partner: str, peer: str
    ) -> None:
        decoder = FrameDecoder(self._settings.max_bytes)
        frame_due: float | None = None  # when the message being read must be whole
        while True:
            if frame_due is None:
                wait = self._settings.idle_timeout_s
            else:
                wait = max(0.0, frame_due - time.monotonic())
            try:
                chunk = await asyncio.wait_for(reader.read(READ_CHUNK), wait)
            except TimeoutError:
                stalled = "message" if decoder.in_frame else "connection"
                log.warning("mllp.timed_out", partner=partner, peer=peer, stalled=stalled)
                return
            if not chunk:
                break
            for item in decoder.feed(chunk):
                for ack in await self.answer(item, partner, peer):
                    writer.write(frame(ack))
                await writer.drain()
            if not decoder.in_frame:
                frame_due = None
            elif frame_due is None:
                frame_due = time.monotonic() + self._settings.read_timeout_s
        if decoder.in_frame:
            log.warning("mllp.truncated", partner=partner, peer=peer)

    def close(self) -> None:
        """Stop the worker threads once their work is done."""
        self._parsing.shutdown(wait=False, cancel_futures=True)
        self._storing.shutdown(wait=False, cancel_futures=True)


def _replied(text: str, partner: str, origin: str) -> MllpReply:
    try:
        return reply_to(text, partner, origin)
    except Exception as exc:  # a mapping bug must not leave the partner resending for ever
        log.error("mllp.internal_error", partner=partner, error=exc.__class__.__name__)
        reason = (
            "the hub could not process the message (internal error); it is kept for an operator"
        )
        report = ErrorReport(reason, "", APPLICATION_INTERNAL_ERROR)
        return _rejection(
            "AE", text, origin, partner, problems=[Problem("(message)", reason)], reports=[report]
        )


def _msa_code(ack: str) -> str:
    """MSA-1 of an ACK the hub wrote (its MSA is the second segment), for the log line."""
    msa = ack.split("\r")[1]
    return msa[4:6]


def _origin(peer: str, header: Header) -> str:
    control_id = header.control_id
    return f"mllp://{peer}" + (f"#{control_id}" if control_id else "")


def _loggable(control_id: str) -> str | None:
    # MSH-10 names the message, not a person; anything not shaped like an id stays out of logs.
    return control_id if _LOGGABLE_CONTROL_ID.match(control_id) else None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def start_server(
    host: str,
    port: int,
    partner_for_peer: PartnerForPeer,
    producer: KafkaProducer,
    settings: ListenerSettings | None = None,
) -> asyncio.Server:
    """Start listening (port 0 picks a free port) and return the server; tests use this."""
    settings = settings or ListenerSettings()
    listener = Listener(producer, partner_for_peer, settings)
    context = settings.tls_context()
    server = await asyncio.start_server(
        listener.connection,
        host,
        port,
        ssl=context,
        # A TLS handshake is bounded like any other read.
        ssl_handshake_timeout=settings.read_timeout_s if context else None,
    )
    original_close = server.close

    def close() -> None:
        original_close()
        listener.close()

    server.close = close  # type: ignore[method-assign]  # the listener's threads stop with it
    return server


async def serve(
    host: str,
    port: int,
    partner_for_peer: PartnerForPeer,
    producer: KafkaProducer,
    settings: ListenerSettings | None = None,
) -> None:
    """Listen for MLLP connections until SIGTERM or SIGINT (or cancellation)."""
    server = await start_server(host, port, partner_for_peer, producer, settings)
    bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
    tls = bool(settings and settings.tls_cert_file)
    log.info("mllp.listening", address=bound, tls=tls)
    health = await serve_health(*http_address(*MLLP_HTTP), {"kafka": KafkaProbe()})
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Only the main thread may take signals; elsewhere cancellation stops the server.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stopping.set)
    try:
        async with server:
            await stopping.wait()
    finally:
        await health.cleanup()
    log.info("mllp.stopped", address=bound)


# --- command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `concord mllp`."""
    parser.add_argument("--as", dest="partner", required=True, help="the partner the feed is from")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port to listen on")
    parser.add_argument(
        "--secret-file",
        default=None,
        help="file holding the partner's secret (default: the CONCORD_PARTNER_SECRET variable)",
    )


def _signed_in(partner: str, secret_file: str | None) -> str | None:
    """None when the partner's secret is proven, else the reason to refuse to start."""
    from services.domain.signin import AuthError
    from services.runtime import SECRET_ENV, authenticate, partner_directory, secret_from, settings

    try:
        secret = secret_from(secret_file)
    except OSError as exc:
        return f"cannot read --secret-file: {exc.strerror}"
    if not secret:
        return f"a partner secret is needed: set {SECRET_ENV} or pass --secret-file"
    try:
        authenticate(partner_directory(settings().partners_file), partner, secret)
    except AuthError as exc:
        return f"refused: {exc}"
    return None


def run(args: argparse.Namespace) -> int:
    """`concord mllp`: sign the partner in, connect to Kafka, listen until interrupted."""

    def fail(message: str, code: int) -> int:
        print(f"concord mllp: {message}", file=sys.stderr)
        return code

    partner: str = args.partner
    if not PARTNER_ID.match(partner):
        return fail(f"--as {partner!r} is not a valid partner id", EXIT_USAGE)
    refusal = _signed_in(partner, args.secret_file)
    if refusal is not None:
        code = EXIT_USAGE if refusal.startswith("cannot read") else EXIT_AUTH
        return fail(refusal, code)
    try:
        http_address(*MLLP_HTTP)
        settings = listener_settings()
        for_peer = peer_check(partner, settings)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        producer = listener_producer(settings.ack_timeout_s)
    except KafkaError as exc:
        return fail(f"cannot reach Kafka: {exc.__class__.__name__}", EXIT_UNAVAILABLE)
    try:
        asyncio.run(serve(args.host, args.port, for_peer, producer, settings))
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", EXIT_USAGE)
    except KeyboardInterrupt:
        pass
    finally:
        producer.close()
    return EXIT_OK


def peer_check(partner: str, settings: ListenerSettings) -> PartnerForPeer:
    """The partner for a peer its directory entry's `mllp_peers` admits (services/domain/peers.py);
    ValueError when that allow-list asks for client certificates the listener does not ask for."""
    from services.runtime import partner_directory
    from services.runtime import settings as hub_settings

    found = partner_directory(hub_settings().partners_file).get(partner)
    allowed = found.mllp_peers if found is not None else None
    if allowed is not None and allowed.needs_certificate and not settings.tls_client_ca_file:
        raise ValueError(
            f"the mllp_peers of {partner} name certificate subjects: set "
            "CONCORD_MLLP_TLS_CERT_FILE, CONCORD_MLLP_TLS_KEY_FILE and CONCORD_MLLP_TLS_CLIENT_CA_FILE"
        )

    def for_peer(peer: Peer) -> str | None:
        reason = refusal(allowed, peer.host, peer.subject)
        if reason is not None:
            log.warning("mllp.peer_refused", partner=partner, peer=str(peer), reason=reason)
            return None
        return partner

    return for_peer


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m connectors.hl7v2.listener --as PARTNER [--host H] [--port P] [--secret-file F]`."""
    from services.runtime import configure_logging as configure

    parser = argparse.ArgumentParser(prog="concord mllp", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
