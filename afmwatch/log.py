"""structlog set-up: JSON lines when stderr is not a terminal (journald), colour when it is."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO, cast

import structlog

from afmwatch.names import clean


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is now (test runners and daemons swap it; a stream kept from an
    earlier call may be closed by then)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _escaped_names(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """A file name that is not UTF-8 shows its odd bytes as `\\xNN` (a log line is text)."""
    return {key: clean(value) if isinstance(value, str) else value for key, value in event.items()}


def log_to_stderr_until_configured() -> None:
    """Before a program configures logging, structlog prints to stdout, where a command's results go
    (`evaluate --json` after a library call in the same process printed a log line into its JSON).
    Point that default at stderr, and at info level (a library's debug lines, one per file read, are
    noise on a user's terminal); a later `configure_logging` decides everything else."""
    if not structlog.is_configured():
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        )


def configure_logging(level: str = "info", json_lines: bool | None = None) -> None:
    """Configure structlog once, at the program's edge."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _escaped_names,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
