"""A stand-in partner endpoint for the fault suite: it records every delivery it accepts, and can be
switched down (not listening), erroring (HTTP 500) or hanging (no answer) and back.

Every partner in the suite's endpoints file posts to `http://127.0.0.1:PORT/<partner id>`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = ("up", "down", "error", "hang")
HANG_LIMIT_S = 120.0  # a hanging answer is given up (503) after this, so no thread lingers


@dataclass(frozen=True)
class Delivery:
    """One delivery the partner accepted (answered 200)."""

    partner: str
    event_id: str
    correlation_id: str | None
    event_type: str
    idempotency_key: str | None
    at: float  # time.monotonic() when it arrived


class PartnerStub:
    """The partners' endpoint on one port; `deliveries` is what it accepted, in arrival order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mode = "up"
        self.deliveries: list[Delivery] = []
        self.refused = 0  # requests answered 500 or not answered
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None

    def endpoints_yaml(self, partners: list[str]) -> str:
        """An endpoints file (connectors/delivery/README.md) sending every partner's messages here,
        as the hub's JSON envelope."""
        entries = [
            f"  - partner: {p}\n    format: json\n    url: http://127.0.0.1:{self.port}/{p}\n"
            for p in partners
        ]
        return "endpoints:\n" + "".join(entries)

    def start(self) -> None:
        """Listen (again)."""
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = stub.answer(self.path.strip("/"), body, dict(self.headers))
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the deliverer gave up waiting (hang): nothing to tell it

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the suite reports counts, not requests."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: connections are refused, as for a partner whose server is down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_mode(self, mode: str) -> None:
        """up, down, error (500) or hang (no answer until the mode changes)."""
        assert mode in MODES, mode
        if mode == "down":
            self.stop()
        elif self._server is None:
            self.start()
        with self._changed:
            self.mode = mode
            self._changed.notify_all()

    def clear(self) -> None:
        """Forget what was delivered: the next scenario starts counting from nothing."""
        with self._lock:
            self.deliveries.clear()
            self.refused = 0

    def answer(self, partner: str, body: bytes, headers: dict[str, str]) -> int:
        """Record an accepted delivery; 500, or a hang, while the partner is failing."""
        with self._changed:
            if self.mode == "hang":
                self._changed.wait_for(lambda: self.mode != "hang", timeout=HANG_LIMIT_S)
                self.refused += 1
                return 503  # the answer nobody waits for any more
            if self.mode != "up":
                self.refused += 1
                return 500
            try:
                message = json.loads(body)
            except ValueError:
                return 400
            self.deliveries.append(
                Delivery(
                    partner=partner,
                    event_id=str(message.get("event_id")),
                    correlation_id=message.get("correlation_id"),
                    event_type=str(message.get("event_type")),
                    idempotency_key=headers.get("Idempotency-Key"),
                    at=time.monotonic(),
                )
            )
            return 200
