"""Identifier systems the hub knows people by, and the checks each value must pass.

A person is named by (system, value) pairs, the FHIR way. The NHS number's
mod-11 check digit is verified here, once, for every path into the hub.
"""

from __future__ import annotations

import re
from typing import NamedTuple

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
PROBATION_CRN = "urn:concord:id:probation-crn"
LOCAL_PREFIX = "urn:concord:id:local:"
HUB_PERSON = "urn:concord:id:person"

PARTNER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$|^[a-z]+-[A-Z0-9][A-Za-z0-9]{1,15}$")
_CRN = re.compile(r"^[A-Z][0-9]{6}$")
_LOCAL_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")


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
    # str.isdigit() is also true of other scripts' digits and of superscripts ("²").
    if len(value) != 10 or not value.isascii() or not value.isdigit():
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
        if not _CRN.match(value):
            raise IdentifierError("probation CRN must be a letter followed by six digits")
        return PersonIdentifier(system, value)
    if system == HUB_PERSON:
        if not value:
            raise IdentifierError("hub person id is empty")
        return PersonIdentifier(system, value)
    if system.startswith(LOCAL_PREFIX):
        partner = system.removeprefix(LOCAL_PREFIX)
        if not PARTNER_ID.match(partner):
            raise IdentifierError(f"local identifier system names no valid partner id: {system}")
        if not _LOCAL_VALUE.match(value):
            raise IdentifierError("local identifier value must be 1-64 letters, digits or ._/-")
        return PersonIdentifier(system, value)
    raise IdentifierError(f"unknown identifier system {system!r}")


def parse_token(token: str) -> PersonIdentifier:
    """`SYSTEM|VALUE` as an acceptable person identifier, or IdentifierError saying why."""
    system, sep, value = token.rpartition("|")
    if not sep or not system:
        raise IdentifierError("person must be given as SYSTEM|VALUE")
    return check_identifier(system, value)
