"""Crash safety: a runner SIGKILLed at random moments loses nothing and leaves nothing behind.

A 100-task queue (fake agents taking 0.05-0.3 s; some start a child that ignores SIGTERM,
some fail once, some write files) is run by ``orchestra-ci run --parallel 4``; the runner is
SIGKILLed at a moment drawn from ``random.Random(SEED)``, then a new runner starts, over N
trials; a last run finishes the queue. Invariants are checked after every kill and at the end.

``ORCHESTRA_CRASH_TRIALS`` sets N for the long variants (``-m slow``); the default suite runs
:data:`DEFAULT_TRIALS` trials.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci.comments import marker
from orchestra_ci.process import MARKER_VAR
from orchestra_ci.store import Store
from tests.conftest import FAKE_AGENT, cli_env, records, wait_for, write_agents, write_tasks
from tests.doubles.fake_github import FakeGitHub, Fault
from tests.reliability.conftest import (
    LABEL,
    ORCHESTRA,
    REPO,
    action_env,
    events,
    kill_leftovers,
    orchestra,
    processes_of,
    run_action,
    wait_gone,
)

SEED = 20251124
TASKS = 100
DEFAULT_TRIALS = 8
SLOW_TRIALS = int(os.environ.get("ORCHESTRA_CRASH_TRIALS", "30"))
KILL_WINDOW = (0.1, 1.5)  # seconds after the runner starts; start-up alone takes ~0.3 s


def crash_queue(root: Path, record_file: Path, rng: random.Random) -> None:
    lines = ["defaults: {agent: fake, max_retries: 3, backoff: 0.05s, backoff_max: 0.2s}"]
    lines.append("tasks:")
    for n in range(TASKS):
        words = [f"record={record_file}"]
        if n % 8 == 0:
            words.append("child_ignores_term")  # leaves a child behind that ignores SIGTERM
        if n % 13 == 5:
            words.append("fail_times=1")
        if n % 5 == 2:
            words.append(f"write=out/t{n:03d}.txt")
        words.append(f"sleep={rng.uniform(0.05, 0.3):.3f}")
        lines.append(f"  - {{id: t{n:03d}, prompt: '{' '.join(words)}'}}")
    write_tasks(root, "\n".join(lines) + "\n")


def check_queue(
    root: Path, record_file: Path, known: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """What must hold after any crash: every record parseable and none lost (a kill during
    the first load may leave some not yet created: the next run loads them; without
    ``known`` all must be there), no attempt started twice, and nothing complete unless
    its agent finished that attempt."""
    tasks_dir = root / ".orchestra" / "tasks"
    for path in tasks_dir.glob("*.json"):
        if not path.name.startswith("."):
            json.loads(path.read_bytes())  # raises on a torn or empty record
    tasks = records(root)  # Store's own reading, which also validates the shape
    wanted = {f"t{n:03d}" for n in range(TASKS)} if known is None else known
    assert wanted <= set(tasks), sorted(wanted - set(tasks))
    assert set(tasks) <= {f"t{n:03d}" for n in range(TASKS)}
    seen = events(record_file)
    starts = Counter((e["task"], e["attempt"]) for e in seen if e["event"] == "start")
    repeated = [key for key, count in starts.items() if count > 1]
    assert not repeated, f"attempts started more than once: {repeated}"
    ends = {(e["task"], e["attempt"]): e["pid"] for e in seen if e["event"] == "end"}
    for task_id, record in tasks.items():
        if record["status"] != "complete":
            continue
        last = record["attempts"][-1]
        assert last["outcome"] == "success" and last["exitCode"] == 0, (task_id, last)
        key = (task_id, str(last["number"]))
        assert key in ends, f"{task_id} complete without its agent finishing attempt {key[1]}"
        if "pid" in last:
            assert ends[key] == last["pid"], (task_id, last)
    return tasks


def crash_trials(root: Path, tmp_path: Path, trials: int, seed: int) -> list[float]:
    record_file = tmp_path / "events.jsonl"
    rng = random.Random(seed)
    crash_queue(root, record_file, rng)
    moments = []
    known: set[str] = set()
    try:
        for trial in range(trials):
            moment = rng.uniform(*KILL_WINDOW)
            moments.append(moment)
            with (tmp_path / f"runner-{trial}.log").open("wb") as log:
                runner = subprocess.Popen(
                    [*ORCHESTRA, "--root", str(root), "run", "--parallel", "4", "--grace", "0.5"],
                    env=cli_env(),
                    stdout=log,
                    stderr=log,
                )
                time.sleep(moment)
                runner.send_signal(signal.SIGKILL)
                runner.wait(timeout=30)
            if (root / ".orchestra" / "tasks").is_dir():
                known = set(check_queue(root, record_file, known))

        final = orchestra(root, "run", "--parallel", "4", "--grace", "0.5", timeout=240)
        assert final.returncode == 0, final.stderr[-3000:]

        tasks = check_queue(root, record_file)
        assert {r["status"] for r in tasks.values()} == {"complete"}
        assert not [p for p in (root / ".orchestra").rglob("*.tmp")]
        report = json.loads((root / ".orchestra" / "results.json").read_text())
        assert report["totals"]["complete"] == TASKS
        # No agent (nor anything it started) is alive: a recorded pid still running with
        # this queue's environment would be one (a bare pid may have been reused since).
        left = wait_gone(processes_of(root), 2.0)
        agent_pids = {e["pid"] for e in events(record_file)}
        assert [pid for pid in left if pid in agent_pids] == []
        assert left == []
    finally:
        kill_leftovers(processes_of(root))
    attempts = [a for r in tasks.values() for a in r["attempts"]]
    (tmp_path / "numbers.json").write_text(
        json.dumps(
            {
                "trials": trials,
                "kill_moments": [round(m, 2) for m in moments],
                "attempts": len(attempts),
                "interrupted": sum(a.get("outcome") == "interrupted" for a in attempts),
                "agent_starts": sum(e["event"] == "start" for e in events(record_file)),
            }
        )
    )
    tasks_dir = root / ".orchestra" / "tasks"
    gaps = sorted(
        [f"{t}.done missing" for t in tasks if not (tasks_dir / f"{t}.done").exists()]
        + [f"{p.name} left" for p in tasks_dir.glob("*.pid")]
    )
    assert not gaps, gaps
    return moments


def _plain_root(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / ".orchestra").mkdir(parents=True)
    write_agents(root, {"fake": FAKE_AGENT})
    return root


def _git_root(git_repo: Path) -> Path:
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    return git_repo


def _no_worktrees_left(repo: Path) -> None:
    listed = subprocess.run(
        ["git", "-C", str(repo), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    worktrees = [line for line in listed.splitlines() if line.startswith("worktree ")]
    assert worktrees == [f"worktree {repo.resolve()}"], worktrees
    leftover = repo / ".orchestra" / "worktrees"
    assert not leftover.exists() or not [p for p in leftover.iterdir() if p.is_dir()]


def test_random_kills_then_a_full_run_finish_every_task(tmp_path: Path) -> None:
    crash_trials(_plain_root(tmp_path), tmp_path, DEFAULT_TRIALS, SEED)


def test_random_kills_in_a_git_repository_leave_no_worktree(git_repo: Path, tmp_path: Path) -> None:
    root = _git_root(git_repo)
    crash_trials(root, tmp_path, DEFAULT_TRIALS, SEED + 1)
    _no_worktrees_left(root)


@pytest.mark.slow
def test_many_random_kills(tmp_path: Path) -> None:
    crash_trials(_plain_root(tmp_path), tmp_path, SLOW_TRIALS, SEED + 2)


@pytest.mark.slow
def test_many_random_kills_in_a_git_repository(git_repo: Path, tmp_path: Path) -> None:
    root = _git_root(git_repo)
    crash_trials(root, tmp_path, SLOW_TRIALS, SEED + 3)
    _no_worktrees_left(root)


# Deterministic versions of the narrow windows a random kill rarely hits.


def _orphan(root: Path, task_id: str, status: str) -> dict[str, Any]:
    """A record as a runner (``r1-dead``, whose lease is gone) left it."""
    assert orchestra(root, "start", "fake", "exit=0", "--id", task_id).returncode == 0
    store = Store(root)
    record: Any = store.get(task_id)
    marker = f"r1-dead.{task_id}.1"
    record["attempts"] = [
        {"number": 1, "agent": "fake", "startedAt": record["createdAt"], "runnerId": "r1-dead"}
    ]
    record["attempts"][0]["marker"] = marker
    record["status"] = status
    record["runnerId"] = "r1-dead"
    if status == "complete":
        record["attempts"][0].update({"endedAt": record["createdAt"], "exitCode": 0})
        record["attempts"][0]["outcome"] = "success"
        record["completedAt"] = record["createdAt"]
        record["runnerId"] = None
    store.write(record)
    return dict(record)


def test_orphan_spawned_before_its_pid_file_was_written_is_still_stopped(root: Path) -> None:
    _orphan(root, "t", "running")
    env = {
        **cli_env(),
        MARKER_VAR: "r1-dead.t.1",  # the attempt marker, as the runner sets it
        "ORCHESTRA_ROOT": str(root.resolve()),
        "ORCHESTRA_TASK_ID": "t",
    }
    orphan = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(3600)",
        ],
        env=env,
        start_new_session=True,
    )
    try:
        result = orchestra(root, "run", "--grace", "0.5")
        assert result.returncode == 0, result.stderr
        assert records(root)["t"]["status"] == "complete"
        assert orphan.poll() is not None or wait_gone([orphan.pid], 3.0) == []
    finally:
        orphan.kill()
        orphan.wait()


def test_sentinels_of_a_task_completed_just_before_the_crash_are_repaired(root: Path) -> None:
    _orphan(root, "t", "complete")
    tasks_dir = root / ".orchestra" / "tasks"
    (tasks_dir / "t.pid").write_text("999999\n")

    result = orchestra(root, "run")

    assert result.returncode == 0, result.stderr
    assert records(root)["t"]["status"] == "complete"
    assert not (tasks_dir / "t.pid").exists()
    assert (tasks_dir / "t.done").exists()


# The Action killed mid-batch: issue comments and labels come out right on the next run.


def _issue_batch(gh: FakeGitHub, root: Path) -> None:
    repo = gh.add_repo(REPO)
    repo.collaborators["maintainer"] = "maintain"
    for n, sleep in enumerate((0.3, 0.5, 0.2, 0.4), start=1):
        gh.add_issue(REPO, f"Issue {n}", f"sleep={sleep}", user="maintainer", labels=[LABEL])
    write_agents(root, {"fake": FAKE_AGENT})


def _action(env: dict[str, str]) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        [sys.executable, "-m", "orchestra_ci.action"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _assert_issues_final(gh: FakeGitHub) -> None:
    repo = gh.repo(REPO)
    for number in range(1, 5):
        ours = [c.body for c in repo.comments_on(number) if marker(f"issue-{number}") in c.body]
        assert len(ours) == 1, (number, ours)  # one status comment, however many runs
        assert "done" in ours[0], (number, ours[0])
        assert set(repo.issues[number].labels) == {"orchestra:done"}, number


def test_killed_action_runs_leave_one_comment_per_issue(
    fake_github: FakeGitHub, root: Path, tmp_path: Path
) -> None:
    gh = fake_github
    _issue_batch(gh, root)
    env = action_env(root, gh, tmp_path)
    rng = random.Random(SEED + 4)
    try:
        for _ in range(5):
            action = _action(env)
            time.sleep(rng.uniform(0.3, 1.5))  # start-up, comments, agents, or reporting
            action.send_signal(signal.SIGKILL)
            action.wait(timeout=30)
            gh.wait_idle()
        final = run_action(env)
        gh.wait_idle()
        assert final.returncode == 0, final.stderr[-3000:]
        assert {r["status"] for r in records(root).values()} == {"complete"}
        _assert_issues_final(gh)
    finally:
        kill_leftovers(processes_of(root))


@pytest.mark.parametrize("workspace", ["same", "fresh"])
def test_an_action_killed_while_moving_labels_still_ends_with_the_right_labels(
    fake_github: FakeGitHub, root: Path, tmp_path: Path, workspace: str
) -> None:
    """Killed after the trigger label came off an issue and before the done label went on.
    The next run may find the same workspace (a laptop, a self-hosted runner) or a fresh
    checkout (a new workflow run, where only the issue's labels remember anything)."""
    gh = fake_github
    _issue_batch(gh, root)
    env = action_env(root, gh, tmp_path)
    # Adding a label never gets through (and never lands): the run is stuck right there.
    stuck = gh.inject(
        Fault.drop(r"/issues/\d+/labels$", effect="never", after=3, method="POST", times=None)
    )
    action = _action(env)
    try:
        wait_for(lambda: stuck.hits > 0, "the first label to be added", timeout=60)
        action.send_signal(signal.SIGKILL)
        action.wait(timeout=30)
        gh.clear_faults()
        gh.wait_idle(timeout=20)
        if workspace == "fresh":
            root = tmp_path / "checkout"
            (root / ".orchestra").mkdir(parents=True)
            write_agents(root, {"fake": FAKE_AGENT})
            env = action_env(root, gh, tmp_path / "checkout")
        final = run_action(env)
        gh.wait_idle(timeout=20)
        assert final.returncode == 0, final.stderr[-3000:]
        _assert_issues_final(gh)
    finally:
        if action.poll() is None:
            action.kill()
        kill_leftovers(processes_of(root))
