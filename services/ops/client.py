"""A small HTTP client for the worker's API, used by the CLI and the demo."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def get_json(
    url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 30.0
) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body); status 0 when nothing answers at the URL."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 -- a worker URL from our own settings
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 -- a worker URL from our own settings
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None
