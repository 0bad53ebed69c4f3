"""Unit tests for signing in through OpenID Connect, against a small identity provider run in the
test: authorization code with PKCE, the ID token checked, claims mapped to partner and role."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from joserfc import jwt
from joserfc.jwk import RSAKey

from connectors.pages.app import build_app
from connectors.pages.oidc import OidcConfig, Provider
from tests.unit.test_pages_sessions import CONFIG, PARTNERS, USERS

KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


class FakeProvider:
    """Discovery, authorize, token and keys, as an identity provider answers them."""

    def __init__(self, claims: dict[str, Any], *, sign_with: RSAKey = KEY) -> None:
        self.claims, self.sign_with = claims, sign_with
        self.issued: dict[str, dict[str, str]] = {}
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/jwks", self.jwks)
        return app

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        query = request.query
        assert query["code_challenge_method"] == "S256"
        code = f"code-{len(self.issued)}"
        self.issued[code] = {"challenge": query["code_challenge"], "nonce": query["nonce"]}
        back = f"{query['redirect_uri']}?code={code}&state={query['state']}"
        raise web.HTTPFound(back)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        issued = self.issued.pop(str(form["code"]), None)
        verifier = str(form.get("code_verifier", "")).encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if issued is None or challenge.decode() != issued["challenge"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": "concord-pages",
            "iat": now,
            "exp": now + 300,
            "nonce": issued["nonce"],
            **self.claims,
        }
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.sign_with)
        return web.json_response({"id_token": id_token, "token_type": "Bearer"})

    async def jwks(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [KEY.as_dict(private=False)]})


OFFICER_CLAIMS = {
    "sub": "a1b2c3",
    "preferred_username": "T.Adeyemi",
    "name": "Tola Adeyemi",
    "concord_partner": "probation-london",
    "concord_role": "probation-officer",
}


def run_with(
    provider: FakeProvider, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]
) -> None:
    async def main() -> None:
        async with TestServer(provider.app()) as idp:
            provider.url = str(idp.make_url("")).rstrip("/")
            pages_server = TestServer(web.Application())  # a port for the redirect URL
            await pages_server.start_server()
            port = pages_server.port
            await pages_server.close()
            config = OidcConfig(
                issuer=provider.url,
                client_id="concord-pages",
                client_secret="s3cret",
                redirect_url=f"http://127.0.0.1:{port}/sign-in/oidc/callback",
            )
            app = build_app(
                CONFIG, USERS, directory=PARTNERS, oidc=Provider(config), live_updates=False
            )
            async with TestClient(TestServer(app, port=port)) as client:
                await scenario(client)

    asyncio.run(main())


async def through_provider(client: TestClient[Any, Any], tamper: str | None = None) -> Any:
    """Start sign-in, follow the provider's redirect back (optionally with a changed state)."""
    begin = await client.get("/sign-in/oidc", allow_redirects=False)
    assert begin.status == 303
    at_provider = await client.session.get(begin.headers["Location"], allow_redirects=False)
    back = urlparse(at_provider.headers["Location"])
    query = parse_qs(back.query)
    state = tamper or query["state"][0]
    return await client.get(
        f"{back.path}?code={query['code'][0]}&state={state}", allow_redirects=False
    )


def test_a_person_signs_in_through_their_organisations_provider() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        signed_in = await through_provider(client)
        assert (signed_in.status, signed_in.headers["Location"]) == (303, "/")
        page = await (await client.get("/people")).text()
        assert "Tola Adeyemi, Probation officer (probation-london)" in page

    run_with(FakeProvider(OFFICER_CLAIMS), scenario)


def test_a_changed_state_is_refused() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        refused = await through_provider(client, tamper="forged")
        assert refused.status == 401
        assert (await client.get("/people", allow_redirects=False)).status == 303

    run_with(FakeProvider(OFFICER_CLAIMS), scenario)


def test_an_id_token_not_signed_by_the_provider_is_refused() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        assert (await through_provider(client)).status == 401

    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    run_with(FakeProvider(OFFICER_CLAIMS, sign_with=stranger), scenario)


def test_a_role_that_does_not_fit_the_partner_is_refused() -> None:
    async def scenario(client: TestClient[Any, Any]) -> None:
        assert (await through_provider(client)).status == 401

    claims = {**OFFICER_CLAIMS, "concord_role": "clinician"}
    run_with(FakeProvider(claims), scenario)
