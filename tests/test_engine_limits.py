"""Rate limits, fatal errors and fallback agents, end to end with fake agent CLIs."""

import json
from pathlib import Path

from tests.conftest import FAKE_AGENT, CliRunner, records, write_agents, write_tasks

CLAUDE_LIKE = {
    **FAKE_AGENT,
    "rateLimitPatterns": [r"Request rejected \(429\)"],
    "fatalPatterns": ["Invalid API key"],
}


def starts(record_file: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in record_file.read_text().splitlines()]
    return [e for e in lines if e["event"] == "start"]


def test_rate_limit_waits_for_the_reset_and_holds_back_the_same_agent(
    root: Path, cli: CliRunner
) -> None:
    """Task a is told to retry after 2 s; task b uses the same agent and must not start
    before that either, while the other agent keeps working."""
    write_agents(root, {"limited": CLAUDE_LIKE, "other": FAKE_AGENT})
    log = root / "starts.jsonl"
    write_tasks(
        root,
        "tasks:\n"
        f"  - {{id: a, agent: limited, priority: 9, prompt: 'record={log} ratelimit_times=1 "
        "retry_after=2', backoff: 0.01s}\n"
        f"  - {{id: b, agent: limited, prompt: 'record={log} sleep=0.01'}}\n"
        f"  - {{id: c, agent: other, prompt: 'record={log}'}}\n",
    )
    result = cli("run", "--parallel", "1")
    assert result.returncode == 0, result.stderr

    events = starts(log)
    first_a = next(e for e in events if e["task"] == "a")
    limited_after = [e for e in events if e["task"] in ("a", "b") and e is not first_a]
    assert limited_after, events
    assert all(float(e["time"]) >= float(first_a["time"]) + 2.0 for e in limited_after)
    tasks = records(root)
    assert [x["outcome"] for x in tasks["a"]["attempts"]] == ["rate_limited", "success"]
    assert "retry after 2s" in tasks["a"]["attempts"][0]["error"]
    assert tasks["a"]["retryCount"] == 1
    assert "agent cooling down" in result.stderr


def test_fatal_error_is_not_retried_and_disables_the_agent(root: Path, cli: CliRunner) -> None:
    write_agents(root, {"broken": CLAUDE_LIKE})
    write_tasks(
        root,
        "defaults: {agent: broken, max_retries: 3, backoff: 0.01s}\n"
        "tasks:\n  - {id: a, prompt: fatal, priority: 5}\n  - {id: b, prompt: fatal}\n",
    )
    result = cli("run", "--parallel", "1")
    assert result.returncode == 1
    tasks = records(root)
    assert [x["outcome"] for x in tasks["a"]["attempts"]] == ["fatal"]
    assert "Invalid API key" in tasks["a"]["errorMessage"]
    # b never ran: its only agent was known to be broken
    assert tasks["b"]["attempts"] == []
    assert tasks["b"]["status"] == "failed" and "no usable agent" in tasks["b"]["errorMessage"]


def test_fallback_agent_takes_over_and_is_recorded(root: Path, cli: CliRunner) -> None:
    backup = {**FAKE_AGENT, "env": {"FAKE_AGENT_IGNORE": "fatal,ratelimit"}}
    write_agents(
        root,
        {
            "primary": {**CLAUDE_LIKE, "fallback": ["backup"]},
            "primary2": {**CLAUDE_LIKE, "fallback": ["backup"]},
            "backup": backup,
        },
    )
    write_tasks(
        root,
        "defaults: {max_retries: 0}\ntasks:\n"
        "  - {id: limited, agent: primary, prompt: 'ratelimit=60 write=limited.txt'}\n"
        "  - {id: broken, agent: primary2, prompt: 'fatal write=broken.txt'}\n",
    )
    result = cli("run", "--parallel", "1")
    assert result.returncode == 0, result.stderr
    tasks = records(root)
    for task_id, primary, first in (
        ("limited", "primary", "rate_limited"),
        ("broken", "primary2", "fatal"),
    ):
        attempts = tasks[task_id]["attempts"]
        assert (attempts[0]["agent"], attempts[0]["outcome"]) == (primary, first)
        assert attempts[-1]["agent"] == "backup" and attempts[-1]["outcome"] == "success"
        assert tasks[task_id]["retryCount"] == 0  # switching agents is not a retry
    report = json.loads((root / ".orchestra/results.json").read_text())
    agents_used = {t["id"]: t["agents"] for t in report["tasks"]}
    assert agents_used["limited"] == ["primary", "backup"]
    assert (root / "limited.txt").exists() and (root / "broken.txt").exists()


def test_success_patterns_catch_an_agent_that_exits_0_after_failing(
    root: Path, cli: CliRunner
) -> None:
    """Like Aider: exit 0 even when every API call failed; judged by its output."""
    aider_like = {
        **FAKE_AGENT,
        "successPatterns": ["^fake agent: done$"],
        "rateLimitPatterns": [r"Request rejected \(429\)"],
    }
    write_agents(root, {"aider": aider_like})
    write_tasks(
        root,
        "defaults: {agent: aider, max_retries: 0}\ntasks:\n"
        "  - {id: ok, prompt: 'exit=0'}\n"
        "  - {id: silent, prompt: 'silent exit=0'}\n",
    )
    result = cli("run")
    assert result.returncode == 1
    tasks = records(root)
    assert tasks["ok"]["status"] == "complete"
    assert tasks["silent"]["status"] == "failed"
    assert "shows no success" in tasks["silent"]["errorMessage"]


def test_cost_is_summed_and_the_cap_stops_launching(root: Path, cli: CliRunner) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        + "".join(f"  - {{id: t{n}, prompt: 'cost=0.5'}}\n" for n in range(4)),
    )
    result = cli("run", "--parallel", "1", "--max-cost-usd", "1.0")
    assert result.returncode == 0, result.stderr
    tasks = records(root)
    statuses = sorted(t["status"] for t in tasks.values())
    assert statuses == ["complete", "complete", "pending", "pending"]
    done = [t for t in tasks.values() if t["status"] == "complete"]
    assert all(t["attempts"][0]["costUsd"] == 0.5 and t["attempts"][0]["turns"] == 3 for t in done)
    report = json.loads((root / ".orchestra/results.json").read_text())
    assert report["costUsd"] == 1.0
    assert report["stoppedBy"] == "cost cap"
