"""The worker's `/metrics` and `/livez` (its `/ready` is in views.py): the hub's metrics
(services/observe/metrics.py), with the consumer lag of each partition this worker reads and
each partner feed's age brought up to date when scraped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.observe.metrics import exposition, set_consumer_lag, set_feed_ages
from services.stream.app import app
from services.web.views import LAST_HEARD


def consumer_lags() -> dict[tuple[str, int], int]:
    """Records not yet read on each partition assigned to this worker: the high watermark of its
    last fetch minus the next offset to read (faust's `_read_offset` holds the last one read)."""
    consumer: Any = app.consumer
    lags: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        read = consumer._read_offset.get(tp)  # faust keeps no public position
        lags[(tp.topic, tp.partition)] = highwater - (0 if read is None else read + 1)
    return lags


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    """The worker's metrics in Prometheus's text format."""
    set_consumer_lag(consumer_lags())
    set_feed_ages(dict(LAST_HEARD), datetime.now(UTC))
    body, content_type = exposition()
    return web.bytes(body, headers={"Content-Type": content_type})


@app.page("/livez")
async def livez(web: Any, request: Any) -> Any:
    """200 while the worker's event loop answers (readiness is /ready)."""
    return web.json({"live": True})
