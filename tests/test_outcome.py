"""Classifying how an attempt ended."""

import pytest

from orchestra_ci.final_result import FinalResult
from orchestra_ci.limits import OutputVerdict
from orchestra_ci.outcome import AttemptResult, StopReason, Verdict, classify

COMPLETIONS = ["exit", "sentinel"]


def test_exit_zero_is_success() -> None:
    assert classify(AttemptResult(exit_code=0), "exit") == Verdict("success")


def test_exit_zero_with_done_sentinel_is_success_for_both_protocols() -> None:
    for completion in COMPLETIONS:
        assert classify(AttemptResult(exit_code=0, done_sentinel=True), completion) == Verdict(
            "success"
        )


def test_exit_zero_with_error_sentinel_fails_with_its_message() -> None:
    result = AttemptResult(exit_code=0, error_sentinel={"error": "tests do not pass"})
    assert classify(result, "exit") == Verdict("failed", "tests do not pass")


def test_error_sentinel_wins_over_done_sentinel() -> None:
    result = AttemptResult(
        exit_code=0, done_sentinel=True, error_sentinel={"error": "gave up", "details": "x"}
    )
    for completion in COMPLETIONS:
        assert classify(result, completion) == Verdict("failed", "gave up")


@pytest.mark.parametrize("sentinel", [{}, {"error": ""}, {"error": None}, {"details": "only"}])
def test_error_sentinel_without_message_still_fails(sentinel: dict[str, object]) -> None:
    verdict = classify(AttemptResult(exit_code=0, error_sentinel=sentinel), "exit")
    assert verdict.outcome == "failed"
    assert verdict.error == "agent reported an error"


def test_error_sentinel_with_nonzero_exit_mentions_both() -> None:
    result = AttemptResult(exit_code=3, error_sentinel={"error": "lint failed"})
    verdict = classify(result, "exit")
    assert verdict.outcome == "failed"
    assert verdict.error is not None
    assert verdict.error.startswith("lint failed")
    assert "code 3" in verdict.error


def test_sentinel_completion_requires_done_file() -> None:
    verdict = classify(AttemptResult(exit_code=0), "sentinel")
    assert verdict.outcome == "failed"
    assert verdict.error is not None
    assert ".done" in verdict.error


def test_sentinel_completion_with_done_file_succeeds() -> None:
    assert classify(AttemptResult(exit_code=0, done_sentinel=True), "sentinel") == Verdict(
        "success"
    )


def test_done_sentinel_does_not_rescue_a_nonzero_exit() -> None:
    for completion in COMPLETIONS:
        verdict = classify(AttemptResult(exit_code=1, done_sentinel=True), completion)
        assert verdict.outcome == "failed"


@pytest.mark.parametrize("code", [1, 2, 127, 255])
def test_nonzero_exit_fails_naming_the_code(code: int) -> None:
    for completion in COMPLETIONS:
        verdict = classify(AttemptResult(exit_code=code), completion)
        assert verdict == Verdict("failed", f"agent exited with code {code}")


@pytest.mark.parametrize(("code", "signal"), [(-9, 9), (-15, 15), (-11, 11)])
def test_killed_by_signal(code: int, signal: int) -> None:
    verdict = classify(AttemptResult(exit_code=code), "exit")
    assert verdict == Verdict("failed", f"agent was killed by signal {signal}")


def test_unknown_exit_code_without_stop_reason_fails() -> None:
    verdict = classify(AttemptResult(exit_code=None), "exit")
    assert verdict.outcome == "failed"
    assert verdict.error == "agent was killed"


def test_spawn_error_is_not_found_with_its_message() -> None:
    result = AttemptResult(exit_code=None, spawn_error="command not found: claude")
    assert classify(result, "exit") == Verdict("not_found", "command not found: claude")


def test_spawn_error_wins_over_everything_else() -> None:
    result = AttemptResult(
        exit_code=0,
        spawn_error="no such file",
        stop_reason="cancelled",
        done_sentinel=True,
        error_sentinel={"error": "x"},
    )
    assert classify(result, "exit").outcome == "not_found"


def test_timeout_names_the_limit() -> None:
    result = AttemptResult(exit_code=-15, stop_reason="timeout", timeout=90)
    assert classify(result, "exit") == Verdict("timeout", "timed out after 90s")


def test_timeout_with_fractional_limit() -> None:
    result = AttemptResult(exit_code=-9, stop_reason="timeout", timeout=0.5)
    assert classify(result, "exit") == Verdict("timeout", "timed out after 0.5s")


def test_timeout_without_known_limit() -> None:
    result = AttemptResult(exit_code=None, stop_reason="timeout")
    assert classify(result, "exit") == Verdict("timeout", "timed out")


def test_cancelled() -> None:
    result = AttemptResult(exit_code=-15, stop_reason="cancelled")
    assert classify(result, "exit") == Verdict("cancelled", "cancelled")


def test_interrupted() -> None:
    verdict = classify(AttemptResult(exit_code=-15, stop_reason="interrupted"), "exit")
    assert verdict.outcome == "interrupted"
    assert verdict.error is not None
    assert "interrupted" in verdict.error


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [("timeout", "timeout"), ("cancelled", "cancelled"), ("interrupted", "interrupted")],
)
def test_stop_reason_wins_over_exit_code_and_sentinels(reason: StopReason, outcome: str) -> None:
    # An agent stopped by us may still exit 0 or leave sentinels behind while dying.
    result = AttemptResult(
        exit_code=0, stop_reason=reason, done_sentinel=True, error_sentinel={"error": "x"}
    )
    for completion in COMPLETIONS:
        assert classify(result, completion).outcome == outcome


def test_exit_zero_with_a_failed_final_result_fails_with_its_error() -> None:
    result = AttemptResult(exit_code=0, reported=FinalResult(False, "no response"))
    assert classify(result, "exit") == Verdict(
        "failed", "agent exited 0 but reported a failure: no response"
    )


def test_exit_zero_with_a_failed_final_result_and_a_rate_limit_is_rate_limited() -> None:
    result = AttemptResult(
        exit_code=0,
        reported=FinalResult(False, "quota"),
        output=OutputVerdict("rate_limited", 5, "429"),
    )
    assert classify(result, "exit") == Verdict(
        "rate_limited", "rate limited: 429 (retry after 5s)", 5
    )


def test_a_successful_final_result_does_not_make_a_failed_exit_a_success() -> None:
    result = AttemptResult(exit_code=1, reported=FinalResult(True))
    assert classify(result, "exit") == Verdict("failed", "agent exited with code 1")


def test_a_sentinel_agent_still_needs_its_done_file_with_a_successful_result() -> None:
    result = AttemptResult(exit_code=0, reported=FinalResult(True))
    assert classify(result, "sentinel").outcome == "failed"
