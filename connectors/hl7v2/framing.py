"""MLLP framing (0x0B message 0x1C 0x0D): the one frame decoder both the listener and outbound
delivery read with, so both hold at most `MAX_FRAME_BYTES` of a frame in memory.

Sans-IO: bytes in, frames out, tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
# The longest frame either side reads; the rest of a longer one is discarded as it arrives.
MAX_FRAME_BYTES = 1024 * 1024
HEAD_BYTES = 4096  # of an oversized frame, kept to address the reply and the dead letter


def frame(message: str) -> bytes:
    """One HL7 message in its MLLP envelope: 0x0B, the message, 0x1C 0x0D."""
    return START_BLOCK + message.encode("utf-8") + END_BLOCK


def decode_text(data: bytes) -> str:
    """A frame's text: UTF-8, else ISO 8859-1 (the usual non-UTF-8 trust charset, which cannot fail)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete MLLP frame's content."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Oversized:
    """A frame longer than the limit: its first bytes and its full size; the rest was discarded."""

    head: bytes
    size: int


class FrameDecoder:
    """Splits a byte stream into MLLP frames; bytes between frames (keep-alive newlines) are skipped."""

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self._max_bytes = max_bytes
        self._buffer = bytearray()
        self._inside = False
        self._discarded = 0  # bytes of an oversized frame already thrown away
        self._head = b""

    @property
    def in_frame(self) -> bool:
        """True while a frame has started and not ended: at end of stream, a truncated frame."""
        return self._inside

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        """Take more bytes; return every frame they complete."""
        self._buffer += data
        found: list[Frame | Oversized] = []
        while True:
            if not self._inside:
                start = self._buffer.find(START_BLOCK)
                if start < 0:
                    self._buffer.clear()  # bytes between frames carry nothing
                    return found
                del self._buffer[: start + 1]
                self._inside = True
            end = self._buffer.find(END_BLOCK)
            if end < 0:
                self._discard_if_oversized()
                return found
            body = bytes(self._buffer[:end])
            del self._buffer[: end + len(END_BLOCK)]
            found.append(self._finish(body))

    def _discard_if_oversized(self) -> None:
        if self._discarded + len(self._buffer) <= self._max_bytes:
            return
        if not self._discarded:
            self._head = bytes(self._buffer[: min(HEAD_BYTES, len(self._buffer) - 1)])
        # Keep the last byte: it may be the 0x1C of an end block split across reads.
        self._discarded += len(self._buffer) - 1
        del self._buffer[:-1]

    def _finish(self, body: bytes) -> Frame | Oversized:
        self._inside = False
        if not self._discarded and len(body) <= self._max_bytes:
            return Frame(body)
        result = Oversized(self._head or body[:HEAD_BYTES], self._discarded + len(body))
        self._discarded, self._head = 0, b""
        return result
