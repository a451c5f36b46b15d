"""Masking secrets in anything we write: logs, reports, comments."""

import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL|_KEY$", re.I)
_MIN_LENGTH = 6


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look like they hold secrets."""
    env = os.environ if environ is None else environ
    return [v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_LENGTH]


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            # A multi-line secret is also masked line by line: a cut log tail may start
            # inside it.
            parts = [secret, *secret.splitlines()] if "\n" in secret else [secret]
            self._secrets.update(p for p in parts if len(p.strip()) >= _MIN_LENGTH)
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text

    @property
    def longest(self) -> int:
        return max(map(len, self._secrets), default=0)

    def stream(self) -> "StreamRedactor":
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a byte stream chunk by chunk, holding back just enough bytes that a secret
    split across two reads is still caught. Bytes that are not UTF-8 pass through."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._carry = ""

    def feed(self, chunk: bytes) -> bytes:
        if self.redactor.longest == 0:
            return chunk
        text = self.redactor(self._carry + chunk.decode("utf-8", "surrogateescape"))
        keep = self.redactor.longest - 1
        cut = max(0, len(text) - keep)
        self._carry = text[cut:]
        return text[:cut].encode("utf-8", "surrogateescape")

    def flush(self) -> bytes:
        text, self._carry = self.redactor(self._carry), ""
        return text.encode("utf-8", "surrogateescape")


redactor = Redactor()
