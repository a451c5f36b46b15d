"""Exhausted quotas: when they reset, and what a run does until then (pure).

A rate limit passes in seconds; an exhausted quota (a plan's usage limit, a weekly or daily
cap, spent credit) lasts until the provider resets it, so backing off and retrying only
burns attempts. The CLIs say when it resets in several ways: Codex's ``usage_limit_reached``
error carries ``resets_in_seconds`` (and its text "try again in 4 days 2 hours"), Claude
Code's usage-limit message ends in ``|<epoch seconds>`` or names a time ("resets 5pm
(UTC)"), Gemini CLI's per-minute quota says "Please retry in 2.0s". Only a time whose zone
is known counts: "resets 5pm" in the user's own zone is no reset time.
"""

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from orchestra_ci.outcome import Verdict

# Without a time budget, a run waits at most this long for a quota to reset; a later reset
# takes the agent out of the run (its tasks stay pending for the next one).
NO_BUDGET_HORIZON = 3600.0

_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_UNIT = r"(days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)\b"
_PART = r"(\d+(?:\.\d+)?)\s*" + _UNIT
_SPAN = re.compile(
    r"(?:resets?|reset_in|try again|retry|available again)\s+(?:in|after)\s+"
    + rf"((?:{_PART}(?:\s*,\s*|\s+and\s+|\s+)?)+)",
    re.I,
)
_PARTS = re.compile(_PART, re.I)
_RESETS_IN = re.compile(r"[\"']?resets?_in_seconds[\"']?\s*[:=]\s*(\d+(?:\.\d+)?)", re.I)
_RESETS_AT_EPOCH = re.compile(r"[\"']?resets?_at[\"']?\s*[:=]\s*(\d{9,11})\b", re.I)
_PIPE_EPOCH = re.compile(r"limit reached\|(\d{9,11})\b", re.I)
_ISO = re.compile(
    r"(?:resets?|try again|available again)\s+(?:at|on)?\s*"
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}))",
    re.I,
)
_CLOCK = re.compile(
    r"(?:resets?|try again|available again)\s+(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?"
    r"\s*\(?(?:UTC|GMT|Etc/UTC)\)?",
    re.I,
)


def _span_seconds(text: str) -> float:
    total = 0.0
    for value, unit in _PARTS.findall(text):
        total += float(value) * _UNIT_SECONDS[unit[0].lower()]
    return total


def _clock_time(hour: int, minute: int, meridiem: str, now: datetime) -> float | None:
    """The next time the UTC clock shows ``hour:minute`` (12-hour if ``meridiem``)."""
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem.lower().startswith("p") else 0)
    if hour > 23 or minute > 59:
        return None
    at = now.astimezone(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= now:
        at += timedelta(days=1)
    return at.timestamp()


def reset_at(text: str, now: datetime) -> float | None:
    """When the quota the output reports resets (epoch seconds), from the last reset time it
    names; None when it names none this can place in time."""
    found: list[tuple[int, float]] = []
    base = now.timestamp()
    for match in _RESETS_IN.finditer(text):
        found.append((match.start(), base + float(match[1])))
    for pattern in (_RESETS_AT_EPOCH, _PIPE_EPOCH):
        for match in pattern.finditer(text):
            found.append((match.start(), float(match[1])))
    for match in _SPAN.finditer(text):
        found.append((match.start(), base + _span_seconds(match[1])))
    for match in _ISO.finditer(text):
        try:
            at = datetime.fromisoformat(match[1].replace(" ", "T").replace("Z", "+00:00"))
        except ValueError:
            continue
        found.append((match.start(), at.timestamp()))
    for match in _CLOCK.finditer(text):
        at_clock = _clock_time(int(match[1]), int(match[2] or 0), match[3] or "", now)
        if at_clock is not None:
            found.append((match.start(), at_clock))
    return max(found)[1] if found else None


def until_text(resets_at: float | None, now: float) -> str:
    """``until 14:05 UTC`` (``until 2026-12-05 14:05 UTC`` on another day), or the words
    for a reset time the agent did not give."""
    if resets_at is None:
        return "with no reset time given"
    at = datetime.fromtimestamp(resets_at, UTC)
    same_day = at.date() == datetime.fromtimestamp(now, UTC).date()
    return "until " + at.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")


def exhausted(verdict: Verdict, resets_at: float | None, now: float) -> Verdict:
    """A quota verdict with its reset time, worded ``quota exhausted until 14:05 UTC: ...``."""
    detail = (verdict.error or "").removeprefix("quota exhausted: ")
    message = f"quota exhausted {until_text(resets_at, now)}: {detail}".rstrip(": ")
    return replace(verdict, error=message, resets_at=resets_at)


def pauses(resets_at: float | None, horizon: float | None, now: float) -> bool:
    """Whether the run waits for the reset (it comes before ``horizon``, the end of the time
    budget as epoch seconds; without one, within :data:`NO_BUDGET_HORIZON`) rather than
    taking the agent out of the run."""
    if resets_at is None:
        return False
    limit = horizon if horizon is not None else now + NO_BUDGET_HORIZON
    return resets_at <= limit
