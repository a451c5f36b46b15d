"""A task's own max_cost_usd and max_turns (pure)."""

from orchestra_ci import caps
from orchestra_ci.outcome import Verdict
from orchestra_ci.record import Attempt


def attempt(number: int, cost: float | None) -> Attempt:
    made: Attempt = {"number": number, "agent": "claude", "startedAt": "2026-12-03T09:00:00Z"}
    if cost is not None:
        made["costUsd"] = cost
    return made


def test_spent_sums_the_reported_costs() -> None:
    assert caps.spent([attempt(1, 0.25), attempt(2, None), attempt(3, 0.5)]) == 0.75
    assert caps.spent([]) == 0.0


def test_the_cost_cap_is_reached_at_its_value() -> None:
    assert caps.cost_reached(0.99, 1.0) is None
    assert caps.cost_reached(5.0, None) is None
    reached = caps.cost_reached(1.0, 1.0)
    assert reached == "its attempts cost $1.00, which reaches its max_cost_usd of $1.00"


def checked(verdict: Verdict, **given: object) -> tuple[Verdict, bool]:
    args: dict[str, object] = {
        "turns": None,
        "max_turns": None,
        "enforced": True,
        "spent": 0.0,
        "max_cost": None,
        **given,
    }
    return caps.checked(verdict, **args)  # type: ignore[arg-type]


def test_a_failed_attempt_that_reaches_the_cost_cap_is_not_retried() -> None:
    failed = Verdict("failed", "agent exited with code 1")
    verdict, final = checked(failed, spent=1.2, max_cost=1.0)
    assert final and verdict.outcome == "failed"
    assert verdict.error == (
        "agent exited with code 1; not retried: its attempts cost $1.20, "
        "which reaches its max_cost_usd of $1.00"
    )
    assert checked(failed, spent=0.6, max_cost=1.0) == (failed, False)


def test_a_success_stands_whatever_it_cost() -> None:
    success = Verdict("success")
    assert checked(success, spent=9.0, max_cost=1.0) == (success, False)


def test_max_turns_is_enforced_from_the_reported_turns_when_the_cli_took_no_argument() -> None:
    verdict, final = checked(Verdict("success"), turns=12, max_turns=5)
    assert final and verdict == Verdict(
        "failed", "the agent took 12 turns, over its max_turns of 5"
    )
    assert checked(Verdict("success"), turns=5, max_turns=5) == (Verdict("success"), False)
    assert checked(Verdict("success"), turns=None, max_turns=5) == (Verdict("success"), False)
    # the CLI was given --max-turns: its own result says whether it ran out
    assert checked(Verdict("success"), turns=12, max_turns=5, enforced=False)[1] is False


def test_an_interrupted_attempt_is_left_as_it_is() -> None:
    interrupted = Verdict("interrupted", "interrupted")
    assert checked(interrupted, turns=50, max_turns=5, spent=9.0, max_cost=1.0) == (
        interrupted,
        False,
    )
