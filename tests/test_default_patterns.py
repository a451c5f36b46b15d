"""Agents that are not presets and set no patterns get generic rate-limit and fatal
patterns; setting one's own replaces them."""

import json
from pathlib import Path

import pytest

from orchestra_ci.agents import AgentSpec, load_agents
from orchestra_ci.limits import read_output
from orchestra_ci.outcome import AttemptResult, Verdict, classify
from orchestra_ci.presets import DEFAULT_FATAL_PATTERNS, DEFAULT_RATE_LIMIT_PATTERNS, PRESETS


def agents(tmp_path: Path, defined: dict[str, dict[str, object]]) -> dict[str, AgentSpec]:
    path = tmp_path / "agent-config.json"
    path.write_text(json.dumps({"agents": defined}))
    return load_agents(path)


def verdict(spec: AgentSpec, exit_code: int, text: str) -> Verdict:
    output = read_output(text, spec.rate_limit_patterns, spec.fatal_patterns, spec.quota_patterns)
    return classify(AttemptResult(exit_code=exit_code, output=output), spec.completion)


def test_a_custom_agent_without_patterns_gets_the_defaults(tmp_path: Path) -> None:
    spec = agents(tmp_path, {"mine": {"command": "mine"}})["mine"]
    assert spec.rate_limit_patterns == DEFAULT_RATE_LIMIT_PATTERNS
    assert spec.fatal_patterns == DEFAULT_FATAL_PATTERNS


def test_a_custom_agent_printing_a_rate_limit_waits_as_long_as_it_says(tmp_path: Path) -> None:
    spec = agents(tmp_path, {"mine": {"command": "mine"}})["mine"]
    assert verdict(spec, 1, "working...\nrate limit exceeded, try again in 2s\n") == Verdict(
        "rate_limited", "rate limited: rate limit exceeded (retry after 2s)", 2
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Error: 429 Too Many Requests", "rate_limited"),
        ("request failed with status 429", "rate_limited"),
        ("You have been rate limited. Retry-After: 30", "rate_limited"),
        ("The server is overloaded", "rate_limited"),
        ("openai.RateLimitError: quota", "rate_limited"),
        ("Error: Invalid API key", "fatal"),
        ("Incorrect API key provided: sk-***", "fatal"),
        ("unexpected status 401 Unauthorized", "fatal"),
        # What a task's own work prints is not a provider's answer.
        ("FAILED tests/test_rate_limit.py::test_limiter - assert 3 == 2", "failed"),
        ("added a rate limiter to the API client", "failed"),
        ("429 passed, 1 failed in 3.2s", "failed"),
        ("File app.py, line 429, in handler", "failed"),
        ("validate the api key before the request", "failed"),
    ],
)
def test_the_default_patterns_name_provider_errors_only(
    tmp_path: Path, text: str, expected: str
) -> None:
    spec = agents(tmp_path, {"mine": {"command": "mine"}})["mine"]
    assert verdict(spec, 1, text).outcome == expected


def test_a_custom_agent_exiting_0_is_not_reread_by_the_defaults(tmp_path: Path) -> None:
    spec = agents(tmp_path, {"mine": {"command": "mine"}})["mine"]
    assert verdict(spec, 0, "rate limit exceeded, try again in 2s") == Verdict("success")


def test_own_patterns_replace_the_defaults(tmp_path: Path) -> None:
    loaded = agents(
        tmp_path,
        {
            "own": {"command": "own", "rateLimitPatterns": ["slow down"]},
            "none": {"command": "none", "rateLimitPatterns": [], "fatal_patterns": []},
        },
    )
    assert loaded["own"].rate_limit_patterns == ["slow down"]
    assert loaded["own"].fatal_patterns == DEFAULT_FATAL_PATTERNS
    assert verdict(loaded["own"], 1, "rate limit exceeded, try again in 2s").outcome == "failed"
    assert loaded["none"].rate_limit_patterns == []
    assert loaded["none"].fatal_patterns == []


def test_presets_keep_their_own_patterns_when_changed(tmp_path: Path) -> None:
    loaded = agents(tmp_path, {"claude": {"timeout": "5m"}, "demo": {"timeout": "1m"}})
    assert loaded["claude"].rate_limit_patterns == PRESETS["claude"]["rateLimitPatterns"]
    assert loaded["demo"].rate_limit_patterns == []
    assert load_agents(None)["codex"].fatal_patterns == PRESETS["codex"]["fatalPatterns"]
