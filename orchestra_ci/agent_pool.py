"""Which agents a run may still use: disabled by a fatal error, out of quota, cooling down
after a rate limit (or until a quota resets), at their ``maxConcurrent``, and the fallback
chosen when a task's own agent cannot run.

One pool is shared by every worker of a run (claims run in worker threads, outcomes are
noted on the event loop), so its state is behind a lock. It reads time only through the
clock it is given.
"""

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestra_ci import quota
from orchestra_ci.outcome import Verdict
from orchestra_ci.record import TaskRecord


@dataclass(frozen=True)
class Exhausted:
    """An agent whose quota ran out in this run: until when, and what it said."""

    resets_at: float | None
    error: str
    paused: bool  # the run waits for the reset (else the agent is out of the run)


class AgentPool:
    def __init__(
        self,
        fallbacks: Mapping[str, Sequence[str]],
        clock: Callable[[], float] = time.time,
        limits: Mapping[str, int | None] | None = None,
        horizon: float | None = None,
    ) -> None:
        """``fallbacks``: every configured agent, with the agents it falls back to;
        ``limits``: the ``maxConcurrent`` of those that have one; ``horizon``: the end of
        the run's time budget (epoch seconds), which a quota's reset must come before for
        the run to wait for it."""
        self._fallbacks = {name: tuple(chain) for name, chain in fallbacks.items()}
        self._clock = clock
        self._limits = {name: n for name, n in (limits or {}).items() if n is not None}
        self._horizon = horizon
        self._lock = threading.Lock()
        self._disabled: dict[str, str] = {}  # agent -> the fatal error that disabled it
        self._cooling: dict[str, float] = {}  # agent -> epoch seconds when it may run again
        self._exhausted: dict[str, Exhausted] = {}
        self._busy: dict[str, int] = {}  # agent -> its attempts running now

    # -- what the run has learnt ----------------------------------------------------------

    def note(self, agent: str, verdict: Verdict, default_wait: float) -> float | None:
        """Learn from an attempt's verdict: a fatal error disables the agent for the run; a
        rate limit cools it down for every worker, for as long as the agent's output asked
        (else ``default_wait``; a later, longer wait wins); an exhausted quota pauses it
        until the reset when that comes within the time budget, else takes it out of the
        run. Returns the cooling seconds."""
        with self._lock:
            if verdict.outcome == "fatal":
                self._disabled[agent] = verdict.error or "fatal error"
            elif verdict.outcome == "quota_exhausted":
                now = self._clock()
                paused = quota.pauses(verdict.resets_at, self._horizon, now)
                self._exhausted[agent] = Exhausted(
                    verdict.resets_at, verdict.error or "quota exhausted", paused
                )
                if paused and verdict.resets_at is not None:
                    self._cooling[agent] = max(self._cooling.get(agent, 0.0), verdict.resets_at)
                    return verdict.resets_at - now
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

    def exhausted(self) -> dict[str, Exhausted]:
        """The agents whose quota ran out in this run (paused or out), for the report."""
        with self._lock:
            return dict(self._exhausted)

    def _out(self, agent: str) -> bool:
        """Not to be used again in this run: disabled, or out of quota past the horizon."""
        spent = self._exhausted.get(agent)
        return agent in self._disabled or (spent is not None and not spent.paused)

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
            if not self._out(wanted):
                return wanted
        return self.fallback(record, wanted, include_cooling=True)

    def waits_for_quota(self, record: TaskRecord) -> bool:
        """Whether a task with no usable agent left has one that is only out of quota: it
        stays pending for a later run rather than failing."""
        with self._lock:
            return any(
                name in self._exhausted and name not in self._disabled
                for name in self._chain(record)
            )

    # -- concurrency ------------------------------------------------------------------------

    def _free(self, agent: str) -> bool:
        return agent not in self._limits or self._busy.get(agent, 0) < self._limits[agent]

    def has_free_slot(self, agent: str) -> bool:
        with self._lock:
            return self._free(agent)

    def acquire(self, agent: str) -> bool:
        """Take one of ``agent``'s ``maxConcurrent`` slots; False when all are in use."""
        with self._lock:
            if not self._free(agent):
                return False
            self._busy[agent] = self._busy.get(agent, 0) + 1
            return True

    def release(self, agent: str) -> None:
        with self._lock:
            self._busy[agent] = max(0, self._busy.get(agent, 0) - 1)

    def fallback(
        self, record: TaskRecord, current: str, include_cooling: bool = False
    ) -> str | None:
        """The first agent in the task's chain (its own agent, then that agent's fallbacks)
        other than ``current`` that is configured, not disabled or out of quota and, unless
        ``include_cooling``, not cooling down."""
        now = self._clock()
        with self._lock:
            for name in self._chain(record):
                if name == current or self._out(name) or name not in self._fallbacks:
                    continue
                if include_cooling or self._cooling.get(name, 0.0) <= now:
                    return name
        return None

    def _chain(self, record: TaskRecord) -> tuple[str, ...]:
        """The task's own agent, then that agent's fallbacks (none if it is not configured)."""
        primary = record["agent"]
        return (primary, *self._fallbacks[primary]) if primary in self._fallbacks else ()

    def unusable(self) -> str:
        """Why a task has no agent left, for its error message."""
        reasons = {**{a: e.error for a, e in self.exhausted().items()}, **self.disabled()}
        return "no usable agent: " + "; ".join(f"{a}: {e}" for a, e in reasons.items())
