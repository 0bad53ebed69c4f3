"""The hub's Prometheus metrics, each defined once here and counted where it happens.

Labels carry partner ids, formats, kinds, stages, topics and partitions only: never a person,
an identifier, an event id or free text, so a series never names anyone and their number stays
bounded by the partner directory.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from schemas import topics

Handler = Callable[..., Awaitable[Any]]
REGISTRY = CollectorRegistry(auto_describe=True)
for _standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):  # memory, CPU, files
    REGISTRY.register(_standard)
PREFIX = "concord_"
UNKNOWN = "unknown"  # the partner label of a request whose sender was not signed in

EVENTS_ACCEPTED = Counter(
    "concord_events_accepted",
    "Events a partner sent that Kafka stored, by partner and input format",
    ["partner", "format"],
    registry=REGISTRY,
)
EVENTS_REFUSED = Counter(
    "concord_events_refused",
    "Inputs refused at an edge (each answered with an error), by partner and input format",
    ["partner", "format"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "concord_dead_letters",
    "Records written to the dead-letter topic, by the stage that refused them and the reason's class",
    ["stage", "reason"],
    registry=REGISTRY,
)
ALERTS_RAISED = Counter(
    "concord_alerts_raised",
    "Alerts the workers sent to the alerts topic, by kind (the envelope's event type)",
    ["kind"],
    registry=REGISTRY,
)
ALERT_LATENCY = Histogram(
    "concord_alert_latency_seconds",
    "Seconds from the hub recording the record that caused an alert to the alert being sent",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
BREACH_CHECK_SECONDS = Histogram(
    "concord_breach_check_seconds",
    "Seconds a worker took to answer a breach check it holds the person for (audit included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "concord_delivery_attempts",
    "Delivery attempts, by recipient partner and outcome (delivered, retry, refused)",
    ["partner", "outcome"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "concord_deliveries",
    "Messages finished by the deliverer, by recipient partner and outcome "
    "(delivered, or dead-lettered after a refusal or the last attempt)",
    ["partner", "outcome"],
    registry=REGISTRY,
)
DELIVERY_BACKLOG = Gauge(
    "concord_delivery_backlog",
    "Messages fetched by this deliverer and not yet delivered or dead-lettered, by partner",
    ["partner"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "concord_consumer_lag",
    "Records on a partition this process has not yet read (high watermark minus position)",
    ["topic", "partition"],
    registry=REGISTRY,
)
FEED_AGE = Gauge(
    "concord_partner_feed_age_seconds",
    "Seconds since the hub last heard from each partner (its feed's freshness)",
    ["partner"],
    registry=REGISTRY,
)
FEED_EXPECTED = Gauge(
    "concord_partner_expected_interval_seconds",
    "How long each partner's feed may be quiet before operators are told (silent_after)",
    ["partner"],
    registry=REGISTRY,
)
OPERATOR_ALERTS = Counter(
    "concord_operator_alerts",
    "Operator alerts raised (delivery-gave-up, identity-conflict, partner-silent)",
    ["kind"],
    registry=REGISTRY,
)
OPERATOR_WEBHOOK = Counter(
    "concord_operator_webhook_posts",
    "POSTs of operator alerts to the operator webhook, by outcome (sent, failed, dropped)",
    ["outcome"],
    registry=REGISTRY,
)


# The partner ids a partner label may carry, once a process has named them (the deliverer: its
# endpoints and the partner directory); any other key read from Kafka is labelled "unknown".
_PARTNER_LABELS: set[str] = set()


def allow_partner_labels(partners: Iterable[str]) -> None:
    """Name partner ids this process may label series with (see `partner_label`)."""
    _PARTNER_LABELS.update(partners)


def partner_label(partner: str | None) -> str:
    """The partner label: the id when no list was named or the id is on it, else unknown."""
    if not partner or (_PARTNER_LABELS and partner not in _PARTNER_LABELS):
        return UNKNOWN
    return partner


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus's text format, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_PLAIN_0_0_4


def defined_names() -> set[str]:
    """Every series name this module defines, as a scrape shows them (counters with `_total`,
    histograms with `_bucket`, `_sum` and `_count`)."""
    names: set[str] = set()
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            names.add(sample.name)
        if metric.type == "counter":
            names |= {f"{metric.name}_total", f"{metric.name}_created"}
        elif metric.type == "histogram":
            names |= {f"{metric.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(metric.name)
    return names


def timed(histogram: Histogram) -> Callable[[Handler], Handler]:
    """Decorate a coroutine function to observe how long each call takes in `histogram`."""

    def decorate(function: Handler) -> Handler:
        @functools.wraps(function)
        async def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started)

        return timed_call

    return decorate


# --- the edges ---------------------------------------------------------------------------------


def input_format(content_type: str | None, path: str = "") -> str:
    """The label of a gateway input's format: fhir-json, fhir-xml, csv or other."""
    kind = (content_type or "").split(";", maxsplit=1)[0].strip().lower()
    if path.endswith("/csv") or kind in ("text/csv", "application/csv"):
        return "csv"
    if kind.endswith("xml"):
        return "fhir-xml"
    if kind.endswith("json") or not kind:
        return "fhir-json"
    return "other"


def count_input(partner: str | None, fmt: str, *, accepted: int, refused: int) -> None:
    """Count what an edge did with one input: the events Kafka stored, the inputs (or CSV rows)
    it refused."""
    label = partner_label(partner)
    if accepted:
        EVENTS_ACCEPTED.labels(label, fmt).inc(accepted)
    if refused:
        EVENTS_REFUSED.labels(label, fmt).inc(refused)


def count_gateway_request(
    method: str, path: str, content_type: str | None, status: int, facts: Mapping[str, Any]
) -> None:
    """Count one gateway request from what its log line reports (`facts`: the signed-in partner,
    events published, problems, whether it was dead-lettered); GETs count nothing."""
    if method != "POST":
        return
    fmt = input_format(content_type, path)
    refused = 1 if status >= 400 else (int(facts.get("problems", 0)) if fmt == "csv" else 0)
    count_input(facts.get("partner"), fmt, accepted=int(facts.get("events", 0)), refused=refused)
    if facts.get("kept"):
        count_dead_letter("gateway", f"http-{status}")


def count_message(
    partner: str,
    fmt: str,
    *,
    stage: str,
    events: int,
    stored: bool,
    refused: bool,
    dead_lettered: bool,
) -> None:
    """Count one message an edge answered (an MLLP frame): its events when Kafka stored them, a
    refusal when it was refused or could not be stored, and its dead letter."""
    count_input(partner, fmt, accepted=events if stored else 0, refused=int(refused or not stored))
    if dead_lettered and stored:
        count_dead_letter(stage, "refused")


def count_dead_letter(stage: str, reason: str) -> None:
    """Count one record written to the dead-letter topic (reason: a short class, never text)."""
    DEAD_LETTERS.labels(stage, reason).inc()


# --- the workers -------------------------------------------------------------------------------


def observe_output(topic: str, value: bytes, cause: Any) -> None:
    """Count an output a worker sends: an alert by kind, with its latency from the Kafka timestamp
    of the record that caused it (`cause`: the faust event being handled, or None)."""
    if topic != topics.ALERTS.name:
        return
    try:
        kind = str(orjson.loads(value).get("event_type") or UNKNOWN)
    except (orjson.JSONDecodeError, AttributeError):
        kind = UNKNOWN
    ALERTS_RAISED.labels(kind).inc()
    caused_at = getattr(getattr(cause, "message", None), "timestamp", None)  # seconds
    if isinstance(caused_at, int | float) and caused_at > 0:
        ALERT_LATENCY.observe(max(0.0, time.time() - caused_at))


def set_consumer_lag(lags: Mapping[tuple[str, int], int]) -> None:
    """Set each assigned partition's lag; partitions no longer held are dropped."""
    held = {(t, str(p)) for t, p in lags}
    for labels in _label_sets(CONSUMER_LAG):
        if labels not in held:
            CONSUMER_LAG.remove(*labels)
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(max(0, lag))


def set_feed_ages(last_heard: Mapping[str, datetime], now: datetime) -> None:
    """Set how long ago each partner was last heard from."""
    for partner, heard in last_heard.items():
        FEED_AGE.labels(partner_label(partner)).set(max(0.0, (now - heard).total_seconds()))


def set_expected_intervals(expected: Mapping[str, timedelta]) -> None:
    """Set each partner's silent_after, for the alerting rule that compares it with the age."""
    for partner, interval in expected.items():
        FEED_EXPECTED.labels(partner_label(partner)).set(interval.total_seconds())


# --- the deliverer -----------------------------------------------------------------------------


def count_attempt(partner: str, verdict: str) -> None:
    """Count one delivery attempt (delivered, retry, refused), and a delivery when it worked."""
    DELIVERY_ATTEMPTS.labels(partner_label(partner), verdict).inc()
    if verdict == "delivered":
        DELIVERIES.labels(partner_label(partner), "delivered").inc()


def count_given_up(partner: str, reason: str) -> None:
    """Count a message the deliverer dead-lettered instead of delivering."""
    DELIVERIES.labels(partner_label(partner), "dead-lettered").inc()
    count_dead_letter("delivery", reason)


def set_backlog(waiting: Mapping[str, int]) -> None:
    """Set each partner's delivery backlog (partners with none read 0)."""
    totals: dict[str, int] = {}
    for partner, count in waiting.items():
        label = partner_label(partner)
        totals[label] = totals.get(label, 0) + count
    for label, count in totals.items():
        DELIVERY_BACKLOG.labels(label).set(count)


def _label_sets(metric: Gauge) -> Iterable[tuple[str, ...]]:
    return [
        tuple(sample.labels.values()) for family in metric.collect() for sample in family.samples
    ]
