"""Each task in its own git worktree: branches, patches, overlaps, verification."""

import json
import subprocess
import sys
from pathlib import Path

from orchestra_ci.record import TaskRecord
from orchestra_ci.store import Store
from tests.conftest import FAKE_AGENT, cli_env, records, write_agents, write_tasks
from tests.doubles.fake_github import FakeGitHub, Fault, Repo


def run_cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(**env),
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
    result = run_cli(git_repo, "run", ORCHESTRA_ISOLATION="none")
    assert result.returncode == 0, result.stderr
    assert (git_repo / "here.txt").exists()
    assert records(git_repo)["here"].get("branch") is None


def _pushing_to_a_remote(
    git_repo: Path, tmp_path: Path, fake_github: FakeGitHub
) -> tuple[Repo, dict[str, str]]:
    """``origin`` is a bare repository holding ``main``; the fake GitHub's repository takes
    any branch; the fake agent is configured. Returns that repository and the run's env."""
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(git_repo, "remote", "add", "origin", str(remote))
    git(git_repo, "push", "-q", "origin", "main")
    repo = fake_github.add_repo("octo/widgets")
    repo.create_missing_refs = True
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    env = cli_env(
        **fake_github.env("octo/widgets"),
        ORCHESTRA_GITHUB_MIN_INTERVAL="0",
        ORCHESTRA_GITHUB_WRITE_INTERVAL="0",
    )
    return repo, env


def _run_with_prs(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), "run", "--create-prs"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_pull_request_per_task_pushed_to_a_bare_remote(
    git_repo: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    repo, env = _pushing_to_a_remote(git_repo, tmp_path, fake_github)
    write_tasks(
        git_repo,
        "defaults: {agent: fake}\ntasks:\n"
        "  - {id: feature, prompt: 'write=feature.txt'}\n"
        "  - {id: empty, prompt: 'exit=0'}\n",
    )

    def run() -> subprocess.CompletedProcess[str]:
        return _run_with_prs(git_repo, env)

    result = run()
    assert result.returncode == 0, result.stderr
    pulls = list(repo.pulls.values())
    assert len(pulls) == 1  # no PR for a task that changed nothing
    pr = pulls[0]
    assert pr.head == "orchestra/feature" and pr.base == "main" and pr.draft
    assert "feature.txt" in (repo.issues[pr.number].body or "")
    pushed = subprocess.run(
        ["git", "--git-dir", str(tmp_path / "remote.git"), "show", "orchestra/feature:feature.txt"],
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


# -- dependencies build on each other's work ------------------------------------------------


def _queue(root: Path, tasks: str) -> None:
    """``root``'s queue: the fake agent and these tasks."""
    (root / ".orchestra").mkdir()
    write_agents(root, {"fake": FAKE_AGENT})
    write_tasks(root, tasks)


def _report(root: Path) -> dict[str, dict[str, object]]:
    report = json.loads((root / ".orchestra/results.json").read_text())
    return {t["id"]: t for t in report["tasks"]}


def test_dependents_start_from_their_dependencies_results_and_patches_stack(
    git_repo: Path, tmp_path: Path
) -> None:
    _queue(
        git_repo,
        "defaults: {agent: fake, max_retries: 0}\ntasks:\n"
        "  - {id: first, prompt: 'write=made-by-first.txt'}\n"
        "  - {id: other, prompt: 'write=src/other.py'}\n"
        "  - id: second\n    prompt: 'need=made-by-first.txt write=made-by-second.txt'\n"
        "    depends_on: [first]\n"
        "  - id: both\n    prompt: 'need=made-by-second.txt write=README.md'\n"
        "    depends_on: [second, other]\n",
    )
    base = git(git_repo, "rev-parse", "HEAD").strip()

    result = run_cli(git_repo, "run", "--parallel", "4")

    assert result.returncode == 0, result.stderr
    tasks = _report(git_repo)
    assert {t["status"] for t in tasks.values()} == {"complete"}
    assert tasks["first"]["baseRef"] == "main" and tasks["first"]["baseCommit"] == base
    first_tip = git(git_repo, "rev-parse", "orchestra/first").strip()
    second_tip = git(git_repo, "rev-parse", "orchestra/second").strip()
    assert tasks["second"]["baseRef"] == "orchestra/first"
    assert tasks["second"]["baseCommit"] == first_tip
    assert tasks["second"]["changedFiles"] == ["made-by-second.txt"]  # its own change only
    # two dependencies: a merge of both results, made before the agent started
    assert tasks["both"]["baseRef"] == "orchestra/second + orchestra/other"
    merge = str(tasks["both"]["baseCommit"])
    parents = git(git_repo, "rev-list", "--parents", "-n1", merge).split()[1:]
    assert parents == [second_tip, git(git_repo, "rev-parse", "orchestra/other").strip()]
    assert tasks["both"]["changedFiles"] == ["README.md"]
    for name in ("made-by-first.txt", "made-by-second.txt", "src/other.py"):
        git(git_repo, "cat-file", "-e", f"orchestra/both:{name}")
    # the patches apply in dependency order on the run's base commit
    clone = tmp_path / "replay"
    git(git_repo.parent, "clone", "-q", str(git_repo), str(clone))
    git(clone, "checkout", "-q", "--detach", base)
    for task_id in ("first", "other", "second", "both"):
        patch = git_repo / str(tasks[task_id]["patch"])
        git(clone, "apply", "--check", str(patch))
        git(clone, "-c", "user.name=T", "-c", "user.email=t@e.invalid", "am", "-q", str(patch))
    assert (clone / "README.md").read_text() == "written by both\n"
    assert (clone / "made-by-first.txt").is_file() and (clone / "src/other.py").is_file()


def test_dependencies_whose_results_conflict_fail_the_task_before_its_agent_runs(
    git_repo: Path, tmp_path: Path
) -> None:
    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": FAKE_AGENT})
    ran = tmp_path / "ran.jsonl"
    write_tasks(
        git_repo,
        "defaults: {agent: fake, max_retries: 3}\ntasks:\n"
        "  - {id: left, prompt: 'write=shared.txt'}\n"
        "  - {id: right, prompt: 'write=shared.txt'}\n"
        f"  - {{id: joined, prompt: 'record={ran} write=j.txt', depends_on: [left, right]}}\n",
    )

    result = run_cli(git_repo, "run")

    assert result.returncode == 1
    joined = records(git_repo)["joined"]
    assert joined["status"] == "failed"
    assert len(joined["attempts"]) == 1 and joined["retryCount"] == 0  # not retried
    error = joined["errorMessage"] or ""
    assert "'left', 'right'" in error and "shared.txt" in error and "conflict" in error
    assert not ran.exists()  # no agent ran
    assert not (git_repo / ".orchestra/patches/joined.patch").exists()


def test_base_worktree_gives_the_agents_uncommitted_and_untracked_files(git_repo: Path) -> None:
    _queue(
        git_repo,
        "defaults: {agent: fake, max_retries: 0}\ntasks:\n"
        "  - {id: snap, prompt: 'need=untracked.txt write=out.txt', base: worktree}\n"
        "  - {id: plain, prompt: 'write=plain.txt'}\n",
    )
    (git_repo / "README.md").write_text("edited, not committed\n")
    (git_repo / "untracked.txt").write_text("new\n")
    status_before = git(git_repo, "status", "--porcelain")
    head_before = git(git_repo, "rev-parse", "HEAD").strip()

    result = run_cli(git_repo, "run")

    assert result.returncode == 0, result.stderr
    # one notice: `plain` runs from HEAD and does not see the two files
    notices = [line for line in result.stderr.splitlines() if "will not see" in line]
    assert len(notices) == 1 and "README.md" in notices[0] and "untracked.txt" in notices[0]
    tasks = _report(git_repo)
    assert tasks["snap"]["baseRef"] == "worktree" and tasks["plain"]["baseRef"] == "main"
    snapshot = str(tasks["snap"]["baseCommit"])
    assert git(git_repo, "show", f"{snapshot}:README.md") == "edited, not committed\n"
    assert git(git_repo, "show", f"{snapshot}:untracked.txt") == "new\n"
    assert git(git_repo, "rev-parse", f"{snapshot}^").strip() == head_before
    assert tasks["snap"]["changedFiles"] == ["out.txt"]  # relative to the snapshot
    # the user's tree, index and HEAD are as they were
    assert git(git_repo, "status", "--porcelain") == status_before
    assert git(git_repo, "rev-parse", "HEAD").strip() == head_before


def test_a_stacked_pull_request_targets_its_dependencys_branch(
    git_repo: Path, tmp_path: Path, fake_github: FakeGitHub
) -> None:
    repo, env = _pushing_to_a_remote(git_repo, tmp_path, fake_github)
    write_tasks(
        git_repo,
        "defaults: {agent: fake}\ntasks:\n"
        "  - {id: lint, prompt: 'write=lint.txt'}\n"
        "  - {id: changelog, prompt: 'need=lint.txt write=CHANGES.md', depends_on: [lint]}\n",
    )
    result = _run_with_prs(git_repo, env)
    assert result.returncode == 0, result.stderr
    pulls = {p.head: p for p in repo.pulls.values()}
    assert pulls["orchestra/lint"].base == "main"
    stacked = pulls["orchestra/changelog"]
    assert stacked.base == "orchestra/lint"
    body = repo.issues[stacked.number].body or ""
    assert "`CHANGES.md`" in body and "lint.txt" not in body and "`lint`" in body


def test_outside_a_repository_one_notice_and_with_isolation_worktree_an_error(
    git_repo: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    _queue(plain, "tasks:\n  - {id: here, agent: fake, prompt: 'write=here.txt'}\n")
    result = run_cli(plain, "run")
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "not each in its own" in line]
    assert len(notices) == 1 and "not in a git repository" in notices[0]
    assert (plain / "here.txt").is_file()

    git(plain, "init", "-q")  # a repository without commits
    result = run_cli(plain, "run", ORCHESTRA_ISOLATION="worktree")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("its git repository has no commits yet")
