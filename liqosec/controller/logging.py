"""structlog set-up: JSON lines in a pod, readable console output on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(*, level: str = "info", fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # urllib3 warns on stderr, unformatted, before each transport retry; the client turns every
    # failure into a typed error its caller logs (or, at start-up, reports in one line).
    logging.getLogger("urllib3").setLevel(logging.ERROR)
