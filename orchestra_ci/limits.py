"""Reading an agent's output for rate limits, exhausted quotas, fatal errors and success
(pure).

Agent CLIs report provider trouble in text, not exit codes: Claude Code prints
``API Error: Request rejected (429)`` on stdout, Codex ``exceeded retry limit, last status:
429`` on stderr, and Aider exits 0 even when every call failed. Patterns per agent decide.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

_UNITS = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
}
_NUM = r"(\d+(?:\.\d+)?)"
_UNIT = r"\s*(ms|seconds?|secs?|s|minutes?|mins?|m|hours?|h)?\b"
_DELAYS = [
    re.compile(r"retry[-_ ]after[\"']?\s*[:=]?\s*" + _NUM + _UNIT, re.I),
    re.compile(r"try again in\s+" + _NUM + _UNIT, re.I),
    re.compile(r"resets? in\s+" + _NUM + _UNIT, re.I),
    re.compile(r"\"retry_delay_ms\"\s*:\s*" + _NUM, re.I),
]

Limit = Literal["fatal", "quota", "rate_limited"]


@dataclass(frozen=True)
class OutputVerdict:
    kind: Limit | None = None
    retry_after: float | None = None
    matched: str | None = None


def _compiled(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.I | re.M) for p in patterns]


def retry_after(text: str) -> float | None:
    """The last delay the output asks for ("retry after 30s", "try again in 1s", ...)."""
    best: tuple[int, float] | None = None
    for pattern in _DELAYS:
        for match in pattern.finditer(text):
            value = float(match.group(1))
            if "retry_delay_ms" in pattern.pattern:
                seconds = value / 1000
            else:
                unit = (
                    (match.group(2) or "s").lower()
                    if match.lastindex and match.lastindex > 1
                    else "s"
                )
                seconds = value * _UNITS.get(unit, 1)
            if best is None or match.start() >= best[0]:
                best = (match.start(), seconds)
    return best[1] if best else None


def read_output(
    text: str,
    rate_limit_patterns: list[str],
    fatal_patterns: list[str],
    quota_patterns: Sequence[str] = (),
) -> OutputVerdict:
    """Fatal patterns win over quotas, quotas over rate limits: a bad key will not get
    better by waiting, and a spent quota not by waiting seconds."""
    in_order: tuple[tuple[Limit, Sequence[str]], ...] = (
        ("fatal", fatal_patterns),
        ("quota", quota_patterns),
        ("rate_limited", rate_limit_patterns),
    )
    for kind, patterns in in_order:
        for pattern in _compiled(patterns):
            match = pattern.search(text)
            if match is None:
                continue
            if kind == "rate_limited":
                return OutputVerdict(kind, retry_after(text), match.group(0))
            said = _said(text, match) if kind == "quota" else match.group(0)
            return OutputVerdict(kind, None, said)
    return OutputVerdict()


def _said(text: str, match: re.Match[str]) -> str:
    """What the agent said where ``match`` is: its line (a JSON event's ``message``), since
    a quota's message names the plan and the reset that the matched words alone do not."""
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[start : end if end >= 0 else len(text)].strip()
    if line.startswith("{"):
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        message = event.get("message") if isinstance(event, dict) else None
        if isinstance(message, str) and message.strip():
            line = message.strip()
    line = line.removeprefix("ERROR: ")
    return line if len(line) <= 300 else line[:299] + "…"


def looks_successful(text: str, success_patterns: list[str]) -> bool:
    """With success patterns configured, exit 0 counts only if one of them appears."""
    return not success_patterns or any(p.search(text) for p in _compiled(success_patterns))
