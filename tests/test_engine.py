"""Runs of the engine with fake agent processes: end to end through the real CLI, and
in-process where a test needs the engine's own objects."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orchestra_ci import process
from orchestra_ci.engine import Engine, RunOutcome
from orchestra_ci.errors import StoreError
from orchestra_ci.proxy_server import CredentialProxy
from orchestra_ci.record import new_record
from orchestra_ci.redact import Redactor
from orchestra_ci.settings import load_settings
from orchestra_ci.sources import agents_for
from orchestra_ci.store import Store
from orchestra_ci.worktrees import Isolation
from tests.conftest import (
    FAKE_AGENT,
    CliRunner,
    alive,
    cli_env,
    records,
    write_agents,
    write_tasks,
)


def run_in_process(root: Path, proxy: CredentialProxy | None = None, **flags: object) -> RunOutcome:
    settings = load_settings(root, **{"isolation": "none", **flags})
    engine = Engine(Store(root), agents_for(root, settings), settings, Redactor(), proxy=proxy)
    return asyncio.run(engine.run())


def test_in_process_run_retries_and_completes(root: Path) -> None:
    store = Store(root).ensure()
    store.create(new_record("flaky", "fake", "fail_times=1", backoff=0.01))
    store.create(new_record("ok", "fake", "exit=0"))
    outcome = run_in_process(root, parallel=2)
    assert outcome.exit_code == 0
    assert outcome.report.totals["complete"] == 2
    assert records(root)["flaky"]["retryCount"] == 1
    assert not [n for n in store.names() if n.endswith(".tmp")]  # spare temp files too


def test_the_claims_of_one_round_are_made_together(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(root).ensure()
    store.create_many([new_record(f"t{i}", "fake", "exit=0") for i in range(6)])
    batches: list[list[str]] = []
    claim_all = Engine._claim_all

    def recording(self: Engine, task_ids: list[str]) -> object:
        batches.append(sorted(task_ids))
        return claim_all(self, task_ids)

    monkeypatch.setattr(Engine, "_claim_all", recording)
    outcome = run_in_process(root, parallel=6)
    assert outcome.report.totals["complete"] == 6
    assert batches == [[f"t{i}" for i in range(6)]]  # one lock, one flush for the round


def test_a_failed_claim_flush_fails_only_the_claims_it_wrote_and_frees_their_slots(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_agents(root, {"solo": {**FAKE_AGENT, "maxConcurrent": 1}})
    store = Store(root).ensure()
    done = {**new_record("done", "solo", "exit=0"), "status": "complete"}
    store.create_many([new_record("due", "solo", "exit=0"), done])  # type: ignore[list-item]
    settings = load_settings(root, isolation="none")
    engine = Engine(store, agents_for(root, settings), settings, Redactor())

    def disk_gone(*task_ids: str) -> None:
        raise StoreError("cannot write tasks: [Errno 5] Input/output error")

    monkeypatch.setattr(store, "commit", disk_gone)
    due, finished = engine._claim_all(["due", "done"])
    assert isinstance(due, StoreError)  # its claim may not be on disk: it does not run
    assert not isinstance(finished, Exception) and not finished.claimed  # wrote nothing
    assert engine.pool.acquire("solo")  # the failed claim gave its agent's slot back


def test_a_retry_waits_until_its_failed_attempt_has_cleaned_up(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failed attempt's worktree is removed in a thread after its record is written.
    # A retry due meanwhile was claimed then, and the old attempt's clean-up dropped the new
    # one from the runner's books: the run ended with the task left `running`.
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    removing = threading.Event()
    original = Isolation.remove

    def slow_remove(self: Isolation, task_id: str) -> None:
        removing.set()
        time.sleep(0.5)  # removal outlasts the retry delay
        original(self, task_id)

    monkeypatch.setattr(Isolation, "remove", slow_remove)
    store = Store(git_repo).ensure()
    store.create(new_record("flaky", "fake", "fail_times=1", backoff=0.01))
    outcome = run_in_process(git_repo, isolation="worktree")
    assert removing.is_set()
    assert records(git_repo)["flaky"]["status"] == "complete"
    assert [a.get("outcome") for a in records(git_repo)["flaky"]["attempts"]] == [
        "failed",
        "success",
    ]
    assert outcome.exit_code == 0


def test_the_next_task_starts_while_the_last_ones_changes_are_collected(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One slot: the second task's agent can start only once the first has given it up.
    # The first task's collection (git add, diff, patch) waits for the second agent.
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    store = Store(git_repo).ensure()
    store.create(new_record("first", "fake", "write=a.txt", priority=1))
    store.create(new_record("second", "fake", "write=b.txt"))
    overlapped = threading.Event()
    collect = Engine._collect

    def waiting_collect(self: Engine, task_id: str, base: str) -> dict[str, object]:
        if task_id == "first":
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and store.read_pid("second") is None:
                time.sleep(0.01)
            if store.read_pid("second") is not None:
                overlapped.set()
        return collect(self, task_id, base)

    monkeypatch.setattr(Engine, "_collect", waiting_collect)
    outcome = run_in_process(git_repo, isolation="worktree", parallel=1)
    assert overlapped.is_set()
    assert outcome.report.totals["complete"] == 2
    assert records(git_repo)["first"]["changedFiles"] == ["a.txt"]


def test_the_start_up_hook_runs_once_after_the_first_agents_have_started(root: Path) -> None:
    store = Store(root).ensure()
    store.create_many([new_record(f"t{i}", "fake", "sleep=0.3") for i in range(3)])
    seen: list[list[bool]] = []

    def hook() -> None:
        seen.append([store.read_pid(f"t{i}") is not None for i in range(3)])

    settings = load_settings(root, isolation="none", parallel=2)
    engine = Engine(Store(root), agents_for(root, settings), settings, Redactor(), on_started=hook)
    outcome = asyncio.run(engine.run())
    assert outcome.report.totals["complete"] == 3
    assert seen == [[True, True, False]]  # both slots' agents were running; once only


def test_the_start_up_hook_runs_when_no_agent_could_start(root: Path) -> None:
    store = Store(root).ensure()
    store.create(new_record("lost", "no-such-agent", "exit=0"))
    calls: list[str] = []
    settings = load_settings(root, isolation="none")
    engine = Engine(
        store,
        agents_for(root, settings),
        settings,
        Redactor(),
        on_started=lambda: calls.append("x"),
    )
    outcome = asyncio.run(engine.run())
    assert outcome.report.totals["failed"] == 1
    assert calls == ["x"]


def test_a_failing_start_up_hook_does_not_fail_the_run(root: Path) -> None:
    Store(root).ensure().create(new_record("t", "fake", "exit=0"))

    def broken() -> None:
        raise RuntimeError("disk gone")

    settings = load_settings(root, isolation="none")
    engine = Engine(
        Store(root), agents_for(root, settings), settings, Redactor(), on_started=broken
    )
    outcome = asyncio.run(engine.run())
    assert outcome.exit_code == 0 and outcome.report.totals["complete"] == 1


def test_a_retry_time_in_naive_local_time_is_honoured(root: Path, tokyo: None) -> None:
    # agent-orchestrator writes naive local times: one minute ago in Tokyo sorts, as text,
    # after "now" in UTC. The claim once compared the strings: the task was never claimed
    # and the runner spun until its budget ran out.
    store = Store(root).ensure()
    record = new_record("later", "fake", "exit=0")
    a_minute_ago = datetime.now() - timedelta(minutes=1)
    record["nextAttemptAt"] = a_minute_ago.isoformat()
    store.create(record)
    outcome = run_in_process(root, time_budget=10)
    assert outcome.exit_code == 0
    assert records(root)["later"]["status"] == "complete"
    assert outcome.report.stopped_by is None  # done, not stopped by the budget


def attempts_per_task(log: Path) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            seen.setdefault(event["task"], []).append(event["attempt"])
    return seen


MIXED = """
defaults: {agent: fake, max_retries: 2, backoff: 0.05s}
tasks:
  - {id: ok, prompt: "sleep=0.2 write=ok.txt"}
  - {id: flaky, prompt: "fail_times=1"}
  - {id: always-fails, prompt: "exit=3"}
  - {id: slow, prompt: "hang", timeout: 1s, max_retries: 1}
  - {id: missing, agent: ghost, prompt: "anything"}
  - {id: stubborn, prompt: "child_ignores_term sleep=0.2"}
  - {id: after-fail, prompt: "exit=0", depends_on: [always-fails]}
  - {id: after-ok, prompt: "exit=0", depends_on: [ok]}
"""


def test_mixed_outcomes_in_one_run(root: Path, cli: CliRunner) -> None:
    agents = json.loads((root / ".orchestra/agent-config.json").read_text())
    agents["agents"]["ghost"] = {"command": "no-such-agent-binary-xyz"}
    (root / ".orchestra/agent-config.json").write_text(json.dumps(agents))
    write_tasks(root, MIXED)

    result = cli("run", "--parallel", "4", "--grace", "0.5")

    assert result.returncode == 1, result.stderr
    tasks = records(root)
    status = {k: v["status"] for k, v in tasks.items()}
    assert status == {
        "ok": "complete",
        "flaky": "complete",
        "always-fails": "failed",
        "slow": "failed",
        "missing": "failed",
        "stubborn": "complete",
        "after-fail": "failed",
        "after-ok": "complete",
    }
    assert len(tasks["flaky"]["attempts"]) == 2 and tasks["flaky"]["retryCount"] == 1
    assert [a["outcome"] for a in tasks["always-fails"]["attempts"]] == ["failed"] * 3
    assert tasks["always-fails"]["retryCount"] == 2
    assert [a["outcome"] for a in tasks["slow"]["attempts"]] == ["timeout", "timeout"]
    assert "command not found" in tasks["missing"]["errorMessage"]
    assert len(tasks["missing"]["attempts"]) == 1  # a missing binary is not retried
    assert tasks["after-fail"]["blockedBy"] == "always-fails"
    assert "always-fails" in tasks["after-fail"]["errorMessage"]
    assert tasks["after-fail"]["attempts"] == []
    # sentinels: .done for complete tasks, .error (JSON) for failed ones, no .pid left
    tasks_dir = root / ".orchestra/tasks"
    for task_id, record in tasks.items():
        assert (tasks_dir / f"{task_id}.done").exists() == (record["status"] == "complete")
        if record["status"] == "failed":
            error = json.loads((tasks_dir / f"{task_id}.error").read_text())
            assert error["error"] and "timestamp" in error
        assert not (tasks_dir / f"{task_id}.pid").exists()
    assert (root / "ok.txt").read_text() == "written by ok\n"
    # the child that ignored SIGTERM did not outlive its task
    assert not alive(int((root / "child.pid").read_text()))
    # the report agrees with the records
    report = json.loads((root / ".orchestra/results.json").read_text())
    assert report["totals"]["complete"] == 4 and report["totals"]["failed"] == 4
    assert report["exitCode"] == 1
    by_id = {t["id"]: t for t in report["tasks"]}
    assert [a["outcome"] for a in by_id["flaky"]["attempts"]] == ["failed", "success"]
    assert by_id["ok"]["source"] == "file"
    # the log holds every attempt with a header
    log = (root / ".orchestra/logs/always-fails.log").read_text()
    assert log.count("===== orchestra-ci · task always-fails · attempt") == 3


def test_attempts_never_exceed_one_plus_max_retries(root: Path, cli: CliRunner) -> None:
    record_file = root / "attempts.jsonl"
    lines = ["defaults: {agent: fake, backoff: 0.01s}", "tasks:"]
    for n in range(6):
        lines.append(f"  - {{id: t{n}, max_retries: {n}, prompt: 'record={record_file} exit=1'}}")
    write_tasks(root, "\n".join(lines))

    assert cli("run", "--parallel", "6").returncode == 1

    seen = attempts_per_task(record_file)
    for n in range(6):
        assert len(seen[f"t{n}"]) == n + 1
        assert seen[f"t{n}"] == [str(i) for i in range(1, n + 2)]
    assert len(records(root)) == 6  # retries never create new task records


def test_time_budget_leaves_unfinished_tasks_pending(root: Path, cli: CliRunner) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        + "".join(f"  - {{id: long{n}, prompt: 'sleep=30'}}\n" for n in range(4)),
    )

    started = time.monotonic()
    result = cli("run", "--parallel", "2", "--time-budget", "1.5s", "--grace", "0.5s")
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr  # pending is not failure by default
    assert elapsed < 20
    tasks = records(root)
    assert {r["status"] for r in tasks.values()} == {"pending"}
    interrupted = [a for r in tasks.values() for a in r["attempts"]]
    assert len(interrupted) == 2 and {a["outcome"] for a in interrupted} == {"interrupted"}
    assert all(r["retryCount"] == 0 for r in tasks.values())
    report = json.loads((root / ".orchestra/results.json").read_text())
    assert report["stoppedBy"] == "time budget"
    assert cli("run", "--time-budget", "0.5s", "--fail-on-pending").returncode == 1


def test_sigterm_requeues_running_tasks_and_exits_143(root: Path) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        "  - {id: a, prompt: 'child_ignores_term hang'}\n"
        "  - {id: b, prompt: 'hang'}\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), "run", "--grace", "0.5"],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not (root / ".orchestra/tasks/a.pid").exists() or not (root / "child.pid").exists():
        assert time.monotonic() < deadline, "agents did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 143, err
    tasks = records(root)
    assert {r["status"] for r in tasks.values()} == {"pending"}
    assert tasks["a"]["attempts"][0]["outcome"] == "interrupted"
    assert not alive(int((root / "child.pid").read_text()))
    report = json.loads((root / ".orchestra/results.json").read_text())
    assert report["stoppedBy"] == "SIGTERM" and report["exitCode"] == 143


def test_sigkill_of_runner_then_new_run_finishes_everything(root: Path, cli: CliRunner) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        + "".join(f"  - {{id: t{n}, prompt: 'sleep=0.3 write=out/t{n}.txt'}}\n" for n in range(12)),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), "run", "--parallel", "3"],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while sum(r["status"] == "complete" for r in records(root).values()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    orphans = [r for r in records(root).values() if r["status"] == "running"]
    assert orphans, "the kill should have caught some tasks running"
    orphan_pids = [int(p.read_text()) for p in (root / ".orchestra/tasks").glob("*.pid")]

    result = cli("run", "--parallel", "3")

    assert result.returncode == 0, result.stderr
    tasks = records(root)  # every record parses: none is corrupt
    assert len(tasks) == 12
    assert {r["status"] for r in tasks.values()} == {"complete"}
    for orphan in orphans:
        outcomes = [a.get("outcome") for a in tasks[orphan["taskId"]]["attempts"]]
        assert outcomes[0] == "interrupted" and outcomes[-1] == "success"
        assert tasks[orphan["taskId"]]["retryCount"] == 0
    assert not any(alive(pid) for pid in orphan_pids)
    assert not list((root / ".orchestra/tasks").glob(".*.tmp"))
    assert "recovered orphaned task" in result.stderr


def test_two_runners_never_run_the_same_attempt(root: Path) -> None:
    record_file = root / "attempts.jsonl"
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        + "".join(
            f"  - {{id: t{n:02d}, prompt: 'record={record_file} sleep=0.2'}}\n" for n in range(40)
        ),
    )
    cmd = [sys.executable, "-m", "orchestra_ci", "--root", str(root), "run", "--parallel", "4"]
    runners = [
        subprocess.Popen(cmd, env=cli_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for runner in runners:
        _, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, err

    seen = attempts_per_task(record_file)
    assert sorted(seen) == [f"t{n:02d}" for n in range(40)]
    assert all(attempts == ["1"] for attempts in seen.values())
    assert {r["status"] for r in records(root).values()} == {"complete"}
    runner_ids = {r["attempts"][0]["runnerId"] for r in records(root).values()}
    assert len(runner_ids) == 2, "both runners should have taken work"


def test_agent_orchestrator_queue_loads_and_runs(root: Path, cli: CliRunner) -> None:
    """A queue written by agent-orchestrator (naive timestamps, planFile, int timeout)."""
    tasks_dir = root / ".orchestra/tasks"
    tasks_dir.mkdir(parents=True)
    for n, status in enumerate(["pending", "pending", "complete"]):
        task = {
            "taskId": f"coder_2025011{n}_120000",
            "status": status,
            "agent": "fake",
            "prompt": "write=seed.txt",
            "planFile": f".orchestra/plans/t{n}_plan.md",
            "logFile": f".orchestra/logs/t{n}.log",
            "createdAt": f"2025-01-1{n}T12:00:00.123456",
            "startedAt": None,
            "completedAt": None,
            "timedOutAt": None,
            "retriedAt": None,
            "pid": None,
            "errorMessage": None,
            "retryCount": 0,
            "maxRetries": 3,
            "autoRetry": False,
            "retryHistory": [],
            "parentTaskId": None,
            "retriedBy": None,
            "priority": 5,
            "timeout": 60,
            "timeoutWarning": None,
            "dependsOn": [],
            "blockedBy": None,
            "blockedReason": None,
        }
        (tasks_dir / f"{task['taskId']}.json").write_text(json.dumps(task, indent=2))

    result = cli("run")

    assert result.returncode == 0, result.stderr
    tasks = records(root)
    assert {r["status"] for r in tasks.values()} == {"complete"}
    first = tasks["coder_20250110_120000"]
    assert first["planFile"] == ".orchestra/plans/t0_plan.md"  # unknown fields survive
    assert first["autoRetry"] is False
    assert len(first["attempts"]) == 1
    assert len(tasks["coder_20250112_120000"].get("attempts", [])) == 0  # complete: not rerun
    status = cli("status", "--json")
    assert len(json.loads(status.stdout)) == 3


CYCLE = "tasks:\n  - {id: a, prompt: x, depends_on: [b]}\n  - {id: b, prompt: y, depends_on: [a]}\n"


@pytest.mark.parametrize(
    ("tasks_yml", "needle"),
    [
        ("tasks:\n  - id: a\n    prompt: [unclosed\n", "invalid YAML at line"),
        ("tasks:\n  - {id: a, prompt: x}\n  - {id: a, prompt: y}\n", "duplicate id"),
        ("tasks:\n  - {id: a, prompt: x, agent: nope}\n", "unknown agent 'nope'"),
        (CYCLE, "dependency cycle: a -> b -> a"),
        ("tasks:\n  - {id: a, prompt: x, timeout: soon}\n", "field 'timeout'"),
        ("tasks:\n  - {id: a, prompt: x, depends_on: [ghost]}\n", "unknown task 'ghost'"),
    ],
)
def test_bad_tasks_file_exits_2_with_one_line_and_queues_nothing(
    root: Path, cli: CliRunner, tasks_yml: str, needle: str
) -> None:
    write_tasks(root, "defaults: {agent: fake}\n" + tasks_yml)

    result = cli("run")

    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert "tasks.yml" in result.stderr or "cycle" in result.stderr
    assert records(root) == {}


def test_dry_run_writes_nothing(root: Path, cli: CliRunner) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n  - {id: a, prompt: x}\n"
        "  - {id: b, prompt: y, depends_on: [a]}\n",
    )
    result = cli("run", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (
        "would run a with fake" in result.stdout
        and "would run b with fake after a" in result.stdout
    )
    assert records(root) == {}
    assert not (root / ".orchestra/results.json").exists()


def test_priority_orders_the_queue(root: Path, cli: CliRunner) -> None:
    record_file = root / "order.jsonl"
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        + "".join(
            f"  - {{id: p{p}, priority: {p}, prompt: 'record={record_file}'}}\n"
            for p in (1, 5, 3, 9)
        ),
    )
    assert cli("run", "--parallel", "1").returncode == 0
    order = [
        json.loads(line)["task"]
        for line in record_file.read_text().splitlines()
        if json.loads(line)["event"] == "start"
    ]
    assert order == ["p9", "p5", "p3", "p1"]


def test_env_and_sentinel_completion(root: Path, cli: CliRunner) -> None:
    agents = json.loads((root / ".orchestra/agent-config.json").read_text())
    sentinel_agent = {**agents["agents"]["fake"], "completion": "sentinel"}
    agents["agents"]["proto"] = sentinel_agent
    (root / ".orchestra/agent-config.json").write_text(json.dumps(agents))
    write_tasks(
        root,
        "tasks:\n"
        "  - {id: writes-done, agent: proto, prompt: done_sentinel}\n"
        "  - {id: forgets-done, agent: proto, prompt: 'exit=0', max_retries: 0}\n"
        "  - {id: writes-error, agent: fake, prompt: 'error_sentinel', max_retries: 0}\n",
    )
    assert cli("run").returncode == 1
    tasks = records(root)
    assert tasks["writes-done"]["status"] == "complete"
    assert tasks["forgets-done"]["status"] == "failed"
    assert "without writing its .done" in tasks["forgets-done"]["errorMessage"]
    assert tasks["writes-error"]["status"] == "failed"
    assert tasks["writes-error"]["errorMessage"] == "fake agent gave up"


def test_results_written_with_os_environ_untouched(root: Path, cli: CliRunner) -> None:
    """The agent inherits the runner's environment plus ORCHESTRA_TASK_ID/ATTEMPT/ROOT."""
    agents = {
        "agents": {
            "env": {
                "command": sys.executable,
                "args": [
                    "-c",
                    "import os,json; json.dump({k: os.environ.get(k) for k in "
                    "['ORCHESTRA_TASK_ID','ORCHESTRA_ATTEMPT','ORCHESTRA_ROOT','FROM_RUNNER','FROM_AGENT']},"
                    " open('env.json','w'))",
                    "{prompt}",
                ],
                "env": {"FROM_AGENT": "yes"},
            }
        }
    }
    (root / ".orchestra/agent-config.json").write_text(json.dumps(agents))
    write_tasks(root, "tasks:\n  - {id: e1, agent: env, prompt: hi}\n")
    assert cli("run", env=cli_env(FROM_RUNNER="inherited")).returncode == 0
    seen = json.loads((root / "env.json").read_text())
    assert seen == {
        "ORCHESTRA_TASK_ID": "e1",
        "ORCHESTRA_ATTEMPT": "1",
        "ORCHESTRA_ROOT": str(root.resolve()),
        "FROM_RUNNER": "inherited",
        "FROM_AGENT": "yes",
    }
    assert os.environ.get("FROM_RUNNER") is None


def test_missing_prompt_template_is_a_configuration_error(root: Path, cli: CliRunner) -> None:
    agents = json.loads((root / ".orchestra/agent-config.json").read_text())
    agents["agents"]["templated"] = {
        **agents["agents"]["fake"],
        "promptTemplateFile": ".orchestra/prompts/missing.txt",
    }
    (root / ".orchestra/agent-config.json").write_text(json.dumps(agents))
    write_tasks(root, "tasks:\n  - {id: a, agent: templated, prompt: x}\n")
    result = cli("run")
    assert result.returncode == 2
    assert "promptTemplateFile '.orchestra/prompts/missing.txt' not found" in result.stderr
    assert records(root) == {}


def test_an_engine_fault_fails_the_attempt_instead_of_looping(root: Path, cli: CliRunner) -> None:
    """With the log directory unusable every attempt breaks inside the runner: the task
    must use up its retries and fail, and the run must end with exit 1."""
    write_tasks(
        root, "tasks:\n  - {id: a, agent: fake, prompt: x, max_retries: 1, backoff: 0.01}\n"
    )
    (root / ".orchestra/logs/a.log").mkdir(parents=True)  # the log cannot be opened
    result = cli("run", timeout=60)
    assert result.returncode == 1, result.stderr
    task = records(root)["a"]
    assert task["status"] == "failed"
    assert [a["outcome"] for a in task["attempts"]] == ["failed", "failed"]
    assert "internal error" in task["errorMessage"]


def test_a_queued_task_removed_during_the_run_is_skipped(root: Path, cli: CliRunner) -> None:
    """Its record vanishes (``clean``, by hand) after the runner scheduled it: the claim
    finds nothing, and the runner forgets it instead of offering it forever."""
    agents = json.loads((root / ".orchestra/agent-config.json").read_text())
    agents["agents"]["remover"] = {
        "command": "sh",
        "args": ["-c", "rm -f .orchestra/tasks/second.json", "sh"],
    }
    (root / ".orchestra/agent-config.json").write_text(json.dumps(agents))
    write_tasks(
        root,
        "tasks:\n  - {id: first, agent: remover, prompt: x, priority: 9}\n"
        "  - {id: second, agent: fake, prompt: 'exit=0'}\n"
        "  - {id: third, agent: fake, prompt: 'exit=0', depends_on: [second]}\n",
    )
    result = cli("run", "--parallel", "1", timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    tasks = records(root)
    assert set(tasks) == {"first", "third"}
    assert tasks["first"]["status"] == "complete"
    assert tasks["third"]["status"] == "complete"  # checked on disk, then run


def test_each_attempt_keeps_the_command_line_it_ran_with_secrets_masked(root: Path) -> None:
    Store(root).ensure().create(new_record("a", "fake", "exit=0 token=tok-secret-98765"))
    settings = load_settings(root, isolation="none")
    engine = Engine(
        Store(root), agents_for(root, settings), settings, Redactor(["tok-secret-98765"])
    )
    assert asyncio.run(engine.run()).exit_code == 0
    (attempt,) = records(root)["a"]["attempts"]
    assert attempt["argv"] == [sys.executable, FAKE_AGENT["args"][0], "exit=0 token=***"]


def test_a_prompt_on_stdin_reaches_the_agent_whole(root: Path) -> None:
    big = "line of the prompt\n" * 20_000  # 380 kB: more than one argument may hold
    write_agents(
        root, {"reader": {"command": "sh", "args": ["-c", "cat > got.txt"], "prompt": "stdin"}}
    )
    Store(root).ensure().create(new_record("a", "reader", big))
    assert run_in_process(root).exit_code == 0
    assert (root / "got.txt").read_text() == big
    assert big not in json.dumps(records(root)["a"]["attempts"][0]["argv"])


def test_a_silent_agent_is_stopped_as_stalled_and_a_busy_one_is_not(root: Path) -> None:
    # Busy for 2 s, in steps 10 times shorter than the 3 s a silent agent is allowed.
    busy_printing = "for i in 1 2 3 4 5 6 7; do echo working; sleep 0.3; done"
    busy_writing = "for i in 1 2 3 4 5 6 7; do echo $i > progress.txt; sleep 0.3; done >/dev/null"
    write_agents(
        root,
        {
            "fake": FAKE_AGENT,
            "sh": {"command": "sh", "args": ["-c", "{prompt}"], "stallTimeout": "3s"},
        },
    )
    store = Store(root).ensure()
    store.create(new_record("silent", "fake", "hang", max_retries=0))
    store.create(new_record("printing", "sh", busy_printing, max_retries=0))
    store.create(new_record("writing", "sh", busy_writing, max_retries=0))
    outcome = run_in_process(root, parallel=3, stall_timeout="3s", timeout="60s", grace="0.5s")
    tasks = records(root)
    (silent,) = tasks["silent"]["attempts"]
    assert silent["outcome"] == "stalled"
    assert tasks["silent"]["errorMessage"] == "stalled: no output and no file change for 3s"
    assert tasks["printing"]["status"] == "complete"
    assert tasks["writing"]["status"] == "complete"
    assert outcome.exit_code == 1


def test_an_agent_done_within_the_stall_watchs_first_step_costs_no_look_at_its_files(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks: list[Path] = []
    tree_mtime = process._tree_mtime

    def counted(top: Path) -> int:
        looks.append(top)
        return tree_mtime(top)

    monkeypatch.setattr(process, "_tree_mtime", counted)
    Store(root).ensure().create(new_record("quick", "fake", "exit=0"))
    outcome = run_in_process(root, stall_timeout="600s")  # first look 30 s in
    assert outcome.exit_code == 0
    assert looks == []


def test_a_stalled_attempt_is_retried(root: Path) -> None:
    Store(root).ensure().create(new_record("once", "fake", "hang", max_retries=1, backoff=0.01))
    run_in_process(root, stall_timeout="1s", timeout="60s", grace="0.2s")
    attempts = records(root)["once"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["stalled", "stalled"]


def test_as_on_macos_a_run_says_it_has_no_subreaper_and_still_stops_a_daemon(
    root: Path, without_linux_extras: object, capsys: pytest.CaptureFixture[str]
) -> None:
    # No /proc, no pidfd, no prctl: the daemon the agent leaves behind is found by its
    # attempt marker through psutil and stopped when its attempt ends.
    store = Store(root).ensure()
    store.create(new_record("d", "fake", "daemon exit=0"))
    outcome = run_in_process(root)
    assert outcome.exit_code == 0
    assert not alive(int((root / "daemon.pid").read_text()))
    out = capsys.readouterr()
    assert "this system has no child subreaper" in out.out + out.err
