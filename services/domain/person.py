"""A person's record, and what each message about the person decides: the one entry point of the
person stream (`decide`).

A message is a partner's event (an Appointment, Encounter, Consent, ServiceRequest or Task,
resolved to the person) or a command one person's record sends another (a merge, the transfer of
a record, a check of referral deadlines). The decision returns the record as it now stands and what to tell
whom; services/stream/outbox.py renders that, and nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from schemas.identifiers import HUB_PERSON, PersonIdentifier, is_placeholder
from services.domain.alerts import alert_messages
from services.domain.appointments import SLOT_READERS
from services.domain.calendar import (
    Calendar,
    add_consent,
    add_names,
    add_partner,
    moved,
    stale_change,
    with_relationships,
)
from services.domain.consent import decision_from_consent
from services.domain.consent import stale_reason as consent_stale_reason
from services.domain.data_quality import contradictions
from services.domain.decisions import (
    CheckDeadlines,
    DataQualityFlagged,
    Decision,
    Disclose,
    Forward,
    Merge,
    PersonMessage,
    RelationshipBegun,
    Rules,
    Transfer,
    UpdateRefused,
    caused,
)
from services.domain.instants import read_instant
from services.domain.kinds import AgencyKind
from services.domain.reconciliation import Alert, merge, reconcile, told_on_relating
from services.domain.referral_steps import on_booking, on_deadlines, on_service_request, on_task
from services.domain.refusals import Refusal
from services.domain.relationships import new_relationships
from services.domain.versions import stale_reason

Step = tuple[Calendar, list[Decision]]
ORIGIN = "reconciler"  # what the dead letter of a stale version names


def decide(record: Calendar, message: PersonMessage, rules: Rules) -> Step:
    """The person's record after one message, and what was decided: alerts raised or resolved,
    referrals routed, delivered and followed, updates refused, relationships begun, records
    handed over. The record returned is `record` itself when the message changed nothing.

    KeyError, TypeError or ValueError for a message the rules cannot read.
    """
    if record.merged_into is not None:
        return record, moved_on(record.merged_into, message)
    if isinstance(message, Merge):
        return hand_over(record, message)
    if isinstance(message, Transfer):
        return take_over(record, message, rules)
    if isinstance(message, CheckDeadlines):
        return on_deadlines(record, message.now, rules)
    updated, decisions = partner_event(record, message, rules)
    return updated, decisions + relationships_begun(record, updated)


def person_named(message: PersonMessage) -> str:
    """The person whose record a message is for."""
    if isinstance(message, Merge):
        return message.absorbed
    if isinstance(message, Transfer):
        return message.survivor
    if isinstance(message, CheckDeadlines):
        return message.person_id
    person: str = message.get("person_id") or message["subject"]["person_id"]
    return person


# --- a person found to be another --------------------------------------------------------------


def moved_on(survivor: str, message: PersonMessage) -> list[Decision]:
    """Whatever arrives for a person merged into `survivor` goes on to the survivor's record; a
    merge of it into someone else is a merge of the survivor."""
    if isinstance(message, Merge):
        return [] if message.survivor == survivor else [Merge(survivor, message.survivor)]
    if isinstance(message, Transfer):
        return [replace(message, survivor=survivor)]
    if isinstance(message, CheckDeadlines):
        return [replace(message, person_id=survivor)]
    return [Forward(survivor, message)]


def hand_over(record: Calendar, merge_command: Merge) -> Step:
    """The absorbed person's record goes to the survivor; what stays names the survivor."""
    absorbed, survivor = merge_command.absorbed, merge_command.survivor
    return moved(absorbed, survivor), [Transfer(absorbed, survivor, record)]


def take_over(mine: Calendar, transfer: Transfer, rules: Rules) -> Step:
    """The survivor's record joined with the absorbed one's: the conditions that only appear
    once both are seen together raised, and each partner related on one side only told of the
    explained absences open on the other."""
    theirs = transfer.calendar
    merged, alerts = merge(mine, theirs, transfer.survivor, rules.buffer)
    # The merged consents may end or begin consent relationships.
    merged = with_relationships(merged, rules.directory)
    told = told_on_relating(mine, merged, rules.buffer) + told_on_relating(
        theirs, merged, rules.buffer
    )
    # A relationship either side held was audited when it began: only ones new to both are.
    held = replace(mine, relationships={**theirs.relationships, **mine.relationships})
    decisions = alerts_disclosed(alerts + told, merged, rules, None)
    return merged, decisions + relationships_begun(held, merged)


# --- a partner's event -----------------------------------------------------------------------


def partner_event(calendar: Calendar, message: Mapping[str, Any], rules: Rules) -> Step:
    """One partner's event on the person's record, by the resource it carries."""
    source, resource, cause = message["source"], message["resource"], message["event_id"]
    kind = rules.directory.kind_of(source)
    occurred_at = read_instant(message["occurred_at"])
    # Before anything else: an explained absence goes only to partners related to the person.
    named = (message.get("subject") or {}).get("identifiers") or ()
    systems = tuple(i["system"] for i in named)
    updated, told = _relate(
        add_names(add_partner(calendar, source, kind), source, own_words(named)),
        rules,
        cause,
        source=source,
        kind=kind,
        systems=systems,
        event_id=cause,
    )
    step = _BY_RESOURCE.get(resource.get("resourceType"))
    if step is None:
        return updated, told
    updated, decisions = step(updated, message, rules, kind, occurred_at)
    return updated, told + decisions


def own_words(identifiers: Iterable[Mapping[str, Any]]) -> list[str]:
    """The tokens an event names its person by, as its source knows them: not the hub's own
    person id (given to everyone), nor a placeholder (it names no one)."""
    return [
        PersonIdentifier(i["system"], i["value"]).token()
        for i in identifiers
        if i["system"] != HUB_PERSON
        and not is_placeholder(PersonIdentifier(i["system"], i["value"]))
    ]


def _consent(
    calendar: Calendar, message: Mapping[str, Any], rules: Rules, kind: AgencyKind, at: datetime
) -> Step:
    """A consent decision recorded, unless the record holds a later version of it."""
    decision = decision_from_consent(message["resource"], source=message["source"], occurred_at=at)
    stale = consent_stale_reason(calendar.consents, decision)
    if stale:
        return calendar, [_stale(message, stale)]
    return _relate(add_consent(calendar, decision), rules, message["event_id"])


def _service_request(
    calendar: Calendar, message: Mapping[str, Any], rules: Rules, kind: AgencyKind, at: datetime
) -> Step:
    """A referral routed, and the relationship its recipient then has."""
    updated, decisions = on_service_request(calendar, message, rules, at)
    updated, told = _relate(updated, rules, message["event_id"])
    return updated, decisions + told


def _task(
    calendar: Calendar, message: Mapping[str, Any], rules: Rules, kind: AgencyKind, at: datetime
) -> Step:
    """A referral's Task update."""
    return on_task(calendar, message, rules)


def _appointment(
    calendar: Calendar, message: Mapping[str, Any], rules: Rules, kind: AgencyKind, at: datetime
) -> Step:
    """An appointment or encounter change: reconciled, an appointment linked to its referral; a
    stale version refused; a contradiction of what its partner said before flagged to it, and
    not applied when the held state is the defensible one."""
    source, cause, resource = message["source"], message["event_id"], message["resource"]
    resource_type = resource["resourceType"]
    slot = SLOT_READERS[resource_type](
        resource, source=source, kind=kind, event_id=cause, occurred_at=at
    )
    # Before the stale check: a version reused with other content is flagged, not refused.
    issues = contradictions(calendar, slot) if resource_type == "Appointment" else ()
    flag = DataQualityFlagged(message, issues) if issues else None
    if flag is not None and not flag.applied:
        return calendar, [flag]
    held = stale_change(calendar, slot)
    if held is not None:
        return calendar, [_stale(message, stale_reason(resource_type, slot.version, held))]
    updated, alerts = reconcile(calendar, slot, rules.buffer)
    raised = alerts_disclosed(alerts, updated, rules, cause)
    updated, booked = on_booking(updated, slot.based_on, slot.appointment_id, rules, cause)
    return updated, raised + booked + ([flag] if flag else [])


_BY_RESOURCE = {
    "Consent": _consent,
    "ServiceRequest": _service_request,
    "Task": _task,
    "Appointment": _appointment,
    "Encounter": _appointment,
}


def _relate(
    calendar: Calendar, rules: Rules, cause: str | None, **fact: Any
) -> tuple[Calendar, list[Decision]]:
    """The relationships the record's facts (and `fact`, an event) establish, and the open
    explained absences each newly related partner is told of."""
    related = with_relationships(calendar, rules.directory, **fact)
    told = told_on_relating(calendar, related, rules.buffer)
    return related, alerts_disclosed(told, related, rules, cause)


def _stale(message: Mapping[str, Any], reason: str) -> UpdateRefused:
    """An older version than the one held: not applied, and its sender told why."""
    return UpdateRefused(message, Refusal(reason, "conflict"), ORIGIN)


def alerts_disclosed(
    alerts: list[Alert], calendar: Calendar, rules: Rules, cause: str | None
) -> list[Decision]:
    """Each alert to each of its recipients, as the disclosure policy lets that one see it."""
    decisions: list[Decision] = []
    for alert in alerts:
        for message in alert_messages(
            alert, rules.directory, rules.now, calendar.consents, calendar.known_as
        ):
            decisions.append(
                Disclose(
                    person_id=alert.person_id,
                    recipient=message.recipient,
                    role=message.role,
                    event_id=message.event_id,
                    event_type=message.event_type,
                    resource=message.resource,
                    what=f"DetectedIssue/{message.alert_id}",
                    basis=message.basis,
                    cause=caused(cause),
                )
            )
    return decisions


def relationships_begun(before: Calendar, after: Calendar) -> list[Decision]:
    """Each partner related to the person in `after` and not in `before`."""
    return [
        RelationshipBegun(after.person_id, partner, relationship)
        for partner, relationship in new_relationships(before.relationships, after.relationships)
    ]
