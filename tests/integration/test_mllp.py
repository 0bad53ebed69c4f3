"""The MLLP listener on a real socket, publishing to the real broker: ACK only after Kafka stored it."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hl7apy.parser import parse_message as hl7apy_parse
from kafka import KafkaProducer
from structlog.testing import capture_logs

from connectors.hl7v2.framing import Frame, FrameDecoder, decode_text, frame
from connectors.hl7v2.listener import (
    ListenerSettings,
    PartnerForPeer,
    listener_producer,
    start_server,
)
from connectors.kafka_io import new_producer, read_topic
from schemas import topics as catalogue
from schemas.codec import decode, decode_dead_letter

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mht"
PARTNER = "mht-rv5"
Address = tuple[str, int]


def fixture_as_sent(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


def fixture_text(name: str) -> str:
    """A fixture in original acknowledgement mode (MSH-15 and MSH-16 emptied): one ACK each.

    The fixtures as sent ask for enhanced mode (AL, NE), which the tests at the end check.
    """
    return fixture_as_sent(name).replace("|||AL|NE", "|||", 1)


@contextmanager
def listening(
    producer: KafkaProducer,
    settings: ListenerSettings | None = None,
    partner_for_peer: PartnerForPeer = lambda _peer: PARTNER,
) -> Iterator[Address]:
    """The listener in-process, on a free port, its event loop on a background thread."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        start_server("127.0.0.1", 0, partner_for_peer, producer, settings)
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        host, port = server.sockets[0].getsockname()[:2]
        yield str(host), int(port)
    finally:
        asyncio.run_coroutine_threadsafe(_shut_down(server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


async def _shut_down(server: asyncio.Server) -> None:
    server.close()
    handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    await server.wait_closed()


@pytest.fixture
def kafka_producer(topics: str) -> Iterator[KafkaProducer]:
    producer = listener_producer()
    yield producer
    producer.close()


@pytest.fixture
def mllp(kafka_producer: KafkaProducer) -> Iterator[Address]:
    with listening(kafka_producer) as address:
        yield address


def unreachable_kafka(block_s: float) -> KafkaProducer:
    """A real producer whose broker address has nothing listening (a broker outage): every send
    waits `block_s` for the broker, then fails. api_version is given so that making it does not
    first wait to learn the broker's version."""
    return new_producer(
        bootstrap_servers="127.0.0.1:1", api_version=(3, 9), max_block_ms=int(block_s * 1000)
    )


def exchange(address: Address, payload: bytes, acks: int, timeout_s: float = 30.0) -> list[str]:
    """Send bytes on one connection and read up to `acks` framed replies (or until it closes)."""
    decoder = FrameDecoder()
    replies: list[str] = []
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sock.sendall(payload)
        while len(replies) < acks:
            chunk = sock.recv(65536)
            if not chunk:
                break
            replies += [decode_text(f.data) for f in decoder.feed(chunk) if isinstance(f, Frame)]
    return replies


def msa_and_errs(ack: str) -> tuple[list[str], list[list[str]]]:
    """MSA fields and every ERR's fields of an ACK, after checking hl7apy reads it as HL7."""
    hl7apy_parse(ack, find_groups=False)
    segments = [line.split("|") for line in ack.split("\r") if line]
    [msa] = [s for s in segments if s[0] == "MSA"]
    return msa, [s for s in segments if s[0] == "ERR"]


def topic_values(name: str, count: int | None = None, idle_s: float = 10.0) -> list[bytes]:
    return [value for _key, value in read_topic(name, max_messages=count, idle_timeout_s=idle_s)]


def test_good_s12_is_published_then_acknowledged_aa(mllp: Address) -> None:
    message = fixture_text("siu-s12.hl7")
    with capture_logs() as logs:
        [ack] = exchange(mllp, frame(message), acks=1)
    msa, errs = msa_and_errs(ack)
    assert msa[1:3] == ["AA", "RV5-0001"]
    assert errs == []

    envelopes = [decode(v) for v in topic_values(catalogue.INBOUND.name, count=2)]
    assert [e.event_type for e in envelopes] == [
        "identity.patient.updated",
        "appointment.booking.updated",
    ]
    assert {e.source for e in envelopes} == {PARTNER}
    assert envelopes[1].resource["id"] == "APPT-88"
    assert envelopes[1].resource["status"] == "booked"
    [line] = [entry for entry in logs if entry["event"] == "mllp.message"]
    assert (line["control_id"], line["ack"], line["message_type"]) == ("RV5-0001", "AA", "SIU^S12")
    assert line["event_ids"] == [str(e.event_id) for e in envelopes]
    for secret in ("9434765919", "MRN445566", "TESTPATIENT", "Community mental health"):
        assert secret not in str(logs)


def test_malformed_msh_is_rejected_ar(mllp: Address) -> None:
    message = fixture_text("siu-s12.hl7").replace("MSH|^~\\&|", "MSH|^^\\&|")
    [ack] = exchange(mllp, frame(message), acks=1)
    msa, [err] = msa_and_errs(ack)
    assert msa[1] == "AR"
    assert err[2] == "MSH^1^2"
    [letter] = [decode_dead_letter(v) for v in topic_values(catalogue.DEADLETTER.name, count=1)]
    assert letter.raw == message, "kept exactly as received"
    assert "MSH-2" in letter.reason


def test_something_that_is_not_hl7_is_rejected_ar(mllp: Address) -> None:
    [ack] = exchange(mllp, frame("GET / HTTP/1.1\r\n\r\n"), acks=1)
    msa, [err] = msa_and_errs(ack)
    assert msa[1:3] == ["AR", ""]
    assert "not an HL7 v2 message" in err[8]


def test_unknown_trigger_is_rejected_ar(mllp: Address) -> None:
    message = fixture_text("siu-s12.hl7").replace("SIU^S12", "SIU^S99")
    [ack] = exchange(mllp, frame(message), acks=1)
    msa, [err] = msa_and_errs(ack)
    assert msa[1:3] == ["AR", "RV5-0001"]
    assert err[2:5] == ["MSH^1^9^1^2", "201^Unsupported event code^HL70357", "E"]


def test_bad_nhs_check_digit_is_dead_lettered_and_answered_ae(mllp: Address) -> None:
    message = fixture_text("siu-s14.hl7").replace("9434765919", "9434765918")
    with capture_logs() as logs:
        [ack] = exchange(mllp, frame(message), acks=1)
    msa, errs = msa_and_errs(ack)
    assert msa[1:3] == ["AE", "RV5-0003"]
    assert [err[2] for err in errs] == ["PID^1^3"]
    assert "check digit" in errs[0][8]

    [letter] = [decode_dead_letter(v) for v in topic_values(catalogue.DEADLETTER.name, count=1)]
    assert letter.raw == message, "kept exactly as received"
    assert letter.source == PARTNER
    assert letter.origin.endswith("#RV5-0003")
    assert "check digit" in letter.reason
    assert topic_values(catalogue.INBOUND.name, idle_s=2.0) == []
    assert "9434765918" not in str(logs)


def test_referral_request_from_a_trust_is_answered_ae_and_dead_lettered(mllp: Address) -> None:
    """The hub routes probation's referrals only: a trust's REF^I12 is refused now, not dropped later."""
    message = fixture_text("ref-i12.hl7")
    [ack] = exchange(mllp, frame(message), acks=1)
    msa, [err] = msa_and_errs(ack)
    assert msa[1:3] == ["AE", "RV5-0101"]
    assert "routes referrals from probation services only" in err[8]
    assert "lists mht-rv5 as mht" in err[8]

    [letter] = [decode_dead_letter(v) for v in topic_values(catalogue.DEADLETTER.name, count=1)]
    assert letter.raw == message
    assert (letter.source, letter.origin) == (PARTNER, letter.origin)
    assert "routes referrals from probation services only" in letter.reason
    assert topic_values(catalogue.INBOUND.name, idle_s=2.0) == []


def test_truncated_frame_gets_no_ack_and_publishes_nothing(mllp: Address) -> None:
    partial = frame(fixture_text("siu-s12.hl7"))[:-2]  # the connection closes before 0x1C 0x0D
    with capture_logs() as logs:
        with socket.create_connection(mllp, timeout=30) as sock:
            sock.sendall(partial)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(65536) == b"", "the listener closes without answering"
        deadline = time.monotonic() + 10
        while not any(e["event"] == "mllp.truncated" for e in logs):
            assert time.monotonic() < deadline, "the truncated frame was not logged"
            time.sleep(0.05)
    [entry] = [e for e in logs if e["event"] == "mllp.truncated"]
    assert set(entry) <= {"event", "log_level", "partner", "peer"}, "no content in the log"
    assert topic_values(catalogue.INBOUND.name, idle_s=2.0) == []
    assert topic_values(catalogue.DEADLETTER.name, idle_s=1.0) == []


def test_two_messages_on_one_connection_are_answered_in_order(mllp: Address) -> None:
    first, second = fixture_text("siu-s12.hl7"), fixture_text("siu-s13.hl7")
    acks = exchange(mllp, frame(first) + frame(second), acks=2)
    assert [msa_and_errs(a)[0][1:3] for a in acks] == [["AA", "RV5-0001"], ["AA", "RV5-0002"]]
    envelopes = [decode(v) for v in topic_values(catalogue.INBOUND.name, count=4)]
    appointments = [e.resource for e in envelopes if e.resource_type == "Appointment"]
    assert [a["start"] for a in appointments] == ["2026-12-04T13:00:00Z", "2026-12-07T10:30:00Z"]


def test_message_over_the_size_limit_is_rejected_ar(kafka_producer: KafkaProducer) -> None:
    message = fixture_text("siu-s12.hl7")
    big = message + "NTE|1||" + "x" * 5000 + "\r"
    with listening(kafka_producer, ListenerSettings(max_bytes=2000)) as address:
        acks = exchange(address, frame(big) + frame(message), acks=2)
    big_msa, [err] = msa_and_errs(acks[0])
    assert big_msa[1:3] == ["AR", "RV5-0001"]
    assert "over the 2000-byte limit" in err[8]
    assert msa_and_errs(acks[1])[0][1] == "AA", "the connection carries on after the big one"
    [letter] = [decode_dead_letter(v) for v in topic_values(catalogue.DEADLETTER.name, count=1)]
    assert "over the 2000-byte limit" in letter.reason


def test_kafka_unavailable_is_answered_ae_try_again_within_the_ack_timeout_never_aa() -> None:
    """The broker is down: the partner hears AE "send it again" within its ACK timeout (2 s
    here; the socket gives up at 8 s), never AA, and nothing waits for Kafka's own timeouts."""
    producer = unreachable_kafka(
        block_s=30
    )  # longer than the ACK timeout: the listener's bound holds
    with listening(producer, ListenerSettings(ack_timeout_s=2)) as address:
        [ack] = exchange(address, frame(fixture_text("siu-s12.hl7")), acks=1, timeout_s=8)
    producer.close(timeout=0)
    msa, [err] = msa_and_errs(ack)
    assert msa[1:3] == ["AE", "RV5-0001"]
    assert err[3].startswith("207^")
    assert "send it again" in err[8]


# --- enhanced acknowledgement mode (MSH-15, MSH-16) ---------------------------------------


def test_enhanced_mode_commits_only_once_kafka_has_the_message_then_answers_aa(
    mllp: Address,
) -> None:
    """MSH-15 AL, MSH-16 AL: a CA when Kafka has stored the message, then the AA."""
    message = fixture_as_sent("siu-s12.hl7").replace("|||AL|NE", "|||AL|AL", 1)
    with capture_logs() as logs:
        commit, application = exchange(mllp, frame(message), acks=2)
    assert msa_and_errs(commit) == (["MSA", "CA", "RV5-0001"], [])
    assert msa_and_errs(application) == (["MSA", "AA", "RV5-0001"], [])
    assert commit.split("\r")[0].split("|")[14:16] == ["NE", "NE"], "acks are not acked"
    envelopes = [decode(v) for v in topic_values(catalogue.INBOUND.name, count=2)]
    assert [e.resource_type for e in envelopes] == ["Patient", "Appointment"]
    [line] = [entry for entry in logs if entry["event"] == "mllp.message"]
    assert line["acks"] == ["CA", "AA"]


def test_enhanced_mode_as_trusts_send_it_commit_rejects_a_refused_message_with_its_reason(
    mllp: Address,
) -> None:
    """AL, NE (as Epic and RiO send): no application ACK is wanted, so the refusal is told on
    the commit ACK (CR with its ERR), never hidden behind a CA; it is on the dead-letter topic;
    the next message on the connection gets its own answer, not a stray one."""
    bad = fixture_as_sent("siu-s14.hl7").replace("9434765919", "9434765918")
    good = fixture_as_sent("siu-s13.hl7")
    acks = exchange(mllp, frame(bad) + frame(good), acks=2)
    assert [msa_and_errs(a)[0][1:3] for a in acks] == [["CR", "RV5-0003"], ["CA", "RV5-0002"]]
    assert "check digit" in "|".join(msa_and_errs(acks[0])[1][0])
    [letter] = [decode_dead_letter(v) for v in topic_values(catalogue.DEADLETTER.name, count=1)]
    assert "check digit" in letter.reason


def test_enhanced_mode_rejects_an_unsupported_message_with_cr(mllp: Address) -> None:
    message = fixture_as_sent("siu-s12.hl7").replace("SIU^S12^SIU_S12", "ORU^R01^ORU_R01")
    [commit] = exchange(mllp, frame(message), acks=1)
    msa, [err] = msa_and_errs(commit)
    assert msa[1:3] == ["CR", "RV5-0001"]
    assert err[3].startswith("200^")


def test_enhanced_mode_when_kafka_is_unavailable_is_a_commit_error_never_ca() -> None:
    """A CE and nothing after it: the next answer on the connection is the next message's."""
    producer = unreachable_kafka(block_s=1)
    enhanced = fixture_as_sent("siu-s12.hl7").replace("|||AL|NE", "|||AL|AL", 1)
    following = fixture_text("siu-s13.hl7")
    with listening(producer, ListenerSettings(ack_timeout_s=2)) as address:
        acks = exchange(address, frame(enhanced) + frame(following), acks=2, timeout_s=30)
    producer.close(timeout=0)
    assert [msa_and_errs(a)[0][1:3] for a in acks] == [["CE", "RV5-0001"], ["AE", "RV5-0002"]]
    assert "send it again" in msa_and_errs(acks[0])[1][0][8]


def test_a_v2_4_sender_gets_its_errors_in_err_1(mllp: Address) -> None:
    message = fixture_text("siu-s14.hl7").replace("9434765919", "9434765918")
    message = message.replace("|P|2.5.1|", "|P|2.4|", 1)
    [ack] = exchange(mllp, frame(message), acks=1)
    msh = ack.split("\r")[0].split("|")
    assert msh[11] == "2.4"
    msa, [err] = msa_and_errs(ack)
    assert msa[1] == "AE"
    assert err[1].startswith("PID^1^3^103&Table value not found&HL70357")
