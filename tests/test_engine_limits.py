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


def held_back(record_file: Path, seconds: float) -> None:
    """Every start of tasks a and b after a's first one came ``seconds`` or more after it:
    the agent they share waited for every worker."""
    events = starts(record_file)
    first = next(e for e in events if e["task"] == "a")
    later = [e for e in events if e["task"] in ("a", "b") and e is not first]
    assert later, events
    assert all(float(e["time"]) >= float(first["time"]) + seconds for e in later)


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
    held_back(log, 2.0)
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


def test_a_spent_quota_leaves_its_tasks_pending_and_stops_only_that_agent(
    root: Path, cli: CliRunner
) -> None:
    """Codex-like usage limit resetting in a day, far past the 10-minute budget: the agent
    is not used again, its tasks stay pending (not failed, no retry used) and the other
    agent's tasks run."""
    write_agents(root, {"capped": FAKE_AGENT, "other": FAKE_AGENT})
    log = root / "starts.jsonl"
    write_tasks(
        root,
        "defaults: {max_retries: 3, backoff: 0.01s}\ntasks:\n"
        f"  - {{id: q1, agent: capped, priority: 9, prompt: 'record={log} quota=86400'}}\n"
        f"  - {{id: q2, agent: capped, prompt: 'record={log}'}}\n"
        f"  - {{id: o1, agent: other, prompt: 'record={log}'}}\n"
        f"  - {{id: o2, agent: other, prompt: 'record={log}'}}\n",
    )
    result = cli("run", "--parallel", "1", "--time-budget", "10m")
    assert result.returncode == 0, result.stderr
    tasks = records(root)
    assert {t: tasks[t]["status"] for t in tasks} == {
        "q1": "pending",
        "q2": "pending",
        "o1": "complete",
        "o2": "complete",
    }
    assert [a["outcome"] for a in tasks["q1"]["attempts"]] == ["quota_exhausted"]
    assert tasks["q1"]["retryCount"] == 0
    assert tasks["q1"]["errorMessage"].startswith("quota exhausted until ")
    assert "You've hit your usage limit" in tasks["q1"]["errorMessage"]
    assert tasks["q2"]["attempts"] == []  # never started on an agent known to be spent
    report = json.loads((root / ".orchestra/results.json").read_text())
    [spent] = report["quota"]
    assert (spent["agent"], spent["paused"]) == ("capped", False)
    assert spent["resetsAt"] is not None
    assert "quota   capped: quota exhausted until " in result.stdout + result.stderr


def test_a_quota_that_resets_inside_the_budget_pauses_the_agent_until_the_reset(
    root: Path, cli: CliRunner
) -> None:
    write_agents(root, {"capped": FAKE_AGENT, "other": FAKE_AGENT})
    log = root / "starts.jsonl"
    write_tasks(
        root,
        "tasks:\n"
        f"  - {{id: a, agent: capped, priority: 9, prompt: 'record={log} quota_times=1 "
        "quota=2'}\n"
        f"  - {{id: b, agent: capped, prompt: 'record={log}'}}\n"
        f"  - {{id: c, agent: other, prompt: 'record={log}'}}\n",
    )
    result = cli("run", "--parallel", "1", "--time-budget", "5m")
    assert result.returncode == 0, result.stderr
    held_back(log, 2.0)
    tasks = records(root)
    assert [x["outcome"] for x in tasks["a"]["attempts"]] == ["quota_exhausted", "success"]
    assert tasks["a"]["retryCount"] == 0
    assert all(t["status"] == "complete" for t in tasks.values())
    assert "agent paused until its quota resets" in result.stderr


def test_a_quota_with_no_reset_hands_the_task_to_the_fallback(root: Path, cli: CliRunner) -> None:
    backup = {**FAKE_AGENT, "env": {"FAKE_AGENT_IGNORE": "quota"}}
    write_agents(root, {"capped": {**FAKE_AGENT, "fallback": ["backup"]}, "backup": backup})
    write_tasks(root, "tasks:\n  - {id: t, agent: capped, prompt: 'quota write=t.txt'}\n")
    result = cli("run")
    assert result.returncode == 0, result.stderr
    attempts = records(root)["t"]["attempts"]
    assert [(a["agent"], a["outcome"]) for a in attempts] == [
        ("capped", "quota_exhausted"),
        ("backup", "success"),
    ]
    assert "with no reset time given: Quota exceeded" in attempts[0]["error"]


def test_max_concurrent_caps_one_agent_while_the_others_use_the_free_slots(
    root: Path, cli: CliRunner
) -> None:
    """Each ``solo`` attempt holds a file while it runs and waits for a gate that only the
    ``other`` agent's task opens: two ``solo`` attempts at once leave an overlap mark, and
    ``other`` kept out of a free slot leaves them waiting until they fail."""
    write_agents(root, {"solo": {**FAKE_AGENT, "maxConcurrent": 1}, "other": FAKE_AGENT})
    held, gate = root / "held", root / "gate"
    solo = f"exclusive={held} wait_for={gate} sleep=0.05"
    write_tasks(
        root,
        "defaults: {max_retries: 0}\ntasks:\n"
        + "".join(f"  - {{id: s{n}, agent: solo, prompt: '{solo}'}}\n" for n in range(4))
        + f"  - {{id: o, agent: other, prompt: 'touch={gate}'}}\n",
    )
    result = cli("run", "--parallel", "4")
    assert result.returncode == 0, result.stderr
    assert not Path(f"{held}.overlap").exists()
    assert all(t["status"] == "complete" for t in records(root).values())


def test_a_tasks_max_turns_goes_to_a_cli_that_takes_it_and_is_checked_otherwise(
    root: Path, cli: CliRunner
) -> None:
    turny = {**FAKE_AGENT, "maxTurnsArgs": ["--max-turns", "{maxTurns}"]}
    write_agents(root, {"turny": turny, "fake": FAKE_AGENT})
    argv_file = root / "argv.json"
    write_tasks(
        root,
        "defaults: {max_turns: 5, max_retries: 3, backoff: 0.01s}\ntasks:\n"
        f"  - {{id: given, agent: turny, prompt: 'argv={argv_file}'}}\n"
        "  - {id: checked, agent: fake, prompt: 'cost=0.1 turns=12'}\n",
    )
    result = cli("run")
    assert result.returncode == 1
    argv = json.loads(argv_file.read_text())
    assert argv[-3:] == ["--max-turns", "5", f"argv={argv_file}"]
    tasks = records(root)
    assert tasks["given"]["status"] == "complete"
    checked = tasks["checked"]
    assert checked["status"] == "failed" and len(checked["attempts"]) == 1
    assert checked["errorMessage"] == "the agent took 12 turns, over its max_turns of 5"


def test_a_tasks_cost_cap_stops_its_retries(root: Path, cli: CliRunner) -> None:
    write_tasks(
        root,
        "tasks:\n  - {id: t, agent: fake, prompt: 'cost=0.6 exit=1', max_cost_usd: 1.0, "
        "max_retries: 5, backoff: 0.01s}\n",
    )
    result = cli("run")
    assert result.returncode == 1
    task = records(root)["t"]
    assert [a["costUsd"] for a in task["attempts"]] == [0.6, 0.6]
    assert task["status"] == "failed"
    assert task["errorMessage"].endswith(
        "not retried: its attempts cost $1.20, which reaches its max_cost_usd of $1.00"
    )
    # a later run does not start it again once it is back in the queue either
    assert cli("retry", "t").returncode == 0
    assert cli("run").returncode == 1
    again = records(root)["t"]
    assert len(again["attempts"]) == 2
    assert again["errorMessage"].startswith("not started: its attempts cost $1.20")
