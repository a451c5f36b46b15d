"""The terminal: log lines, and on a TTY one live status line kept below them."""

import sys
from typing import Any, TextIO


class Console:
    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._status = ""

    def line(self, text: str) -> None:
        if self.live and self._status:
            self.stream.write("\r\x1b[2K" + text + "\n" + self._status)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def status(self, text: str) -> None:
        if not self.live:
            return
        self._status = text
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()

    def close(self) -> None:
        if self.live and self._status:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._status = ""


class ConsoleLogger:
    """A structlog logger that writes rendered lines through the console."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def msg(self, message: str) -> None:
        self._console.line(message)

    log = debug = info = warning = warn = error = critical = exception = msg


class ConsoleLoggerFactory:
    def __init__(self, console: Console) -> None:
        self.console = console

    def __call__(self, *args: Any) -> ConsoleLogger:
        return ConsoleLogger(self.console)
