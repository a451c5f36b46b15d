"""Each task in its own git worktree: branches, patches, overlaps, verification."""

import json
import subprocess
import sys
from pathlib import Path

from orchestra_ci.record import TaskRecord
from orchestra_ci.store import Store
from tests.conftest import FAKE_AGENT, cli_env, records, write_agents, write_tasks
from tests.doubles.fake_github import FakeGitHub, Fault


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        check=False,
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def test_parallel_tasks_editing_one_file_keep_their_own_branch_and_patch(git_repo: Path) -> None:
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    write_tasks(
        git_repo,
        "defaults: {agent: fake}\ntasks:\n"
        "  - {id: one, prompt: 'write=README.md sleep=0.3'}\n"
        "  - {id: two, prompt: 'write=README.md write2=x sleep=0.3'}\n"
        "  - {id: other, prompt: 'write=src/new.py'}\n"
        "  - {id: nothing, prompt: 'exit=0'}\n",
    )
    base = git(git_repo, "rev-parse", "HEAD").strip()
    (git_repo / "old.txt").write_text("uncommitted change in the main tree\n")

    result = run_cli(git_repo, "run", "--parallel", "4")

    assert result.returncode == 0, result.stderr
    tasks = records(git_repo)
    for task_id in ("one", "two"):
        assert tasks[task_id]["branch"] == f"orchestra/{task_id}"
        assert tasks[task_id]["changedFiles"] == ["README.md"]
        shown = git(git_repo, "show", f"orchestra/{task_id}:README.md")
        assert shown == f"written by {task_id}\n"
        patch = git_repo / tasks[task_id]["patch"]
        assert patch.is_file()
        subprocess.run(["git", "-C", str(git_repo), "apply", "--check", str(patch)], check=True)
    assert tasks["other"]["changedFiles"] == ["src/new.py"]
    assert tasks["nothing"]["patch"] is None and tasks["nothing"]["changedFiles"] == []
    # the main tree and its branch are untouched; worktrees are gone, branches stay
    assert git(git_repo, "rev-parse", "HEAD").strip() == base
    assert (git_repo / "old.txt").read_text() == "uncommitted change in the main tree\n"
    assert (git_repo / "README.md").read_text().startswith("# demo")
    assert not list((git_repo / ".orchestra/worktrees").glob("*/"))
    assert "orchestra/one" in git(git_repo, "branch", "--list", "orchestra/*")
    report = json.loads((git_repo / ".orchestra/results.json").read_text())
    by_id = {t["id"]: t for t in report["tasks"]}
    assert by_id["one"]["overlaps"] == ["two"] and by_id["two"]["overlaps"] == ["one"]
    assert by_id["other"]["overlaps"] == []
    assert by_id["one"]["patch"] == ".orchestra/patches/one.patch"


def test_verification_failure_feeds_the_next_attempts_prompt(git_repo: Path) -> None:
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    seen = git_repo.parent / "argv.json"
    verify = 'echo "VERIFY SAYS: attempt $ORCHESTRA_ATTEMPT"; test "$ORCHESTRA_ATTEMPT" = 2'
    write_tasks(
        git_repo,
        "tasks:\n"
        f"  - id: checked\n    agent: fake\n    prompt: 'argv={seen} write=out.txt'\n"
        f"    verify: {json.dumps(verify)}\n    max_retries: 2\n    backoff: 0.01s\n",
    )

    result = run_cli(git_repo, "run")

    assert result.returncode == 0, result.stderr
    task = records(git_repo)["checked"]
    assert [a["outcome"] for a in task["attempts"]] == ["failed", "success"]
    assert "verification failed" in task["attempts"][0]["error"]
    prompt = json.loads(seen.read_text())[-1]
    assert "VERIFY SAYS: attempt 1" in prompt and "rejected because verification" in prompt
    assert task["verifyOutput"] is None
    log = (git_repo / ".orchestra/logs/checked.log").read_text()
    assert log.count("----- orchestra-ci · verification:") == 2


def test_stale_worktree_from_a_crash_is_pruned(git_repo: Path) -> None:
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    write_tasks(git_repo, "tasks:\n  - {id: fresh, agent: fake, prompt: 'write=a.txt'}\n")
    stale = git_repo / ".orchestra/worktrees/ghost"
    git(git_repo, "worktree", "add", "-q", "-b", "orchestra/ghost", str(stale))
    result = run_cli(git_repo, "run")
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    assert "removed a stale worktree" in result.stderr
    assert "ghost" not in git(git_repo, "worktree", "list")


def test_isolation_none_runs_in_the_root(git_repo: Path) -> None:
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    write_tasks(git_repo, "tasks:\n  - {id: here, agent: fake, prompt: 'write=here.txt'}\n")
    env = cli_env(ORCHESTRA_ISOLATION="none")
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(git_repo), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (git_repo / "here.txt").exists()
    assert records(git_repo)["here"].get("branch") is None


def test_pull_request_per_task_pushed_to_a_bare_remote(
    git_repo: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(git_repo, "remote", "add", "origin", str(remote))
    git(git_repo, "push", "-q", "origin", "main")
    repo = fake_github.add_repo("octo/widgets")
    repo.create_missing_refs = True
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    write_tasks(
        git_repo,
        "defaults: {agent: fake}\ntasks:\n"
        "  - {id: feature, prompt: 'write=feature.txt'}\n"
        "  - {id: empty, prompt: 'exit=0'}\n",
    )
    env = cli_env(
        **fake_github.env("octo/widgets"),
        ORCHESTRA_GITHUB_MIN_INTERVAL="0",
        ORCHESTRA_GITHUB_WRITE_INTERVAL="0",
    )

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestra_ci", "--root", str(git_repo), "run", "--create-prs"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    result = run()
    assert result.returncode == 0, result.stderr
    pulls = list(repo.pulls.values())
    assert len(pulls) == 1  # no PR for a task that changed nothing
    pr = pulls[0]
    assert pr.head == "orchestra/feature" and pr.base == "main" and pr.draft
    assert "feature.txt" in (repo.issues[pr.number].body or "")
    pushed = subprocess.run(
        ["git", "--git-dir", str(remote), "show", "orchestra/feature:feature.txt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert pushed == "written by feature\n"
    task = records(git_repo)["feature"]
    assert task["prUrl"] and task["prUrl"].endswith(f"/pull/{pr.number}")
    report = json.loads((git_repo / ".orchestra/results.json").read_text())
    assert {t["id"]: t["prUrl"] for t in report["tasks"]}["feature"] == task["prUrl"]

    # a second run for the same branch updates the PR instead of opening another
    def again(record: TaskRecord) -> None:
        record["status"] = "pending"

    Store(git_repo).update("feature", again)
    result = run()
    assert result.returncode == 0, result.stderr
    assert len(repo.pulls) == 1
    assert fake_github.find_requests("PATCH", r"/pulls/\d+$")


def test_a_token_that_may_not_open_prs_gets_a_clear_warning(
    git_repo: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(git_repo, "remote", "add", "origin", str(remote))
    repo = fake_github.add_repo("octo/widgets")
    repo.create_missing_refs = True
    fake_github.inject(
        Fault.server_error(
            r"/pulls$",
            403,
            method="POST",
            times=None,
            message="Resource not accessible by integration",
        )
    )
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    write_tasks(git_repo, "tasks:\n  - {id: feature, agent: fake, prompt: 'write=f.txt'}\n")
    env = cli_env(**fake_github.env("octo/widgets"), ORCHESTRA_GITHUB_WRITE_INTERVAL="0")
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(git_repo), "run", "--create-prs"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr  # the task itself succeeded
    # Outside Actions the warning is one line on stderr (an annotation only in Actions).
    warning = [line for line in result.stderr.splitlines() if line.startswith("orchestra-ci: warn")]
    assert len(warning) == 1 and "pull-requests: write" in warning[0]
    assert not repo.pulls
    assert records(git_repo)["feature"].get("prUrl") is None


def test_an_attempt_that_changes_nothing_fails_when_the_task_asks_for_a_change(
    git_repo: Path,
) -> None:
    from orchestra_ci.agents import with_feedback
    from orchestra_ci.outcome import NO_CHANGES

    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    write_tasks(
        git_repo,
        "defaults: {agent: fake, max_retries: 1, backoff: 0.01s}\ntasks:\n"
        "  - {id: idle, prompt: 'exit=0', require_changes: true}\n"
        "  - {id: report, prompt: 'exit=0'}\n"
        "  - {id: fix, prompt: 'write=f.txt', require_changes: true}\n",
    )
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(git_repo), "run"],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
        check=False,
    )
    assert result.returncode == 1, result.stderr
    tasks = records(git_repo)
    assert tasks["idle"]["status"] == "failed" and tasks["idle"]["errorMessage"] == NO_CHANGES
    assert len(tasks["idle"]["attempts"]) == 2  # retried, then failed for good
    assert tasks["report"]["status"] == "complete"  # not asked for a change: exit 0 decides
    assert tasks["fix"]["status"] == "complete" and tasks["fix"]["changedFiles"] == ["f.txt"]
    retry = {**tasks["idle"], "status": "pending"}
    assert "ended without changing any file" in with_feedback(retry)  # type: ignore[arg-type]
