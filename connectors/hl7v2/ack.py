"""HL7 v2 acknowledgements: the ACK the listener answers a trust's message with, and the reading
of the ACK a partner answers the hub's outbound message with.

Pure functions, so every ACK byte and every reading of one is unit-tested without a socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from connectors.hl7v2.message import (
    ERROR_CODE_TEXT,
    ErrorReport,
    Header,
    escape,
    hl7_timestamp,
)

# MSA-1 (HL7 table 0008): application acknowledgements, then enhanced-mode commit ones.
AckCode = Literal["AA", "AE", "AR", "CA", "CE", "CR"]
ACK_CODES: frozenset[str] = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
# What the listener answers: accepted, error (send again once fixed), rejected.
ApplicationAckCode = Literal["AA", "AE", "AR"]


# --- answering a message ------------------------------------------------------------------


def acknowledgement(
    original: Header,
    code: ApplicationAckCode,
    errors: Sequence[ErrorReport] = (),
    *,
    ack_control_id: str,
    now: datetime,
) -> str:
    """The ACK answering a message: MSA-1 `code`, MSA-2 its control id, one ERR per error."""
    s = original.separators
    msh = s.field.join(
        [
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
    )
    msa = ["MSA", code, original.control_id]
    if errors:
        msa.append(escape(errors[0].message[:80], s))  # MSA-3, for receivers older than v2.5
    segments = [msh, s.field.join(msa)]
    for error in errors:
        label = s.component.join([str(error.code), ERROR_CODE_TEXT.get(error.code, ""), "HL70357"])
        segments.append(
            s.field.join(
                ["ERR", "", error.location, label, "E", "", "", "", escape(error.message, s)]
            )
        )
    return "\r".join(segments) + "\r"


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
