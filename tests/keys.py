"""Person ids as the demo hub makes them (tests run with the demo's public person key)."""

from __future__ import annotations

from deploy.demo import DEMO_SETTINGS
from schemas import keys
from schemas.identifiers import PersonIdentifier

KEY = keys.PersonKey.from_secret(DEMO_SETTINGS["CONCORD_PERSON_KEY"])


def person_id_for(identifier: PersonIdentifier) -> str:
    return keys.person_id_for(identifier, KEY)


def person_id_for_token(token: str) -> str:
    return keys.person_id_for_token(token, KEY)


def token_home(token: str) -> int:
    return keys.token_home(token, KEY)


def home_partition(message_key: bytes) -> int | None:
    return keys.home_partition(message_key, KEY)
