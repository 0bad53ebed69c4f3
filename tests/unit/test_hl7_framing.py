"""MLLP framing: the one frame decoder the listener and outbound delivery share, and its size limit."""

from __future__ import annotations

import asyncio

import orjson

from connectors.delivery.rules import Endpoint
from connectors.delivery.service import AttemptResult, MllpTransport
from connectors.hl7v2.framing import (
    HEAD_BYTES,
    MAX_FRAME_BYTES,
    Frame,
    FrameDecoder,
    Oversized,
    decode_text,
    frame,
)
from schemas.codec import decode
from schemas.envelope import Envelope

EVENT_ID = "abac12fe-d314-5151-9828-96147b019f58"

# --- the decoder ----------------------------------------------------------------------------


def test_frames_split_across_reads_and_several_in_one_read() -> None:
    decoder = FrameDecoder()
    stream = b"\r\n" + frame("one") + frame("two") + b"\n" + frame("three")
    found: list[Frame | Oversized] = []
    for index in range(0, len(stream), 3):
        found += decoder.feed(stream[index : index + 3])
    assert found == [Frame(b"one"), Frame(b"two"), Frame(b"three")]
    assert not decoder.in_frame


def test_oversized_frame_is_reported_once_with_its_head_even_when_the_end_block_is_split() -> None:
    decoder = FrameDecoder(max_bytes=10)
    found = decoder.feed(b"\x0bMSH|" + b"y" * 30 + b"\x1c")
    assert found == []
    found = decoder.feed(b"\r" + frame("ok"))
    assert found == [Oversized(b"MSH|" + b"y" * 30, 34), Frame(b"ok")]


def test_a_frame_without_its_end_is_pending_at_end_of_stream() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0bMSH|^~\\&|partial") == []
    assert decoder.in_frame


def test_the_limit_is_one_mebibyte_and_a_frame_of_exactly_that_size_is_read() -> None:
    assert MAX_FRAME_BYTES == 1024 * 1024
    decoder = FrameDecoder()
    exact = b"x" * MAX_FRAME_BYTES
    assert decoder.feed(b"\x0b" + exact + b"\x1c\r") == [Frame(exact)]
    [over] = decoder.feed(b"\x0b" + exact + b"y\x1c\r")
    assert isinstance(over, Oversized)
    assert over.size == MAX_FRAME_BYTES + 1


def test_an_endless_frame_is_discarded_as_it_arrives_keeping_only_its_head() -> None:
    """However long a frame runs, the decoder holds no more than the limit of it."""
    decoder = FrameDecoder(max_bytes=1000)
    chunk = b"z" * 4096
    assert decoder.feed(b"\x0bMSH|") == []
    for _ in range(256):  # 1 MiB in all, a thousand times the limit
        assert decoder.feed(chunk) == []
    [over] = decoder.feed(b"\x1c\r")
    assert over == Oversized(b"MSH|" + b"z" * (HEAD_BYTES - 4), 4 + 256 * 4096)
    assert decoder.feed(frame("next")) == [Frame(b"next")], "the stream carries on"


def test_frame_text_is_utf8_else_latin1() -> None:
    assert decode_text("é".encode()) == "é"
    assert decode_text("é".encode("latin-1")) == "é"


# --- the outbound side: a partner's ACKs are read with the same decoder and limit -----------


def _envelope() -> Envelope:
    return decode(
        orjson.dumps(
            {
                "event_id": EVENT_ID,
                "event_type": "alert.clash.raised",
                "source": "concord-hub",
                "subject": {"identifiers": [], "person_id": "p-0a1b2c3d4e5f60718293"},
                "occurred_at": "2026-12-01T09:00:00Z",
                "recorded_at": "2026-12-01T09:00:05Z",
                "resource": {"resourceType": "DetectedIssue", "id": "clash-1", "status": "final"},
                "correlation_id": EVENT_ID,
            }
        )
    )


def _ack(control: str, padding: int = 0) -> str:
    return (
        "MSH|^~\\&|MHT|RV5|CONCORD|CONCORD-HUB|20261201093000||ACK^R01|a1|P|2.5.1\r"
        f"MSA|AA|{control}|{'x' * padding}\r"
    )


async def _partner_answering(paddings: list[int]) -> tuple[asyncio.Server, int]:
    """A partner that answers its n-th message with an AA padded by paddings[n] bytes."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for item in decoder.feed(data):
                assert isinstance(item, Frame)
                control = decode_text(item.data).split("\r", 1)[0].split("|")[9]
                writer.write(frame(_ack(control, paddings.pop(0))))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_an_ack_over_the_limit_is_not_read_and_the_attempt_is_retried() -> None:
    """Outbound delivery holds no more of a partner's ACK than the listener holds of a message."""

    async def scenario() -> list[AttemptResult]:
        server, port = await _partner_answering([MAX_FRAME_BYTES, 0])
        endpoint = Endpoint("mht-rv5", "hl7", host="127.0.0.1", port=port)
        transport = MllpTransport(endpoint, "127.0.0.1", port, timeout_s=10.0)
        try:
            return [await transport.send(_envelope(), b"", attempt) for attempt in (1, 2)]
        finally:
            await transport.close()
            server.close()
            await server.wait_closed()

    too_big, then = asyncio.run(scenario())
    size = len(_ack(EVENT_ID, MAX_FRAME_BYTES).encode())  # MSH-10 is the event id
    assert too_big == AttemptResult(
        "retry", f"ACK of {size} bytes over the {MAX_FRAME_BYTES}-byte limit"
    )
    assert then == AttemptResult("delivered", "ACK AA", ""), "the connection carries on"
