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
        output=read_output(text, spec.rate_limit_patterns, spec.fatal_patterns),
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


def test_gemini_daily_quota_is_fatal_so_fallbacks_take_over() -> None:
    text = gemini_error("You have exhausted your daily quota on this model.", 429)
    outcome = verdict("gemini", 429 % 256, text)
    assert outcome.outcome == "fatal"


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
        ("Error: \x1b[0mYou exceeded your current quota, please check your plan.\n", "fatal"),
        ("Error: \x1b[0mCannot connect to API: Unable to connect.\n", "failed"),
    ],
)
def test_opencode_errors_map_to_outcomes(text: str, expected: str) -> None:
    assert verdict("opencode", 1, "\x1b[91m\x1b[1m" + text).outcome == expected


def test_an_agent_without_a_result_format_is_judged_as_before() -> None:
    assert read_result(None, REJECTED) is None
    assert AGENTS["claude"].result_format is None
