"""Fetch an HMPPS domain event's detail (its `detailUrl`) from the probation API, signed in with
OAuth2 client credentials; the token is kept until shortly before it expires.

Only the path (and query) of a `detailUrl` is asked, of the configured API: the host named in
an event is not trusted, so an event cannot make the hub send its token elsewhere. Failures are
DetailUnavailable with a reason that names what failed and never an identifier or a URL (a
detail path may hold a case reference).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from services.runtime import (
    PROBATION_API_PARTS,
    PROBATION_API_URL,
    MissingConfiguration,
    ProbationApi,
    probation_api,
)

log = structlog.get_logger(__name__)

# A token is renewed this long before the API would stop taking it: a request signed just in
# time must still be answered.
EXPIRY_MARGIN_S = 30.0
# When the token endpoint does not say how long its token lasts (RFC 6749 makes expires_in
# optional): ask again this soon rather than keep a token that may be dead.
DEFAULT_TOKEN_LIFETIME_S = 60.0
NOT_CONFIGURED = (
    f"the probation API is not configured: set {PROBATION_API_URL} and "
    f"{', '.join(PROBATION_API_PARTS)} so the hub can fetch the event's detail"
)


class DetailUnavailable(Exception):  # noqa: N818 -- reads as the condition it reports
    """The detail of an event could not be had; the message says what failed."""


class ProbationApiClient:
    """Fetches details from one probation API, reusing its OAuth2 token until it expires."""

    def __init__(
        self,
        api: ProbationApi,
        *,
        clock: Callable[[], float] = time.monotonic,
        http: httpx.Client | None = None,
    ) -> None:
        self._api = api
        self._clock = clock
        self._http = http or httpx.Client(timeout=api.timeout_s)
        self._token: tuple[str, float] | None = None  # (access token, renew at)

    def detail(self, detail_url: str) -> dict[str, Any]:
        """The JSON object the API answers for `detail_url`'s path; DetailUnavailable if none."""
        url = self._url(detail_url)
        response = self._get(url)
        if response.status_code == 401:
            self._token = None  # revoked or expired early: sign in again, once
            response = self._get(url)
        status = response.status_code
        if status in (401, 403):
            raise DetailUnavailable(f"the probation API refused the hub's token ({status})")
        if status == 404:
            raise DetailUnavailable(
                "the probation API has no detail at the event's detailUrl (404)"
            )
        if not 200 <= status < 300:
            raise DetailUnavailable(f"the probation API answered {status} for the event's detail")
        return _json_object(response, "the probation API's detail")

    def _url(self, detail_url: str) -> str:
        parts = urlsplit(detail_url)
        if not parts.path.strip("/"):
            raise DetailUnavailable("detailUrl: names no path to fetch the detail from")
        query = f"?{parts.query}" if parts.query else ""
        return f"{self._api.base_url.rstrip('/')}{parts.path}{query}"

    def _get(self, url: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._bearer()}", "Accept": "application/json"}
        return self._send("the probation API", lambda: self._http.get(url, headers=headers))

    def _bearer(self) -> str:
        now = self._clock()
        if self._token is not None and now < self._token[1]:
            return self._token[0]
        response = self._send(
            "the probation API's token endpoint",
            lambda: self._http.post(
                self._api.token_url,
                data={"grant_type": "client_credentials"},
                auth=(self._api.client_id, self._api.client_secret),
                headers={"Accept": "application/json"},
            ),
        )
        if response.status_code != 200:
            raise DetailUnavailable(
                f"the probation API's token endpoint answered {response.status_code}"
            )
        body = _json_object(response, "the token endpoint's answer")
        token, lifetime = body.get("access_token"), body.get("expires_in", DEFAULT_TOKEN_LIFETIME_S)
        if not isinstance(token, str) or not token:
            raise DetailUnavailable("the token endpoint's answer has no access_token")
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
            lifetime = DEFAULT_TOKEN_LIFETIME_S
        self._token = (token, now + max(float(lifetime) - EXPIRY_MARGIN_S, 0.0))
        return token

    def _send(self, what: str, request: Callable[[], httpx.Response]) -> httpx.Response:
        try:
            return request()
        except httpx.TimeoutException:
            reason = f"{what} did not answer within {self._api.timeout_s:g} s"
        except httpx.HTTPError as exc:
            reason = f"{what} could not be reached ({type(exc).__name__})"
        log.warning("probation_api.unavailable", reason=reason)
        raise DetailUnavailable(reason)


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise DetailUnavailable(f"{what} is not JSON") from None
    if not isinstance(body, dict):
        raise DetailUnavailable(f"{what} is not a JSON object")
    return body


_clients: dict[ProbationApi, ProbationApiClient] = {}


def fetch_detail(detail_url: str) -> Mapping[str, Any]:
    """The detail from the probation API the settings name (one client, and token, per API);
    DetailUnavailable when none is configured or the fetch fails."""
    try:
        api = probation_api()
    except MissingConfiguration as exc:
        raise DetailUnavailable(str(exc)) from None
    if api is None:
        raise DetailUnavailable(NOT_CONFIGURED)
    client = _clients.get(api)
    if client is None:
        client = _clients.setdefault(api, ProbationApiClient(api))
    return client.detail(detail_url)
