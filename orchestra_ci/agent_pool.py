"""Which agents a run may still use: disabled by a fatal error, cooling down after a rate
limit, and the fallback chosen when a task's own agent cannot run.

One pool is shared by every worker of a run (claims run in worker threads, outcomes are
noted on the event loop), so its state is behind a lock. It reads time only through the
clock it is given.
"""

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from orchestra_ci.outcome import Verdict
from orchestra_ci.record import TaskRecord


class AgentPool:
    def __init__(
        self,
        fallbacks: Mapping[str, Sequence[str]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``fallbacks``: every configured agent, with the agents it falls back to."""
        self._fallbacks = {name: tuple(chain) for name, chain in fallbacks.items()}
        self._clock = clock
        self._lock = threading.Lock()
        self._disabled: dict[str, str] = {}  # agent -> the fatal error that disabled it
        self._cooling: dict[str, float] = {}  # agent -> epoch seconds when it may run again

    # -- what the run has learnt ----------------------------------------------------------

    def note(self, agent: str, verdict: Verdict, default_wait: float) -> float | None:
        """Learn from an attempt's verdict: a fatal error disables the agent for the run; a
        rate limit cools it down for every worker, for as long as the agent's output asked
        (else ``default_wait``; a later, longer wait wins). Returns the cooling seconds."""
        with self._lock:
            if verdict.outcome == "fatal":
                self._disabled[agent] = verdict.error or "fatal error"
            elif verdict.outcome == "rate_limited":
                wait = verdict.retry_after if verdict.retry_after is not None else default_wait
                until = self._clock() + wait
                self._cooling[agent] = max(self._cooling.get(agent, 0.0), until)
                return wait
        return None

    # -- questions --------------------------------------------------------------------------

    def disabled(self) -> dict[str, str]:
        with self._lock:
            return dict(self._disabled)

    def cooling_until(self, agent: str) -> float | None:
        """When ``agent`` may run again (epoch seconds), if it is cooling down now."""
        with self._lock:
            until = self._cooling.get(agent, 0.0)
        return until if until > self._clock() else None

    def choose(self, record: TaskRecord) -> str | None:
        """The agent for the task's next attempt: the one a fallback switch chose, else the
        task's own; when that one was disabled, the first usable fallback (cooling or not:
        the claim waits for it). None when no agent of the task is usable."""
        wanted = record.get("nextAgent") or record["agent"]
        with self._lock:
            if wanted not in self._disabled:
                return wanted
        return self.fallback(record, wanted, include_cooling=True)

    def fallback(
        self, record: TaskRecord, current: str, include_cooling: bool = False
    ) -> str | None:
        """The first agent in the task's chain (its own agent, then that agent's fallbacks)
        other than ``current`` that is configured, not disabled and, unless
        ``include_cooling``, not cooling down."""
        primary = record["agent"]
        chain = (primary, *self._fallbacks[primary]) if primary in self._fallbacks else ()
        now = self._clock()
        with self._lock:
            for name in chain:
                if name == current or name in self._disabled or name not in self._fallbacks:
                    continue
                if include_cooling or self._cooling.get(name, 0.0) <= now:
                    return name
        return None

    def unusable(self) -> str:
        """Why a task has no agent left, for its error message."""
        return "no usable agent: " + "; ".join(f"{a}: {e}" for a, e in self.disabled().items())
