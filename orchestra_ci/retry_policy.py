"""When to retry and how long to wait: tenacity's stop and wait strategies, without sleeping.

The runner never blocks a worker on a backoff: a task that should be retried goes back to
``pending`` with ``nextAttemptAt`` set, and the scheduler starts it when that time comes.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from orchestra_ci.record import Outcome

if TYPE_CHECKING:
    import tenacity

RETRYABLE: frozenset[Outcome] = frozenset({"failed", "timeout", "stalled", "rate_limited"})
SWITCHABLE: frozenset[Outcome] = frozenset({"rate_limited", "quota_exhausted", "fatal"})

DEFAULT_BACKOFF = 10.0
DEFAULT_BACKOFF_MAX = 600.0


@dataclass(frozen=True)
class Decision:
    action: Literal["complete", "retry", "fail", "requeue", "wait", "cancel", "switch"]
    delay: float = 0.0
    agent: str | None = None


def _state(attempt_number: int) -> "tenacity.RetryCallState":
    import tenacity  # first needed when an attempt ends: its import overlaps the agents' work

    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt_number
    return state


def backoff_delay(retry_number: int, backoff: float, backoff_max: float) -> float:
    """Delay before retry ``retry_number`` (1-based): ``backoff`` doubling, +25% jitter, capped."""
    import tenacity

    # wait_exponential_jitter's ``initial`` is deprecated (tenacity 9) and its replacement,
    # ``multiplier``, does not exist in tenacity 8: compose the two waits instead.
    wait = tenacity.wait_exponential(
        multiplier=backoff, max=backoff_max, exp_base=2
    ) + tenacity.wait_random(0, backoff * 0.25)
    return min(float(wait(_state(retry_number))), backoff_max)


def decide(
    outcome: Outcome,
    retry_count: int,
    max_retries: int,
    backoff: float = DEFAULT_BACKOFF,
    backoff_max: float = DEFAULT_BACKOFF_MAX,
    *,
    retry_after: float | None = None,
    fallback: str | None = None,
) -> Decision:
    """``retry_count`` is the number of retries already performed for this task.

    A rate-limited, out-of-quota or fatally failing agent hands the task to ``fallback``
    (when there is one) at once, without using up a retry; a rate-limited retry waits at
    least as long as the agent's output asked (``retry_after``); without a fallback, a task
    whose agent's quota ran out waits, pending, for that agent (a quota that resets is no
    failure of the task)."""
    if outcome in SWITCHABLE and fallback is not None:
        return Decision("switch", 0.0, fallback)
    if outcome == "success":
        return Decision("complete")
    if outcome == "interrupted":
        return Decision("requeue")
    if outcome == "quota_exhausted":
        return Decision("wait")
    if outcome == "cancelled":
        return Decision("cancel")
    if outcome not in RETRYABLE:
        return Decision("fail")
    import tenacity

    stop = tenacity.stop_after_attempt(max_retries + 1)
    if stop(_state(retry_count + 1)):
        return Decision("fail")
    delay = backoff_delay(retry_count + 1, backoff, backoff_max)
    if outcome == "rate_limited" and retry_after is not None:
        delay = max(delay, retry_after)
    return Decision("retry", delay)
