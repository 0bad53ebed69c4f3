"""The composition root: the faust app, its topics and its tables, declared once.

Topics carry raw bytes; the codec in schemas/ owns the wire format, so faust
Records and pydantic never mix.
"""

from __future__ import annotations

from typing import Any

import faust

from schemas import topics
from schemas.topics import Topic
from services.config import settings

SETTINGS = settings()

app = faust.App(
    SETTINGS.app_id,
    broker=SETTINGS.broker,
    store=SETTINGS.store,
    datadir=str(SETTINGS.data_dir),
    web_host=SETTINGS.web_host,
    web_port=SETTINGS.web_port,
    web_bind=SETTINGS.web_host,
    canonical_url=SETTINGS.web_url,
    topic_partitions=topics.PERSON_EVENTS.partitions,
    key_serializer="raw",
    value_serializer="raw",
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
    topic_allow_declare=True,
    web_in_thread=False,
)


def _topic(*catalogue: Topic) -> Any:
    return app.topic(
        *(t.name for t in catalogue),
        key_type=bytes,
        value_type=bytes,
        partitions=catalogue[0].partitions,
        internal=False,
    )


inbound_and_assignments = _topic(topics.INBOUND, topics.ASSIGNMENTS)
links = _topic(topics.LINKS)
person_events = _topic(topics.PERSON_EVENTS)
alerts = _topic(topics.ALERTS)
partner_activity = _topic(topics.PARTNER_ACTIVITY)
deadletter = _topic(topics.DEADLETTER)
TOPICS: dict[str, Any] = {
    topics.LINKS.name: links,
    topics.PERSON_EVENTS.name: person_events,
    topics.ALERTS.name: alerts,
    topics.AUDIT.name: _topic(topics.AUDIT),
    topics.OUTBOUND.name: _topic(topics.OUTBOUND),
    topics.REFERRALS.name: _topic(topics.REFERRALS),
    topics.PARTNER_ACTIVITY.name: partner_activity,
    topics.DEADLETTER.name: deadletter,
    topics.ASSIGNMENTS.name: _topic(topics.ASSIGNMENTS),
}


def _table(name: str, partitions: int, help_text: str) -> Any:
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        key_type=str,
        value_type=bytes,
        help=help_text,
    )


# token -> person id, for identifiers the linker has joined (co-partitioned with inbound)
token_person = _table("token-person", topics.INBOUND.partitions, "linked identifier -> person")
# the linker's global view (one partition): token -> person, person -> its tokens
linked_person_of = _table("linked-person-of", topics.LINKS.partitions, "token -> person")
linked_members = _table("linked-members", topics.LINKS.partitions, "person -> tokens")
# person id -> encoded calendar (services/state.py)
calendars = _table("calendars", topics.PERSON_EVENTS.partitions, "person -> calendar")
# person id -> earliest referral deadline (ISO), for people with referrals awaiting acceptance
deadlines = _table("deadlines", topics.PERSON_EVENTS.partitions, "person -> next deadline")
