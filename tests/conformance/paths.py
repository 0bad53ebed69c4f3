"""The partner paths the public corpus is played through, in process and without a broker.

Each file goes the way `concord publish --as PARTNER --format FORMAT file` takes it: the
partner file reader for the format (`connectors.publish.reader_for`), then the decision on
each record (`connectors.publish.decide`), stopping short of Kafka. This is the only module
of the conformance tests that imports the connectors: when they are renamed or reshaped,
the fix is here, and every decision is turned into an `Outcome` the tests and the report
read without knowing the connectors' own types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from deploy.demo import use_demo_settings

use_demo_settings()  # the demo partner directory places each partner's kind

from connectors.publish import Accepted, Ignored, Rejected, decide, reader_for  # noqa: E402
from schemas.identifiers import NHS_NUMBER, PROBATION_CRN, local_system  # noqa: E402
from tests.probation_api_stub import environment, probation_api_stub, recorded_details  # noqa: E402

PUBLIC = Path(__file__).parents[1] / "fixtures" / "public"
# A fixed clock: decisions that fall back to "now" (a resource without lastUpdated) are stable.
NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)

Kind = Literal["accepted", "ignored", "refused"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the hub made of one record of a file: taken, passed by with a warning, or refused."""

    kind: Kind
    origin: str
    reason: str = ""
    resource: dict[str, Any] | None = None
    event_type: str = ""
    people: tuple[tuple[str, str], ...] = ()  # (system, value) naming the person


def outcomes(path: Path, partner: str, fmt: str) -> list[Outcome]:
    """Every record of a partner file, decided as `concord publish` decides it."""
    if fmt != "probation":
        return [_outcome(decide(record, partner, NOW)) for record in reader_for(path, partner, fmt)]
    with probation_api_stub(recorded_details()) as api, environment(api.settings()):
        return [_outcome(decide(record, partner, NOW)) for record in reader_for(path, partner, fmt)]


def _outcome(decision: Any) -> Outcome:
    if isinstance(decision, Accepted):
        envelope = decision.envelope
        people = tuple(
            (i.system, i.value) for i in (envelope.subject.identifiers if envelope.subject else ())
        )
        return Outcome(
            "accepted",
            decision.origin,
            resource=envelope.resource,
            event_type=envelope.event_type,
            people=people,
        )
    if isinstance(decision, Ignored):
        return Outcome("ignored", decision.origin, reason=decision.resource_type)
    if isinstance(decision, Rejected):
        return Outcome("refused", decision.origin, reason=decision.reason())
    raise TypeError(f"unknown decision {type(decision).__name__}")


def person(name: str, partner: str) -> tuple[str, str]:
    """A manifest's person ("nhs:…", "crn:…", "local:…") as the (system, value) the hub uses."""
    scheme, _, value = name.partition(":")
    systems = {"nhs": NHS_NUMBER, "crn": PROBATION_CRN, "local": local_system(partner)}
    if scheme not in systems or not value:
        raise ValueError(f"person {name!r}: expected nhs:, crn: or local: and a value")
    return systems[scheme], value
