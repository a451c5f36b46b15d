"""structlog set-up: JSON lines in CI, readable lines on a terminal, secrets masked."""

import os
from collections.abc import MutableMapping
from typing import Any

import structlog

from orchestra_ci.console import Console, ConsoleLoggerFactory
from orchestra_ci.redact import redactor, secret_values


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    return {k: _redact(v) for k, v in event.items() if v is not None}


def choose_format(requested: str | None, console: Console) -> str:
    if requested:
        return requested
    if os.environ.get("CI", "").lower() == "true" or not console.stream.isatty():
        return "json"
    return "console"


def configure(console: Console, log_format: str | None) -> None:
    redactor.add(*secret_values())
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
            redact_processor,
            renderer,
        ],
        logger_factory=ConsoleLoggerFactory(console),
        cache_logger_on_first_use=False,
    )
