"""The hub's internal messages: what its own steps write to each other and to compacted topics.

Partners never see these; the hub's workers, web views and operator commands do. Each model
is the one statement of a message's fields and JSON shape (schemas/codec.py writes and reads
them; schemas/internal-messages/ holds their exported JSON Schemas, schemas/examples/
internal-messages/ an example of each). Field names, order and JSON types are those the hub
has always written, so stored topics and changelogs stay readable.

Readers have always passed by fields they do not read, so a record written by a later version
stays readable: an unknown field is ignored, not refused. Otherwise the models are frozen and
strict: a string is a JSON string, a flag a JSON boolean. A time a step acts on (`now`, `at`) is
an aware date-time; one that is only shown or copied stays the string its writer gave.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, PlainSerializer
from pydantic.json_schema import WithJsonSchema

# The operator's decisions on an identity conflict, and a conflict's statuses: as
# services/domain/identity.py names them (a test keeps the two in step).
ConflictDecision = Literal["keep-apart", "link"]
ConflictStatus = Literal["open", "kept-apart", "linked", "corrected", "merged"]

# A time as its writer gave it: a string, parsed (and refused) as an ISO date-time by its reader.
_DATE_TIME = {"type": "string", "format": "date-time"}
Instant = Annotated[str, WithJsonSchema(_DATE_TIME)]
MaybeInstant = Annotated[str | None, WithJsonSchema({"anyOf": [_DATE_TIME, {"type": "null"}]})]


class _Internal(BaseModel):
    # The exported schema describes what the hub writes: every field, defaults included.
    model_config = ConfigDict(
        frozen=True, strict=True, extra="ignore", json_schema_serialization_defaults_required=True
    )


def _stored_calendar(value: Any) -> Any:
    """A calendar as its stored JSON text: bytes as given, a parsed array written again."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, list):
        raise ValueError("must be a stored calendar (a JSON array)")
    return orjson.dumps(value)


# A calendar carried inside a command: in Python the JSON text services/stream/state.py stores
# (encode_calendar's bytes), on the wire that JSON array itself, embedded byte for byte.
StoredCalendar = Annotated[
    bytes,
    BeforeValidator(_stored_calendar),
    PlainSerializer(orjson.loads, return_type=list[Any], when_used="json"),
    WithJsonSchema(
        {"type": "array", "description": "the calendar as the calendars table stores it"}
    ),
]


# --- commands on person-events (keyed by the person they are for) ----------------------------


class MergeCommand(_Internal):
    """The identity linker's word that the absorbed person is the survivor: the absorbed person's
    record is to move to the survivor (keyed by the absorbed person)."""

    command: Literal["merge"] = "merge"
    absorbed: str
    survivor: str


class TransferCommand(_Internal):
    """The absorbed person's record handed to the survivor, to merge into theirs (keyed by the
    survivor)."""

    command: Literal["transfer"] = "transfer"
    absorbed: str
    survivor: str
    calendar: StoredCalendar


class DeadlinesCommand(_Internal):
    """The escalation timer asking the person's reconciler to escalate referrals past their
    deadline at `now`."""

    command: Literal["deadlines"] = "deadlines"
    person_id: str
    now: AwareDatetime


class IdentityFlagsCommand(_Internal):
    """The identity linker telling the reconciler which identity conflicts a person is under
    (none: the person is under none)."""

    command: Literal["identity-conflicts"] = "identity-conflicts"
    person_id: str
    open: tuple[str, ...]


PersonCommand = MergeCommand | TransferCommand | DeadlinesCommand | IdentityFlagsCommand
PERSON_COMMANDS: dict[str, type[PersonCommand]] = {
    "merge": MergeCommand,
    "transfer": TransferCommand,
    "deadlines": DeadlinesCommand,
    "identity-conflicts": IdentityFlagsCommand,
}


# --- on the links topic, beside partners' envelopes ---------------------------------------------


class ResolveConflictCommand(_Internal):
    """An operator's decision on an identity conflict, for the identity linker to apply and audit
    (`concord identity resolve`; keyed by the conflict)."""

    command: Literal["resolve-conflict"] = "resolve-conflict"
    conflict_id: str
    decision: ConflictDecision
    operator: str
    reason: str
    at: AwareDatetime
    request_id: uuid.UUID


# --- records of compacted topics --------------------------------------------------------------


class PartnerActivity(_Internal):
    """When the hub last heard from a partner (partner-activity topic, keyed by the partner)."""

    partner: str
    # The recorded_at of the partner's latest envelope, as that envelope gave it; a reader
    # refuses a record whose last_heard is not a date-time with an offset.
    last_heard: Instant


class ReferralInboxEntry(_Internal):
    """A referral as the inboxes show it: who sent it to whom, and where it stands (referrals
    topic, keyed by the referral id). Times are FHIR instants in UTC.

    Inboxes read entries lacking the optional fields as null (and `escalated` as false).
    """

    referral_id: str
    id: str  # the referrer's ServiceRequest id
    person_id: str
    referrer: str
    recipient: str | None = None
    status: str
    category: str | None = None
    urgency: str
    requested: MaybeInstant
    deadline: MaybeInstant = None
    escalated: bool = False
    first_appointment: str | None = None
    reason: str | None = None
    updated: MaybeInstant = None


class ConflictClaim(_Internal):
    """The link an identity conflict refused: which source said which identifiers are one person."""

    source: str
    identifiers: list[str]
    record: str | None  # the source's record that said so, when known


class IdentityConflictRecord(_Internal):
    """An identity conflict as the operator sees it and the linker keeps it (identity-conflicts
    topic, keyed by the conflict id); written by services/domain/identity.py `conflict_record`."""

    conflict_id: str
    status: ConflictStatus
    raised_at: Instant
    resolved_at: MaybeInstant
    resolved_by: str | None
    reason: str | None
    systems: list[str]
    identifiers: list[str]
    people: list[str]
    sources: dict[str, list[str]]
    claim: ConflictClaim


class MeasureFact(_Internal):
    """One countable fact for the commissioners' figures (measure-events topic, keyed by month and
    area): which figure, where, and a hash that counts it once. Never a person or an identifier."""

    counted_id: str  # a hash of what was counted: the same fact derived again has the same id
    figure: str
    month: str  # YYYY-MM
    area: str  # a local authority code, or "unknown"
    category: str | None = None
    urgency: str | None = None
    reason: str | None = None  # a rejection's coded reason
    days: int | None = None  # working days, for the distribution figures


InternalMessage = (
    PersonCommand
    | ResolveConflictCommand
    | PartnerActivity
    | ReferralInboxEntry
    | IdentityConflictRecord
    | MeasureFact
)
