"""The probation case-management feed: JSON events mapped to FHIR Appointments, ServiceRequests
and identity-link Patients, as Records that the publish path validates and sends. HMPPS domain
events in the same file are read by connectors/feeds/hmpps.py.

The format is specified in connectors/feeds/README.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from connectors.feeds.fields import (
    FieldError,
    FieldReader,
    date_time,
    fhir_id,
    fhir_instant,
    linkable,
    location_participant,
    meta,
    person,
    person_participant,
    version_id,
)
from connectors.feeds.hmpps import Fetch, is_hmpps_event, map_hmpps_event
from connectors.feeds.probation_api import fetch_detail
from connectors.fhir_input import Record, json_values, read_partner_file
from schemas.fhir import Problem
from schemas.identifiers import NHS_NUMBER, PARTNER_ID, PROBATION_CRN
from schemas.referrals import CATEGORIES, URGENCIES
from schemas.vocabulary import AREA_SYSTEM, PARTNER_SYSTEM
from schemas.vocabulary import REFERRAL_CATEGORY_SYSTEM as CATEGORY_SYSTEM

OUTCOMES: Mapping[str, str] = {
    "attended": "fulfilled",
    "failed-to-attend": "noshow",
    "acceptable-absence": "cancelled",
}

_COMMON = frozenset({"event_type", "crn", "nhs_number", "version", "updated_at"})
# Who the person is, as probation holds them, and who refers them: for the service a referral
# is sent to, so it can register the person and call the officer.
_PERSON = frozenset(
    {"given_name", "family_name", "birth_date", "address_line_1", "address_line_2", "town",
     "postcode"}
)  # fmt: skip
_REFERRER = frozenset({"officer_name", "officer_team", "officer_phone", "officer_email"})
_TIMED = frozenset({"start", "end", "location", "referral_id"})
# The fields each event type may carry; anything else is reported, so a typo is not lost.
FIELDS: Mapping[str, frozenset[str]] = {
    "appointment.created": _COMMON | _TIMED | {"appointment_id"},
    "appointment.rescheduled": _COMMON | _TIMED | {"appointment_id"},
    "appointment.outcome": _COMMON | _TIMED | {"appointment_id", "outcome"},
    "contact.created": _COMMON | _TIMED | {"contact_id", "outcome"},
    "referral.created": _COMMON
    | {"referral_id", "category", "urgency", "reason", "area", "preferred_organisation"}
    | _PERSON
    | _REFERRER,
}
# Contacts and appointments are numbered separately in case management; the prefix keeps
# a contact from overwriting the appointment that happens to share its number.
CONTACT_ID_PREFIX = "contact-"

# What a feed file may be, said when it is none of them.
SHAPES = "expected one JSON event, a JSON array of events, or NDJSON: one event a line"

_LA_CODE = re.compile(r"^[EWSN][0-9]{8}$")
_FULL_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{5,30}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)(?: ?[0-9][A-Z]{2})?$")


def records_from_probation_file(path: Path, fetch: Fetch = fetch_detail) -> Iterator[Record]:
    """Records from a probation feed file: one JSON event, a JSON array of events, or NDJSON.

    `fetch` gets an HMPPS event's detail (by default from the configured probation API).
    """
    yield from read_partner_file(
        path, lambda text, origin: records_from_probation_text(text, origin, fetch)
    )


def records_from_probation_text(
    text: str, origin: str, fetch: Fetch = fetch_detail
) -> Iterator[Record]:
    """Records from feed text; `origin` (a file name) names each event as origin, origin:line
    (NDJSON) or origin#[i] (an array)."""
    links: set[tuple[str, str]] = set()
    for item in json_values(text, origin, lines=None, expected=SHAPES):
        if isinstance(item, Record):
            yield item
        elif isinstance(item.value, list):
            for index, event in enumerate(item.value):
                raw = orjson.dumps(event).decode()
                yield from _records(f"{item.origin}#[{index}]", raw, event, links, fetch)
        else:
            yield from _records(item.origin, item.raw, item.value, links, fetch)


def _records(
    where: str, raw: str, event: Any, links: set[tuple[str, str]], fetch: Fetch
) -> Iterator[Record]:
    if is_hmpps_event(event):
        mapped = map_hmpps_event(event, fetch)
        if mapped.ignored is not None:
            yield Record(where, raw, ignored_because=mapped.ignored)
            return
        resources, problems = mapped.resources, mapped.problems
    else:
        resources, problems = map_event(event)
    if problems:
        yield Record(where, raw, problems=tuple(problems))
        return
    for resource in resources:
        if resource["resourceType"] == "Patient":
            crn, nhs = (identifier["value"] for identifier in resource["identifier"])
            if (crn, nhs) in links:
                continue  # already linked by this file; a resend would only be a duplicate
            links.add((crn, nhs))
        yield Record(where, raw, resource=resource)


def map_event(event: Any) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The FHIR resources for one feed event (a link Patient first), or every problem with it."""
    if not isinstance(event, dict):
        return [], [Problem("(event)", "expected a JSON object")]
    kind = event.get("event_type")
    if not isinstance(kind, str) or kind not in FIELDS:
        if kind is None:
            return [], [Problem("event_type", "field required")]
        return [], [Problem("event_type", f"{kind!r} is not one of: {', '.join(FIELDS)}")]
    fields = FieldReader(event)
    for name in event:
        if name not in FIELDS[kind]:
            fields.problems.append(Problem(name, f"not a field of {kind} events"))
    crn = fields.mapped("crn", lambda v: person(PROBATION_CRN, v), required=True)
    nhs = fields.mapped("nhs_number", lambda v: person(NHS_NUMBER, v))
    version = fields.mapped("version", version_id, number=True)
    updated = fields.mapped("updated_at", date_time)
    stamp = meta(version, fhir_instant(updated) if updated else None)
    if kind == "referral.created":
        resource = _service_request(fields, crn, nhs, stamp)
    else:
        resource = _appointment(kind, fields, crn, stamp)
    if resource is None or crn is None or fields.problems:
        return [], fields.problems
    link = [_patient(crn, nhs)] if linkable(nhs) else []
    return [*link, resource], []


def _patient(crn: dict[str, str], nhs: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": f"case-{crn['value']}", "identifier": [crn, nhs]}


def _appointment(
    kind: str, fields: FieldReader, crn: dict[str, str] | None, stamp: dict[str, str]
) -> dict[str, Any] | None:
    if kind == "contact.created":
        appointment_id = fields.mapped(
            "contact_id", lambda v: fhir_id(v, prefix=CONTACT_ID_PREFIX), required=True
        )
    else:
        appointment_id = fields.mapped("appointment_id", fhir_id, required=True)
    start = fields.mapped("start", date_time, required=True)
    end = fields.mapped("end", date_time, required=True)
    if start is not None and end is not None and end <= start:
        fields.problems.append(Problem("end", "must be later than start"))
    outcome = fields.mapped("outcome", _outcome, required=kind == "appointment.outcome")
    referral = fields.mapped("referral_id", fhir_id)
    location = fields.text("location")
    if appointment_id is None or start is None or end is None or crn is None:
        return None
    appointment: dict[str, Any] = {"resourceType": "Appointment", "id": appointment_id}
    if stamp:
        appointment["meta"] = stamp
    appointment["status"] = OUTCOMES[outcome] if outcome else "booked"
    if outcome == "acceptable-absence":
        appointment["cancelationReason"] = {"text": "acceptable absence"}
    if referral:
        appointment["basedOn"] = [{"reference": f"ServiceRequest/{referral}"}]
    appointment["start"] = fhir_instant(start)
    appointment["end"] = fhir_instant(end)
    appointment["participant"] = [person_participant(crn)]
    if location:
        appointment["participant"].append(location_participant(location))
    return appointment


def _service_request(
    fields: FieldReader,
    crn: dict[str, str] | None,
    nhs: dict[str, str] | None,
    stamp: dict[str, str],
) -> dict[str, Any] | None:
    referral_id = fields.mapped("referral_id", fhir_id, required=True)
    category = fields.mapped("category", lambda v: _one_of(v, CATEGORIES), required=True)
    urgency = fields.mapped("urgency", lambda v: _one_of(v, URGENCIES), required=True)
    area = fields.mapped("area", _area, required=True)
    preferred = fields.mapped("preferred_organisation", _partner)
    reason = fields.text("reason")
    patient = _person_details(fields, [i for i in (crn, nhs) if linkable(i)])
    requester = _referrer(fields)
    if referral_id is None or category is None or urgency is None or area is None or crn is None:
        return None
    request: dict[str, Any] = {"resourceType": "ServiceRequest", "id": referral_id}
    if stamp:
        request["meta"] = stamp
    request |= {
        "status": "active",
        "intent": "order",
        "priority": urgency,
        "category": [
            {
                "coding": [
                    {"system": CATEGORY_SYSTEM, "code": category, "display": CATEGORIES[category]}
                ]
            }
        ],
        "subject": {"identifier": crn},
    }
    if "lastUpdated" in stamp:
        request["authoredOn"] = stamp["lastUpdated"]
    if reason:
        request["reasonCode"] = [{"text": reason}]
    request["locationCode"] = [{"coding": [{"system": AREA_SYSTEM, "code": area}]}]
    if preferred:
        request["performer"] = [{"identifier": {"system": PARTNER_SYSTEM, "value": preferred}}]
    return _with_parties(request, patient, requester)


def _with_parties(
    request: dict[str, Any], patient: dict[str, Any] | None, requester: list[dict[str, Any]]
) -> dict[str, Any]:
    """The ServiceRequest with the person and the referrer as contained resources: `subject`
    then names the person by the contained Patient, `requester` the officer's role."""
    contained = ([patient] if patient else []) + requester
    if not contained:
        return request
    placed = {"resourceType": request.pop("resourceType"), "id": request.pop("id")}
    placed["contained"] = contained
    placed |= request
    if patient:
        placed["subject"] = {"reference": "#patient"}
    if requester:
        placed["requester"] = {"reference": "#requester"}
    return placed


def _person_details(
    fields: FieldReader, identifiers: list[dict[str, str]]
) -> dict[str, Any] | None:
    """The person as probation holds them (a contained Patient named by `identifiers`, the CRN
    and a linkable NHS number), when any detail is given."""
    given, family = fields.text("given_name"), fields.text("family_name")
    birth_date = fields.mapped("birth_date", _birth_date)
    lines = [
        line for line in (fields.text("address_line_1"), fields.text("address_line_2")) if line
    ]
    town = fields.text("town")
    postcode = fields.mapped("postcode", _postcode)
    if not any((given, family, birth_date, lines, town, postcode)):
        return None
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": identifiers,
    }
    if given or family:
        name: dict[str, Any] = {"use": "official"}
        if family:
            name["family"] = family
        if given:
            name["given"] = given.split()
        patient["name"] = [name]
    if birth_date:
        patient["birthDate"] = birth_date
    if lines or town or postcode:
        address: dict[str, Any] = {"use": "home"}
        if lines:
            address["line"] = lines
        if town:
            address["city"] = town
        if postcode:
            address["postalCode"] = postcode
        patient["address"] = [address]
    return patient


def _referrer(fields: FieldReader) -> list[dict[str, Any]]:
    """The referring officer: a PractitionerRole (team, work phone, secure email) and, when
    named, its Practitioner; nothing when no officer field is given."""
    name, team = fields.text("officer_name"), fields.text("officer_team")
    phone = fields.mapped("officer_phone", _phone)
    email = fields.mapped("officer_email", _email)
    if not any((name, team, phone, email)):
        return []
    role: dict[str, Any] = {"resourceType": "PractitionerRole", "id": "requester"}
    if name:
        role["practitioner"] = {"reference": "#officer", "display": name}
    if team:
        role["organization"] = {"display": team}
    telecom = [{"system": "phone", "value": phone, "use": "work"}] if phone else []
    telecom += [{"system": "email", "value": email, "use": "work"}] if email else []
    if telecom:
        role["telecom"] = telecom
    if not name:
        return [role]
    return [role, {"resourceType": "Practitioner", "id": "officer", "name": [{"text": name}]}]


def _birth_date(value: str) -> str:
    """A date of birth as FHIR `date` (YYYY-MM-DD). The value is never repeated: it identifies."""
    try:
        born = date.fromisoformat(value)
    except ValueError:
        raise FieldError("must be a date written YYYY-MM-DD") from None
    if len(value) != 10 or born.year < 1900:
        raise FieldError("must be a date written YYYY-MM-DD, from 1900 on")
    return born.isoformat()


def _postcode(value: str) -> str:
    """A full UK postcode, spaced as Royal Mail writes it (the value is never repeated)."""
    compact = "".join(value.upper().split())
    spaced = f"{compact[:-3]} {compact[-3:]}"
    if not _FULL_POSTCODE.match(spaced):
        raise FieldError("must be a full UK postcode (e.g. SE11 5AB)")
    return spaced


def _phone(value: str) -> str:
    if not _PHONE.match(value):
        raise FieldError("must be a telephone number: digits, spaces, brackets, '-', a leading '+'")
    return value


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise FieldError("must be an email address")
    return value


def _one_of(value: str, allowed: Mapping[str, str] | tuple[str, ...]) -> str:
    if value not in allowed:
        raise FieldError(f"{value!r} is not one of: {', '.join(allowed)}")
    return value


def _outcome(value: str) -> str:
    return _one_of(value, tuple(OUTCOMES))


def _area(value: str) -> str:
    """A local authority code, or the postcode district (a full postcode is cut to its district)."""
    compact = " ".join(value.upper().split())
    if _LA_CODE.match(compact):
        return compact
    district = _POSTCODE.match(compact)
    if district:
        # Only the district is kept: it is all routing needs, and a full postcode can identify a home.
        return district.group(1)
    # The value is not repeated: it may be part of an address.
    raise FieldError(
        "must be a local authority code (e.g. E09000022) or a postcode district (e.g. SE11)"
    )


def _partner(value: str) -> str:
    if not PARTNER_ID.match(value):
        raise FieldError(f"{value!r} is not a partner id (e.g. mht-rv5)")
    return value
