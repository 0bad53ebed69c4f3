"""The person a trust's HL7 v2 message is about, read by the hub's identifier rules, and the
version and id rules every mapped resource shares.

Pure functions. PID-3 (and PID-2, and MRG-1 of a merge) give an NHS number and the trust's own
number; an `Hl7Error` names the field when neither is usable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.hl7v2.message import (
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    Hl7Error,
    Hl7Message,
    Segment,
    part,
)
from schemas.identifiers import (
    NHS_NUMBER,
    PLACEHOLDER_ONLY,
    PersonIdentifier,
    is_placeholder,
    local_system,
    nhs_number_is_valid,
)

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
NHS_NUMBER_OID = "2.16.840.1.113883.2.1.4.1"
# Identifier types (HL7 table 0203, and those UK trusts use) taken as the trust's own number:
# medical record, hospital and patient internal numbers, and Epic's MEDREC.
LOCAL_ID_TYPES = frozenset({"MR", "MRN", "HOSP", "PI", "MEDREC"})
# NHS Number Status Indicator Codes (PID-32) that say the NHS number is not verified.
NHS_NUMBER_NOT_TRACED = frozenset({"02", "03", "04", "05", "06", "07", "08"})
_NHS_DIGITS = re.compile(r"^[0-9]{10}$")

Identifier = dict[str, str]  # a FHIR Identifier: system and value


def fhir_instant(moment: datetime) -> str:
    """A FHIR instant in UTC, e.g. 2026-12-04T13:00:00Z."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds") + "Z"


def meta(message: Hl7Message) -> dict[str, str]:
    """A mapped resource's meta: HL7 v2 carries no resource version, so the message time
    (MSH-7) orders updates, newest wins."""
    return {"lastUpdated": fhir_instant(message.sent_at)}


def fhir_id(segment: Segment, position: int, what: str) -> str:
    """A field's first component as a FHIR id; Hl7Error naming the field when it cannot be one."""
    value = segment.get(position)
    if not FHIR_ID.match(value):
        raise segment.error(
            position, f"{what} is not usable as an id (1-64 letters, digits, '-' or '.')"
        )
    return value


@dataclass(frozen=True, slots=True)
class _Cx:
    """One identifier (CX) of PID-2, PID-3 or MRG-1: value, assigning authority (name, OID), type."""

    value: str
    authority: str
    authority_oid: str
    kind: str

    @classmethod
    def read(cls, raw: str, segment: Segment) -> _Cx:
        value = part(raw, segment.separators, 1).replace(" ", "")
        return cls(
            value,
            part(raw, segment.separators, 4, 1).upper(),
            part(raw, segment.separators, 4, 2),
            part(raw, segment.separators, 5).upper(),
        )

    @property
    def is_nhs_number(self) -> bool:
        return self.kind == "NH" or self.authority == "NHS" or self.authority_oid == NHS_NUMBER_OID


def _candidates(segment: Segment, position: int) -> list[_Cx]:
    return [cx for raw in segment.repetitions(position) if (cx := _Cx.read(raw, segment)).value]


def _nhs_number_traced(pid: Segment) -> bool:
    """False when PID-32 says the NHS number is not verified against the national service.

    PID-32 carries the NHS Number Status Indicator Code in UK feeds: 01 is present and
    verified; 02-08 (not traced, trace required, failed, in progress ...) are not. Other
    values (HL7 table 0445) say nothing about the NHS number, and no status is taken as
    verified, as most trusts send only traced numbers and no status.
    """
    codes = {part(raw, pid.separators, 1) for raw in pid.repetitions(32)}
    return not codes & NHS_NUMBER_NOT_TRACED


def _local_number(candidates: Sequence[_Cx], sent: int) -> _Cx | None:
    """The trust's own number for the person among the `sent` identifiers of a field, in this
    order (see the README):

    one typed MR, MRN, HOSP, PI or MEDREC; else the first untyped one with an assigning
    authority; else the field's only identifier when it has neither type nor authority.
    """
    typed = [cx for cx in candidates if cx.kind in LOCAL_ID_TYPES]
    if typed:
        return typed[0]
    untyped = [cx for cx in candidates if not cx.kind and not cx.is_nhs_number]
    with_authority = [cx for cx in untyped if cx.authority or cx.authority_oid]
    if with_authority:
        return with_authority[0]
    if sent == 1 and untyped:
        return untyped[0]
    return None


def _nhs_number(pid: Segment, candidates: list[_Cx]) -> tuple[str | None, str]:
    """(a usable NHS number or None, why none was used: "" or the reason)."""
    found = [cx.value for cx in candidates if cx.is_nhs_number]
    # PID-2, the old external id, holds the NHS number in older UK feeds: typed, or bare digits.
    for raw in pid.repetitions(2):
        cx = _Cx.read(raw, pid)
        if cx.is_nhs_number or (not cx.kind and not cx.authority and _NHS_DIGITS.match(cx.value)):
            found.append(cx.value)
    why = ""
    for value in found:
        if is_placeholder(PersonIdentifier(NHS_NUMBER, value)):
            why = why or PLACEHOLDER_ONLY
        elif not nhs_number_is_valid(value):
            why = why or "the NHS number is not ten digits with a valid mod-11 check digit"
        elif not _nhs_number_traced(pid):
            why = "PID-32 says the NHS number is not verified (not traced, or the trace failed)"
        else:
            return value, ""
    return None, why


def pid_identifiers(pid: Segment, partner: str) -> tuple[Identifier | None, Identifier | None]:
    """(NHS number, the partner's local number) of one PID, not both None.

    An NHS number that is a placeholder (feeds send 9999999999 for "not known"), fails its
    mod-11 check, or that PID-32 says is not traced is left out, so the message names its
    person by the local number alone and links nothing.
    """
    candidates = _candidates(pid, 3)
    nhs_value, why_not = _nhs_number(pid, candidates)
    local_cx = _local_number(candidates, len(pid.repetitions(3)))
    nhs = None if nhs_value is None else {"system": NHS_NUMBER, "value": nhs_value}
    local = None if local_cx is None else {"system": local_system(partner), "value": local_cx.value}
    if nhs is None and local is None:
        if why_not:
            raise pid.error(3, why_not, code=TABLE_VALUE_NOT_FOUND)
        if not pid.repetitions(3):
            raise pid.error(
                3,
                "field required: the person's NHS number or local MRN",
                code=REQUIRED_FIELD_MISSING,
            )
        raise pid.error(
            3,
            "no NHS number (assigning authority NHS or type NH) or local number (type MR, MRN, "
            "HOSP, PI or MEDREC, or untyped with an assigning authority) among the identifiers",
            code=TABLE_VALUE_NOT_FOUND,
        )
    return nhs, local


def local_number(segment: Segment, position: int, partner: str) -> Identifier | None:
    """The partner's own number among a field's identifiers (MRG-1, a merged record), by the
    PID-3 rules; None when it names none."""
    found = _local_number(_candidates(segment, position), len(segment.repetitions(position)))
    return None if found is None else {"system": local_system(partner), "value": found.value}


def the_pid(message: Hl7Message) -> Segment:
    """The message's one PID; Hl7Error when it has none or several (one person per message)."""
    people = message.all("PID")
    if not people:
        raise Hl7Error(
            "PID",
            None,
            "segment required: the person the message is about",
            code=SEGMENT_SEQUENCE_ERROR,
        )
    if len(people) > 1:
        raise people[1].error(
            None,
            "more than one person: the hub carries one person per message",
            code=SEGMENT_SEQUENCE_ERROR,
        )
    return people[0]


def person_resources(message: Hl7Message, partner: str) -> tuple[Identifier, list[dict[str, Any]]]:
    """The identifier a resource names its person by, and a linking Patient when PID has two.

    The NHS number names the person when there is one, else the trust's own number.
    """
    nhs, local = pid_identifiers(the_pid(message), partner)
    if nhs is not None and local is not None:
        patient = {"resourceType": "Patient", "meta": meta(message), "identifier": [nhs, local]}
        return nhs, [patient]
    identifier = nhs or local
    assert identifier is not None  # pid_identifiers raises when it has neither
    return identifier, []
