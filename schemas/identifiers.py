"""Identifier systems the hub knows people by, and the checks each value must pass.

A person is named by (system, value) pairs, the FHIR way. The NHS number's
mod-11 check digit is verified here, once, for every path into the hub, and so is the
rule that a placeholder identifier (an NHS number of one repeated digit, or one listed
in CONCORD_PLACEHOLDER_IDENTIFIERS) never links or finds a person.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import cache
from typing import NamedTuple

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
PROBATION_CRN = "urn:concord:id:probation-crn"
LOCAL_PREFIX = "urn:concord:id:local:"
HUB_PERSON = "urn:concord:id:person"

PARTNER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$|^[a-z]+-[A-Z0-9][A-Za-z0-9]{1,15}$")
# ASCII only, matched whole: str.isdigit() and int() also take Arabic-Indic digits, so one
# NHS number could be written two ways and split one person in two.
_NHS_DIGITS = re.compile(r"[0-9]{10}")
_CRN = re.compile(r"[A-Z][0-9]{6}")
_LOCAL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}")

PLACEHOLDER_VARIABLE = "CONCORD_PLACEHOLDER_IDENTIFIERS"
PLACEHOLDER_ONLY = (
    "the person is named only by a placeholder or test identifier (such as an NHS number of "
    "one repeated digit), which never identifies anyone: name them by a real identifier"
)


class PersonIdentifier(NamedTuple):
    """One way an agency knows a person: an identifier system and its value."""

    system: str
    value: str

    def token(self) -> str:
        """The FHIR search-token form `system|value`."""
        return f"{self.system}|{self.value}"


class IdentifierError(ValueError):
    """An identifier the hub cannot accept, with a sentence saying why."""


def nhs_number_is_valid(value: str) -> bool:
    """True when `value` is ten ASCII digits whose tenth is the mod-11 check digit."""
    if not _NHS_DIGITS.fullmatch(value):
        return False
    total = sum(
        int(digit) * weight for digit, weight in zip(value[:9], range(10, 1, -1), strict=True)
    )
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(value[9])


def local_system(partner_id: str) -> str:
    """The identifier system for ids local to one partner (MRNs, client ids)."""
    return f"{LOCAL_PREFIX}{partner_id}"


def is_person_system(system: str) -> bool:
    """True when `system` is one the hub accepts for naming a person."""
    return system in (NHS_NUMBER, PROBATION_CRN, HUB_PERSON) or system.startswith(LOCAL_PREFIX)


def check_identifier(system: str, value: str) -> PersonIdentifier:
    """Return the identifier when it is acceptable, else raise IdentifierError saying why."""
    value = value.strip()
    if system == NHS_NUMBER:
        compact = value.replace(" ", "")
        if not nhs_number_is_valid(compact):
            raise IdentifierError("NHS number is not ten digits with a valid mod-11 check digit")
        return PersonIdentifier(system, compact)
    if system == PROBATION_CRN:
        if not _CRN.fullmatch(value):
            raise IdentifierError("probation CRN must be a letter followed by six digits")
        return PersonIdentifier(system, value)
    if system == HUB_PERSON:
        if not value:
            raise IdentifierError("hub person id is empty")
        return PersonIdentifier(system, value)
    if system.startswith(LOCAL_PREFIX):
        partner = system.removeprefix(LOCAL_PREFIX)
        if not PARTNER_ID.fullmatch(partner):
            raise IdentifierError(f"local identifier system names no valid partner id: {system}")
        if not _LOCAL_VALUE.fullmatch(value):
            raise IdentifierError("local identifier value must be 1-64 letters, digits or ._/-")
        return PersonIdentifier(system, value)
    raise IdentifierError(f"unknown identifier system {system!r}")


def _split(token: str) -> tuple[str, str]:
    system, sep, value = token.rpartition("|")
    if not sep or not system:
        raise IdentifierError("person must be given as SYSTEM|VALUE")
    return system, value


def parse_token(token: str) -> PersonIdentifier:
    """`SYSTEM|VALUE` as an identifier that can find a person, or IdentifierError saying why."""
    identifier = check_identifier(*_split(token))
    if is_placeholder(identifier):
        raise IdentifierError(PLACEHOLDER_ONLY)
    return identifier


def is_placeholder(identifier: PersonIdentifier) -> bool:
    """True for a placeholder or test-pattern identifier: it never links or finds a person.

    Systems fill an unknown NHS number with one digit repeated, and every such number
    passes the mod-11 check (the check digit of ten d's is d).
    """
    if identifier.system == NHS_NUMBER and len(set(identifier.value)) == 1:
        return True
    return identifier.token() in configured_placeholders()


def configured_placeholders() -> frozenset[str]:
    """The placeholder tokens listed in CONCORD_PLACEHOLDER_IDENTIFIERS (comma-separated)."""
    return _placeholders(os.environ.get(PLACEHOLDER_VARIABLE, ""))


@cache
def _placeholders(setting: str) -> frozenset[str]:
    tokens = set()
    for number, entry in enumerate(setting.split(","), start=1):
        if not entry.strip():
            continue
        try:
            tokens.add(check_identifier(*_split(entry.strip())).token())
        except IdentifierError as exc:
            raise IdentifierError(f"{PLACEHOLDER_VARIABLE}, entry {number}: {exc}") from None
    return frozenset(tokens)


def without_placeholders(identifiers: Iterable[PersonIdentifier]) -> tuple[PersonIdentifier, ...]:
    """The identifiers that may link or find a person; IdentifierError when only placeholders are."""
    given = tuple(identifiers)
    kept = tuple(i for i in given if not is_placeholder(i))
    if given and not kept:
        raise IdentifierError(PLACEHOLDER_ONLY)
    return kept
