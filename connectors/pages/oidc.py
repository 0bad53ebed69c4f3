"""Sign-in through OpenID Connect (HMPPS and NHS staff identity): the authorization code flow with
PKCE, configured by the issuer's URL, a client id and a reference to the client secret.

Authlib makes the PKCE challenge and joserfc checks the ID token (signature against the issuer's
published keys, issuer, audience, expiry, nonce); the HTTP calls are aiohttp's. The provider's
claims name the person's partner and role (claim names configurable); a role that does not fit
its partner's kind is refused, as in the local user directory.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from connectors.pages.users import HUB, User
from services.domain.partners import PartnerDirectory
from services.domain.staff import ROLE_KINDS, STAFF_ROLES, may_act_for
from services.runtime import config

SESSION_KEY = "oidc_flow"


class OidcRefused(Exception):  # noqa: N818 -- reads as what the person is told
    """A sign-in through the identity provider that did not complete, with the reason to log."""


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """The identity provider and this client (README.md's settings)."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_url: str
    partner_claim: str = "concord_partner"
    role_claim: str = "concord_role"
    scope: str = "openid profile"


def oidc_config() -> OidcConfig | None:
    """The provider from CONCORD_OIDC_*; None when no issuer is set (local sign-in only)."""
    current = config()
    issuer, secret_file = current.oidc_issuer, current.oidc_client_secret_file
    if not issuer:
        return None
    missing = [
        name
        for name, value in (
            ("CONCORD_OIDC_CLIENT_ID", current.oidc_client_id),
            ("CONCORD_OIDC_REDIRECT_URL", current.oidc_redirect_url),
            ("CONCORD_OIDC_CLIENT_SECRET_FILE", secret_file),
        )
        if not value
    ]
    if missing or secret_file is None:
        raise ValueError(f"with CONCORD_OIDC_ISSUER set, also set {', '.join(missing)}")
    return OidcConfig(
        issuer=issuer.rstrip("/"),
        client_id=current.oidc_client_id,
        client_secret=secret_file.read_text(encoding="utf-8").strip(),
        redirect_url=current.oidc_redirect_url,
        partner_claim=current.oidc_partner_claim,
        role_claim=current.oidc_role_claim,
    )


class Provider:
    """One identity provider: its discovery document and keys, fetched when first needed."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._metadata: dict[str, Any] | None = None

    async def metadata(self, client: aiohttp.ClientSession) -> dict[str, Any]:
        if self._metadata is None:
            url = f"{self.config.issuer}/.well-known/openid-configuration"
            async with client.get(url) as response:
                response.raise_for_status()
                found: dict[str, Any] = await response.json(content_type=None)
            if found.get("issuer", "").rstrip("/") != self.config.issuer:
                raise OidcRefused("the discovery document names another issuer")
            self._metadata = found
        return self._metadata

    async def keys(self, client: aiohttp.ClientSession) -> KeySet:
        # Fetched each sign-in, so a provider's key rotation needs no restart.
        async with client.get((await self.metadata(client))["jwks_uri"]) as response:
            response.raise_for_status()
            return KeySet.import_key_set(await response.json(content_type=None))

    async def begin(self, session: Any, client: aiohttp.ClientSession) -> str:
        """The provider's authorization URL; the flow's state, nonce and PKCE verifier are kept
        in the (encrypted) session until the provider sends the person back."""
        verifier, state, nonce = (secrets.token_urlsafe(48) for _ in range(3))
        session[SESSION_KEY] = {"state": state, "nonce": nonce, "verifier": verifier}
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_url,
            "scope": self.config.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        endpoint = (await self.metadata(client))["authorization_endpoint"]
        return f"{endpoint}?{urlencode(query)}"

    async def complete(
        self, session: Any, query: Any, client: aiohttp.ClientSession
    ) -> dict[str, Any]:
        """The ID token's claims, once the code is exchanged (with the PKCE verifier) and the
        token checked; OidcRefused says why not."""
        flow = session.pop(SESSION_KEY, None)
        if not flow:
            raise OidcRefused("no sign-in was started in this session")
        if "error" in query:
            raise OidcRefused(f"the provider refused: {query['error']}")
        if not hmac.compare_digest(str(query.get("state", "")), flow["state"]):
            raise OidcRefused("the state does not match the one sent")
        metadata = await self.metadata(client)
        form = {
            "grant_type": "authorization_code",
            "code": str(query.get("code", "")),
            "redirect_uri": self.config.redirect_url,
            "code_verifier": flow["verifier"],
        }
        # client_secret_basic: the client authenticates to the token endpoint with HTTP Basic
        basic = aiohttp.encode_basic_auth(self.config.client_id, self.config.client_secret)
        headers = {"Authorization": basic}
        async with client.post(metadata["token_endpoint"], data=form, headers=headers) as response:
            if response.status != 200:
                raise OidcRefused(f"the token endpoint answered {response.status}")
            tokens = await response.json(content_type=None)
        try:
            token = jwt.decode(str(tokens.get("id_token", "")), await self.keys(client))
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                nonce={"essential": True, "value": flow["nonce"]},
                sub={"essential": True},
                exp={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise OidcRefused(f"the ID token is not valid: {type(exc).__name__}") from None
        return dict(token.claims)


def user_from_claims(
    claims: dict[str, Any], config: OidcConfig, partners: PartnerDirectory
) -> User:
    """The person an ID token names, with the partner and role its claims give; OidcRefused when
    they are missing or the role does not fit the partner."""
    partner_id = str(claims.get(config.partner_claim, ""))
    role = claims.get(config.role_claim)
    if role not in STAFF_ROLES:
        raise OidcRefused("the ID token names no role the hub knows")
    if ROLE_KINDS[role]:
        partner = partners.get(partner_id)
        if partner is None or not may_act_for(role, partner.kind):
            raise OidcRefused("the ID token's role does not fit its partner")
    elif partner_id != HUB:
        raise OidcRefused("the ID token's role works for the hub")
    user_id = str(claims.get("preferred_username") or claims["sub"]).lower()
    name = str(claims.get("name") or user_id)
    return User(id=user_id, name=name, partner=partner_id, role=role, password_hash="")


def as_session(user: User) -> dict[str, Any]:
    """What the session keeps of a person signed in by the provider (never a token)."""
    return {
        "id": user.id,
        "name": user.name,
        "partner": user.partner,
        "role": user.role,
        "at": time.time(),
    }
