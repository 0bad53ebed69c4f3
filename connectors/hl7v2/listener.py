"""The MLLP listener: Mental Health Trust HL7 v2 messages over TCP, mapped, published, then acknowledged.

A message is answered AA (in enhanced mode CA) only once Kafka has stored every resource it
carried; anything rejected goes to the dead-letter topic with the reason and is answered AE or AR
(CR) with ERR segments. Which ACKs are sent is the sender's choice (MSH-15, MSH-16: `ack.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from connectors.fhir_input import Record
from connectors.hl7v2.ack import ApplicationAckCode, Outcome, acknowledgements
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
from services.observe.health import MLLP_HTTP, KafkaProbe, http_address, serve_health
from services.observe.metrics import count_message

log = structlog.get_logger(__name__)

DEFAULT_PORT = 2575
READ_CHUNK = 64 * 1024
# Partners' engines typically wait 30-60 s for an ACK: answer "try again" well within that.
CONFIRM_TIMEOUT_S = 20.0
TRY_AGAIN = (
    "the hub could not store the message (Kafka unavailable); nothing was accepted: send it again"
)
_LOGGABLE_CONTROL_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Exit statuses shared with the `concord` command (README, "Exit status").
EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH = 0, 2, 3, 5

PartnerForPeer = Callable[[tuple[str, int]], str | None]


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


def listener_producer() -> KafkaProducer:
    """A producer that gives up quickly enough to answer the partner before it times out."""
    return new_producer(
        client_id="concord-mllp",
        max_block_ms=10_000,
        request_timeout_ms=10_000,
        delivery_timeout_ms=15_000,
    )


def _store(publisher: Publisher, reply: MllpReply) -> None:
    for envelope in reply.envelopes:
        publisher.send_envelope(envelope)
    if reply.letter is not None:
        publisher.send_dead_letter(reply.letter)
    publisher.confirm(CONFIRM_TIMEOUT_S)


class Listener:
    """The shell around `reply_to`: stores each reply's messages in Kafka, then answers the partner."""

    def __init__(
        self,
        publisher: Publisher,
        partner_for_peer: PartnerForPeer,
        max_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self._publisher = publisher
        self._partner_for_peer = partner_for_peer
        self._max_bytes = max_bytes
        # One Publisher's confirm() waits for everything queued: one message at a time, so an
        # ACK never vouches for, or is failed by, another connection's message.
        self._lock = asyncio.Lock()

    async def stored(self, reply: MllpReply) -> bool:
        """Send the reply's messages and wait for Kafka's acknowledgement, off the event loop."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                await loop.run_in_executor(None, _store, self._publisher, reply)
            except (KafkaError, DeliveryError) as exc:
                log.error("mllp.kafka_unavailable", error=exc.__class__.__name__)
                return False
        return True

    async def answer(self, item: Frame | Oversized, partner: str, peer: str) -> list[str]:
        """Decide, store, and return the ACKs for one frame (one in original mode, as the
        sender's MSH-15 and MSH-16 ask in enhanced mode); logs one line."""
        text = decode_text(item.head if isinstance(item, Oversized) else item.data)
        header = read_header(text)  # the one reading of MSH the reply, ACK and log share
        origin = _origin(peer, header)
        if isinstance(item, Oversized):
            reply = reply_to_oversized(item, partner, origin, self._max_bytes)
        else:
            reply = _replied(text, partner, origin)
        outcome = Outcome(reply.code, reply.errors)
        if not await self.stored(reply):
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
        """Serve one partner connection: answer each frame in order until it closes."""
        address = writer.get_extra_info("peername")
        peer_address = (str(address[0]), int(address[1])) if address else ("?", 0)
        peer = f"{peer_address[0]}:{peer_address[1]}"
        partner = self._partner_for_peer(peer_address)
        if partner is None:
            log.warning("mllp.refused", peer=peer)
            await _close(writer)
            return
        decoder = FrameDecoder(self._max_bytes)
        try:
            while chunk := await reader.read(READ_CHUNK):
                for item in decoder.feed(chunk):
                    for ack in await self.answer(item, partner, peer):
                        writer.write(frame(ack))
                    await writer.drain()
            if decoder.in_frame:
                log.warning("mllp.truncated", partner=partner, peer=peer)
        except ConnectionError as exc:
            log.warning(
                "mllp.connection_lost", partner=partner, peer=peer, error=exc.__class__.__name__
            )
        finally:
            await _close(writer)


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
    publisher: Publisher,
    max_bytes: int = MAX_FRAME_BYTES,
) -> asyncio.Server:
    """Start listening (port 0 picks a free port) and return the server; tests use this."""
    listener = Listener(publisher, partner_for_peer, max_bytes)
    return await asyncio.start_server(listener.connection, host, port)


async def serve(
    host: str,
    port: int,
    partner_for_peer: PartnerForPeer,
    publisher: Publisher | None = None,
) -> None:
    """Listen for MLLP connections until SIGTERM or SIGINT (or cancellation)."""
    publisher = publisher or Publisher(listener_producer())
    server = await start_server(host, port, partner_for_peer, publisher)
    bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
    log.info("mllp.listening", address=bound)
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
    try:
        http_address(*MLLP_HTTP)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    refusal = _signed_in(partner, args.secret_file)
    if refusal is not None:
        code = EXIT_USAGE if refusal.startswith("cannot read") else EXIT_AUTH
        return fail(refusal, code)
    try:
        publisher = Publisher(listener_producer())
    except KafkaError as exc:
        return fail(f"cannot reach Kafka: {exc.__class__.__name__}", EXIT_UNAVAILABLE)
    try:
        asyncio.run(serve(args.host, args.port, lambda _peer: partner, publisher))
    except OSError as exc:
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", EXIT_USAGE)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
    return EXIT_OK


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
