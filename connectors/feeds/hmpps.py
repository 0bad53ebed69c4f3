"""HMPPS domain events (plain, or inside an SNS notification as SQS delivers them) mapped to the
FHIR resources the hub routes: session outcomes to Appointments, arrivals, departures and
check-ins to Encounters, referral endings to the referral's Task. Event types the hub has no
use for are passed by.

Pure but for `fetch`, the one way to the probation API, given by the caller. The formats are
specified in connectors/feeds/README.md ("HMPPS domain events").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson

from connectors.feeds.fields import (
    FieldError,
    date_time,
    fhir_id,
    fhir_instant,
    london_to_utc,
    person,
    person_participant,
)
from connectors.feeds.probation_api import DetailUnavailable
from schemas.fhir import Problem
from schemas.identifiers import PROBATION_CRN

# The detail of an event, fetched by its detailUrl; DetailUnavailable when it cannot be had.
Fetch = Callable[[str], Mapping[str, Any]]

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# Encounter.class: a stay in approved premises or temporary accommodation happens outside any
# healthcare setting ("field"); a remote check-in is virtual.
FIELD = {"system": ACT_CODE, "code": "FLD", "display": "field"}
VIRTUAL = {"system": ACT_CODE, "code": "VR", "display": "virtual"}

# Refer and Monitor's attendance answer -> Appointment.status. Late is still attended; whether
# the person complied is for the officer, not the calendar, which records attendance.
ATTENDANCE = {"yes": "fulfilled", "late": "fulfilled", "no": "noshow"}
# Refer and Monitor's deliveryState of an ended referral -> the referral's Task status, as the
# referrer may set it (the hub's lifecycle lets only the receiving service complete one).
ENDINGS = {
    "CANCELLED": ("cancelled", "withdrawn"),
    "PREMATURELY_ENDED": ("cancelled", "ended early"),
}

# Event types seen on the HMPPS topics that the hub passes by, with why.
PASSED_BY: Mapping[str, str] = {
    "approved-premises.application.submitted": "an application for a placement is HMPPS's own workflow",
    "approved-premises.booking.made": "a placement booking is no appointment or referral",
    "approved-premises.booking.changed": "a placement booking is no appointment or referral",
    "approved-premises.booking.cancelled": "a placement booking is no appointment or referral",
    "accommodation.cas3.booking.confirmed": "a temporary accommodation booking is no appointment",
    "accommodation.cas3.referral.submitted": "CAS3 routes its own referrals",
    "intervention.referral.sent": "Refer and Monitor routes its own referrals",
    "probation.appointment.sms-sent-to-pop": "a reminder text changes no appointment",
    "probation-case.engagement.created": "a new case has nothing to reconcile yet",
}


@dataclass(frozen=True, slots=True)
class Mapped:
    """What an HMPPS event gives the hub: resources, the problems that stop it, or why it is
    passed by."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: str | None = None


def is_hmpps_event(event: Any) -> bool:
    """True for an HMPPS domain event or an SNS notification (the hub's own feed has event_type)."""
    return isinstance(event, dict) and ("eventType" in event or "Type" in event)


def unwrap(event: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The domain event itself: an SNS notification's Message, or the event as it came."""
    if "Type" not in event:
        return dict(event), []
    if event["Type"] != "Notification":
        return None, [Problem("Type", f"{event['Type']!r} is not an SNS Notification")]
    inner, problem = _message(event.get("Message"))
    attributes = event.get("MessageAttributes")
    named = attributes.get("eventType") if isinstance(attributes, dict) else None
    value = named.get("Value") if isinstance(named, dict) else None
    if inner is not None and value is not None and value != inner.get("eventType"):
        problem = Problem(
            "MessageAttributes.eventType", "differs from the eventType of the Message"
        )
    return (None, [problem]) if problem else (inner, [])


def _message(message: Any) -> tuple[dict[str, Any] | None, Problem | None]:
    """An SNS Message: the event as a JSON string."""
    if not isinstance(message, str):
        return None, Problem("Message", "field required: the event as a JSON string")
    try:
        inner = orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        return None, Problem("Message", f"not valid JSON: {exc}")
    if not isinstance(inner, dict):
        return None, Problem("Message", "expected a JSON object")
    return inner, None


def map_hmpps_event(event: Mapping[str, Any], fetch: Fetch) -> Mapped:
    """The FHIR resources for one HMPPS event, or why there are none."""
    inner, problems = unwrap(event)
    if inner is None:
        return Mapped(problems=problems)
    kind = inner.get("eventType")
    if not isinstance(kind, str) or not kind:
        return Mapped(problems=[Problem("eventType", "field required")])
    mapper = MAPPERS.get(kind)
    if mapper is None:
        why = PASSED_BY.get(kind, "not an event type the hub takes")
        return Mapped(ignored=f"{kind} is not routed by the hub: {why}")
    reader = _Event(inner)
    crn = reader.crn()
    occurred = reader.instant("occurredAt", inner.get("occurredAt"), required=True)
    if crn is None or occurred is None:
        return Mapped(problems=reader.problems)
    resource = mapper(reader, crn, occurred, fetch)
    if resource is None or reader.problems:
        return Mapped(problems=reader.problems)
    resource["meta"] = {"lastUpdated": fhir_instant(occurred)}
    return Mapped(resources=[_ordered(resource)])


class _Event:
    """Reads one domain event's fields, keeping a Problem (at the element) for each one wrong."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event
        self.kind = str(event["eventType"])
        self.problems: list[Problem] = []

    def crn(self) -> dict[str, str] | None:
        """The person, by CRN: the one identifier the hub names probation's people by."""
        where = "personReference.identifiers"
        reference = self.event.get("personReference")
        identifiers = reference.get("identifiers") if isinstance(reference, dict) else None
        crns = {
            str(i.get("value"))
            for i in identifiers or ()
            if isinstance(i, dict) and i.get("type") == "CRN"
        }
        if len(crns) != 1:
            reason = "more than one CRN" if crns else "no CRN"
            # A NOMS number alone is not taken: the hub has no system for it, so it could link no one.
            self.problems.append(Problem(where, f"{reason}: name the person by one CRN"))
            return None
        try:
            return person(PROBATION_CRN, crns.pop())
        except FieldError as exc:
            self.problems.append(Problem(f"{where}[CRN]", str(exc)))
            return None

    def info(self, name: str, *, required: bool = True) -> Any:
        """A field of additionalInformation (None, with a Problem if required, when absent)."""
        info = self.event.get("additionalInformation")
        value = info.get(name) if isinstance(info, dict) else None
        if value is None and required:
            self.problems.append(Problem(f"additionalInformation.{name}", "field required"))
        return value

    def fhir_id(self, where: str, value: Any, prefix: str) -> str | None:
        if value is None:
            return None
        try:
            return fhir_id(str(value), prefix=prefix)
        except FieldError as exc:
            self.problems.append(Problem(where, str(exc)))
            return None

    def instant(self, where: str, value: Any, *, required: bool = False) -> datetime | None:
        if value is None:
            if required:
                self.problems.append(Problem(where, "field required"))
            return None
        try:
            if not isinstance(value, str):
                raise FieldError("must be a string")
            return date_time(value)
        except FieldError as exc:
            self.problems.append(Problem(where, str(exc)))
            return None

    def detail(self, fetch: Fetch) -> Mapping[str, Any] | None:
        """The event's detail from the probation API: what the event itself does not carry."""
        url = self.event.get("detailUrl")
        if not isinstance(url, str) or not url:
            self.problems.append(
                Problem("detailUrl", f"field required: {self.kind} carries its detail there")
            )
            return None
        try:
            return fetch(url)
        except DetailUnavailable as exc:
            self.problems.append(Problem("detailUrl", f"detail not fetched: {exc}"))
            return None


def _stay(what: str, prefix: str, cls: dict[str, str], status: str = "finished") -> Mapper:
    """A mapper for an arrival, departure or check-in: an Encounter at the moment it happened,
    named after the placement's application so its repeats replace it."""

    def mapper(
        event: _Event, crn: dict[str, str], occurred: datetime, _fetch: Fetch
    ) -> dict[str, Any] | None:
        application = event.info("applicationId")
        encounter_id = event.fhir_id("additionalInformation.applicationId", application, prefix)
        if encounter_id is None:
            return None
        return _encounter(
            encounter_id, what=what, cls=cls, crn=crn, occurred=occurred, status=status
        )

    return mapper


def _encounter(
    encounter_id: str,
    *,
    what: str,
    cls: dict[str, str],
    crn: dict[str, str],
    occurred: datetime,
    status: str,
) -> dict[str, Any]:
    # A moment, not a stay: a stay under way with no end would clash with every appointment
    # the person has while living there, and an approved premises does not keep them in.
    moment = fhir_instant(occurred)
    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": status,
        "class": cls,
        "type": [{"text": what}],
        "subject": {"identifier": crn},
        "period": {"start": moment, "end": moment},
    }


def _check_in(
    event: _Event, crn: dict[str, str], occurred: datetime, _fetch: Fetch
) -> dict[str, Any] | None:
    """A remote check-in received: the person was in touch with probation at occurredAt."""
    number = event.info("eventNumber", required=False)
    suffix = f"{number}-" if isinstance(number, str | int) and not isinstance(number, bool) else ""
    stamp = occurred.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    encounter_id = event.fhir_id(
        "additionalInformation.eventNumber", f"{suffix}{stamp}", "checkin-"
    )
    if encounter_id is None:
        return None
    return _encounter(
        encounter_id,
        what="remote check-in",
        cls=VIRTUAL,
        crn=crn,
        occurred=occurred,
        status="finished",
    )


def _not_arrived(
    event: _Event, crn: dict[str, str], occurred: datetime, fetch: Fetch
) -> dict[str, Any] | None:
    """The person did not arrive at approved premises: a missed arrival on the expected day,
    which the hub checks against health appointments like any missed probation appointment."""
    application = event.info("applicationId")
    appointment_id = event.fhir_id(
        "additionalInformation.applicationId", application, "ap-arrival-"
    )
    detail = event.detail(fetch) if appointment_id else None
    if detail is None or appointment_id is None:
        return None
    details = _detail_part(event, detail, "eventDetails")
    if details is None or not _same_person(event, crn, details.get("personReference")):
        return None
    expected = details.get("expectedArrivalOn")
    try:
        day = date.fromisoformat(str(expected)) if expected is not None else None
    except ValueError:
        day = None
    if day is None:
        event.problems.append(
            Problem("detail.eventDetails.expectedArrivalOn", "a date (YYYY-MM-DD) is required")
        )
        return None
    start = london_to_utc(datetime.combine(day, time()))
    end = london_to_utc(datetime.combine(day + timedelta(days=1), time()))
    return {
        "resourceType": "Appointment",
        "id": appointment_id,
        "status": "noshow",
        "serviceType": [{"text": "approved premises arrival"}],
        "start": fhir_instant(start),
        "end": fhir_instant(end),
        "participant": [person_participant(crn)],
    }


def _session_feedback(
    event: _Event, crn: dict[str, str], occurred: datetime, fetch: Fetch
) -> dict[str, Any] | None:
    """Feedback on a Refer and Monitor session: the session's Delius appointment with whether
    the person attended. The times and the attendance are in the detail only."""
    delius_id = event.info("deliusAppointmentId")
    referral = event.fhir_id(
        "additionalInformation.referralId", event.info("referralId", required=False), ""
    )
    appointment_id = event.fhir_id(
        "additionalInformation.deliusAppointmentId", delius_id, "contact-"
    )
    detail = event.detail(fetch) if appointment_id else None
    if detail is None or appointment_id is None:
        return None
    start = event.instant("detail.appointmentTime", detail.get("appointmentTime"), required=True)
    minutes = detail.get("durationInMinutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes <= 0:
        event.problems.append(
            Problem("detail.durationInMinutes", "a whole number of minutes above 0 is required")
        )
        return None
    status = _attendance(event, detail)
    if start is None or status is None:
        return None
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": appointment_id,
        "status": status,
    }
    if referral:
        appointment["basedOn"] = [{"reference": f"ServiceRequest/{referral}"}]
    appointment["start"] = fhir_instant(start)
    appointment["end"] = fhir_instant(start + timedelta(minutes=minutes))
    appointment["participant"] = [person_participant(crn)]
    return appointment


def _attendance(event: _Event, detail: Mapping[str, Any]) -> str | None:
    """The session's Appointment.status from its attendance feedback (the API has named the
    part `appointmentFeedback.attendanceFeedback`, and later `sessionFeedback.attendance`)."""
    for outer, inner in (
        ("appointmentFeedback", "attendanceFeedback"),
        ("sessionFeedback", "attendance"),
    ):
        part = detail.get(outer)
        answer = part.get(inner) if isinstance(part, dict) else None
        attended = answer.get("attended") if isinstance(answer, dict) else None
        if attended is not None:
            if str(attended).lower() in ATTENDANCE:
                return ATTENDANCE[str(attended).lower()]
            allowed = ", ".join(ATTENDANCE)
            event.problems.append(
                Problem(
                    f"detail.{outer}.{inner}.attended", f"{attended!r} is not one of: {allowed}"
                )
            )
            return None
    event.problems.append(
        Problem("detail.appointmentFeedback", "no attendance feedback: the session has no outcome")
    )
    return None


def _referral_ended(
    event: _Event, crn: dict[str, str], occurred: datetime, _fetch: Fetch
) -> dict[str, Any] | None:
    """A Refer and Monitor referral withdrawn or ended early: the referrer cancels it (Task)."""
    given = event.info("referralId")
    referral = event.fhir_id("additionalInformation.referralId", given, "")
    task_id = (
        event.fhir_id("additionalInformation.referralId", given, "ended-") if referral else None
    )
    state = event.info("deliveryState")
    if state is not None and state not in ENDINGS:
        allowed = ", ".join(ENDINGS)
        event.problems.append(
            Problem("additionalInformation.deliveryState", f"{state!r} is not one of: {allowed}")
        )
        return None
    if referral is None or task_id is None or state is None:
        return None
    status, reason = ENDINGS[state]
    return {
        "resourceType": "Task",
        "id": task_id,
        "status": status,
        "statusReason": {"text": reason},
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral}"},
        "for": {"identifier": crn},
        "lastModified": fhir_instant(occurred),
    }


def _detail_part(event: _Event, detail: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    part = detail.get(name)
    if not isinstance(part, dict):
        event.problems.append(Problem(f"detail.{name}", "field required"))
        return None
    return part


def _same_person(event: _Event, crn: dict[str, str], reference: Any) -> bool:
    """The detail is about the event's person: when its CRN differs, nothing is taken (two
    people's records are kept apart, never joined on a guess)."""
    other = reference.get("crn") if isinstance(reference, dict) else None
    if other is not None and str(other).upper() != crn["value"]:
        event.problems.append(
            Problem(
                "detail.eventDetails.personReference.crn", "names another person than the event"
            )
        )
        return False
    return True


def _ordered(resource: dict[str, Any]) -> dict[str, Any]:
    """resourceType, id and meta first, as FHIR JSON is usually read."""
    head = {key: resource[key] for key in ("resourceType", "id", "meta") if key in resource}
    return head | {key: value for key, value in resource.items() if key not in head}


Mapper = Callable[[_Event, dict[str, str], datetime, Fetch], dict[str, Any] | None]
MAPPERS: Mapping[str, Mapper] = {
    "approved-premises.person.arrived": _stay("approved premises arrival", "ap-arrived-", FIELD),
    "approved-premises.person.departed": _stay(
        "approved premises departure", "ap-departed-", FIELD
    ),
    "approved-premises.person.not-arrived": _not_arrived,
    "accommodation.cas3.person.arrived": _stay(
        "temporary accommodation arrival", "cas3-arrived-", FIELD
    ),
    "esupervision.check-in.received": _check_in,
    "intervention.session-appointment.session-feedback-submitted": _session_feedback,
    "intervention.referral.ended": _referral_ended,
}
