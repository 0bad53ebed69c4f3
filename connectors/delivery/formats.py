"""What outbound delivery puts on the wire for FHIR partners: a FHIR message Bundle.

Pure functions of the envelope (as the codec decoded it), so every byte a partner receives is
decided here and unit-tested without a socket. HL7 v2 partners' messages and ACKs are
`connectors.hl7v2.from_fhir` and `connectors.hl7v2.ack`.
"""

from __future__ import annotations

import uuid
from typing import Any

from schemas.envelope import Envelope
from schemas.vocabulary import EVENT_TYPE_SYSTEM, HUB_ENDPOINT, PARTNER_SYSTEM
from services.domain.instants import fhir_instant

BUNDLE_NAMESPACE = uuid.UUID("0c6f3f7e-8a59-5d62-b1f4-5e0d3c2a9b71")


def message_bundle(envelope: Envelope, partner: str, endpoint: str) -> dict[str, Any]:
    """A FHIR R4 message Bundle carrying the envelope's resource to `partner`.

    Bundle.id is the envelope's event id: FHIR messaging receivers drop a Bundle whose id they
    have already processed, which makes a redelivery harmless.
    """
    event_id = str(envelope.event_id)
    header_id = str(uuid.uuid5(BUNDLE_NAMESPACE, f"{event_id}\nheader"))
    focus_url = "urn:uuid:" + str(uuid.uuid5(BUNDLE_NAMESPACE, f"{event_id}\nfocus"))
    header = {
        "resourceType": "MessageHeader",
        "id": header_id,
        "eventCoding": {"system": EVENT_TYPE_SYSTEM, "code": envelope.event_type},
        "destination": [
            {
                "endpoint": endpoint,
                "receiver": {"identifier": {"system": PARTNER_SYSTEM, "value": partner}},
            }
        ],
        "sender": {"identifier": {"system": PARTNER_SYSTEM, "value": envelope.source}},
        "source": {"name": "concord", "endpoint": HUB_ENDPOINT},
        "focus": [{"reference": focus_url}],
    }
    return {
        "resourceType": "Bundle",
        "id": event_id,
        "type": "message",
        "timestamp": fhir_instant(envelope.recorded_at),
        "entry": [
            {"fullUrl": f"urn:uuid:{header_id}", "resource": header},
            {"fullUrl": focus_url, "resource": envelope.resource},
        ],
    }
