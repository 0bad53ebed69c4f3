"""The fault suite's counting (bench/faults.py) and its stand-in partner (bench/partner_stub.py),
without a broker: what counts as lost, duplicated and recovered."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request

import pytest

from bench.faults import Feed, render, tally
from bench.partner_stub import Delivery, PartnerStub
from bench.reconciler import free_port


def feed_of(pairs: int, unacked: tuple[str, ...] = ()) -> Feed:
    """`pairs` pairs e<2k>, e<2k+1> between probation and recovery, sent at 0, 1, 2, ... s."""
    feed = Feed(rate=1.0, seconds=2.0 * pairs)
    for k in range(pairs):
        first, second = f"e{2 * k}", f"e{2 * k + 1}"
        feed.sent_at |= {first: 2.0 * k, second: 2.0 * k + 1}
        feed.pairs.append((first, second, "probation-london", "vol-recovery"))
    feed.acked = set(feed.sent_at) - set(unacked)
    return feed


def clash(partner: str, cause: str, at: float, event_id: str, key: str | None = None) -> Delivery:
    return Delivery(partner, event_id, cause, "alert.clash.raised", key or event_id, at)


def test_every_alert_once_is_nothing_lost_nothing_duplicated() -> None:
    feed = feed_of(2)
    got = [
        clash("probation-london", "e1", 1.5, "a1"),
        clash("vol-recovery", "e1", 1.5, "a2"),
        clash("probation-london", "e3", 3.5, "a3"),
        clash("vol-recovery", "e3", 4.0, "a4"),
    ]
    figures = tally(feed, got, set(feed.sent_at), fault_started=2.5)
    assert figures["alerts expected"] == 4
    assert figures["delivered"] == 4
    assert (figures["events lost"], figures["alerts lost"]) == (0, 0)
    assert (figures["dup raw"], figures["dup by key"]) == (0, 0)
    assert figures["recover s"] == pytest.approx(1.0)  # e3 sent at 3 s, last alert at 4 s


def test_a_repeat_with_its_key_is_dropped_by_key_and_a_new_key_is_not() -> None:
    feed = feed_of(1)
    got = [
        clash("probation-london", "e1", 1.5, "a1"),
        clash("probation-london", "e1", 9.0, "a1"),  # the same message again: key a1 again
        clash("vol-recovery", "e1", 1.5, "a2"),
        clash("vol-recovery", "e1", 9.0, "a9"),  # re-derived with a new event id
    ]
    figures = tally(feed, got, set(feed.sent_at), fault_started=0.0)
    assert figures["delivered"] == 2
    assert figures["dup raw"] == 2
    assert figures["dup by key"] == 1


def test_unacknowledged_pairs_owe_no_alert_and_missing_inbound_events_are_lost() -> None:
    feed = feed_of(2, unacked=("e2",))
    got = [clash("probation-london", "e1", 1.5, "a1")]
    figures = tally(feed, got, {"e0", "e2", "e3"}, fault_started=math.inf)
    assert figures["acked"] == 3
    assert figures["alerts expected"] == 2  # pair 1 lost an event before Kafka took it
    assert figures["alerts lost"] == 1  # recovery's alert of pair 0 never came
    assert figures["events lost"] == 1  # e1 was acknowledged but is not on the topic
    assert math.isnan(figures["recover s"])  # nothing was sent after the fault
    assert "alerts lost" in render([{"scenario": "x", "run": 1, **figures}])


def post(stub: PartnerStub, partner: str, event_id: str) -> int:
    body = json.dumps({"event_id": event_id, "correlation_id": "e1", "event_type": "alert.x"})
    request = urllib.request.Request(
        f"http://127.0.0.1:{stub.port}/{partner}",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Idempotency-Key": event_id},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0  # nothing listening


def test_the_stand_in_partner_records_only_what_it_accepts() -> None:
    stub = PartnerStub(free_port())
    stub.start()
    try:
        assert post(stub, "gp-Y01234", "a1") == 200
        stub.set_mode("error")
        assert post(stub, "gp-Y01234", "a2") == 500
        stub.set_mode("down")
        assert post(stub, "gp-Y01234", "a3") == 0
        stub.set_mode("up")
        assert post(stub, "gp-Y01234", "a4") == 200
    finally:
        stub.stop()
    assert [(d.partner, d.event_id, d.idempotency_key) for d in stub.deliveries] == [
        ("gp-Y01234", "a1", "a1"),
        ("gp-Y01234", "a4", "a4"),
    ]
    assert stub.refused == 1
    assert "url: http://127.0.0.1:" in stub.endpoints_yaml(["gp-Y01234"])
