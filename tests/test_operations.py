"""The queue operations behind the small commands, called directly (no subprocess)."""

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci import operations
from orchestra_ci.errors import TaskNotFound, UsageError
from orchestra_ci.operations import (
    cancel_task,
    clean_tasks,
    retry_tasks,
    set_timeout,
    start_task,
)
from orchestra_ci.presets import PRESETS, agent_names
from orchestra_ci.process import MARKER_VAR, kill_attempt
from orchestra_ci.record import FINISHED, TaskRecord, new_record, now_iso
from orchestra_ci.store import RunnerLease, Store
from tests.conftest import alive, wait_for

DEADLINE = 30.0


def put(store: Store, task_id: str, status: str = "pending", **fields: Any) -> TaskRecord:
    record = new_record(task_id, "fake", f"prompt of {task_id}")
    record.update({"status": status, **fields})  # type: ignore[typeddict-item]
    if status in FINISHED and "completedAt" not in fields:
        record["completedAt"] = now_iso()
    assert store.create(record)
    return record


def touch_files(store: Store, task_id: str) -> list[Path]:
    paths = [
        store.sentinel(task_id, "done"),
        store.sentinel(task_id, "error"),
        store.log_path(task_id),
        store.patches_dir / f"{task_id}.patch",
    ]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    return paths


def config(root: Path) -> Path:
    return root / ".orchestra/agent-config.json"


# -- start_task ----------------------------------------------------------------------------


def test_start_task_queues_a_pending_record(store: Store, root: Path) -> None:
    task_id = start_task(
        store,
        "fake",
        "line one\nline two \x7f é",
        task_id=None,
        config_file=config(root),
        timeout=90.0,
        max_retries=0,
        priority=2,
    )
    record = store.get(task_id)
    assert record["status"] == "pending" and record["source"] == "cli"
    assert record["prompt"] == "line one\nline two \x7f é"
    assert (record["timeout"], record["maxRetries"], record["priority"]) == (90.0, 0, 2)


def test_start_task_accepts_presets_and_configured_agents(store: Store, root: Path) -> None:
    for agent in ("demo", "claude", "fake2"):
        start_task(store, agent, "x", task_id=f"with-{agent}", config_file=config(root))
    assert {r["agent"] for r in store.all()} == {"demo", "claude", "fake2"}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"agent": "nobody"}, "unknown agent 'nobody'"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "a\x00b"}, "NUL"),
        ({"max_retries": -1}, "--max-retries"),
        ({"task_id": "a b"}, "invalid task id"),
        ({"task_id": ".."}, "invalid task id"),
        ({"depends_on": ["missing"]}, "no task 'missing'"),
        ({"depends_on": ["bad/id"]}, "invalid task id"),
    ],
)
def test_start_task_rejects_bad_input(
    store: Store, root: Path, kwargs: dict[str, Any], fragment: str
) -> None:
    args: dict[str, Any] = {"agent": "fake", "prompt": "x", "task_id": None, **kwargs}
    with pytest.raises(UsageError, match=fragment) as info:
        start_task(store, args.pop("agent"), args.pop("prompt"), config_file=config(root), **args)
    assert info.value.exit_code == 2
    assert store.all() == []


def test_start_task_lists_known_agents_even_with_a_broken_config(
    store: Store, tmp_path: Path
) -> None:
    broken = tmp_path / "agents.json"
    broken.write_text('{"agents": ')
    with pytest.raises(UsageError) as info:
        start_task(store, "fake", "x", task_id=None, config_file=broken)
    assert all(name in str(info.value) for name in PRESETS)
    assert agent_names(broken) == set(PRESETS)
    broken.write_text("[1, 2]")
    assert agent_names(broken) == set(PRESETS)
    assert agent_names(tmp_path / "absent.json") == set(PRESETS)


def test_start_task_never_overwrites_an_existing_task(store: Store, root: Path) -> None:
    put(store, "taken", "complete")
    with pytest.raises(UsageError, match="already exists"):
        start_task(store, "fake", "new", task_id="taken", config_file=config(root))
    assert store.get("taken")["status"] == "complete"


# -- retry_tasks ---------------------------------------------------------------------------


def test_retry_follows_chains_of_blocked_tasks(store: Store) -> None:
    put(store, "root-cause", "failed", retryCount=2, errorMessage="boom")
    put(store, "blocked", "failed", blockedBy="root-cause", errorMessage="blocked")
    put(store, "blocked-again", "failed", blockedBy="blocked", errorMessage="blocked")
    put(store, "other", "failed", errorMessage="unrelated")
    put(store, "blocked-by-other", "failed", blockedBy="other")
    put(store, "done", "complete")
    for task_id in ("root-cause", "blocked", "blocked-again", "other"):
        touch_files(store, task_id)

    assert retry_tasks(store, "root-cause") == ["blocked", "blocked-again", "root-cause"]

    status = {r["taskId"]: r for r in store.all()}
    for task_id in ("root-cause", "blocked", "blocked-again"):
        record = status[task_id]
        assert record["status"] == "pending"
        assert record["retryCount"] == 0 and record["errorMessage"] is None
        assert record["blockedBy"] is None and record["completedAt"] is None
        assert not store.sentinel(task_id, "error").exists()
        assert not store.sentinel(task_id, "done").exists()
        assert store.log_path(task_id).exists()  # the log keeps the history
    assert status["other"]["status"] == "failed"
    assert store.sentinel("other", "error").exists()
    assert status["blocked-by-other"]["status"] == "failed"
    assert status["done"]["status"] == "complete"


def test_retry_all_failed(store: Store) -> None:
    put(store, "f1", "failed")
    put(store, "f2", "failed", blockedBy="c1")
    put(store, "c1", "cancelled")
    put(store, "ok", "complete")
    put(store, "p", "pending")

    assert retry_tasks(store, None) == ["f1", "f2"]
    assert {r["taskId"]: r["status"] for r in store.all()} == {
        "f1": "pending",
        "f2": "pending",
        "c1": "cancelled",
        "ok": "complete",
        "p": "pending",
    }
    assert retry_tasks(store, None) == []


@pytest.mark.parametrize("status", ["pending", "running", "complete"])
def test_retry_refuses_unfinished_or_successful_tasks(store: Store, status: str) -> None:
    put(store, "t", status)
    with pytest.raises(UsageError, match=status):
        retry_tasks(store, "t")
    assert store.get("t")["status"] == status


def test_retry_of_an_unknown_task(store: Store) -> None:
    with pytest.raises(TaskNotFound):
        retry_tasks(store, "ghost")


def test_retry_waits_until_the_runner_has_finished_a_cancelled_attempt(store: Store) -> None:
    """Right after ``cancel``, the runner still has to record how the attempt ended."""
    lease = RunnerLease(store, "r-live")
    try:
        put(store, "c", "cancelled", runnerId="r-live")
        with pytest.raises(UsageError, match="still being stopped"):
            retry_tasks(store, "c")
        assert store.get("c")["status"] == "cancelled"
    finally:
        lease.release()
    assert retry_tasks(store, "c") == ["c"]


# -- cancel_task ---------------------------------------------------------------------------


def test_cancel_a_pending_task(store: Store) -> None:
    put(store, "p", "pending")
    assert cancel_task(store, "p") == "pending"
    record = store.get("p")
    assert record["status"] == "cancelled"
    assert record["completedAt"] and record["errorMessage"] == "cancelled"


@pytest.mark.parametrize("status", ["complete", "failed", "cancelled"])
def test_cancel_a_finished_task_is_a_usage_error(store: Store, status: str) -> None:
    before = put(store, "t", status)
    with pytest.raises(UsageError, match=f"already {status}") as info:
        cancel_task(store, "t")
    assert info.value.exit_code == 2
    assert store.get("t")["completedAt"] == before["completedAt"]


def test_cancel_of_an_unknown_task(store: Store) -> None:
    with pytest.raises(TaskNotFound):
        cancel_task(store, "ghost")
    with pytest.raises(TaskNotFound):
        cancel_task(store, "../../etc/passwd")


def _running(store: Store, task_id: str, runner: str, marker: str) -> None:
    put(
        store,
        task_id,
        "running",
        runnerId=runner,
        attempts=[
            {
                "number": 1,
                "agent": "fake",
                "startedAt": now_iso(),
                "runnerId": runner,
                "marker": marker,
            }
        ],
    )


def _spawn_marked(marker: str) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={**os.environ, MARKER_VAR: marker},
        start_new_session=True,
    )


def test_cancel_stops_an_attempt_that_starts_just_after_the_claim(store: Store) -> None:
    """A task is ``running`` from its claim, a moment before its agent (and ``.pid``) exist;
    a cancel in that moment must still stop the agent the runner is about to start."""
    lease = RunnerLease(store, "r-live")
    _running(store, "t", "r-live", "r-live.t.1")
    result: list[str] = []
    canceller = threading.Thread(target=lambda: result.append(cancel_task(store, "t", 0.3)))
    agent = None
    try:
        canceller.start()
        wait_for(lambda: store.get("t")["status"] == "cancelled", "the cancel")
        agent = _spawn_marked("r-live.t.1")  # the runner starts the agent ...
        store.write_pid("t", agent.pid)  # ... and then writes its pid
        canceller.join(DEADLINE)
        assert not canceller.is_alive()
        assert result == ["running"]
        assert agent.wait(DEADLINE) != 0  # stopped by the cancel, not by the test
    finally:
        lease.release()
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()


def test_cancel_does_not_wait_for_an_attempt_whose_runner_is_gone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operations, "_PID_WAIT", 600.0)
    _running(store, "t", "r-dead", "r-dead.t.1")  # no lease: its runner died

    canceller = threading.Thread(target=cancel_task, args=(store, "t", 0.1), daemon=True)
    canceller.start()
    canceller.join(DEADLINE)

    assert not canceller.is_alive()
    assert store.get("t")["status"] == "cancelled"


def test_cancel_kills_the_agent_and_its_marked_children(store: Store) -> None:
    lease = RunnerLease(store, "r-live")
    _running(store, "t", "r-live", "r-live.t.1")
    agent = _spawn_marked("r-live.t.1")
    stray = _spawn_marked("r-live.t.1")  # left the group, still carries the marker
    other = _spawn_marked("r-live.u.1")  # another attempt: must survive
    store.write_pid("t", agent.pid)
    try:
        assert cancel_task(store, "t", 0.3) == "running"
        assert agent.wait(DEADLINE) != 0 and stray.wait(DEADLINE) != 0
        assert other.poll() is None and alive(other.pid)
    finally:
        lease.release()
        for proc in (agent, stray, other):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_kill_attempt_returns_once_an_unreaped_child_has_exited() -> None:
    agent = _spawn_marked("zombie-check")
    try:
        stopper = threading.Thread(
            target=kill_attempt, args=(agent.pid, "zombie-check", 600.0), daemon=True
        )
        stopper.start()
        stopper.join(3.0)  # generous: the agent dies on the first SIGTERM
        assert not stopper.is_alive()
    finally:
        agent.kill()
        agent.wait()


# -- set_timeout ---------------------------------------------------------------------------


def test_set_timeout(store: Store) -> None:
    put(store, "t", "pending", timeout=60.0)
    set_timeout(store, "t", 300.0)
    assert store.get("t")["timeout"] == 300.0
    with pytest.raises(TaskNotFound):
        set_timeout(store, "ghost", 1.0)


# -- clean_tasks ---------------------------------------------------------------------------


def test_clean_removes_finished_tasks_with_every_file(store: Store) -> None:
    for status in ("complete", "failed", "cancelled", "pending", "running"):
        put(store, status, status)
    files = {status: touch_files(store, status) for status in ("complete", "failed", "pending")}
    (store.worktrees_dir / "complete").mkdir(parents=True)
    store.write_pid("complete", 999999)

    removed = clean_tasks(store, ["complete", "failed", "cancelled"])

    assert removed.tasks == ["cancelled", "complete", "failed"]
    assert sorted(r["taskId"] for r in store.all()) == ["pending", "running"]
    for path in files["complete"] + files["failed"]:
        assert not path.exists(), path
    assert not store.sentinel("complete", "pid").exists()
    assert not (store.worktrees_dir / "complete").exists()
    assert all(path.exists() for path in files["pending"])


def test_clean_by_age_uses_completion_time_then_creation_time(store: Store) -> None:
    old = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    put(store, "old", "complete", completedAt=old)
    put(store, "new", "complete")
    put(store, "old-created", "failed", createdAt=old, completedAt=None)
    put(store, "legacy", "failed", createdAt="2020-01-01T00:00:00", completedAt=None)

    assert clean_tasks(store, ["complete", "failed"], older_than=3600).tasks == [
        "legacy",
        "old",
        "old-created",
    ]
    assert [r["taskId"] for r in store.all()] == ["new"]


def test_clean_by_age_keeps_tasks_of_unknown_age(store: Store) -> None:
    put(store, "unreadable", "complete", completedAt="last tuesday")
    put(store, "old", "complete", completedAt=(datetime.now(UTC) - timedelta(days=2)).isoformat())

    assert clean_tasks(store, ["complete"], older_than=3600).tasks == ["old"]
    assert clean_tasks(store, ["complete"]).tasks == ["unreadable"]


@pytest.mark.parametrize("statuses", [["pending"], ["running"], ["complete", "bogus"]])
def test_clean_refuses_unfinished_statuses(store: Store, statuses: list[str]) -> None:
    put(store, "done", "complete")
    with pytest.raises(UsageError, match="--status"):
        clean_tasks(store, statuses)
    assert [r["taskId"] for r in store.all()] == ["done"]


def test_clean_leaves_a_cancelled_task_its_runner_is_still_stopping(store: Store) -> None:
    lease = RunnerLease(store, "r-live")
    try:
        put(store, "stopping", "cancelled", runnerId="r-live")
        put(store, "stale", "cancelled", runnerId="r-gone")
        assert clean_tasks(store, ["cancelled"]).tasks == ["stale"]
    finally:
        lease.release()
    assert clean_tasks(store, ["cancelled"]).tasks == ["stopping"]


def test_clean_goes_on_past_a_corrupt_record(store: Store) -> None:
    put(store, "fine", "complete")
    store.record_path("broken").write_text("{not json")
    assert clean_tasks(store, ["complete"]).tasks == ["fine"]
    assert not store.record_path("fine").exists()
    assert [name for name, _ in store.quarantined()] == ["broken.json"]


def _branches(repo: Path) -> set[str]:
    listed = subprocess.run(
        ["git", "-C", str(repo), "for-each-ref", "--format=%(refname:short)", "refs/heads/"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(listed.stdout.split())


def test_clean_with_branches_deletes_the_branches_of_the_cleaned_tasks(git_repo: Path) -> None:
    store = Store(git_repo).ensure()
    for task_id, status in (("done", "complete"), ("broke", "failed"), ("waiting", "pending")):
        put(store, task_id, status)
        subprocess.run(["git", "-C", str(git_repo), "branch", f"orchestra/{task_id}"], check=True)
    put(store, "never-ran", "cancelled")  # no branch: nothing to delete
    # The worktree of "done" was removed without telling git: its branch still goes.
    worktree = store.worktrees_dir / "done"
    subprocess.run(
        ["git", "-C", str(git_repo), "worktree", "add", "-q", str(worktree), "orchestra/done"],
        check=True,
    )

    cleaned = clean_tasks(store, FINISHED, branches=True)

    assert cleaned.tasks == ["broke", "done", "never-ran"]
    assert cleaned.branches == ["orchestra/broke", "orchestra/done"]
    assert _branches(git_repo) == {"main", "orchestra/waiting"}


def test_clean_with_branches_outside_a_repository_removes_nothing(store: Store) -> None:
    put(store, "done", "complete")
    with pytest.raises(UsageError, match=r"--branches: .* not in a git repository"):
        clean_tasks(store, ["complete"], branches=True)
    assert [r["taskId"] for r in store.all()] == ["done"]


def test_clean_names_the_tasks_a_tasks_file_queued(store: Store) -> None:
    put(store, "a", "complete", source="file", sourceFile=".orchestra/tasks.yml")
    put(store, "b", "failed", source="file", sourceFile=".orchestra/tasks.yml")
    put(store, "c", "complete", source="file", sourceFile="more.json")
    put(store, "by-hand", "complete")

    cleaned = clean_tasks(store, FINISHED)

    assert cleaned.from_files == {".orchestra/tasks.yml": ["a", "b"], "more.json": ["c"]}
    assert cleaned.branches == []


def test_records_stay_json_objects_after_operations(store: Store) -> None:
    put(store, "t", "failed")
    retry_tasks(store, "t")
    cancel_task(store, "t")
    set_timeout(store, "t", 5.0)
    data = json.loads(store.record_path("t").read_text())
    assert data["taskId"] == "t" and data["status"] == "cancelled" and data["timeout"] == 5.0


def test_retrying_a_dependency_requeues_the_tasks_that_built_on_it(store: Store) -> None:
    put(store, "lint", "failed", errorMessage="boom")
    put(store, "changelog", "complete", dependsOn=["lint"])
    put(store, "release", "failed", dependsOn=["changelog"], errorMessage="flaky")
    put(store, "dropped", "cancelled", dependsOn=["lint"])
    for task_id in ("lint", "changelog", "release"):
        touch_files(store, task_id)

    assert retry_tasks(store, "lint") == ["changelog", "lint", "release"]

    changelog = store.get("changelog")
    assert changelog["status"] == "pending" and changelog["completedAt"] is None
    assert changelog["history"][-1]["event"] == "requeued"
    assert changelog["history"][-1]["reason"] == "its dependency 'lint' runs again"
    assert store.get("release")["history"][-1]["reason"] == "its dependency 'changelog' runs again"
    assert not store.sentinel("changelog", "done").exists()
    assert "history" not in store.get("lint")  # retried as asked, nothing to explain
    assert store.get("dropped")["status"] == "cancelled"
