"""structlog set-up: readable lines on a terminal, JSON lines everywhere else.

Log lines carry event ids, event types, partner ids and hub person ids only —
never identifiers, names, dates of birth or clinical text.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(level: str | None = None) -> None:
    """Configure structlog and the standard library logging it shares a stream with."""
    name = (level or os.environ.get("CONCORD_LOG_LEVEL", "info")).upper()
    numeric = logging.getLevelNamesMapping().get(name, logging.INFO)
    json_lines = os.environ.get("CONCORD_LOG_FORMAT", "auto") == "json" or not sys.stderr.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
    # kafka-python's selector times its own polling and warns about it under load: noise to a reader.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
