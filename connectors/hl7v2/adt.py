"""A trust's ADT (admission, discharge, transfer) messages as FHIR R4 resources.

Pure functions. Admissions, registrations, pre-admissions, discharges and their cancellations
are an `Encounter`, attendance evidence named by the visit number so that later messages update
the same stay; patient updates are a `Patient`; a merge (A40) or link (A24) is a `Patient` by
which the trust says two of its own records are one person: the identity linker joins them
unless they hold different NHS numbers or CRNs (services/domain/identity.py, `own_records`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from connectors.hl7v2.message import (
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE_ERROR,
    Hl7Error,
    Hl7Message,
    Segment,
)
from connectors.hl7v2.person import (
    FHIR_ID,
    Identifier,
    fhir_id,
    fhir_instant,
    local_number,
    meta,
    person_resources,
    pid_identifiers,
    the_pid,
)

# ADT trigger -> Encounter.status. A01 admit, A04 register (outpatient, ED), A05 pre-admit,
# A03 discharge; A11 cancels an admission or registration, A38 a pre-admission, A13 a discharge
# (the person is back on the ward).
ENCOUNTER_STATUS: Mapping[str, str] = {
    "A01": "in-progress",
    "A04": "in-progress",
    "A05": "planned",
    "A03": "finished",
    "A11": "cancelled",
    "A38": "cancelled",
    "A13": "in-progress",
}
# PV1-2 patient class (HL7 table 0004) -> Encounter.class (v3 ActCode).
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
ENCOUNTER_CLASS: Mapping[str, tuple[str, str]] = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "B": ("IMP", "inpatient encounter"),  # obstetrics
    "O": ("AMB", "ambulatory"),
    "R": ("AMB", "ambulatory"),  # recurring patient
    "P": ("PRENC", "pre-admission"),
}
# Encounter.class is required: without a usable PV1-2 the class is "unknown".
UNKNOWN_CLASS = {"system": NULL_FLAVOR, "code": "UNK", "display": "unknown"}
# Patient information: A08 update, A28 add person, A31 update person.
PATIENT_TRIGGERS = ("A08", "A28", "A31")
# A DTM's digits (before any fraction or offset) -> the span it covers.
DTM_PRECISION: Mapping[int, timedelta] = {
    8: timedelta(days=1),
    10: timedelta(hours=1),
    12: timedelta(minutes=1),
    14: timedelta(seconds=1),
}
_NOT_ID_CHARACTER = re.compile(r"[^A-Za-z0-9\-.]")


# --- encounters ---------------------------------------------------------------------------


def _event_time(message: Hl7Message) -> datetime | None:
    """When the event happened: EVN-6 (event occurred), else EVN-2 (recorded)."""
    evn = message.first("EVN")
    if evn is None:
        return None
    return evn.time(6) or evn.time(2)


def _period(message: Hl7Message, pv1: Segment, status: str) -> dict[str, str]:
    """PV1-44 admit and PV1-45 discharge; the event time where a time is needed and missing.

    A planned stay's times are the expected ones (PV2-8, PV2-9), never the event time: a
    pre-admission is recorded before it happens. A discharge without an admit time is evidence
    of the moment of discharge alone.
    """
    if status == "planned":
        pv2 = message.first("PV2")
        start, end = (pv2.time(8), pv2.time(9)) if pv2 is not None else (None, None)
    elif status == "cancelled":
        start, end = pv1.time(44), None
    elif status == "finished":
        end = pv1.time(45) or _event_time(message)
        start = pv1.time(44) or end
    else:
        start, end = pv1.time(44) or _event_time(message), None
    if start is not None and end is not None and end < start:
        if end + _precision(pv1.get(45)) <= start:
            raise pv1.error(45, "the discharge is earlier than the admission (PV1-44)")
        end = start  # a discharge given to the minute, within the minute of the admission
    period = {}
    if start is not None:
        period["start"] = fhir_instant(start)
    if end is not None:
        period["end"] = fhir_instant(end)
    return period


def _precision(raw: str) -> timedelta:
    """The span a DTM value covers: 201302111000 is any time in that minute."""
    digits = len(raw) - len(raw.lstrip("0123456789"))
    return DTM_PRECISION.get(digits, timedelta(0))


def _encounter_id(
    pv1: Segment, local: Identifier | None, period: Mapping[str, str], status: str
) -> str:
    """PV1-19 visit number, else PV1-50 alternate visit id; else the trust's number and the
    admission time (PV1-44), so that an admission and its discharge without a visit number
    still name one stay. An admission or registration without PV1-44 takes its start, the
    event time; a discharge or cancellation has no such fallback and is refused."""
    for position, what in ((19, "the visit number"), (50, "the alternate visit id")):
        if pv1.get(position):
            return fhir_id(pv1, position, what)
    admitted_at = pv1.time(44)
    if admitted_at is None and status == "in-progress" and "start" in period:
        admitted_at = datetime.fromisoformat(period["start"])
    if local is not None and admitted_at is not None:
        admitted = re.sub(r"\D", "", fhir_instant(admitted_at))[:14]
        made = f"{_NOT_ID_CHARACTER.sub('-', local['value'])}-{admitted}"
        if FHIR_ID.match(made):
            return made
    raise pv1.error(
        19,
        "field required: the visit number (or PV1-50, or the trust's number and PV1-44 admit "
        "time), so that later messages update the same stay",
        code=REQUIRED_FIELD_MISSING,
    )


def _encounter_class(pv1: Segment) -> dict[str, str]:
    found = ENCOUNTER_CLASS.get(pv1.get(2).upper())
    if found is None:
        return UNKNOWN_CLASS
    code, display = found
    return {"system": ACT_CODE, "code": code, "display": display}


def _location(pv1: Segment) -> list[dict[str, Any]]:
    """PV1-3 assigned location: its facility (PL.4), else its point of care (PL.1)."""
    code = pv1.get(3, 4) or pv1.get(3, 1)
    if not code:
        return []
    return [{"location": {"reference": f"Location/{_NOT_ID_CHARACTER.sub('-', code)[:64]}"}}]


def encounter_from(message: Hl7Message, partner: str) -> list[dict[str, Any]]:
    """An admission, registration, pre-admission, discharge or cancellation as an Encounter,
    after a linking Patient when PID names an NHS number and the trust's number."""
    pv1 = message.require("PV1")
    status = ENCOUNTER_STATUS[message.trigger]
    identifier, patients = person_resources(message, partner)
    _nhs, local = pid_identifiers(the_pid(message), partner)
    period = _period(message, pv1, status)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": _encounter_id(pv1, local, period, status),
        "meta": meta(message),
        "status": status,
        "class": _encounter_class(pv1),
        "subject": {"identifier": identifier},
    }
    if period:
        encounter["period"] = period
    if locations := _location(pv1):
        encounter["location"] = locations
    return [*patients, encounter]


# --- identity -----------------------------------------------------------------------------


def patient_from(message: Hl7Message, partner: str) -> list[dict[str, Any]]:
    """A patient information update (A08, A28, A31) as a Patient naming the person's identifiers."""
    nhs, local = pid_identifiers(the_pid(message), partner)
    identifiers = [i for i in (nhs, local) if i is not None]
    return [{"resourceType": "Patient", "meta": meta(message), "identifier": identifiers}]


def _own_record(local: Identifier | None, segment: Segment, what: str) -> Identifier:
    if local is None:
        raise segment.error(
            3,
            f"{what} needs the trust's own number (type MR, MRN, HOSP, PI or MEDREC) in PID-3",
            code=REQUIRED_FIELD_MISSING,
        )
    return local


def _records_joined(
    message: Hl7Message,
    nhs: Identifier | None,
    survivor: Identifier,
    other: Identifier,
    *,
    link_type: str,
    use: str,
) -> list[dict[str, Any]]:
    """The survivor's Patient naming the trust's other record of the person, linked to it."""
    identifiers: list[dict[str, str]] = [i for i in (nhs, survivor) if i is not None]
    identifiers.append({**other, "use": use})
    link = {"other": {"identifier": other}, "type": link_type}
    return [
        {
            "resourceType": "Patient",
            "meta": meta(message),
            "identifier": identifiers,
            "link": [link],
        }
    ]


def merge_from(message: Hl7Message, partner: str) -> list[dict[str, Any]]:
    """A40: the record MRG-1 names is merged into the one PID-3 names, which survives.

    A Patient naming both, the merged one as `use: old` and `link` type `replaces`: the trust's
    word that both are one person. Later messages naming the merged number reach the survivor.
    """
    pid = the_pid(message)
    nhs, local = pid_identifiers(pid, partner)
    survivor = _own_record(local, pid, "a merge")
    merged_records = message.all("MRG")
    if not merged_records:
        raise Hl7Error(
            "MRG", None, "segment required: the record merged", code=SEGMENT_SEQUENCE_ERROR
        )
    mrg = merged_records[0]
    prior = local_number(mrg, 1, partner)
    if prior is None:
        raise mrg.error(
            1,
            "field required: the merged record's own number (type MR, MRN, HOSP, PI or MEDREC)",
            code=REQUIRED_FIELD_MISSING,
        )
    if prior["value"] == survivor["value"]:
        raise mrg.error(1, "names the same record as PID-3: nothing to merge")
    return _records_joined(message, nhs, survivor, prior, link_type="replaces", use="old")


def link_from(message: Hl7Message, partner: str) -> list[dict[str, Any]]:
    """A24: the two PIDs are one person's records; both stay in use.

    A Patient for the first naming the second as `use: secondary` and `link` type `seealso`.
    """
    people = message.all("PID")
    if len(people) != 2:
        raise Hl7Error(
            "PID",
            None,
            "a link needs two PID segments: the record and the one it is linked to",
            code=SEGMENT_SEQUENCE_ERROR,
        )
    first, second = people
    nhs, local = pid_identifiers(first, partner)
    record = _own_record(local, first, "a link")
    other_nhs, other_local = pid_identifiers(second, partner)
    other = _own_record(other_local, second, "a link")
    if other["value"] == record["value"]:
        raise second.error(3, "names the same record as the first PID: nothing to link")
    if other_nhs is not None and nhs is not None and other_nhs != nhs:
        raise second.error(
            3, "the two records hold different NHS numbers: the hub does not join them"
        )
    return _records_joined(
        message, nhs or other_nhs, record, other, link_type="seealso", use="secondary"
    )


Mapper = Callable[[Hl7Message, str], list[dict[str, Any]]]
MAPPERS: Mapping[tuple[str, str], Mapper] = {
    **{("ADT", trigger): encounter_from for trigger in ENCOUNTER_STATUS},
    **{("ADT", trigger): patient_from for trigger in PATIENT_TRIGGERS},
    ("ADT", "A40"): merge_from,
    ("ADT", "A24"): link_from,
}
