"""A task's own caps, ``max_cost_usd`` and ``max_turns`` (pure).

The run's ``max_cost_usd`` stops the run from starting attempts; a task's stops that task
from starting another one, counted from the costs its attempts reported (in this run and
earlier ones). ``max_turns`` goes to CLIs that take it (the agent's ``maxTurnsArgs``, e.g.
Claude Code's ``--max-turns``); for the others it is enforced from the turns the attempt
reported, after it ended, since only the CLI itself can stop at a turn.
"""

from collections.abc import Sequence

from orchestra_ci.outcome import Verdict
from orchestra_ci.record import Attempt


def spent(attempts: Sequence[Attempt]) -> float:
    """What the task's attempts cost, as their agents reported it (USD)."""
    return sum(float(a.get("costUsd") or 0.0) for a in attempts)


def cost_reached(total: float, cap: float | None) -> str | None:
    """Why no further attempt may start, when the task's attempts cost ``total`` (USD) and
    that reaches its cap."""
    if cap is None or total < cap:
        return None
    return f"its attempts cost ${total:.2f}, which reaches its max_cost_usd of ${cap:.2f}"


def checked(
    verdict: Verdict,
    *,
    turns: int | None,
    max_turns: int | None,
    enforced: bool,
    spent: float,
    max_cost: float | None,
) -> tuple[Verdict, bool]:
    """The attempt's verdict once the task's caps are applied, and whether the task must
    fail now rather than retry. ``enforced``: max_turns is checked here (the CLI took no
    argument for it); ``spent``: what the task's attempts cost, this one included. An
    attempt the run interrupted or the user cancelled is left as it is."""
    if verdict.outcome in ("interrupted", "cancelled"):
        return verdict, False
    if enforced and max_turns is not None and turns is not None and turns > max_turns:
        error = f"the agent took {turns} turns, over its max_turns of {max_turns}"
        return Verdict("failed", error), True
    reached = cost_reached(spent, max_cost)
    if reached is not None and verdict.outcome != "success":
        error = f"{verdict.error or verdict.outcome}; not retried: {reached}"
        return Verdict(verdict.outcome, error), True
    return verdict, False
