"""Retry decisions and backoff delays."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra_ci.record import Outcome
from orchestra_ci.retry_policy import (
    DEFAULT_BACKOFF,
    DEFAULT_BACKOFF_MAX,
    Decision,
    backoff_delay,
    decide,
)


@pytest.mark.parametrize("retry_count", [0, 2, 3, 50])
def test_success_completes(retry_count: int) -> None:
    assert decide("success", retry_count, 3) == Decision("complete")


@pytest.mark.parametrize("retry_count", [0, 3, 10])
def test_interrupted_is_requeued_even_with_no_retries_left(retry_count: int) -> None:
    assert decide("interrupted", retry_count, 3).action == "requeue"
    assert decide("interrupted", retry_count, 0).action == "requeue"


def test_cancelled_cancels() -> None:
    assert decide("cancelled", 0, 3).action == "cancel"


def test_not_found_fails_at_once() -> None:
    assert decide("not_found", 0, 5).action == "fail"


@pytest.mark.parametrize("outcome", ["failed", "timeout"])
def test_retryable_outcomes_retry_until_max_retries(outcome: Outcome) -> None:
    assert decide(outcome, 0, 3).action == "retry"
    assert decide(outcome, 1, 3).action == "retry"
    assert decide(outcome, 2, 3).action == "retry"
    assert decide(outcome, 3, 3).action == "fail"
    assert decide(outcome, 4, 3).action == "fail"


@pytest.mark.parametrize("outcome", ["failed", "timeout"])
def test_max_retries_zero_never_retries(outcome: Outcome) -> None:
    assert decide(outcome, 0, 0).action == "fail"


def test_non_retry_decisions_have_no_delay() -> None:
    final_outcomes: tuple[Outcome, ...] = ("success", "interrupted", "cancelled", "not_found")
    for outcome in final_outcomes:
        assert decide(outcome, 0, 3).delay == 0.0
    assert decide("failed", 3, 3).delay == 0.0


def test_first_retry_waits_backoff_plus_at_most_a_quarter() -> None:
    for _ in range(50):
        delay = decide("failed", 0, 3, backoff=10, backoff_max=600).delay
        assert 10 <= delay <= 12.5


def test_default_backoff_is_used() -> None:
    delay = decide("failed", 0, 3).delay
    assert DEFAULT_BACKOFF <= delay <= DEFAULT_BACKOFF * 1.25


@pytest.mark.parametrize(("retry_number", "base"), [(1, 10), (2, 20), (3, 40), (4, 80), (6, 320)])
def test_delays_double_per_retry(retry_number: int, base: float) -> None:
    for _ in range(20):
        assert base <= backoff_delay(retry_number, 10, 10_000) <= base * 1.25
        assert base <= decide("timeout", retry_number - 1, 10, 10, 10_000).delay <= base * 1.25


def test_delay_is_capped_by_backoff_max() -> None:
    for retry_number in (5, 10, 50, 5_000):
        for _ in range(10):
            assert backoff_delay(retry_number, 10, 100) == 100
    assert decide("failed", 40, 100, backoff=10, backoff_max=30).delay == 30


def test_cap_includes_the_jitter() -> None:
    # base 40 is under the cap of 41, but 40 + jitter may not exceed it
    for _ in range(50):
        assert 40 <= backoff_delay(3, 10, 41) <= 41


def test_jitter_varies_the_delay() -> None:
    delays = {backoff_delay(2, 10, 600) for _ in range(50)}
    assert len(delays) > 1


def test_zero_backoff_retries_immediately() -> None:
    assert decide("failed", 0, 3, backoff=0, backoff_max=0) == Decision("retry", 0.0)


def test_defaults_are_sane() -> None:
    assert 0 < DEFAULT_BACKOFF <= DEFAULT_BACKOFF_MAX


outcomes = st.sampled_from(["failed", "timeout", "interrupted"])


@settings(max_examples=200, deadline=None)
@given(
    max_retries=st.integers(0, 20),
    sequence=st.lists(outcomes, min_size=1, max_size=60),
    backoff=st.floats(0, 100),
    backoff_max=st.floats(0, 1000),
)
def test_retries_never_exceed_max_retries(
    max_retries: int, sequence: list[Outcome], backoff: float, backoff_max: float
) -> None:
    """Replay what the runner does: retryCount grows by one per retry, interruptions
    requeue without counting, and a ``fail`` ends the task."""
    retry_count = 0
    counted_attempts = 0
    final = None
    for outcome in sequence:
        decision = decide(outcome, retry_count, max_retries, backoff, backoff_max)
        if outcome == "interrupted":
            assert decision.action == "requeue"
            continue
        counted_attempts += 1
        if decision.action == "retry":
            assert 0 <= decision.delay <= backoff_max
            retry_count += 1
        else:
            assert decision.action == "fail"
            final = decision
            break
    assert retry_count <= max_retries
    if final is not None:
        # it failed for good only after using every retry
        assert retry_count == max_retries
        assert counted_attempts == max_retries + 1
    else:
        assert counted_attempts <= max_retries


def test_a_spent_quota_waits_without_using_a_retry_or_switches_to_a_fallback() -> None:
    assert decide("quota_exhausted", 0, 3) == Decision("wait")
    assert decide("quota_exhausted", 3, 3) == Decision("wait")  # no retries left: still waits
    assert decide("quota_exhausted", 0, 3, fallback="codex") == Decision("switch", 0.0, "codex")
