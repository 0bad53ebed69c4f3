"""A local stand-in for the probation API and its OAuth2 token endpoint, served over real HTTP on
loopback, for the tests of fetching HMPPS event details.

The token endpoint takes the client credentials grant with HTTP Basic client authentication (as
HMPPS Auth does); a detail path answers only with a token it issued and has not revoked.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CLIENT_ID = "concord-hub"
CLIENT_SECRET = "stub-secret"
DETAILS = Path(__file__).parent / "fixtures" / "hmpps-api"


@dataclass
class StubApi:
    """What the stand-in answers, and what it was asked."""

    details: dict[str, tuple[int, Any]]  # path -> (HTTP status, JSON body)
    expires_in: float | None = 3600
    token_status: int = 200
    delay_s: float = 0.0
    tokens_issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    detail_requests: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/auth/oauth/token"

    def settings(self, timeout_s: float = 2.0) -> dict[str, str]:
        """The hub's settings naming this stand-in."""
        return {
            "CONCORD_PROBATION_API_URL": self.base_url,
            "CONCORD_PROBATION_API_TOKEN_URL": self.token_url,
            "CONCORD_PROBATION_API_CLIENT_ID": CLIENT_ID,
            "CONCORD_PROBATION_API_CLIENT_SECRET": CLIENT_SECRET,
            "CONCORD_PROBATION_API_TIMEOUT_S": str(timeout_s),
        }


def recorded_details() -> dict[str, tuple[int, Any]]:
    """The public HMPPS detail responses (tests/fixtures/hmpps-api), by the path they answer."""
    routes = json.loads((DETAILS / "routes.json").read_text(encoding="utf-8"))
    return {
        path: (200, json.loads((DETAILS / name).read_text(encoding="utf-8")))
        for path, name in routes.items()
    }


@contextmanager
def probation_api_stub(details: dict[str, tuple[int, Any]]) -> Iterator[StubApi]:
    """The stand-in, listening on a free loopback port until the block ends."""
    api = StubApi(details)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Settings set for the block, and put back as they were after it."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _handler(api: StubApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows failures, not every request

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if self.path != "/auth/oauth/token" or "grant_type=client_credentials" not in body:
                self._answer(400, {"error": "invalid_request"})
            elif self.headers.get("Authorization") != f"Basic {expected}":
                self._answer(401, {"error": "invalid_client"})
            elif api.token_status != 200:
                self._answer(api.token_status, {"error": "server_error"})
            else:
                token = f"token-{len(api.tokens_issued) + 1}"
                api.tokens_issued.append(token)
                answer: dict[str, Any] = {"access_token": token, "token_type": "bearer"}
                if api.expires_in is not None:
                    answer["expires_in"] = api.expires_in
                self._answer(200, answer)

        def do_GET(self) -> None:
            if api.delay_s:
                time.sleep(api.delay_s)
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            path = self.path.removeprefix("/api")
            api.detail_requests.append(path)
            if token not in api.tokens_issued or token in api.revoked:
                self._answer(401, {"error": "invalid_token"})
                return
            status, body = api.details.get(path, (404, {"status": 404}))
            self._answer(status, body)

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
