"""The golden wire examples in `schemas/examples/wire/`: what each partner format puts on the
wire for an envelope example, built by the same functions delivery uses.

    python -m connectors.delivery.wire_examples           # rewrite them
    python -m connectors.delivery.wire_examples --check   # exit 1 naming any that differ

Every id and time in them comes from the input envelope (MSH-7 is its `recorded_at`, MSH-10
its event id and attempt 1), so they change only when a builder or an example does.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.delivery.formats import message_bundle
from connectors.hl7v2.from_fhir import control_id, hl7_message
from schemas.codec import decode
from schemas.envelope import Envelope

EXAMPLES = Path(__file__).parents[2] / "schemas" / "examples"
WIRE = EXAMPLES / "wire"
FHIR_ENDPOINT = "https://partner.example/fhir/$process-message"
# The id a partner gave the message a refusal answers (its MessageHeader.id).
ANSWERED_MESSAGE = uuid.UUID("3f0c8a52-6d1e-4b7a-9c2e-8a4d5b6c7e81")


@dataclass(frozen=True)
class WireExample:
    """One golden file: `name` in schemas/examples/wire/, built from the envelope example
    `source` (a path under schemas/examples/) for `partner` in `format` (fhir or hl7)."""

    name: str
    source: str
    partner: str
    format: str
    changes: dict[str, Any] = field(default_factory=dict)  # envelope fields set on the example

    def envelope(self) -> Envelope:
        data = json.loads((EXAMPLES / self.source).read_text(encoding="utf-8"))
        return decode(json.dumps(data | self.changes).encode())

    def render(self) -> bytes:
        envelope = self.envelope()
        if self.format == "fhir":
            bundle = message_bundle(envelope, self.partner, FHIR_ENDPOINT)
            return (json.dumps(bundle, indent=2, ensure_ascii=False) + "\n").encode()
        control = control_id(str(envelope.event_id))
        # One segment a line in the file, as HL7 v2 files are kept; on the wire they end in \r.
        text = hl7_message(envelope, self.partner, control, envelope.recorded_at)
        return text.replace("\r", "\n").encode()


REFERRAL = "wire/inputs/referral.request.delivered.json"  # with the person and the requester
# Probation sent no details: the person by identifiers alone, no requester.
WITHOUT_DETAILS = "wire/inputs/referral-without-details.request.delivered.json"
ANSWERED = {"correlation_id": str(ANSWERED_MESSAGE)}
SCENARIOS = (
    WireExample("referral.fhir-bundle.json", REFERRAL, "gp-Y01234", "fhir"),
    WireExample("referral.ref-i12.hl7", REFERRAL, "mht-rv5", "hl7"),
    WireExample(
        "referral-by-identifier.fhir-bundle.json",
        WITHOUT_DETAILS,
        "gp-Y01234",
        "fhir",
    ),
    WireExample("referral-by-identifier.ref-i12.hl7", WITHOUT_DETAILS, "mht-rv5", "hl7"),
    WireExample("alert.fhir-bundle.json", "alert.clash.raised.json", "gp-Y01234", "fhir"),
    WireExample("alert.mdm-t02.hl7", "alert.clash.raised.json", "mht-rv5", "hl7"),
    WireExample(
        "refusal.fhir-response.json", "referral.request.refused.json", "gp-Y01234", "fhir", ANSWERED
    ),
    WireExample("refusal.oru-r01.hl7", "referral.request.refused.json", "mht-rv5", "hl7"),
    WireExample(
        "flag.fhir-response.json", "appointment.booking.flagged.json", "gp-Y01234", "fhir", ANSWERED
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args(argv)
    stale = []
    for example in SCENARIOS:
        path = WIRE / example.name
        rendered = example.render()
        if path.exists() and path.read_bytes() == rendered:
            continue
        stale.append(example.name)
        if not args.check:
            path.write_bytes(rendered)
    verb = "differ" if args.check else "rewritten"
    for name in stale:
        print(f"schemas/examples/wire/{name}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
