"""The small CLI commands, through the real CLI in a subprocess."""

import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci import __version__
from orchestra_ci.record import new_record
from orchestra_ci.store import Store
from tests.conftest import FAKE_AGENT, CliRunner, alive, cli_env, records, wait_for, write_tasks

TASK_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
DEADLINE = 30.0


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr holding every fragment, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def task_files(root: Path, task_id: str) -> dict[str, bool]:
    tasks = root / ".orchestra" / "tasks"
    return {
        "json": (tasks / f"{task_id}.json").exists(),
        "done": (tasks / f"{task_id}.done").exists(),
        "error": (tasks / f"{task_id}.error").exists(),
        "pid": (tasks / f"{task_id}.pid").exists(),
        "log": (root / ".orchestra" / "logs" / f"{task_id}.log").exists(),
    }


def stored(root: Path, task_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / f".orchestra/tasks/{task_id}.json").read_text())
    return data


def start(cli: CliRunner, *args: str) -> str:
    result = cli("start", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def background(root: Path, *args: str, **env: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), *args],
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class Terminal:
    """A command run as a person runs it in a terminal: on a pseudo-terminal of a given
    size, in its own session with that terminal as its controlling one, so that a Ctrl-C
    typed into it is SIGINT from the terminal driver to the command's process group."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int = 24, columns: int = 100):
        import fcntl
        import pty
        import struct
        import termios

        self.fd, secondary = pty.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

        def take_the_terminal() -> None:  # runs in the child, after its setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            # As an interactive shell does: a test run started in the background has
            # SIGINT ignored, and the command would inherit that.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        self.proc = subprocess.Popen(
            argv,
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
            env=env,
            start_new_session=True,
            preexec_fn=take_the_terminal,
        )
        os.close(secondary)
        self.output = b""

    def _read(self, deadline: float) -> bool:
        """Read what is there (waiting until ``deadline``); False once the command is gone."""
        import select
        import time

        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no output in time; so far: {self.output[-3000:]!r}")
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # the other end closed
            return False
        self.output += chunk
        return bool(chunk)

    def read_until(self, text: str) -> str:
        """The output up to and including the first ``text`` after what was read so far."""
        import time

        deadline = time.monotonic() + DEADLINE
        start = len(self.output)
        while text.encode() not in self.output[start:]:
            if not self._read(deadline):
                raise AssertionError(f"{text!r} never came: {self.output[-3000:]!r}")
        return self.output.decode(errors="replace")

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def close(self) -> int:
        """Read to the end; the command's exit code."""
        import time

        deadline = time.monotonic() + DEADLINE
        while self._read(deadline):
            pass
        os.close(self.fd)
        return self.proc.wait(timeout=DEADLINE)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ignores_sigterm(pid: int) -> bool:
    """Has the process set SIGTERM to be ignored (yet)?"""
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return bool(ignored & (1 << (signal.SIGTERM - 1)))


def plain(text: str) -> str:
    """Terminal output without its colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def cli_argv(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "orchestra_ci", "--root", str(root), *args]


# -- start ---------------------------------------------------------------------------------


def test_start_prints_a_fresh_id_and_queues_a_pending_camelcase_record(
    root: Path, cli: CliRunner
) -> None:
    result = cli("start", "fake", "fix the 'bug' in $HOME; rm -rf /")

    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    assert result.stdout == task_id + "\n"
    assert TASK_ID.fullmatch(task_id) and task_id.startswith("fake-")
    record = stored(root, task_id)
    assert record["taskId"] == task_id
    assert record["status"] == "pending"
    assert record["agent"] == "fake"
    assert record["prompt"] == "fix the 'bug' in $HOME; rm -rf /"
    assert record["retryCount"] == 0 and record["retryHistory"] == []
    assert record["maxRetries"] == 3 and record["priority"] == 0
    assert record["dependsOn"] == [] and record["timeout"] is None
    assert record["errorMessage"] is None
    assert datetime.fromisoformat(record["createdAt"]).tzinfo is not None
    assert {"taskId", "createdAt", "retryCount", "maxRetries", "dependsOn"} <= set(record)
    assert not [key for key in record if "_" in key]  # camelCase only, no snake_case
    assert not task_files(root, task_id)["pid"]


def test_start_stores_every_option(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "first", "--id", "first")
    start(cli, "fake", "second", "--id", "second.v2")

    task_id = start(
        cli,
        "fake2",
        "third",
        "--id",
        "third_one",
        "--timeout",
        "90s",
        "--max-retries",
        "5",
        "--priority",
        "-7",
        "--depends-on",
        "first,second.v2",
    )

    assert task_id == "third_one"
    record = stored(root, "third_one")
    assert record["agent"] == "fake2"
    assert record["timeout"] == 90
    assert record["maxRetries"] == 5
    assert record["priority"] == -7
    assert record["dependsOn"] == ["first", "second.v2"]
    assert set(records(root)) == {"first", "second.v2", "third_one"}


def test_start_with_a_duplicate_id_fails_and_keeps_the_first_task(
    root: Path, cli: CliRunner
) -> None:
    start(cli, "fake", "original", "--id", "dup")

    assert_usage_error(cli("start", "fake", "impostor", "--id", "dup"), "'dup'", "already exists")
    assert stored(root, "dup")["prompt"] == "original"
    assert set(records(root)) == {"dup"}


def test_start_with_an_unknown_agent_names_the_known_ones(root: Path, cli: CliRunner) -> None:
    result = cli("start", "gpt-99", "hello")

    assert_usage_error(result, "unknown agent 'gpt-99'", "fake", "fake2", "claude", "demo")
    assert records(root) == {}


@pytest.mark.parametrize(
    "extra",
    [
        ["--depends-on", "ghost"],
        ["--id", "a/b"],
        ["--id", "../escape"],
        ["--id", "has space"],
        ["--id", "x" * 101],
        ["--depends-on", "../etc"],
        ["--max-retries", "-1"],
        ["--timeout", "soon"],
    ],
)
def test_start_rejects_bad_input_without_queueing(
    root: Path, store: Store, cli: CliRunner, extra: list[str]
) -> None:
    assert store.create(new_record("exists", "fake", "exists"))

    assert_usage_error(cli("start", "fake", "hello", *extra))
    assert set(records(root)) == {"exists"}
    assert sorted(p.name for p in (root / ".orchestra/tasks").iterdir()) == ["exists.json"]


def test_start_rejects_an_empty_prompt(root: Path, cli: CliRunner) -> None:
    assert_usage_error(cli("start", "fake", "   "), "prompt")
    assert records(root) == {}


def test_fifty_quick_starts_never_collide(root: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestra_ci", "--root", str(root), "start", "fake", f"p{n}"],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(50)
    ]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=DEADLINE * 2)
        assert proc.returncode == 0, err
        ids.append(out.strip())

    assert len(set(ids)) == 50
    queued = records(root)
    assert set(queued) == set(ids)
    assert sorted(r["prompt"] for r in queued.values()) == sorted(f"p{n}" for n in range(50))


def test_start_finds_the_agent_config_named_by_the_environment(
    root: Path, cli: CliRunner, tmp_path: Path
) -> None:
    """``start`` accepts exactly the agents ``run`` will know (ORCHESTRA_AGENT_CONFIG)."""
    config = tmp_path / "elsewhere" / "agents.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"agents": {"custom": FAKE_AGENT}}))
    env = cli_env(ORCHESTRA_AGENT_CONFIG=str(config))

    result = cli("start", "custom", "exit=0", "--id", "c1", env=env)
    assert result.returncode == 0, result.stderr

    run = cli("run", env=env)
    assert run.returncode == 0, run.stderr
    assert records(root)["c1"]["status"] == "complete"


def test_start_finds_the_agent_config_named_by_config_yml(
    root: Path, cli: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "agents-from-config-yml.json"
    config.write_text(json.dumps({"agents": {"custom": FAKE_AGENT}}))
    (root / ".orchestra/config.yml").write_text(f"agent_config: {config}\n")

    assert start(cli, "custom", "exit=0", "--id", "c1") == "c1"
    assert_usage_error(cli("start", "nobody", "x"), "unknown agent 'nobody'", "custom")


# -- status --------------------------------------------------------------------------------


def test_status_table_lists_every_task(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "first prompt", "--id", "alpha")
    start(cli, "fake2", "second prompt", "--id", "beta")
    start(cli, "fake", "third prompt", "--id", "gamma")
    assert cli("cancel", "beta").returncode == 0

    result = cli("status")

    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    assert rows["alpha"][1:3] == ["pending", "fake"]
    assert rows["beta"][1:3] == ["cancelled", "fake2"]
    assert rows["gamma"][1:3] == ["pending", "fake"]
    assert "first prompt" in result.stdout and "third prompt" in result.stdout
    assert "3 tasks: 2 pending, 1 cancelled" in result.stdout


def test_status_on_an_empty_queue(cli: CliRunner) -> None:
    table = cli("status")
    assert table.returncode == 0 and "no tasks" in table.stdout
    raw = cli("status", "--json")
    assert raw.returncode == 0 and json.loads(raw.stdout) == []


def test_status_json_prints_the_records_as_stored_sorted_by_id(root: Path, cli: CliRunner) -> None:
    for task_id in ("m-task", "Z-task", "a-task", "b.task", "b-task"):
        start(cli, "fake", f"prompt of {task_id}", "--id", task_id)
    # fields orchestra-ci does not know, and a minimal agent-orchestrator record, are kept
    extended = stored(root, "m-task") | {"customField": {"nested": [1, 2]}, "issueNumber": 7}
    (root / ".orchestra/tasks/m-task.json").write_text(json.dumps(extended))
    legacy = {
        "taskId": "legacy",
        "status": "complete",
        "agent": "claude",
        "prompt": "old",
        "createdAt": "2024-01-02T03:04:05",
    }
    (root / ".orchestra/tasks/legacy.json").write_text(json.dumps(legacy))

    result = cli("status", "--json")

    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    files = sorted((root / ".orchestra/tasks").glob("*.json"))
    assert [r["taskId"] for r in printed] == sorted(p.stem for p in files)
    assert printed == [json.loads(p.read_text()) for p in files]
    assert printed[[r["taskId"] for r in printed].index("legacy")] == legacy


def test_status_of_one_task(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "only\nthis one", "--id", "one", "--priority", "3")
    start(cli, "fake", "other", "--id", "two")

    raw = cli("status", "one", "--json")
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout.endswith("}\n")
    assert json.loads(raw.stdout) == stored(root, "one")

    detail = cli("status", "one")
    assert detail.returncode == 0, detail.stderr
    assert 'taskId: "one"' in detail.stdout and "priority: 3" in detail.stdout
    assert "prompt: only this one" in detail.stdout
    assert "two" not in detail.stdout


@pytest.mark.parametrize("args", [["ghost"], ["ghost", "--json"], ["../tasks/x", "--json"]])
def test_status_of_an_unknown_task(cli: CliRunner, args: list[str]) -> None:
    assert_usage_error(cli("status", *args), "no task with id")


def test_a_corrupt_record_is_quarantined_and_named_once(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "fine", "--id", "fine")
    (root / ".orchestra/tasks/broken.json").write_text('{"taskId": "broken", "sta')
    result = cli("status")
    assert result.returncode == 0
    assert "fine" in result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("orchestra-ci: warning: broken.json cannot be used")
    assert "moved to .orchestra/quarantine/broken.json: not valid JSON" in result.stderr
    again = cli("status")
    assert again.stderr == ""  # said once: the file is out of the way
    assert "quarantined" in again.stdout and "broken.json" in again.stdout
    assert cli("status", "broken").returncode == 2


# -- logs ----------------------------------------------------------------------------------


def test_logs_prints_the_log_of_a_finished_task(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "exit=0", "--id", "done-task")
    assert cli("run").returncode == 0

    result = cli("logs", "done-task")

    assert result.returncode == 0, result.stderr
    log = (root / ".orchestra/logs/done-task.log").read_text()
    assert result.stdout == log
    assert "===== orchestra-ci · task done-task · attempt 1" in log
    assert "fake agent: done" in log
    follow = cli("logs", "done-task", "--follow")  # finished: returns at once
    assert follow.returncode == 0 and follow.stdout == log


def test_logs_follow_returns_with_the_whole_log_once_the_task_finishes(
    root: Path, cli: CliRunner
) -> None:
    start(cli, "fake", "sleep=1 exit=0", "--id", "slow")
    runner = background(root, "run")
    try:
        wait_for(lambda: task_files(root, "slow")["pid"], "the agent to start")
        follower = background(root, "logs", "slow", "--follow")
        out, err = follower.communicate(timeout=DEADLINE)
        assert follower.returncode == 0, err
        assert records(root)["slow"]["status"] == "complete"
        assert out == (root / ".orchestra/logs/slow.log").read_text()
        assert out.rstrip().endswith("[orchestra-ci: exit code 0]")
    finally:
        runner.communicate(timeout=DEADLINE)
    assert runner.returncode == 0


def test_logs_of_a_task_without_a_log_yet(cli: CliRunner) -> None:
    start(cli, "fake", "x", "--id", "fresh")
    result = cli("logs", "fresh")
    assert result.returncode == 0
    assert result.stdout == "" and "no log yet" in result.stderr


def test_logs_of_an_unknown_task(cli: CliRunner) -> None:
    assert_usage_error(cli("logs", "ghost"), "no task with id 'ghost'")


# -- retry ---------------------------------------------------------------------------------


def test_retry_puts_a_failed_task_back_to_pending(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "exit=3", "--id", "bad", "--max-retries", "1")
    assert cli("run").returncode == 1
    before = stored(root, "bad")
    assert before["status"] == "failed" and before["retryCount"] == 1
    assert task_files(root, "bad")["error"]

    result = cli("retry", "bad")

    assert result.returncode == 0, result.stderr
    assert "bad" in result.stdout
    after = stored(root, "bad")
    assert after["status"] == "pending"
    assert after["retryCount"] == 0
    assert after["errorMessage"] is None and after["completedAt"] is None
    assert after["attempts"] == before["attempts"]  # history is kept
    assert not task_files(root, "bad")["error"]
    assert task_files(root, "bad")["log"]


def test_retry_refuses_tasks_that_are_not_failed_or_cancelled(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "exit=0", "--id", "good")
    assert cli("run").returncode == 0
    start(cli, "fake", "exit=0", "--id", "waiting")

    assert_usage_error(cli("retry", "good"), "'good'", "complete")
    assert_usage_error(cli("retry", "waiting"), "'waiting'", "pending")
    assert_usage_error(cli("retry", "ghost"), "no task with id")
    assert stored(root, "good")["status"] == "complete"
    assert task_files(root, "good")["done"]


def test_retry_of_a_cancelled_task(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "exit=0", "--id", "c")
    assert cli("cancel", "c").returncode == 0

    assert cli("retry", "c").returncode == 0

    record = stored(root, "c")
    assert record["status"] == "pending" and record["errorMessage"] is None


BLOCKING = """
defaults: {agent: fake, max_retries: 0}
tasks:
  - {id: f1, prompt: "exit=1"}
  - {id: f2, prompt: "exit=2"}
  - {id: dep, prompt: "exit=0", depends_on: [f1]}
  - {id: dep2, prompt: "exit=0", depends_on: [dep]}
  - {id: ok, prompt: "exit=0"}
"""


def test_retry_resets_the_tasks_a_failure_blocked(root: Path, cli: CliRunner) -> None:
    write_tasks(root, BLOCKING)
    assert cli("run").returncode == 1
    status = {k: (r["status"], r.get("blockedBy")) for k, r in records(root).items()}
    assert status["dep"] == ("failed", "f1") and status["dep2"][0] == "failed"
    assert status["ok"] == ("complete", None)

    one = cli("retry", "f1")

    assert one.returncode == 0, one.stderr
    assert "3 task(s)" in one.stdout
    after = records(root)
    assert {k for k, r in after.items() if r["status"] == "pending"} == {"f1", "dep", "dep2"}
    assert after["f2"]["status"] == "failed" and after["ok"]["status"] == "complete"
    assert all(after[k]["blockedBy"] is None for k in ("f1", "dep", "dep2"))
    assert not any(task_files(root, k)["error"] for k in ("f1", "dep", "dep2"))
    assert task_files(root, "f2")["error"]


def test_retry_failed_resets_every_failed_task_and_what_it_blocked(
    root: Path, cli: CliRunner
) -> None:
    write_tasks(root, BLOCKING)
    assert cli("run").returncode == 1

    result = cli("retry", "--failed")

    assert result.returncode == 0, result.stderr
    assert "4 task(s) back to pending: dep, dep2, f1, f2" in result.stdout
    after = records(root)
    for task_id in ("f1", "f2", "dep", "dep2"):
        record = after[task_id]
        assert record["status"] == "pending", task_id
        assert record["retryCount"] == 0 and record["errorMessage"] is None
        assert record["blockedBy"] is None
        assert not task_files(root, task_id)["error"]
    assert after["ok"]["status"] == "complete" and task_files(root, "ok")["done"]
    nothing = cli("retry", "--failed")
    assert nothing.returncode == 0 and nothing.stdout.startswith("0 task(s)")


@pytest.mark.parametrize("args", [[], ["x", "--failed"]])
def test_retry_needs_exactly_one_of_an_id_or_failed(cli: CliRunner, args: list[str]) -> None:
    start(cli, "fake", "x", "--id", "x")
    assert_usage_error(cli("retry", *args), "--failed")


# -- cancel --------------------------------------------------------------------------------


def test_cancelled_pending_task_never_runs_and_blocks_its_dependents(
    root: Path, cli: CliRunner
) -> None:
    marker = root / "ran.txt"
    start(cli, "fake", f"write={marker}", "--id", "a")
    start(cli, "fake", "exit=0", "--id", "b", "--depends-on", "a")
    start(cli, "fake", "exit=0", "--id", "c")

    result = cli("cancel", "a")

    assert result.returncode == 0, result.stderr
    assert "cancelled a (was pending)" in result.stdout
    assert stored(root, "a")["status"] == "cancelled"
    assert cli("run").returncode == 1  # b fails, blocked by a
    after = records(root)
    assert after["a"]["status"] == "cancelled" and after["a"]["attempts"] == []
    assert not marker.exists()
    assert after["b"]["status"] == "failed" and after["b"]["blockedBy"] == "a"
    assert "'a'" in after["b"]["errorMessage"] and after["b"]["attempts"] == []
    assert after["c"]["status"] == "complete"
    assert_usage_error(cli("cancel", "a"), "already cancelled")
    assert_usage_error(cli("cancel", "c"), "already complete")
    assert_usage_error(cli("cancel", "ghost"), "no task with id")


def test_cancel_of_a_running_task_stops_its_whole_process_tree(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "child_ignores_term hang", "--id", "victim")
    runner = background(root, "run", "--grace", "0.5")
    try:
        wait_for(
            lambda: task_files(root, "victim")["pid"] and (root / "child.pid").exists(),
            "the agent and its child to start",
        )
        agent_pid = int((root / ".orchestra/tasks/victim.pid").read_text())
        child_pid = int((root / "child.pid").read_text())
        assert alive(agent_pid) and alive(child_pid)

        result = cli("cancel", "victim")

        assert result.returncode == 0, result.stderr
        assert "was running" in result.stdout
        _, err = runner.communicate(timeout=DEADLINE)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 0, err  # a cancelled task is not a failure
    record = stored(root, "victim")
    assert record["status"] == "cancelled"
    assert record["retryCount"] == 0 and record["retryHistory"] == []
    assert [a["outcome"] for a in record["attempts"]] == ["cancelled"]
    files = task_files(root, "victim")
    assert not files["pid"] and not files["done"] and not files["error"]
    wait_for(lambda: not alive(agent_pid) and not alive(child_pid), "the processes to die")


# -- timeout -------------------------------------------------------------------------------


def test_timeout_changes_the_stored_timeout(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "x", "--id", "t", "--timeout", "1h")

    result = cli("timeout", "t", "5m")

    assert result.returncode == 0, result.stderr
    assert stored(root, "t")["timeout"] == 300
    assert_usage_error(cli("timeout", "t", "soon"), "invalid duration 'soon'")
    assert_usage_error(cli("timeout", "t", "-5s"))
    assert_usage_error(cli("timeout", "ghost", "5m"), "no task with id")
    assert stored(root, "t")["timeout"] == 300


def test_a_changed_timeout_applies_to_the_next_attempt(root: Path, cli: CliRunner) -> None:
    start(cli, "fake", "hang", "--id", "stuck", "--timeout", "30m", "--max-retries", "0")
    assert cli("timeout", "stuck", "0.5s").returncode == 0

    assert cli("run", "--grace", "0.2").returncode == 1

    record = stored(root, "stuck")
    assert record["status"] == "failed"
    assert [a["outcome"] for a in record["attempts"]] == ["timeout"]


# -- clean ---------------------------------------------------------------------------------


def _finished_queue(root: Path, cli: CliRunner) -> None:
    """ok: complete, bad: failed, gone: cancelled, later: pending."""
    start(cli, "fake", "exit=0", "--id", "ok")
    start(cli, "fake", "exit=1", "--id", "bad", "--max-retries", "0")
    start(cli, "fake", "exit=0", "--id", "gone")
    assert cli("cancel", "gone").returncode == 0
    assert cli("run").returncode == 1
    start(cli, "fake", "exit=0", "--id", "later")
    assert {k: r["status"] for k, r in records(root).items()} == {
        "ok": "complete",
        "bad": "failed",
        "gone": "cancelled",
        "later": "pending",
    }


def test_clean_removes_finished_tasks_and_their_files(root: Path, cli: CliRunner) -> None:
    _finished_queue(root, cli)
    assert task_files(root, "ok")["done"] and task_files(root, "ok")["log"]
    assert task_files(root, "bad")["error"] and task_files(root, "bad")["log"]

    result = cli("clean")

    assert result.returncode == 0, result.stderr
    assert "removed 3" in result.stdout
    assert set(records(root)) == {"later"}
    for task_id in ("ok", "bad", "gone"):
        assert not any(task_files(root, task_id).values()), task_id
    assert task_files(root, "later")["json"]


def test_clean_only_the_given_statuses(root: Path, cli: CliRunner) -> None:
    _finished_queue(root, cli)

    result = cli("clean", "--status", "complete")

    assert result.returncode == 0, result.stderr
    assert set(records(root)) == {"bad", "gone", "later"}
    assert not any(task_files(root, "ok").values())
    assert cli("clean", "--status", "failed, cancelled").returncode == 0
    assert set(records(root)) == {"later"}


def test_clean_older_than_keeps_recent_tasks(root: Path, cli: CliRunner) -> None:
    _finished_queue(root, cli)

    result = cli("clean", "--older-than", "1h")

    assert result.returncode == 0, result.stderr
    assert "removed 0" in result.stdout
    assert set(records(root)) == {"ok", "bad", "gone", "later"}
    old = stored(root, "bad")
    old["completedAt"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    (root / ".orchestra/tasks/bad.json").write_text(json.dumps(old))
    assert cli("clean", "--older-than", "1h").returncode == 0
    assert set(records(root)) == {"ok", "gone", "later"}


@pytest.mark.parametrize("statuses", ["pending", "running", "complete,pending", "nonsense"])
def test_clean_refuses_unfinished_statuses(root: Path, cli: CliRunner, statuses: str) -> None:
    start(cli, "fake", "x", "--id", "p")
    assert_usage_error(cli("clean", "--status", statuses), "--status")
    assert set(records(root)) == {"p"}


# -- load ----------------------------------------------------------------------------------


def test_load_is_idempotent_and_updates_only_pending_tasks(root: Path, cli: CliRunner) -> None:
    write_tasks(root, "defaults: {agent: fake}\ntasks:\n  - {id: a, prompt: 'exit=0'}\n")
    assert cli("run").returncode == 0
    assert stored(root, "a")["status"] == "complete"
    tasks = (
        "defaults: {agent: fake}\ntasks:\n"
        "  - {id: a, prompt: 'exit=0 edited'}\n"
        "  - {id: b, prompt: 'first'}\n"
        "  - {id: c, prompt: 'second', depends_on: [b]}\n"
    )
    write_tasks(root, tasks)

    first = cli("load")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "added 2, updated 0, unchanged 1"
    snapshot = {p.name: p.read_bytes() for p in (root / ".orchestra/tasks").iterdir()}

    again = cli("load")
    assert again.stdout.strip() == "added 0, updated 0, unchanged 3"
    assert {p.name: p.read_bytes() for p in (root / ".orchestra/tasks").iterdir()} == snapshot

    write_tasks(root, tasks.replace("'first'", "'first, reworded'"))
    edited = cli("load")
    assert edited.stdout.strip() == "added 0, updated 1, unchanged 2"
    after = records(root)
    assert after["b"]["prompt"] == "first, reworded" and after["b"]["status"] == "pending"
    assert after["a"]["prompt"] == "exit=0" and after["a"]["status"] == "complete"
    assert set(after) == {"a", "b", "c"}


def test_load_rejects_a_bad_file_as_a_whole(root: Path, cli: CliRunner) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        "  - {id: fine, prompt: x}\n"
        "  - {id: docs, prompt: y, timeout: soon}\n",
    )
    assert_usage_error(cli("load"), "tasks.yml", "'docs'", "timeout")
    assert records(root) == {}


# -- daemon --------------------------------------------------------------------------------


def test_daemon_picks_up_queued_tasks_and_stops_cleanly_on_sigterm(
    root: Path, cli: CliRunner
) -> None:
    daemon = background(root, "daemon", "--interval", "0.2", ORCHESTRA_GRACE="0.5s")
    try:
        wait_for(lambda: any((root / ".orchestra/runners").glob("*.lock")), "the daemon")
        ids = [start(cli, "fake", f"exit=0 n={n}") for n in range(3)]
        wait_for(
            lambda: all(stored(root, i)["status"] == "complete" for i in ids), "tasks to complete"
        )
        late = start(cli, "fake", "exit=0 late")
        wait_for(lambda: stored(root, late)["status"] == "complete", "a later task")
        assert daemon.poll() is None  # a drained queue does not stop the daemon
        stuck = start(cli, "fake", "hang", "--id", "stuck")
        wait_for(lambda: task_files(root, stuck)["pid"], "the hanging agent to start")
        agent_pid = int((root / ".orchestra/tasks/stuck.pid").read_text())

        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=DEADLINE)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()

    assert daemon.returncode == 143, err  # the code it logs: stopped by SIGTERM
    assert "Traceback" not in err
    after = records(root)
    assert {after[i]["status"] for i in [*ids, late]} == {"complete"}
    assert after["stuck"]["status"] == "pending"  # back in the queue, not lost
    assert not [k for k, r in after.items() if r["status"] == "running"]
    assert not list((root / ".orchestra/tasks").glob("*.pid"))
    assert not list((root / ".orchestra/runners").glob("*.lock"))
    wait_for(lambda: not alive(agent_pid), "the agent to die")


# -- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],
        ["--bogus", "status"],
        ["status", "--bogus"],
        ["start", "fake"],
        ["run", "--parallel", "0"],
        ["run", "--time-budget", "later"],
        ["daemon", "--interval", "x"],
        [],
    ],
)
def test_bad_usage_is_one_line_and_exit_2(root: Path, cli: CliRunner, args: list[str]) -> None:
    assert_usage_error(cli(*args), "error:")
    assert records(root) == {}


def test_version(cli: CliRunner) -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"orchestra-ci {__version__}\n"


def test_root_defaults_to_orchestra_root_then_cwd(root: Path, tmp_path: Path) -> None:
    def run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestra_ci", *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=cli_env(**env),
            timeout=DEADLINE,
            check=False,
        )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run("start", "fake", "x", "--id", "via-cwd", cwd=root).returncode == 0
    by_env = run("start", "fake", "y", "--id", "via-env", cwd=elsewhere, ORCHESTRA_ROOT=str(root))
    assert by_env.returncode == 0, by_env.stderr
    assert set(records(root)) == {"via-cwd", "via-env"}
    assert not (elsewhere / ".orchestra").exists()


LEAN_CHECK = """
import sys
from orchestra_ci.cli import main

root = sys.argv[1]
for argv in (
    ["status"],
    ["status", "--json"],
    ["start", "demo", "hi", "--id", "lean"],
    ["status", "lean"],
    ["status", "lean", "--json"],
    ["timeout", "lean", "5m"],
    ["logs", "lean"],
    ["cancel", "lean"],
    ["retry", "lean"],
    ["retry", "--failed"],
    ["clean"],
):
    code = main(["--root", root, *argv])
    assert code == 0, (argv, code)
try:
    main(["--version"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
else:
    raise AssertionError("--version did not exit")
heavy = ["github", "pydantic", "pydantic_settings", "structlog", "tenacity", "yaml", "asyncio"]
loaded = [name for name in heavy if name in sys.modules]
assert not loaded, loaded
print("lean")
"""


def python_script(script: str, *args: str) -> str:
    """What a fresh interpreter running ``script`` prints; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quick_commands_do_not_import_heavy_modules(root: Path) -> None:
    assert python_script(LEAN_CHECK, str(root)).splitlines()[-1] == "lean"
    assert os.path.exists(root / ".orchestra/tasks/lean.json")


RUN_PATH_CHECK = """
import sys
from orchestra_ci import batch, credentials, engine, worktrees

later = ["tenacity", "orchestra_ci.report", "orchestra_ci.summary", "github"]
print([name for name in later if name in sys.modules])
"""


def test_what_run_first_needs_after_its_agents_start_is_imported_then() -> None:
    """The report, the retry waits and GitHub are imported while the first agents work,
    not on the way to them."""
    assert python_script(RUN_PATH_CHECK).strip() == "[]"


def test_a_file_name_with_a_line_break_stays_on_one_error_line(cli: CliRunner) -> None:
    result = cli("run", "--tasks-file", "tasks\r\n.yml")
    assert_usage_error(result, "tasks\\r\\n.yml", "tasks file not found")


def test_global_options_may_follow_the_command(root: Path, tmp_path: Path) -> None:
    start_ = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "start", "fake", "exit=0", "--root", str(root)],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
    )
    assert start_.returncode == 0, start_.stderr
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestra_ci",
            "status",
            "--root",
            str(root),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
        cwd=tmp_path,
    )
    assert shown.returncode == 0 and "1 tasks: 1 pending" in shown.stdout


@pytest.mark.parametrize("command", [["status"], ["run"], ["retry", "--failed"], ["clean"]])
def test_a_root_that_does_not_exist_is_an_error(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(missing), *command],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"orchestra-ci: error: --root {missing}: no such directory\n"
    assert not missing.exists()


def test_start_makes_its_root(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(fresh), "start", "demo", "hello"],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
    )
    assert result.returncode == 0 and (fresh / ".orchestra/tasks").is_dir()


def test_a_folder_where_the_tasks_file_goes_is_an_error(root: Path, cli: CliRunner) -> None:
    (root / ".orchestra/tasks.yml").mkdir()
    assert_usage_error(cli("run"), "tasks.yml: not a file")


def test_start_depends_on_then_agent_and_prompt(root: Path, cli: CliRunner) -> None:
    first = start(cli, "fake", "exit=0", "--id", "a")
    second = start(cli, "fake", "exit=0", "--id", "b")
    third = cli("start", "--depends-on", f"{first},{second}", "demo", "hello", "--id", "c")
    assert third.returncode == 0, third.stderr
    record = stored(root, "c")
    assert record["dependsOn"] == ["a", "b"] and record["agent"] == "demo"
    assert record["prompt"] == "hello"
    fourth = cli("start", "--depends-on", "a", "--depends-on", "b", "demo", "hi", "--id", "d")
    assert fourth.returncode == 0 and stored(root, "d")["dependsOn"] == ["a", "b"]


def test_the_live_status_line_never_runs_into_a_log_line(root: Path) -> None:
    import os
    import pty
    import re

    tasks = "tasks:\n" + "".join(f"  - {{id: t{n}, prompt: 'sleep=0.3'}}\n" for n in range(6))
    (root / ".orchestra/tasks.yml").write_text(tasks)
    main, secondary = pty.openpty()
    env = {
        **cli_env(),
        "CI": "",
        "ORCHESTRA_DEFAULT_AGENT": "fake",
        "ORCHESTRA_PROGRESS_INTERVAL": "0.05s",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), "run", "--parallel", "2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=120) == 0
    os.close(main)
    text = out.decode(errors="replace")
    assert " running · " in text  # the live line was drawn
    # Every redraw starts by clearing the line, so a status line is never followed by log
    # text on the same line: no piece between clears holds both.
    for piece in text.split("\r\x1b[2K"):
        first = piece.split("\n", 1)[0]
        logged = re.search(r"\[(\x1b\[[0-9;]*m)*(info|warning)", first)
        assert not (" running · " in first and logged), piece


def test_the_closing_line_names_the_report_from_where_the_user_stands(
    root: Path, tmp_path: Path
) -> None:
    (root / ".orchestra/tasks.yml").write_text("tasks:\n  - {id: a, agent: fake, prompt: exit=0}\n")
    for cwd, shown in (
        (root, ".orchestra/results.json"),
        (root.parent, "project/.orchestra/results.json"),
    ):
        ran = subprocess.run(
            [sys.executable, "-m", "orchestra_ci", "--root", str(root), "run"],
            capture_output=True,
            text=True,
            env=cli_env(),
            check=False,
            cwd=cwd,
        )
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.splitlines()[-1] == f"report: {shown}"


def test_logs_follow_on_a_task_not_started_says_it_is_waiting(
    root: Path, cli: CliRunner, tmp_path: Path
) -> None:
    task = start(cli, "fake", "exit=0", "--id", "later")
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as sink:
        follower = subprocess.Popen(
            [sys.executable, "-m", "orchestra_ci", "--root", str(root), "logs", "-f", task],
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
        try:
            wait_for(lambda: "waiting for later" in errors.read_text(), "the waiting line")
            assert cli("cancel", task).returncode == 0
            assert follower.wait(timeout=30) == 0
        finally:
            if follower.poll() is None:
                follower.kill()
    assert errors.read_text() == "(waiting for later to start; Ctrl-C to stop)\n"


def test_a_zero_timeout_is_refused(root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), "run"],
        capture_output=True,
        text=True,
        env=cli_env(ORCHESTRA_TIMEOUT="0"),
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == "orchestra-ci: error: ORCHESTRA_TIMEOUT: Input should be greater than 0\n"


def test_status_watch_fits_the_screen_and_keeps_its_header(root: Path, cli: CliRunner) -> None:
    for n in range(30):
        start(cli, "fake", f"exit=0 n={n}", "--id", f"t{n:02}")
    screen = Terminal(cli_argv(root, "status", "--watch"), cli_env(), rows=12, columns=70)
    try:
        screen.read_until("30 tasks: 30 pending")
        screen.type(b"\x03")
        assert screen.close() == 0
    finally:
        screen.kill()
    frame = screen.output.decode().split("\x1b[H\x1b[2J")[1]
    lines = frame.split("\r\n")
    assert len(lines) == 12  # eleven lines and the cursor on the last row: nothing scrolls
    assert lines[0].split() == ["ID", "STATUS", "AGENT", "TRIES", "TIME", "DETAIL"]
    assert [line.split()[0] for line in lines[1:8]] == [f"t{n:02}" for n in range(7)]
    assert lines[8:11] == ["... 23 more", "", "30 tasks: 30 pending"]
    assert all(len(line) <= 70 for line in lines)


def test_a_second_ctrl_c_skips_the_grace_period(root: Path, cli: CliRunner) -> None:
    """The agent's child ignores SIGTERM, so after the first Ctrl-C the run would wait out
    its hour of grace; the second kills the agents at once and the run ends."""
    start(cli, "fake", "child_ignores_term hang", "--id", "stubborn")
    env = cli_env(CI="", ORCHESTRA_LOG_FORMAT="console")
    run = Terminal(cli_argv(root, "run", "--grace", "1h"), env)
    try:
        wait_for(lambda: (root / "child.pid").exists(), "the agent's child to start")
        child = int((root / "child.pid").read_text())
        wait_for(lambda: ignores_sigterm(child), "the child to ignore SIGTERM")
        run.type(b"\x03")
        first = plain(run.read_until("signal again to kill the agents at once"))
        assert "stopping" in first and "grace=1h" in first
        assert alive(child)  # it ignored the SIGTERM: the run is waiting out the grace period
        run.type(b"\x03")
        second = plain(run.read_until("now"))
        assert run.close() == 130
    finally:
        run.kill()
    assert "second SIGINT: grace period skipped, killing 1 agent(s) now" in second
    assert "Traceback" not in run.output.decode()
    wait_for(lambda: not alive(child), "the child to die")
    assert stored(root, "stubborn")["status"] == "pending"  # interrupted, not failed


def test_clean_branches_deletes_the_task_branches_and_names_what_comes_back(
    git_repo: Path,
) -> None:
    from tests.conftest import write_agents

    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    write_tasks(git_repo, "tasks:\n  - {id: a, agent: fake, prompt: write=a.txt}\n")
    for args in (["run"], ["start", "fake", "write=b.txt", "--id", "b"], ["run"]):
        ran = subprocess.run(
            cli_argv(git_repo, *args), capture_output=True, text=True, env=cli_env(), check=False
        )
        assert ran.returncode == 0, ran.stderr
    branches = ["git", "-C", str(git_repo), "branch", "--list", "orchestra/*"]
    assert subprocess.run(branches, capture_output=True, text=True, check=True).stdout.split() == [
        "orchestra/a",
        "orchestra/b",
    ]

    cleaned = subprocess.run(
        cli_argv(git_repo, "clean", "--branches"),
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
    )

    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.splitlines() == [
        "removed 2 task(s) and 2 branch(es)",
        "note: a came from .orchestra/tasks.yml: the next load or run queues them again "
        "while they are in it",
    ]
    assert subprocess.run(branches, capture_output=True, text=True, check=True).stdout == ""
