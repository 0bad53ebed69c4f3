"""The metrics' labels and counting, operator alerts to the webhook, the silence rule, JSON log
lines from the standard library's loggers, and the shipped alerting rules and dashboard naming
only metrics the code defines."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from services.domain.feed_silence import silences
from services.domain.partners import PartnerDirectory, duration
from services.observe import metrics
from services.observe.operator import OperatorAlerts

ROOT = Path(__file__).parents[2]
MONITORING = ROOT / "deploy" / "monitoring"


def value(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get()) if labels else float(metric._value.get())


# --- counting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "path", "label"),
    [
        ("application/fhir+json", "/fhir/Appointment", "fhir-json"),
        ("application/json; charset=utf-8", "/fhir", "fhir-json"),
        (None, "/fhir", "fhir-json"),
        ("application/fhir+xml", "/fhir/Appointment", "fhir-xml"),
        ("text/csv", "/upload/csv", "csv"),
        ("multipart/form-data; boundary=x", "/upload/csv", "csv"),
        ("image/png", "/fhir", "other"),
    ],
)
def test_an_input_format_is_one_of_a_few_labels(
    content_type: str | None, path: str, label: str
) -> None:
    assert metrics.input_format(content_type, path) == label


def test_a_gateway_request_counts_events_refusals_and_dead_letters_by_partner() -> None:
    accepted = value(metrics.EVENTS_ACCEPTED, "gp-A99999", "fhir-json")
    refused = value(metrics.EVENTS_REFUSED, "gp-A99999", "fhir-xml")
    unknown = value(metrics.EVENTS_REFUSED, "unknown", "fhir-json")
    kept = value(metrics.DEAD_LETTERS, "gateway", "http-422")

    metrics.count_gateway_request(
        "POST", "/fhir", "application/fhir+json", 202, {"partner": "gp-A99999", "events": 3}
    )
    metrics.count_gateway_request(
        "POST", "/fhir", "application/fhir+xml", 422, {"partner": "gp-A99999", "kept": True}
    )
    metrics.count_gateway_request("POST", "/fhir", None, 401, {})  # nobody signed in
    metrics.count_gateway_request("GET", "/metadata", None, 200, {"partner": "gp-A99999"})

    assert value(metrics.EVENTS_ACCEPTED, "gp-A99999", "fhir-json") == accepted + 3
    assert value(metrics.EVENTS_REFUSED, "gp-A99999", "fhir-xml") == refused + 1
    assert value(metrics.EVENTS_REFUSED, "unknown", "fhir-json") == unknown + 1
    assert value(metrics.DEAD_LETTERS, "gateway", "http-422") == kept + 1


class _Message:
    def __init__(self, timestamp: float) -> None:
        self.timestamp = timestamp


class _Event:
    def __init__(self, timestamp: float) -> None:
        self.message = _Message(timestamp)


def test_an_alert_sent_is_counted_by_kind_with_its_latency_and_other_outputs_are_not() -> None:
    from schemas import topics

    kind = "alert.absence.explained"
    before = value(metrics.ALERTS_RAISED, kind)
    observed = metrics.ALERT_LATENCY._sum.get()
    alert = json.dumps({"event_type": kind}).encode()
    now = datetime.now(UTC).timestamp()

    metrics.observe_output(topics.ALERTS.name, alert, _Event(now - 2.0))
    metrics.observe_output(topics.AUDIT.name, alert, _Event(now - 2.0))
    metrics.observe_output(topics.ALERTS.name, alert, None)  # no event: counted, no latency

    assert value(metrics.ALERTS_RAISED, kind) == before + 2
    assert 2.0 <= metrics.ALERT_LATENCY._sum.get() - observed < 10.0


def test_a_partner_label_is_a_named_partner_id_or_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key read from Kafka that is no partner the process knows (a stray record's key, which
    could be anything) never becomes a label."""
    monkeypatch.setattr(metrics, "_PARTNER_LABELS", set())
    assert metrics.partner_label("gp-Y01234") == "gp-Y01234"
    assert metrics.partner_label(None) == "unknown"
    metrics.allow_partner_labels(["gp-Y01234", "mht-rv5"])
    assert metrics.partner_label("gp-Y01234") == "gp-Y01234"
    assert metrics.partner_label("9434765919") == "unknown"
    metrics.set_backlog({"9434765919": 2, "x123456": 3, "mht-rv5": 1})
    backlog = {
        s.labels["partner"]: s.value
        for family in metrics.DELIVERY_BACKLOG.collect()
        for s in family.samples
    }
    assert backlog["unknown"] == 5
    assert backlog["mht-rv5"] == 1
    assert "9434765919" not in backlog


def test_consumer_lag_drops_partitions_no_longer_held() -> None:
    metrics.set_consumer_lag({("t-a", 0): 5, ("t-a", 1): 0})
    metrics.set_consumer_lag({("t-a", 1): 7})
    series = {
        (s.labels["topic"], s.labels["partition"]): s.value
        for family in metrics.CONSUMER_LAG.collect()
        for s in family.samples
    }
    assert series == {("t-a", "1"): 7}


def test_the_scrape_carries_every_metric_with_help_text() -> None:
    body, content_type = metrics.exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in ("concord_events_accepted", "concord_delivery_backlog", "process_cpu_seconds"):
        assert f"# HELP {name}" in text


def test_metrics_are_defined_in_one_module_only() -> None:
    """Every `Counter(`, `Gauge(` or `Histogram(` of the project is in services/observe/metrics.py."""
    defining = re.compile(r"\b(Counter|Gauge|Histogram|Summary)\(\s*\"concord_")
    found = [
        path.relative_to(ROOT).as_posix()
        for package in ("schemas", "services", "connectors", "deploy")
        for path in (ROOT / package).rglob("*.py")
        if defining.search(path.read_text(encoding="utf-8"))
    ]
    assert found == ["services/observe/metrics.py"]


# --- operator alerts ---------------------------------------------------------------------------


async def _serve(statuses: list[int], bodies: list[dict[str, Any]]) -> TestServer:
    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(status=statuses.pop(0) if statuses else 204)

    app = web.Application()
    app.router.add_post("/ops", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def test_operator_alerts_of_one_kind_and_partner_raised_together_are_sent_as_one() -> None:
    bodies: list[dict[str, Any]] = []

    async def scenario() -> None:
        server = await _serve([], bodies)
        alerts = OperatorAlerts(str(server.make_url("/ops")), backoff_s=0.0)
        alerts.raise_alert("delivery-gave-up", "gp-Y01234", {"messages": 1})
        alerts.raise_alert("delivery-gave-up", "gp-Y01234", {"messages": 1})
        alerts.raise_alert("partner-silent", "mht-rv5", {"quiet_for_s": 30000, "expected_s": 21600})
        await alerts.drained()
        await server.close()

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert [(b["kind"], b["partner"], b["counts"]) for b in bodies] == [
        ("delivery-gave-up", "gp-Y01234", {"messages": 2}),
        ("partner-silent", "mht-rv5", {"expected_s": 21600, "quiet_for_s": 30000}),
    ]
    assert [line["kind"] for line in logs if line["event"] == "operator.alert"] == [
        "delivery-gave-up",
        "delivery-gave-up",
        "partner-silent",
    ]


def test_a_failing_webhook_is_tried_a_bounded_number_of_times_then_logged() -> None:
    bodies: list[dict[str, Any]] = []
    failed = value(metrics.OPERATOR_WEBHOOK, "failed")

    async def scenario() -> None:
        server = await _serve([500, 500, 500, 500], bodies)
        alerts = OperatorAlerts(str(server.make_url("/ops")), backoff_s=0.0)
        alerts.raise_alert("identity-conflict", "probation-london", {"identifiers": 3})
        await alerts.drained()
        await server.close()

    with capture_logs() as logs:
        asyncio.run(scenario())
    assert len(bodies) == 3
    assert value(metrics.OPERATOR_WEBHOOK, "failed") == failed + 1
    assert any(line["event"] == "operator.webhook_failed" for line in logs)


def test_without_a_webhook_an_operator_alert_is_logged_only() -> None:
    alerts = OperatorAlerts(None)
    with capture_logs() as logs:
        alerts.raise_alert("partner-silent", "gp-A99999", {"quiet_for_s": 1})  # no loop needed
    assert [line["event"] for line in logs] == ["operator.alert"]


# --- partner silence ---------------------------------------------------------------------------

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SIX_HOURS = timedelta(hours=6)


def test_a_partner_quiet_longer_than_expected_is_told_once_until_heard_again() -> None:
    expected = {"gp-Y01234": SIX_HOURS}
    heard = {"gp-Y01234": T0}
    told: frozenset[str] = frozenset()

    new, told = silences(expected, heard, T0, T0 + timedelta(hours=5), told)
    assert new == []
    new, told = silences(expected, heard, T0, T0 + timedelta(hours=7), told)
    assert [(s.partner, s.quiet_for) for s in new] == [("gp-Y01234", timedelta(hours=7))]
    new, told = silences(expected, heard, T0, T0 + timedelta(hours=8), told)
    assert new == [], "told once"
    heard = {"gp-Y01234": T0 + timedelta(hours=9)}
    new, told = silences(expected, heard, T0, T0 + timedelta(hours=10), told)
    assert (new, told) == ([], frozenset())
    new, told = silences(expected, heard, T0, T0 + timedelta(hours=16), told)
    assert [s.partner for s in new] == ["gp-Y01234"], "quiet again: told again"


def test_a_partner_never_heard_from_counts_from_when_the_watch_began() -> None:
    expected = {"vol-housing": SIX_HOURS}
    assert silences(expected, {}, T0, T0 + timedelta(hours=5), frozenset())[0] == []
    assert [s.partner for s in silences(expected, {}, T0, T0 + timedelta(hours=7), frozenset())[0]]


@given(
    st.lists(
        st.tuples(st.sampled_from(["gp-a", "gp-b", "vol-c"]), st.integers(0, 48)), max_size=30
    ),
    st.dictionaries(st.sampled_from(["gp-a", "gp-b", "vol-c"]), st.integers(1, 12)),
)
def test_each_silence_is_told_exactly_once(
    heard_at_hours: list[tuple[str, int]], expected_hours: dict[str, int]
) -> None:
    """Checked hourly over two days: a partner is told of once per stretch of silence longer
    than expected, and only partners with an expected interval are ever told of."""
    expected = {p: timedelta(hours=h) for p, h in expected_hours.items()}
    told: frozenset[str] = frozenset()
    heard: dict[str, datetime] = {}
    tellings: list[tuple[str, int]] = []
    for hour in range(49):
        for partner, at in heard_at_hours:
            if at == hour:
                heard[partner] = T0 + timedelta(hours=hour)
        new, told = silences(expected, heard, T0, T0 + timedelta(hours=hour), told)
        tellings += [(s.partner, hour) for s in new]
    for partner, hour in tellings:
        assert partner in expected
        last = heard_before(heard_at_hours, partner, hour)
        assert hour - last > expected_hours[partner]
    # Between two tellings of a partner it was heard from.
    for partner in expected:
        hours = [h for p, h in tellings if p == partner]
        for earlier, later in itertools.pairwise(hours):
            assert any(p == partner and earlier < at <= later for p, at in heard_at_hours)


def heard_before(heard_at_hours: list[tuple[str, int]], partner: str, hour: int) -> int:
    return max((at for p, at in heard_at_hours if p == partner and at <= hour), default=0)


def test_silent_after_is_read_from_the_partner_directory() -> None:
    directory = PartnerDirectory.from_dict(
        {
            "partners": [
                {"id": "gp-Y01234", "kind": "gp", "name": "Surgery", "silent_after": "6h"},
                {"id": "mht-rv5", "kind": "mht", "name": "Trust"},
            ]
        }
    )
    assert directory.partners["gp-Y01234"].silent_after == SIX_HOURS
    assert directory.partners["mht-rv5"].silent_after is None
    assert duration("90m") == timedelta(minutes=90)
    assert duration("2d") == timedelta(days=2)


@pytest.mark.parametrize("written", ["6", "six hours", "0h", "-1h", "1.5h"])
def test_a_malformed_silent_after_is_refused_naming_the_partner(written: str) -> None:
    entry = {"id": "gp-Y01234", "kind": "gp", "name": "Surgery", "silent_after": written}
    with pytest.raises(ValueError, match=r"gp-Y01234.*silent_after"):
        PartnerDirectory.from_dict({"partners": [entry]})


# --- logs --------------------------------------------------------------------------------------


def test_standard_library_log_lines_and_warnings_are_json() -> None:
    program = """
import logging, warnings
from services.runtime import configure_logging
configure_logging()
logging.getLogger("aiokafka.consumer").warning("fetch failed for %s", "t-1")
logging.getLogger("faust.worker").info("not shown: libraries log warnings and worse")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("mode.services").exception("crashed")
warnings.warn("deprecated", stacklevel=1)
import structlog
structlog.get_logger().info("hub.line", partner="gp-Y01234")
"""
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "", "CONCORD_LOG_FORMAT": "json"},
        check=True,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line.get("logger"), line["event"]) for line in lines][:2] == [
        ("aiokafka.consumer", "fetch failed for t-1"),
        ("mode.services", "crashed"),
    ]
    assert "ZeroDivisionError" in lines[1]["exception"]
    assert lines[2]["logger"] == "py.warnings"
    assert lines[3] == {**lines[3], "event": "hub.line", "partner": "gp-Y01234"}
    assert len(lines) == 4


# --- the alerting rules and the dashboard ------------------------------------------------------

PROMETHEUS_OWN = {"up"}  # series Prometheus itself records for each scrape target
# PromQL words that are not series names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "absent", "absent_over_time", "time", "le", "bool", "offset", "topk", "bottomk",
    "clamp_min", "max_over_time", "min_over_time", "delta", "deriv", "vector", "label_replace",
}  # fmt: skip


def series_in(expression: str) -> set[str]:
    """The series names an expression reads (label matchers and strings left out)."""
    bare = re.sub(r"\{[^}]*\}", "", re.sub(r'"[^"]*"', "", expression))
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", bare))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?", w)}


def test_every_alerting_rule_reads_only_metrics_the_hub_defines() -> None:
    document = yaml.safe_load((MONITORING / "alerts.yaml").read_text(encoding="utf-8"))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {
        "ConcordDeliveryGaveUp",
        "ConcordIdentityConflict",
        "ConcordPartnerSilent",
    }
    defined = metrics.defined_names() | PROMETHEUS_OWN
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["summary"]
        assert balanced(rule["expr"]), rule["alert"]
        assert re.search(r"(>|<|==|!=)\s*[\d.]+$|> on \(partner\)", rule["expr"]), (
            f"{rule['alert']} fires on a comparison"
        )
        used = series_in(rule["expr"])
        assert used, rule["alert"]
        assert used <= defined, f"{rule['alert']} reads {sorted(used - defined)}"


def test_every_dashboard_panel_reads_only_metrics_the_hub_defines() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text(encoding="utf-8"))
    defined = metrics.defined_names()
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    assert len(panels) >= 8
    shown: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert balanced(target["expr"]), panel["title"]
            used = series_in(target["expr"])
            assert used <= defined, f"{panel['title']} reads {sorted(used - defined)}"
            shown |= used
    concord = {name for name in defined if name.startswith("concord_")}
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in concord}
    assert families <= {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in shown}, (
        "every metric of the hub is on the dashboard"
    )


def balanced(expression: str) -> bool:
    """Brackets, braces and parentheses open and close in order (outside strings)."""
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in re.sub(r'"[^"]*"', "", expression):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_the_expression_reader_finds_the_series_and_only_them() -> None:
    expression = (
        'histogram_quantile(0.95, sum by (le) (rate(concord_alert_latency_seconds_bucket{job="w"}'
        "[5m]))) > 30 and on() max(concord_partner_feed_age_seconds) > 3600"
    )
    assert balanced(expression)
    assert not balanced("sum(rate(concord_deliveries_total[5m)")
    assert series_in(expression) == {
        "concord_alert_latency_seconds_bucket",
        "concord_partner_feed_age_seconds",
    }


@pytest.mark.parametrize("written", ["abc", "99999", "-1", "8o83"])
def test_a_malformed_health_port_is_refused_naming_the_setting(
    written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.observe.health import DELIVERY_HTTP, http_address

    monkeypatch.setenv("CONCORD_DELIVERY_HTTP_PORT", written)
    with pytest.raises(ValueError, match="CONCORD_DELIVERY_HTTP_PORT must be a TCP port"):
        http_address(*DELIVERY_HTTP)
    monkeypatch.setenv("CONCORD_DELIVERY_HTTP_PORT", "9183")
    assert http_address(*DELIVERY_HTTP) == ("127.0.0.1", 9183)
