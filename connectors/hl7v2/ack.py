"""HL7 v2 acknowledgements: the ACK the listener answers a trust's message with, and the reading
of the ACK a partner answers the hub's outbound message with.

Pure functions, so every ACK byte and every reading of one is unit-tested without a socket.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from connectors.hl7v2.message import (
    ERROR_CODE_TEXT,
    ErrorReport,
    Header,
    Separators,
    escape,
    hl7_timestamp,
)

# MSA-1 (HL7 table 0008): application acknowledgements, then enhanced-mode commit ones.
AckCode = Literal["AA", "AE", "AR", "CA", "CE", "CR"]
ACK_CODES: frozenset[str] = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
# What the listener answers: accepted, error (send again once fixed), rejected.
ApplicationAckCode = Literal["AA", "AE", "AR"]
# Enhanced mode's commit (accept) acknowledgement: stored, not stored (send again), refused.
CommitAckCode = Literal["CA", "CE", "CR"]
# MSH-15 and MSH-16 (HL7 table 0155): when the sender wants each acknowledgement.
ALWAYS, NEVER, ON_ERROR, ON_SUCCESS = "AL", "NE", "ER", "SU"
ERROR_TABLE = "HL70357"
# The first version whose ERR segment has ERR-2 location, ERR-3 code, ERR-4 severity; before
# it (v2.3, v2.4) ERR-1 carries location and code together.
ERR_LOCATION_VERSION = (2, 5)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: the application's answer, why, and whether Kafka stored it
    (on the inbound or the dead-letter topic)."""

    code: ApplicationAckCode
    errors: tuple[ErrorReport, ...] = ()
    stored: bool = True


# --- answering a message ------------------------------------------------------------------


def enhanced_mode(original: Header) -> bool:
    """True when the sender asked for enhanced acknowledgement (MSH-15 or MSH-16 valued)."""
    return bool(original.accept_ack_type or original.application_ack_type)


def _wanted(condition: str, succeeded: bool) -> bool:
    """Whether MSH-15 or MSH-16 asks for an acknowledgement of this outcome. Empty (the other
    field is valued) or a value outside table 0155 is taken as AL: answer rather than be silent."""
    if condition == NEVER:
        return False
    if condition == ON_ERROR:
        return not succeeded
    if condition == ON_SUCCESS:
        return succeeded
    return True


def commit_code(outcome: Outcome) -> CommitAckCode:
    """Enhanced mode's commit answer: CA once stored; CE when Kafka could not store it (send it
    again); CR when the message was refused outright (its MSH: type, trigger, size)."""
    if not outcome.stored:
        return "CE"
    return "CR" if outcome.code == "AR" else "CA"


def acknowledgements(
    original: Header, outcome: Outcome, *, ack_control_id: str, now: datetime
) -> list[str]:
    """The ACKs answering a message, in the order they are sent.

    Original mode (MSH-15 and MSH-16 empty): one application ACK. Enhanced mode: the commit
    ACK (CA, CE, CR) when MSH-15 asks for it, then, for a message committed, the application
    ACK (AA, AE, AR) when MSH-16 asks for it. A message not committed gets no application
    ACK: the application never had it. A refused message whose sender asked for no application
    ACK on error is commit-rejected (CR, with its errors), so the refusal still reaches it.
    """
    if not enhanced_mode(original):
        return [
            acknowledgement(
                original, outcome.code, outcome.errors, ack_control_id=ack_control_id, now=now
            )
        ]
    acks = []
    commit = commit_code(outcome)
    if (
        commit == "CA"
        and outcome.code != "AA"
        and not _wanted(original.application_ack_type, False)
    ):
        # The sender wants no application ACK for an error (AL/NE, as most trusts send), yet a
        # refused message must reach its sender as a refusal, not as a silent commit.
        commit = "CR"
    if _wanted(original.accept_ack_type, commit == "CA"):
        errors = () if commit == "CA" else outcome.errors
        acks.append(
            acknowledgement(original, commit, errors, ack_control_id=f"{ack_control_id}C", now=now)
        )
    if commit == "CA" and _wanted(original.application_ack_type, outcome.code == "AA"):
        acks.append(
            acknowledgement(
                original, outcome.code, outcome.errors, ack_control_id=f"{ack_control_id}A", now=now
            )
        )
    return acks


def acknowledgement(
    original: Header,
    code: AckCode,
    errors: Sequence[ErrorReport] = (),
    *,
    ack_control_id: str,
    now: datetime,
) -> str:
    """One ACK answering a message: MSA-1 `code`, MSA-2 its control id, its errors in ERR.

    MSH-12 echoes the sender's version, and the ERR segments are written the way that
    version reads them (`err_segments`). In enhanced mode the ACK's own MSH-15 and MSH-16
    are NE: an acknowledgement is not itself acknowledged.
    """
    s = original.separators
    fields = [
        "MSH",
        s.msh2,
        original.receiving_application or "CONCORD",
        original.receiving_facility,
        original.sending_application,
        original.sending_facility,
        hl7_timestamp(now),
        "",
        s.component.join(["ACK", original.trigger, "ACK"]),
        ack_control_id,
        original.processing_id,
        original.version,
    ]
    if enhanced_mode(original):
        fields += ["", "", NEVER, NEVER]
    msa = ["MSA", code, original.control_id]
    if errors:
        msa.append(escape(errors[0].message[:80], s))  # MSA-3, for receivers older than v2.5
    segments = [s.field.join(fields), s.field.join(msa)]
    segments += err_segments(errors, s, original.version)
    return "\r".join(segments) + "\r"


def _version(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text)
    return tuple(int(n) for n in numbers[:2]) if numbers else ERR_LOCATION_VERSION


def err_segments(errors: Sequence[ErrorReport], s: Separators, version: str) -> list[str]:
    """The ERR segments of `errors` as HL7 `version` defines ERR.

    v2.5 on: one ERR per error, ERR-2 location (ERL), ERR-3 the HL7 error code (table 0357),
    ERR-4 severity E, ERR-8 the reason. v2.3 and v2.4: one ERR whose ERR-1 (ELD) repeats per
    error: segment, sequence, field, and the code as a CE whose alternate text is the reason.
    """
    if not errors:
        return []
    if _version(version) >= ERR_LOCATION_VERSION:
        return [
            s.field.join(
                [
                    "ERR",
                    "",
                    s.component.join(e.location.split("^")) if e.location else "",
                    s.component.join([str(e.code), ERROR_CODE_TEXT.get(e.code, ""), ERROR_TABLE]),
                    "E",
                    "",
                    "",
                    "",
                    escape(e.message, s),
                ]
            )
            for e in errors
        ]
    repetitions = []
    for e in errors:
        where = (e.location.split("^") if e.location else [])[:3]
        where += [""] * (3 - len(where))
        code = s.subcomponent.join(
            [str(e.code), ERROR_CODE_TEXT.get(e.code, ""), ERROR_TABLE, "", escape(e.message, s)]
        )
        repetitions.append(s.component.join([*where, code]))
    return [s.field.join(["ERR", s.repetition.join(repetitions)])]


# --- reading a partner's answer -----------------------------------------------------------


class AckError(ValueError):
    """A frame that is not an HL7 acknowledgement."""


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement: MSA-1 code, MSA-2 the control id it answers, MSA-3 text."""

    code: AckCode
    control_id: str
    text: str


def parse_ack(data: bytes) -> Ack:
    """Read the MSA segment of an ACK frame; raise AckError naming what is missing."""
    text = data.decode("utf-8", errors="replace")
    segments = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 4:
        raise AckError("no MSH segment")
    separator = segments[0][3]
    for segment in segments[1:]:
        fields = segment.split(separator)
        if fields[0] != "MSA":
            continue
        code = fields[1] if len(fields) > 1 else ""
        if code not in ACK_CODES:
            raise AckError(f"MSA-1 is {code!r}, not an acknowledgement code")
        answered = fields[2] if len(fields) > 2 else ""
        if not answered:
            raise AckError("MSA-2 (the control id acknowledged) is empty")
        return Ack(code, answered, fields[3] if len(fields) > 3 else "")  # type: ignore[arg-type]  # checked against ACK_CODES above
    raise AckError("no MSA segment")


AckResult = Literal["delivered", "retry", "refused", "not-ours"]


def read_ack(ack: Ack, expected_control_id: str) -> AckResult:
    """What an ACK means for the attempt whose MSH-10 was `expected_control_id`.

    Only an ACK naming this attempt's control id counts; any other is a late answer to an
    earlier attempt ("not-ours"). AE is the partner's "try again", AR its refusal.
    """
    if ack.control_id != expected_control_id:
        return "not-ours"
    if ack.code in ("AA", "CA"):
        return "delivered"
    if ack.code in ("AE", "CE"):
        return "retry"
    return "refused"
