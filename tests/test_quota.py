"""Reading when a spent quota resets, and what the run does until then (pure)."""

from datetime import UTC, datetime

import pytest

from orchestra_ci import quota
from orchestra_ci.outcome import Verdict

NOW = datetime(2026, 12, 3, 9, 30, 0, tzinfo=UTC)
T = NOW.timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # Codex: the backend's usage_limit_reached error, and the words it prints
        ('{"type":"usage_limit_reached","resets_in_seconds":5400}', 5400),
        ("You've hit your usage limit. Upgrade to Pro or try again in 2 days 3 hours", 183600),
        ("try again in 1 hour 30 minutes.", 5400),
        ("try again in 45 seconds", 45),
        # Gemini CLI's per-minute quota
        ("You exceeded your current quota ... Please retry in 2.0s.", 2),
        # Claude Code's usage limit with its reset as epoch seconds
        (f"Claude AI usage limit reached|{int(T) + 600}", 600),
        # a time with its zone, the next time the clock shows it
        ("You've hit your limit · resets 5pm (UTC)", 7.5 * 3600),
        ("5-hour limit reached ∙ resets 9am UTC", 23.5 * 3600),
        ("Quota resets at 2026-12-03T11:00:00Z", 1.5 * 3600),
        ("limit reached, try again at 2026-12-04 09:30:00+00:00", 86400),
    ],
)
def test_reset_times_the_clis_print(text: str, seconds: float) -> None:
    assert quota.reset_at(text, NOW) == pytest.approx(T + seconds)


@pytest.mark.parametrize(
    "text",
    [
        "Quota exceeded. Check your plan and billing details.",
        "You have exhausted your daily quota on this model.",
        "You've hit your limit · resets 5pm (Europe/Paris)",  # a zone this does not place
        "usage limit reached",
    ],
)
def test_no_reset_time_when_the_output_names_none_it_can_place(text: str) -> None:
    assert quota.reset_at(text, NOW) is None


def test_the_last_reset_the_output_names_wins() -> None:
    text = "try again in 10 seconds\n...\nresets_in_seconds: 3600"
    assert quota.reset_at(text, NOW) == T + 3600


def test_the_verdict_is_worded_with_its_reset() -> None:
    verdict = Verdict("quota_exhausted", "quota exhausted: You've hit your usage limit")
    at_noon = quota.exhausted(verdict, T + 2.5 * 3600, T)
    assert at_noon.error == "quota exhausted until 12:00 UTC: You've hit your usage limit"
    assert at_noon.resets_at == T + 2.5 * 3600
    tomorrow = quota.exhausted(verdict, T + 86400, T)
    assert tomorrow.error is not None
    assert tomorrow.error.startswith("quota exhausted until 2026-12-04 09:30 UTC: ")
    unknown = quota.exhausted(verdict, None, T)
    assert unknown.error == "quota exhausted with no reset time given: You've hit your usage limit"


@pytest.mark.parametrize(
    ("resets_in", "horizon_in", "paused"),
    [
        (60, 3600, True),  # inside the time budget: wait for it
        (7200, 3600, False),  # after the budget ends: out of the run
        (3600, 3600, True),
        (None, 3600, False),  # no reset time: out of the run
        (1800, None, True),  # no budget: within an hour
        (2 * 3600, None, False),
    ],
)
def test_the_run_waits_only_for_a_reset_inside_its_budget(
    resets_in: float | None, horizon_in: float | None, paused: bool
) -> None:
    resets_at = None if resets_in is None else T + resets_in
    horizon = None if horizon_in is None else T + horizon_in
    assert quota.pauses(resets_at, horizon, T) is paused
