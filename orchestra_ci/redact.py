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
        self._bytes_key: list[bytes] = []
        self._bytes: re.Pattern[bytes] | None = None
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

    def byte_pattern(self) -> "tuple[re.Pattern[bytes] | None, int]":
        """The secrets as one bytes pattern (UTF-8), and the longest one's length in bytes."""
        encoded = sorted((s.encode() for s in self._secrets), key=len, reverse=True)
        if not encoded:
            return None, 0
        if self._bytes_key != encoded:
            self._bytes_key = encoded
            self._bytes = re.compile(b"|".join(map(re.escape, encoded)))
        return self._bytes, len(encoded[0])

    def stream(self) -> "StreamRedactor":
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a byte stream chunk by chunk, holding back just enough bytes that a secret
    split across two reads (even inside a multi-byte character) is still caught. It works
    on bytes, so output that is not UTF-8 passes through unchanged."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._carry = b""

    def feed(self, chunk: bytes) -> bytes:
        pattern, longest = self.redactor.byte_pattern()
        if pattern is None:
            return chunk
        data = pattern.sub(MASK.encode(), self._carry + chunk)
        cut = max(0, len(data) - (longest - 1))
        self._carry = data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        pattern, _ = self.redactor.byte_pattern()
        data, self._carry = self._carry, b""
        return pattern.sub(MASK.encode(), data) if pattern is not None else data
