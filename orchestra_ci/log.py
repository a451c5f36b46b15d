"""structlog set-up: JSON lines in CI, readable lines on a terminal, secrets masked."""

import os
from collections.abc import MutableMapping
from typing import Any

import structlog

from orchestra_ci.console import Console, ConsoleLoggerFactory
from orchestra_ci.redact import Redactor


def _redact(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, dict):
        return {k: _redact(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, redactor) for v in value]
    return value


class RedactProcessor:
    """A structlog processor that masks the run's secrets in every field of an event."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
        return {k: _redact(v, self.redactor) for k, v in event.items() if v is not None}


def choose_format(requested: str | None, console: Console) -> str:
    if requested:
        return requested
    if os.environ.get("CI", "").lower() == "true" or not console.stream.isatty():
        return "json"
    return "console"


def configure(console: Console, log_format: str | None, redactor: Redactor) -> None:
    fmt = choose_format(log_format, console)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=console.live)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            RedactProcessor(redactor),
            renderer,
        ],
        logger_factory=ConsoleLoggerFactory(console),
        cache_logger_on_first_use=False,
    )
