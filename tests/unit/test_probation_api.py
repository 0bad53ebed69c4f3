"""Fetching an HMPPS event's detail from the probation API with OAuth2 client credentials: the token
kept until it expires, and every failure a refusal saying what failed. The API is a real HTTP
server on loopback (tests/probation_api_stub.py); no broker is needed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from connectors.feeds.probation import records_from_probation_text
from connectors.feeds.probation_api import (
    NOT_CONFIGURED,
    DetailUnavailable,
    ProbationApiClient,
    fetch_detail,
)
from services.runtime import ProbationApi
from tests.probation_api_stub import (
    CLIENT_ID,
    CLIENT_SECRET,
    StubApi,
    environment,
    probation_api_stub,
)

SESSION = "/referral/r-1/delivery-session-appointments/s-1"
DETAIL = {
    "appointmentTime": "2026-12-03T10:00:00Z",
    "durationInMinutes": 45,
    "sessionFeedback": {"attendance": {"attended": "no"}},
}


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> Iterator[StubApi]:
    with probation_api_stub({SESSION: (200, DETAIL)}) as stub:
        yield stub


def client(
    api: StubApi, clock: Clock | None = None, secret: str = CLIENT_SECRET, timeout_s: float = 2.0
) -> ProbationApiClient:
    settings = ProbationApi(api.base_url, api.token_url, CLIENT_ID, secret, timeout_s)
    return ProbationApiClient(settings, clock=clock or Clock())


def refusal(api_client: ProbationApiClient, url: str = f"http://host{SESSION}") -> str:
    with pytest.raises(DetailUnavailable) as caught:
        api_client.detail(url)
    return str(caught.value)


def test_the_detail_is_fetched_with_one_token_reused_until_it_expires(api: StubApi) -> None:
    clock = Clock()
    api.expires_in = 300
    fetcher = client(api, clock)
    assert fetcher.detail(f"http://localhost:{{wiremock.port}}{SESSION}") == DETAIL
    clock.now += 200
    assert fetcher.detail(f"http://localhost{SESSION}") == DETAIL
    assert api.tokens_issued == ["token-1"], "the token is reused while it lasts"
    clock.now += 71  # 271 s in: within the 30 s margin before expiry
    fetcher.detail(f"http://localhost{SESSION}")
    assert api.tokens_issued == ["token-1", "token-2"]


def test_a_token_with_no_lifetime_is_renewed_soon(api: StubApi) -> None:
    clock = Clock()
    api.expires_in = None
    fetcher = client(api, clock)
    fetcher.detail(f"http://h{SESSION}")
    clock.now += 29
    fetcher.detail(f"http://h{SESSION}")
    clock.now += 2
    fetcher.detail(f"http://h{SESSION}")
    assert len(api.tokens_issued) == 2


def test_only_the_path_of_a_detail_url_is_asked_of_the_configured_api(api: StubApi) -> None:
    """A detailUrl naming another host cannot make the hub send its token there."""
    client(api).detail(f"https://elsewhere.example{SESSION}")
    assert api.detail_requests == [SESSION]


def test_a_revoked_token_is_replaced_once_and_the_detail_fetched(api: StubApi) -> None:
    fetcher = client(api)
    fetcher.detail(f"http://h{SESSION}")
    api.revoked.add("token-1")
    assert fetcher.detail(f"http://h{SESSION}") == DETAIL
    assert api.tokens_issued == ["token-1", "token-2"]


def test_a_detail_refused_with_401_even_to_a_new_token_is_a_clear_refusal(api: StubApi) -> None:
    api.details[SESSION] = (401, {"error": "invalid_token"})
    fetcher = client(api)
    assert refusal(fetcher) == "the probation API refused the hub's token (401)"
    assert len(api.tokens_issued) == 2, "signed in again once, not in a loop"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (403, "the probation API refused the hub's token (403)"),
        (404, "the probation API has no detail at the event's detailUrl (404)"),
        (500, "the probation API answered 500 for the event's detail"),
        (503, "the probation API answered 503 for the event's detail"),
    ],
)
def test_a_failed_detail_request_says_what_failed(api: StubApi, status: int, reason: str) -> None:
    api.details[SESSION] = (status, {"status": status})
    assert refusal(client(api)) == reason


def test_a_detail_that_is_not_a_json_object_is_refused(api: StubApi) -> None:
    api.details[SESSION] = (200, [1, 2])
    assert refusal(client(api)) == "the probation API's detail is not a JSON object"


def test_a_slow_api_is_a_timeout_refusal(api: StubApi) -> None:
    api.delay_s = 0.5
    assert refusal(client(api, timeout_s=0.1)) == "the probation API did not answer within 0.1 s"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"token_status": 500}, "the probation API's token endpoint answered 500"),
        ({"secret": "wrong"}, "the probation API's token endpoint answered 401"),
    ],
)
def test_a_failed_sign_in_says_so(api: StubApi, setup: dict[str, Any], reason: str) -> None:
    api.token_status = setup.get("token_status", 200)
    assert refusal(client(api, secret=setup.get("secret", CLIENT_SECRET))) == reason
    assert api.detail_requests == [], "no detail is asked without a token"


def test_an_api_that_cannot_be_reached_is_a_clear_refusal() -> None:
    with probation_api_stub({}) as stub:
        gone = client(stub)
    with capture_logs() as logs:
        reason = refusal(gone)
    assert reason == "the probation API's token endpoint could not be reached (ConnectError)"
    assert logs == [
        {"event": "probation_api.unavailable", "reason": reason, "log_level": "warning"}
    ]


def test_a_refusal_never_repeats_the_detail_url(api: StubApi) -> None:
    """A detail path may hold a case reference: it stays out of refusals and logs."""
    with capture_logs() as logs:
        reason = refusal(client(api), "http://h/case/X123456/appointments/1")
    assert "X123456" not in reason
    assert "X123456" not in str(logs)


def test_a_detail_url_without_a_path_is_refused(api: StubApi) -> None:
    assert refusal(client(api), "https://example.com") == (
        "detailUrl: names no path to fetch the detail from"
    )


# --- configured through the settings -----------------------------------------------------------


def test_fetch_detail_uses_the_api_the_settings_name(api: StubApi) -> None:
    with environment(api.settings()):
        assert fetch_detail(f"http://h{SESSION}") == DETAIL
        assert fetch_detail(f"http://h{SESSION}") == DETAIL
    assert api.tokens_issued == ["token-1"], "one client, and token, per configured API"


def test_without_a_probation_api_an_event_needing_detail_is_refused_saying_so() -> None:
    unset = dict.fromkeys(StubApi({}).settings(), "")
    with environment(unset), pytest.raises(DetailUnavailable) as caught:
        fetch_detail(f"http://h{SESSION}")
    assert str(caught.value) == NOT_CONFIGURED
    assert str(caught.value).startswith("the probation API is not configured")


def test_a_probation_api_set_without_its_client_is_refused_naming_what_to_set(api: StubApi) -> None:
    partial = api.settings() | {"CONCORD_PROBATION_API_CLIENT_SECRET": ""}
    with environment(partial), pytest.raises(DetailUnavailable) as caught:
        fetch_detail(f"http://h{SESSION}")
    assert "set CONCORD_PROBATION_API_CLIENT_SECRET" in str(caught.value)


def test_a_session_feedback_event_becomes_an_appointment_through_the_api(api: StubApi) -> None:
    event = (
        '{"eventType":"intervention.session-appointment.session-feedback-submitted","version":1,'
        f'"detailUrl":"http://interventions{SESSION}","occurredAt":"2026-12-03T12:00:00Z",'
        '"additionalInformation":{"deliusAppointmentId":42,"referralId":"r-1"},'
        '"personReference":{"identifiers":[{"type":"CRN","value":"X123456"}]}}'
    )
    with environment(api.settings()):
        [record] = records_from_probation_text(event, "feedback.json")
    assert record.resource is not None
    assert record.resource["id"] == "contact-42"
    assert record.resource["status"] == "noshow"
    assert (record.resource["start"], record.resource["end"]) == (
        "2026-12-03T10:00:00Z",
        "2026-12-03T10:45:00Z",
    )
