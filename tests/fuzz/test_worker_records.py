"""The worker's decoding of every topic's records, and the steps its agents take inside their
try blocks, raise on a malformed record only what the agent dead-letters by name (`MALFORMED`);
the deliverer's and the followers' only a CodecError. (Each agent also dead-letters anything
else, services/stream/agents.py `refusing`; that is its last resort, which the fuzz run must
never reach.) A tombstone, no value at all, is a CodecError on every topic.

Each test replays what one agent or reader does with a record (services/stream/agents.py,
services/web/views.py), starting from the records a scenario put on that topic.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import orjson
import pytest

from schemas import topics
from schemas.codec import (
    CodecError,
    decode,
    decode_assignment,
    decode_inbound,
    decode_link_message,
    decode_person_message,
    resolved,
)
from schemas.identifiers import parse_token
from schemas.keys import REFERRAL, referral_home
from services.domain.identity import PersonIndex, person_of, to_linker
from services.stream.activity import activity_record, heard_from
from services.stream.outbox import routed
from services.stream.pipeline import (
    MALFORMED,
    count_step,
    fact_of,
    identifiers_of,
    link_step,
    person_event,
    person_id_of_key,
)
from services.stream.state import decode_calendar
from services.web.inbox import entry_of, inbox, inbox_line
from services.web.measures import report_of
from tests.fuzz.conftest import Fuzz
from tests.fuzz.corpus import (
    CONTEXT,
    ROOT,
    example_envelopes,
    fixture_envelopes,
    played,
    topic_seeds,
)
from tests.keys import KEY

INTERNAL = ROOT / "schemas" / "examples" / "internal-messages"
READ_AFTER_THE_TRY = ("event_id", "event_type", "source", "recorded_at")


def stored_calendars(rng: random.Random) -> bytes | None:
    """No calendar yet, or one the scenario stored."""
    return rng.choice([None, *played().calendars])


def test_inbound_envelopes(fuzz: Fuzz) -> None:
    """The person index: decode, find the person, route; reconcile it here when it is here."""
    rng = random.Random(0)
    seeds = topic_seeds(topics.INBOUND.name) + example_envelopes() + fixture_envelopes()

    def entry_point(raw: bytes) -> None:
        envelope = decode_inbound(raw)
        identifiers = identifiers_of(envelope)
        assigned = rng.choice([None, "p-assigned"])
        linked = to_linker(envelope, identifiers)
        person = None if linked else person_of(identifiers, assigned, KEY)
        routed(envelope, raw, identifiers, person)
        for name in READ_AFTER_THE_TRY:  # the agent reads these outside its try block
            assert isinstance(envelope[name], str)
        if person is not None:
            person_event(stored_calendars(rng), resolved(envelope, person), CONTEXT)

    fuzz.run("worker inbound", seeds, "json", 500, entry_point, allowed=MALFORMED)


def test_links(fuzz: Fuzz) -> None:
    def entry_point(raw: bytes) -> None:
        link_step(decode_link_message(raw), PersonIndex(KEY), CONTEXT)  # as the linker takes it

    seeds = topic_seeds(topics.LINKS.name) + topic_seeds(topics.INBOUND.name)
    fuzz.run("worker links", seeds, "json", 300, entry_point, allowed=MALFORMED)


def test_person_events(fuzz: Fuzz) -> None:
    """The reconciler: envelopes resolved to a person and the hub's merge, transfer and
    deadline commands, against no calendar or a stored one."""
    rng = random.Random(0)
    records = played().records[topics.PERSON_EVENTS.name]

    def entry_point(raw: bytes) -> None:
        key = rng.choice([key for key, _ in records] + [None, b"\xff"])
        person_id_of_key(key)
        person_event(stored_calendars(rng), decode_person_message(raw), CONTEXT)

    fuzz.run(
        "worker person-events", [v for _, v in records], "json", 500, entry_point, allowed=MALFORMED
    )


def test_stored_calendars(fuzz: Fuzz) -> None:
    """The calendars table's values: decoded, or refused as corrupt (ValueError)."""
    fuzz.run(
        "worker calendars", played().calendars, "json", 300, decode_calendar, allowed=(ValueError,)
    )


def test_assignments(fuzz: Fuzz) -> None:
    """The linker's assignments (token -> person id), as the person index stores and reads them."""
    rng = random.Random(0)
    records = played().records[topics.ASSIGNMENTS.name]

    def entry_point(data: bytes) -> None:
        key, value = rng.choice(records)
        key, value = (data, value) if rng.random() < 0.5 else (key, data)
        token, person = decode_assignment(key, rng.choice([value, None]))
        if token.startswith(f"{REFERRAL}|"):
            referral_home(token)  # a referral's token places its Tasks; it is no identifier
            return
        person_of([parse_token(token)], person.decode() if person else None, KEY)

    seeds = [part for record in records for part in record if part is not None]
    fuzz.run("worker assignments", seeds, "bytes", 300, entry_point, allowed=(CodecError,))


def test_partner_activity(fuzz: Fuzz) -> None:
    seeds = [activity_record(p, "2026-12-01T09:00:00.123456Z") for p in ("gp-Y01234", "mht-rv5")]
    fuzz.run("worker partner-activity", seeds, "json", 300, heard_from, allowed=(CodecError,))


def test_referral_inbox(fuzz: Fuzz) -> None:
    """The referrals topic as inboxes read it: the worker's /referrals and `concord referrals`."""
    records = played().records[topics.REFERRALS.name]

    def entry_point(value: bytes) -> None:
        key = orjson.loads(records[0][1])["referral_id"].encode()
        referral_id, entry = entry_of(key, value)
        for partner in (entry["referrer"], "mht-rv5"):
            for shown in inbox({referral_id: entry}, partner):
                inbox_line(shown, partner)

    fuzz.run(
        "worker referrals", [v for _, v in records], "json", 300, entry_point, allowed=(CodecError,)
    )


def test_measure_events(fuzz: Fuzz) -> None:
    """The measures agent: a countable fact counted into cells (held here in a dict)."""
    cells: dict[str, bytes] = {}

    def entry_point(raw: bytes) -> None:
        _, writes = count_step(raw, cells.get, lambda: list(cells.items()))
        cells.update(writes)

    seeds = [(INTERNAL / "measurefact.json").read_bytes()]
    fuzz.run("worker measure-events", seeds, "json", 300, entry_point, allowed=MALFORMED)


def test_published_measures(fuzz: Fuzz) -> None:
    """The measures topic as every worker reads it whole: the MeasureReport a record carries."""
    seeds = [(ROOT / "schemas" / "examples" / "stats.measure.reported.json").read_bytes()]
    fuzz.run("worker measures", seeds, "json", 300, report_of, allowed=(CodecError,))


def test_deliveries(fuzz: Fuzz) -> None:
    """The deliverer's decoding of alerts and outbound messages before it renders them."""
    records = played().records[topics.ALERTS.name] + played().records[topics.OUTBOUND.name]
    seeds = [v for _, v in records if v is not None]
    fuzz.run("delivery records", seeds, "json", 300, decode, allowed=(CodecError,))


@pytest.mark.parametrize(
    "decoder",
    [
        decode_inbound,
        decode_person_message,
        decode_link_message,
        fact_of,
        heard_from,
        report_of,
        decode,
    ],
    ids=lambda f: f.__name__,
)
def test_a_tombstone_is_a_codec_error_everywhere(decoder: Callable[[None], object]) -> None:
    with pytest.raises(CodecError, match="tombstone"):
        decoder(None)
