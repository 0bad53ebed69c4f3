"""Unit tests for signing in to the pages: passwords, the session cookie, form tokens and the idle
time-out, on the pages' own application with no worker behind it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.pages.app import PagesConfig, build_app
from connectors.pages.users import UserDirectory, hash_password
from services.runtime import ROOT, partner_directory

PARTNERS = partner_directory(ROOT / "deploy" / "demo" / "partners.yaml")
USERS = UserDirectory.load(ROOT / "deploy" / "demo" / "users.yaml", PARTNERS)
CONFIG = PagesConfig(
    host="127.0.0.1",
    port=0,
    users_file=ROOT / "deploy" / "demo" / "users.yaml",
    worker="http://127.0.0.1:9",  # nothing answers: these pages need no worker
    cookie_key=b"k" * 32,
    secure_cookies=False,
    idle_minutes=20,
)
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def run(config: PagesConfig, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        app = build_app(config, USERS, live_updates=False)
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


async def form_token(client: TestClient[Any, Any], path: str = "/sign-in") -> str:
    page = await (await client.get(path)).text()
    found = TOKEN.search(page)
    assert found, page
    return found.group(1)


async def sign_in(client: TestClient[Any, Any], user: str, password: str) -> Any:
    token = await form_token(client)
    form = {"user": user, "password": password, "csrf_token": token}
    return await client.post("/sign-in", data=form, allow_redirects=False)


def test_the_demo_users_sign_in_with_their_password_only() -> None:
    assert USERS.sign_in("officer.adeyemi", "demo-officer.adeyemi") is not None
    assert USERS.sign_in("officer.adeyemi", "demo-officer.brennan") is None
    assert USERS.sign_in("nobody", "demo-nobody") is None


def test_a_directory_entry_of_the_wrong_kind_stops_the_pages(tmp_path: Path) -> None:
    listed = tmp_path / "users.yaml"
    listed.write_text(
        "users:\n  - {id: x.y, name: X, partner: gp-Y01234, role: probation-officer, "
        f"password_hash: '{hash_password('p')}'}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="right kind"):
        UserDirectory.load(listed, PARTNERS)
    listed.write_text(
        "users:\n  - {id: x.y, name: X, partner: gp-Y01234, role: clinician, "
        "password_hash: 'pbkdf2_sha256$1$a$b'}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="argon2id"):
        UserDirectory.load(listed, PARTNERS)


def test_every_page_but_sign_in_needs_a_signed_in_user() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        for path in ("/", "/people", "/people/X123456", "/people/X123456/evidence-note"):
            response = await client.get(path, allow_redirects=False)
            assert (response.status, response.headers["Location"]) == (303, "/sign-in")

    run(CONFIG, scenario)


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        wrong_password = await sign_in(client, "officer.adeyemi", "guess")
        no_such_user = await sign_in(client, "officer.nobody", "guess")
        assert wrong_password.status == no_such_user.status == 401
        assert "Enter a correct user name and password" in await wrong_password.text()

    run(CONFIG, scenario)


def test_a_signed_in_officer_reaches_the_find_page_and_can_sign_out() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        signed_in = await sign_in(client, "officer.adeyemi", "demo-officer.adeyemi")
        assert signed_in.status == 303
        find = await client.get("/people")
        assert "Find a person by CRN" in await find.text()
        token = await form_token(client, "/people")
        out = await client.post("/sign-out", data={"csrf_token": token}, allow_redirects=False)
        assert out.headers["Location"] == "/sign-in"
        after = await client.get("/people", allow_redirects=False)
        assert after.status == 303

    run(CONFIG, scenario)


def test_a_form_without_the_sessions_token_is_refused() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        await sign_in(client, "officer.adeyemi", "demo-officer.adeyemi")
        for sent in ({}, {"csrf_token": "made-up"}):
            refused = await client.post("/sign-out", data=sent, allow_redirects=False)
            assert refused.status == 403
            assert "Your form was not accepted" in await refused.text()
        still = await client.get("/people", allow_redirects=False)
        assert still.status == 200
        # and the sign-in form itself needs its token
        form = {"user": "officer.adeyemi", "password": "demo-officer.adeyemi"}
        assert (await client.post("/sign-in", data=form)).status == 403

    run(CONFIG, scenario)


def test_an_idle_session_ends() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        await sign_in(client, "officer.adeyemi", "demo-officer.adeyemi")
        assert (await client.get("/people", allow_redirects=False)).status == 200
        await asyncio.sleep(0.3)
        idle = await client.get("/people", allow_redirects=False)
        assert (idle.status, idle.headers["Location"]) == (303, "/sign-in?timed-out=1")
        page = await (await client.get("/sign-in?timed-out=1")).text()
        assert "signed out because you were inactive" in page

    run(replace(CONFIG, idle_minutes=0.2 / 60), scenario)


def test_the_session_cookie_is_secure_http_only_and_same_site() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        response = await client.get("/sign-in")
        cookie = response.headers["Set-Cookie"]
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]

    run(replace(CONFIG, secure_cookies=True), scenario)


def test_a_crn_is_found_as_the_officer_writes_it() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        await sign_in(client, "officer.adeyemi", "demo-officer.adeyemi")
        found = await client.get("/people?reference=+x123+456", allow_redirects=False)
        assert (found.status, found.headers["Location"]) == (303, "/people/X123456")
        empty = await client.get("/people?reference=")
        assert empty.status == 400
        assert "Enter the person&#39;s CRN" in await empty.text()

    run(CONFIG, scenario)


def test_metrics_and_liveness_answer_without_sign_in() -> None:
    """A probe and Prometheus do not sign in; what they see names no person."""

    async def scenario(client: TestClient[Any, Any]) -> None:
        live = await client.get("/livez", allow_redirects=False)
        assert (live.status, await live.json()) == (200, {"live": True})
        scraped = await client.get("/metrics", allow_redirects=False)
        assert scraped.status == 200
        assert "# TYPE concord_events_accepted_total counter" in await scraped.text()

    run(CONFIG, scenario)


def test_too_many_refused_sign_ins_from_one_address_must_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past CONCORD_RATE_FAILED_SIGN_IN the next attempt is 429 with Retry-After, before its
    password is even checked, and whatever password it brings."""
    monkeypatch.setenv("CONCORD_RATE_FAILED_SIGN_IN", "2/minute")

    async def scenario(client: TestClient[Any, Any]) -> None:
        statuses = [(await sign_in(client, "officer.adeyemi", "guess")).status for _ in range(2)]
        held = await sign_in(client, "officer.adeyemi", "demo-officer.adeyemi")
        assert statuses == [401, 401]
        assert held.status == 429
        assert 1 <= int(held.headers["Retry-After"]) <= 60

    run(CONFIG, scenario)
