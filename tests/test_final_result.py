"""Reading an agent's final result from its output, and what it makes of an attempt: the
texts are those Gemini CLI 0.61.0 and OpenCode 1.18.33 print (AGENT-CLIS.md), read through
the presets' own patterns."""

import json

import pytest

from orchestra_ci.agents import load_agents
from orchestra_ci.final_result import FinalResult, read_result
from orchestra_ci.limits import read_output
from orchestra_ci.outcome import AttemptResult, Verdict, classify

AGENTS = load_agents(None)
GEMINI_NOISE = "YOLO mode is enabled. All tool calls will be automatically approved.\n"
GEMINI_SUCCESS = (
    GEMINI_NOISE
    + json.dumps({"session_id": "s1", "response": "Done.", "stats": {"models": {}}}, indent=2)
    + "\nRipgrep is not available. Falling back to GrepTool.\n"
)


def gemini_error(message: str, code: int | None) -> str:
    error: dict[str, object] = {"type": "Error", "message": message}
    if code is not None:  # the HTTP status; none without a response
        error["code"] = code
    return GEMINI_NOISE + json.dumps({"session_id": "s1", "error": error}) + "\n"


def verdict(agent: str, exit_code: int, text: str) -> Verdict:
    """What the engine decides for a preset's attempt that printed ``text``."""
    spec = AGENTS[agent]
    result = AttemptResult(
        exit_code=exit_code,
        output=read_output(
            text, spec.rate_limit_patterns, spec.fatal_patterns, spec.quota_patterns
        ),
        reported=read_result(spec.result_format, text),
    )
    return classify(result, spec.completion)


def test_gemini_json_success_is_its_pretty_printed_result_with_a_response() -> None:
    assert read_result("gemini-json", GEMINI_SUCCESS) == FinalResult(True)
    assert verdict("gemini", 0, GEMINI_SUCCESS) == Verdict("success")


@pytest.mark.parametrize("text", ["", GEMINI_NOISE, "Attempt 1 failed. Retrying...\n"])
def test_gemini_exiting_0_without_its_result_failed(text: str) -> None:
    # Stopped by SIGTERM it exits 0 with stdout empty.
    reported = read_result("gemini-json", text)
    assert reported is not None and not reported.ok
    outcome = verdict("gemini", 0, text)
    assert outcome.outcome == "failed"
    assert outcome.error is not None and "did not finish" in outcome.error


def test_gemini_error_object_names_the_message_and_status() -> None:
    text = gemini_error("The model is having a bad day.", 500)
    assert read_result("gemini-json", text) == FinalResult(
        False, "The model is having a bad day. (HTTP 500)"
    )
    # Exit code: the HTTP status mod 256.
    assert verdict("gemini", 500 % 256, text) == Verdict(
        "failed", "agent exited with code 244: The model is having a bad day. (HTTP 500)"
    )


def test_gemini_last_result_counts() -> None:
    text = gemini_error("first try failed", 500) + GEMINI_SUCCESS
    assert read_result("gemini-json", text) == FinalResult(True)


def test_gemini_daily_quota_is_a_spent_quota_not_a_rate_limit() -> None:
    text = gemini_error("You have exhausted your daily quota on this model.", 429)
    outcome = verdict("gemini", 429 % 256, text)
    assert outcome.outcome == "quota_exhausted"
    assert outcome.error is not None and "exhausted your daily quota" in outcome.error


def test_gemini_per_minute_quota_is_a_rate_limit_with_its_delay() -> None:
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        "Please retry in 2.0s.\nSuggested retry after 2s."
    )
    outcome = verdict("gemini", 173, gemini_error(message, 429))
    assert (outcome.outcome, outcome.retry_after) == ("rate_limited", 2)


@pytest.mark.parametrize(
    ("exit_code", "text", "expected"),
    [
        (173, gemini_error("Resource has been exhausted", 429), "rate_limited"),
        (
            247,
            gemini_error("The model is overloaded. Please try again later.", 503),
            "rate_limited",
        ),
        (145, gemini_error("Request had invalid authentication credentials.", 401), "fatal"),
        (144, gemini_error("API key not valid. Please pass a valid API key.", 400), "fatal"),
        (
            41,
            "When using Gemini API, you must specify the GEMINI_API_KEY environment variable.\n",
            "fatal",
        ),
        (55, "Gemini CLI is not running in a trusted directory. To proceed, ...\n", "fatal"),
        (1, gemini_error("exception TypeError: fetch failed sending request", None), "failed"),
    ],
)
def test_gemini_errors_map_to_outcomes(exit_code: int, text: str, expected: str) -> None:
    assert verdict("gemini", exit_code, text).outcome == expected


REJECTED = (
    "\x1b[0m→ \x1b[0mRead ../outside.txt\n"
    "\x1b[93m\x1b[1m! \x1b[0mpermission requested: external_directory (/work/*); "
    "auto-rejecting\n"
    "\x1b[91m\x1b[1mError: \x1b[0mThe user rejected permission to use this specific tool call.\n"
)


def test_opencode_permission_auto_rejected_fails_an_attempt_that_exited_0() -> None:
    assert read_result("opencode-run", REJECTED) == FinalResult(
        False, "it asked for a permission, which was auto-rejected: external_directory (/work/*)"
    )
    assert verdict("opencode", 0, "I could not read it.\n" + REJECTED) == Verdict(
        "failed",
        "agent exited 0 but reported a failure: it asked for a permission, which was "
        "auto-rejected: external_directory (/work/*)",
    )


def test_opencode_run_that_asked_nothing_is_judged_by_its_exit_code() -> None:
    text = "\x1b[0m← \x1b[0mWrite hello.txt\nWrote hello.txt.\n"
    assert read_result("opencode-run", text) is None
    assert verdict("opencode", 0, text) == Verdict("success")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Error: \x1b[0mRate limit reached for gpt-x in organization org-1.\n", "rate_limited"),
        ("Error: \x1b[0mIncorrect API key provided: sk-***. You can find ...\n", "fatal"),
        (
            "Error: \x1b[0mYou exceeded your current quota, please check your plan.\n",
            "quota_exhausted",
        ),
        ("Error: \x1b[0mCannot connect to API: Unable to connect.\n", "failed"),
    ],
)
def test_opencode_errors_map_to_outcomes(text: str, expected: str) -> None:
    assert verdict("opencode", 1, "\x1b[91m\x1b[1m" + text).outcome == expected


def test_an_agent_without_a_result_format_is_judged_as_before() -> None:
    assert read_result(None, REJECTED) is None
    assert AGENTS["aider"].result_format is None


def claude_result(is_error: bool, result: str, status: int | None = None, **extra: object) -> str:
    """Claude Code 2.1.197's ``--output-format json`` result: "subtype" says "success" even
    on an API error."""
    fields: dict[str, object] = {"type": "result", "subtype": "success", "is_error": is_error}
    fields.update(api_error_status=status, result=result, total_cost_usd=0.01, **extra)
    return json.dumps(fields) + "\n"


def test_claude_is_error_at_exit_0_fails_with_its_own_message() -> None:
    text = claude_result(True, "API Error: 500 Internal server error", 500)
    assert read_result("claude-json", text) == FinalResult(
        False, "API Error: 500 Internal server error"
    )
    assert verdict("claude", 0, text) == Verdict(
        "failed", "agent exited 0 but reported a failure: API Error: 500 Internal server error"
    )


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (429, "API Error: Request rejected (429) · slow down", "rate_limited"),
        (529, "API Error: 529 Overloaded. This is a server-side issue", "rate_limited"),
        (401, "Invalid API key · Fix external API key", "fatal"),
        (None, "API Error: Unable to connect to API (ConnectionRefused)", "failed"),
    ],
)
@pytest.mark.parametrize("exit_code", [0, 1])
def test_claude_api_error_status_names_the_kind(
    status: int | None, message: str, expected: str, exit_code: int
) -> None:
    outcome = verdict("claude", exit_code, claude_result(True, message, status))
    assert outcome.outcome == expected
    assert outcome.error is not None and message in outcome.error


def test_claude_kind_comes_from_its_status_without_any_pattern() -> None:
    # No rate-limit pattern of the preset matches the text: the status alone decides.
    result = AttemptResult(
        exit_code=0,
        reported=read_result(
            "claude-json", claude_result(True, "Request rejected. Please try again in 3s.", 429)
        ),
    )
    assert classify(result, "exit") == Verdict(
        "rate_limited",
        "rate limited: Request rejected. Please try again in 3s. (HTTP 429) (retry after 3s)",
        3,
    )


@pytest.mark.parametrize(
    ("subtype", "error"),
    [
        ("error_max_turns", "it reached its maximum number of turns (5)"),
        ("error_during_execution", "error during execution"),
    ],
)
def test_claude_error_subtypes_fail(subtype: str, error: str) -> None:
    fields = {"type": "result", "subtype": subtype, "is_error": False, "num_turns": 5}
    text = json.dumps(fields) + "\n"
    assert read_result("claude-json", text) == FinalResult(False, error)
    assert verdict("claude", 0, text) == Verdict(
        "failed", f"agent exited 0 but reported a failure: {error}"
    )


def test_claude_success_is_judged_by_is_error_not_by_its_prose() -> None:
    # Measured: "success" with a result saying a tool failed, and nothing changed. The text
    # is the model's; require_changes catches a run that changed nothing.
    text = claude_result(False, "Tool failed: permission denied")
    assert read_result("claude-json", text) == FinalResult(True)
    assert verdict("claude", 0, text) == Verdict("success")


def test_claude_without_its_result_object_is_judged_by_its_exit_code() -> None:
    text = "--dangerously-skip-permissions cannot be used with root/sudo privileges\n"
    assert read_result("claude-json", text) is None
    assert verdict("claude", 1, text).outcome == "fatal"
    assert verdict("claude", 0, "done\n") == Verdict("success")


def codex_events(*events: dict[str, object]) -> str:
    started = [{"type": "thread.started", "thread_id": "t1"}, {"type": "turn.started"}]
    return "".join(json.dumps(e) + "\n" for e in [*started, *events])


COMPLETED: dict[str, object] = {
    "type": "turn.completed",
    "usage": {"input_tokens": 10, "output_tokens": 2},
}


def test_codex_turn_failed_at_exit_0_fails_with_its_message() -> None:
    text = codex_events({"type": "turn.failed", "error": {"message": "stream disconnected"}})
    assert read_result("codex-jsonl", text) == FinalResult(False, "stream disconnected")
    assert verdict("codex", 0, text) == Verdict(
        "failed", "agent exited 0 but reported a failure: stream disconnected"
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("exceeded retry limit, last status: 429 Too Many Requests", "rate_limited"),
        ("unexpected status 401 Unauthorized: Incorrect API key provided: sk-***", "fatal"),
        ("Quota exceeded. Check your plan and billing details.", "quota_exhausted"),
        ("Connection failed: error sending request", "failed"),
    ],
)
def test_codex_failed_turn_names_the_kind(message: str, expected: str) -> None:
    text = codex_events({"type": "turn.failed", "error": {"message": message}})
    for exit_code in (0, 1):
        outcome = verdict("codex", exit_code, text + f"ERROR: {message}\n")
        assert outcome.outcome == expected
        assert outcome.error is not None and message in outcome.error


def test_codex_error_it_recovered_from_is_not_a_failure() -> None:
    text = codex_events({"type": "error", "message": "Reconnecting... 1/5"}, COMPLETED)
    assert read_result("codex-jsonl", text) == FinalResult(True)
    assert verdict("codex", 0, text) == Verdict("success")
    last = codex_events(COMPLETED, {"type": "error", "message": "Reconnecting... 2/5"})
    assert read_result("codex-jsonl", last) == FinalResult(False, "Reconnecting... 2/5")


def test_codex_without_events_is_judged_by_its_exit_code() -> None:
    assert read_result("codex-jsonl", "plain text\n") is None
    assert verdict("codex", 0, "plain text\n") == Verdict("success")
