"""The demo feed: partner events for one person, replayed in order through the publish path.

`make run` starts Kafka and the topics, then runs this: a probation case, a GP,
a Mental Health Trust and an addiction service each publish what they know.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from connectors.fhir_input import read_file
from connectors.kafka_io import Publisher, read_topic
from connectors.publish import publish_records
from schemas import topics
from schemas.codec import decode
from services.logs import configure

FEED = Path(__file__).parent.parent / "deploy" / "demo"


def replay(publisher: Publisher) -> int:
    """Publish every step of the demo feed in order; returns how many were accepted."""
    accepted = 0
    for step in json.loads((FEED / "feed.json").read_text()):
        summary = publish_records(read_file(FEED / step["file"]), step["as"], publisher)
        accepted += summary.accepted
        print(f"  {step['as']:<18} published {step['file']}")
    return accepted


def main() -> int:
    """Replay the feed and show what reached the inbound topic."""
    configure("warning")
    print("concord demo: replaying partner events")
    publisher = Publisher()
    try:
        accepted = replay(publisher)
    finally:
        publisher.close()
    print(f"\n{accepted} events accepted; the inbound topic now holds:")
    for _key, value in read_topic(topics.INBOUND.name, idle_timeout_s=2.0):
        envelope = decode(value)
        status = envelope.resource.get("status", "")
        print(f"  {envelope.source:<18} {envelope.resource_type:<12} {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
