"""Task isolation on real temporary git repositories (fixture ``git_repo``: one commit)."""

import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestra_ci import worktrees
from orchestra_ci.errors import OrchestraError
from orchestra_ci.report import overlaps
from orchestra_ci.worktrees import (
    COMMIT_EMAIL,
    COMMIT_NAME,
    Collected,
    Dependency,
    Isolation,
    MergeConflict,
    WorktreeError,
    branch_name,
    find_repo,
    locate_repo,
    remembered_repos,
)

AGENT_IDENTITY = ["-c", "user.name=Agent", "-c", "user.email=agent@example.com"]
BINARY = bytes(range(256)) * 8 + b"\0\xff\xfe trailing"


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def head(cwd: Path, rev: str = "HEAD") -> str:
    return git(cwd, "rev-parse", rev).strip()


@pytest.fixture
def orchestra(git_repo: Path) -> Path:
    return git_repo / ".orchestra"


@pytest.fixture
def iso(git_repo: Path, orchestra: Path) -> Isolation:
    return Isolation(git_repo, orchestra)


def clone_at_base(repo: Path, base: str, dest: Path) -> Path:
    git(repo.parent, "clone", "-q", str(repo), str(dest))
    git(dest, "checkout", "-q", "--detach", base)
    return dest


def apply_in_clone(repo: Path, base: str, patch: Path, dest: Path) -> Path:
    """Check, then ``git am`` the patch on a clone at the base; return the clone."""
    clone = clone_at_base(repo, base, dest)
    git(clone, "apply", "--check", str(patch))
    git(clone, *AGENT_IDENTITY, "am", "-q", str(patch))
    return clone


def registered(repo: Path) -> list[str]:
    out = git(repo, "worktree", "list", "--porcelain")
    return [os.path.realpath(line[9:]) for line in out.splitlines() if line.startswith("worktree ")]


def main_tree_state(repo: Path) -> dict[str, object]:
    """Everything the user could notice in the main tree, read without refreshing the index."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    files = {
        str(p.relative_to(repo)): p.read_bytes()
        for p in repo.rglob("*")
        if p.is_file()
        and ".git" not in p.relative_to(repo).parts[:1]
        and ".orchestra" not in p.relative_to(repo).parts[:1]
    }
    return {
        "status": [line for line in status.splitlines() if ".orchestra/" not in line],
        "head": head(repo),
        "branch": git(repo, "symbolic-ref", "HEAD").strip(),
        "files": files,
    }


# -- find_repo ----------------------------------------------------------------------------


def test_find_repo_top_level_from_a_subdirectory(git_repo: Path) -> None:
    assert find_repo(git_repo / "src") == git_repo.resolve()
    assert find_repo(git_repo) == git_repo.resolve()


def test_find_repo_outside_a_repository_and_missing_directory(git_repo: Path) -> None:
    plain = git_repo.parent / "plain"
    plain.mkdir()
    assert find_repo(plain) is None
    assert locate_repo(plain) == "it is not in a git repository"
    assert find_repo(git_repo.parent / "does-not-exist") is None
    assert find_repo(git_repo / ".git") is None


def test_find_repo_empty_repository(git_repo: Path) -> None:
    empty = git_repo.parent / "empty"
    git(git_repo.parent, "init", "-q", str(empty))
    assert find_repo(empty) is None
    assert locate_repo(empty) == "its git repository has no commits yet"


def test_find_repo_without_git_binary(git_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(git_repo.parent / "no-bin"))
    assert find_repo(git_repo) is None
    assert locate_repo(git_repo) == "git is not installed"


def test_inside_remembered_repos_a_directory_is_looked_up_once(
    git_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    git_once = worktrees._git_once

    def counted(cwd: Path, args: list[str], *rest: object, **kw: object) -> object:
        calls.append(list(args))
        return git_once(cwd, args, *rest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(worktrees, "_git_once", counted)
    plain = git_repo.parent / "plain"
    plain.mkdir()
    with remembered_repos():
        assert find_repo(git_repo) == find_repo(git_repo / ".") == git_repo.resolve()
        assert locate_repo(plain) == locate_repo(plain) == "it is not in a git repository"
    assert len(calls) == 3  # top-level and HEAD of the repository, top-level of plain
    assert find_repo(git_repo) == git_repo.resolve()  # outside the block: asked again
    assert len(calls) == 5


# -- Isolation basics -----------------------------------------------------------------------


def test_base_commit_defaults_to_head_or_takes_a_revision(git_repo: Path, orchestra: Path) -> None:
    base = head(git_repo)
    assert Isolation(git_repo, orchestra).base_commit == base
    (git_repo / "later.txt").write_text("x\n")
    git(git_repo, "add", "later.txt")
    git(git_repo, *AGENT_IDENTITY, "commit", "-q", "-m", "later")
    assert Isolation(git_repo, orchestra).base_commit == head(git_repo)
    assert Isolation(git_repo, orchestra, base="HEAD~1").base_commit == base
    assert Isolation(git_repo, orchestra, base=base[:10]).base_commit == base


def test_bad_base_and_empty_repository_are_errors(git_repo: Path, orchestra: Path) -> None:
    with pytest.raises(WorktreeError, match="no-such-ref"):
        Isolation(git_repo, orchestra, base="no-such-ref")
    with pytest.raises(WorktreeError):
        Isolation(git_repo, orchestra, base="--all")
    empty = git_repo.parent / "empty"
    git(git_repo.parent, "init", "-q", str(empty))
    with pytest.raises(WorktreeError, match="no commits"):
        Isolation(empty, empty / ".orchestra")


def test_create_makes_a_clean_worktree_on_the_task_branch(git_repo: Path, iso: Isolation) -> None:
    path = iso.create("t1")
    assert path == (git_repo / ".orchestra" / "worktrees" / "t1").resolve()
    assert (path / "README.md").read_text() == (git_repo / "README.md").read_text()
    assert git(path, "symbolic-ref", "HEAD").strip() == "refs/heads/orchestra/t1"
    assert head(path) == iso.base_commit
    assert git(path, "status", "--porcelain") == ""
    assert iso.branch("t1") == "orchestra/t1"


def test_two_parallel_tasks_editing_the_same_file_keep_their_own_change(
    git_repo: Path, iso: Isolation, orchestra: Path
) -> None:
    patches = orchestra / "patches"
    barrier = threading.Barrier(2)

    def task(task_id: str, line: str) -> Collected:
        path = iso.create(task_id)
        barrier.wait()
        readme = path / "README.md"
        readme.write_text(readme.read_text().replace("second line", line))
        result = iso.collect(task_id, patches)
        iso.remove(task_id)
        return result

    with ThreadPoolExecutor(2) as pool:
        a_future = pool.submit(task, "task-a", "second line, by A")
        b_future = pool.submit(task, "task-b", "second line, by B")
        a, b = a_future.result(), b_future.result()

    assert a.changed_files == b.changed_files == ["README.md"]
    assert a.commits == b.commits == 1
    assert a.patch == patches / "task-a.patch" and b.patch == patches / "task-b.patch"
    assert "by A" in git(git_repo, "show", "orchestra/task-a:README.md")
    assert "by B" in git(git_repo, "show", "orchestra/task-b:README.md")
    for result, name, marker in ((a, "a", "by A"), (b, "b", "by B")):
        assert result.patch is not None
        clone = apply_in_clone(git_repo, iso.base_commit, result.patch, git_repo.parent / name)
        assert marker in (clone / "README.md").read_text()
    assert overlaps({"task-a": a.changed_files, "task-b": b.changed_files}) == {
        "task-a": ["task-b"],
        "task-b": ["task-a"],
    }
    log = git(git_repo, "log", "-1", "--format=%an <%ae> %cn <%ce>|%s", "orchestra/task-a")
    expected = f"{COMMIT_NAME} <{COMMIT_EMAIL}> {COMMIT_NAME} <{COMMIT_EMAIL}>|orchestra-ci: task-a"
    assert log.strip() == expected
    assert not (orchestra / "worktrees" / "task-a").exists()


def test_new_deleted_and_binary_files_are_in_the_patch(
    git_repo: Path, iso: Isolation, orchestra: Path
) -> None:
    path = iso.create("files")
    (path / "old.txt").unlink()
    (path / "docs").mkdir()
    (path / "docs" / "new file.md").write_text("brand new\n")
    (path / "assets").mkdir()
    (path / "assets" / "blob.bin").write_bytes(BINARY)
    (path / "empty.txt").write_text("")
    (path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (path / "run.sh").chmod(0o755)
    result = iso.collect("files", orchestra / "patches")

    assert sorted(result.changed_files) == [
        "assets/blob.bin",
        "docs/new file.md",
        "empty.txt",
        "old.txt",
        "run.sh",
    ]
    assert result.patch is not None
    text = result.patch.read_bytes()
    assert b"GIT binary patch" in text
    assert b"deleted file mode" in text
    assert b"new file mode 100755" in text
    clone = apply_in_clone(git_repo, iso.base_commit, result.patch, git_repo.parent / "clone")
    assert (clone / "assets" / "blob.bin").read_bytes() == BINARY
    assert not (clone / "old.txt").exists()
    assert head(clone, "HEAD^{tree}") == head(git_repo, "orchestra/files^{tree}")


def test_an_agent_commit_is_kept_and_exported(
    git_repo: Path, iso: Isolation, orchestra: Path
) -> None:
    path = iso.create("aider")
    (path / "src" / "app.py").write_text("def main() -> int:\n    return 1\n")
    git(path, "add", "-A")
    git(path, *AGENT_IDENTITY, "commit", "-q", "-m", "agent: return 1")
    (path / "notes.txt").write_text("left uncommitted\n")
    result = iso.collect("aider", orchestra / "patches")

    assert result.commits == 2
    assert sorted(result.changed_files) == ["notes.txt", "src/app.py"]
    subjects = git(git_repo, "log", "--format=%an|%s", f"{iso.base_commit}..orchestra/aider")
    assert subjects.splitlines() == [f"{COMMIT_NAME}|orchestra-ci: aider", "Agent|agent: return 1"]
    assert result.patch is not None
    text = result.patch.read_text()
    assert "Subject: [PATCH 1/2] agent: return 1" in text
    assert "Subject: [PATCH 2/2] orchestra-ci: aider" in text
    clone = apply_in_clone(git_repo, iso.base_commit, result.patch, git_repo.parent / "clone")
    assert git(clone, "log", "-2", "--format=%an").split() == [COMMIT_NAME, "Agent"]


def test_only_agent_commits_and_a_clean_tree_still_export(
    git_repo: Path, iso: Isolation, orchestra: Path
) -> None:
    path = iso.create("self-committer")
    (path / "README.md").write_text("rewritten\n")
    git(path, *AGENT_IDENTITY, "commit", "-q", "-am", "agent only")
    result = iso.collect("self-committer", orchestra / "patches")
    assert result.commits == 1
    assert result.changed_files == ["README.md"]
    assert result.patch is not None and "agent only" in result.patch.read_text()


def test_no_changes_means_no_patch_and_a_stale_patch_is_removed(
    iso: Isolation, orchestra: Path
) -> None:
    patches = orchestra / "patches"
    patches.mkdir(parents=True)
    (patches / "idle.patch").write_text("from an earlier attempt\n")
    iso.create("idle")
    assert iso.collect("idle", patches) == Collected(None, [], 0)
    assert not (patches / "idle.patch").exists()


def test_ignored_files_are_not_collected(git_repo: Path, iso: Isolation, orchestra: Path) -> None:
    (git_repo / ".gitignore").write_text("build/\n")
    git(git_repo, "add", ".gitignore")
    git(git_repo, *AGENT_IDENTITY, "commit", "-q", "-m", "ignore build")
    iso = Isolation(git_repo, orchestra)
    path = iso.create("build")
    (path / "build").mkdir()
    (path / "build" / "out.o").write_bytes(b"\0obj")
    (path / "README.md").write_text("changed\n")
    assert iso.collect("build", orchestra / "patches").changed_files == ["README.md"]


def test_a_retry_starts_again_from_the_base(
    git_repo: Path, iso: Isolation, orchestra: Path
) -> None:
    path = iso.create("retry")
    (path / "README.md").write_text("first attempt\n")
    git(path, *AGENT_IDENTITY, "commit", "-q", "-am", "first attempt")
    (path / "untracked.txt").write_text("junk\n")

    again = iso.create("retry")
    assert again == path
    assert head(again) == iso.base_commit == head(git_repo, "orchestra/retry")
    assert git(again, "status", "--porcelain", "--ignored") == ""
    assert (again / "README.md").read_text() == (git_repo / "README.md").read_text()
    (again / "src" / "app.py").write_text("second attempt\n")
    result = iso.collect("retry", orchestra / "patches")
    assert result.changed_files == ["src/app.py"]
    assert result.commits == 1


def test_remove_keeps_the_branch_and_is_idempotent(git_repo: Path, iso: Isolation) -> None:
    path = iso.create("gone")
    (path / "dirty.txt").write_text("uncommitted\n")
    iso.remove("gone")
    assert not path.exists()
    assert os.path.realpath(path) not in registered(git_repo)
    assert head(git_repo, "orchestra/gone") == iso.base_commit
    iso.remove("gone")
    iso.remove("never-created")


def test_read_only_files_left_by_an_agent_do_not_block_removal(iso: Isolation) -> None:
    path = iso.create("readonly")
    cache = path / "cache"
    cache.mkdir()
    (cache / "pinned").write_text("x")
    cache.chmod(0o500)
    try:
        iso.remove("readonly")
    finally:
        if cache.exists():
            cache.chmod(0o700)
    assert not path.exists()


# -- crashes and prune ----------------------------------------------------------------------


def test_prune_removes_a_crashed_runs_worktrees_but_keeps_running_ones(
    git_repo: Path, orchestra: Path
) -> None:
    crashed_run = Isolation(git_repo, orchestra)
    stale = crashed_run.create("stale")
    (stale / "README.md").write_text("half done\n")
    alive = crashed_run.create("alive")
    locked = crashed_run.create("locked")
    git(git_repo, "worktree", "lock", "--reason", "initializing", str(locked))
    junk = orchestra / "worktrees" / "junk"
    (junk / "sub").mkdir(parents=True)
    (junk / "sub" / "file").write_text("not a worktree\n")
    vanished = crashed_run.create("vanished")
    subprocess.run(["rm", "-rf", str(vanished)], check=True)
    # a process that "crashed" here: nothing was removed

    next_run = Isolation(git_repo, orchestra)
    removed = next_run.prune(running={"alive", "junk"})

    assert removed == ["junk", "locked", "stale"]
    assert not stale.exists() and not junk.exists() and not locked.exists()
    assert (alive / "README.md").exists()
    worktrees = registered(git_repo)
    assert os.path.realpath(alive) in worktrees
    for path in (stale, locked, vanished):
        assert os.path.realpath(path) not in worktrees
    branches = git(git_repo, "branch", "--list", "orchestra/*", "--format=%(refname:short)")
    assert sorted(branches.split()) == [
        "orchestra/alive",
        "orchestra/locked",
        "orchestra/stale",
        "orchestra/vanished",
    ]
    assert next_run.prune(running={"alive"}) == []
    assert next_run.create("stale") == stale  # its branch is reusable


def test_a_shallow_clone_like_actions_checkout_works(git_repo: Path, tmp_path: Path) -> None:
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{git_repo}", str(shallow))
    top = find_repo(shallow)
    assert top is not None
    iso = Isolation(top, top / ".orchestra")
    path = iso.create("shallow")
    (path / "README.md").write_text("from a shallow clone\n")
    result = iso.collect("shallow", top / ".orchestra" / "patches")
    assert result.patch is not None and result.changed_files == ["README.md"]
    apply_in_clone(git_repo, iso.base_commit, result.patch, tmp_path / "check")


def test_prune_without_a_worktrees_directory(iso: Isolation) -> None:
    assert iso.prune() == []


def test_create_after_a_worktree_directory_was_deleted_by_hand(
    git_repo: Path, iso: Isolation
) -> None:
    path = iso.create("deleted")
    subprocess.run(["rm", "-rf", str(path)], check=True)
    assert iso.create("deleted") == path
    assert (path / "README.md").exists()


# -- concurrency ----------------------------------------------------------------------------


def test_eight_concurrent_creates_collects_and_removes(
    git_repo: Path, iso: Isolation, orchestra: Path
) -> None:
    ids = [f"par-{n}" for n in range(8)]
    barrier = threading.Barrier(len(ids))

    def create(task_id: str) -> Path:
        barrier.wait()
        return iso.create(task_id)

    with ThreadPoolExecutor(len(ids)) as pool:
        paths = list(pool.map(create, ids))
    for task_id, path in zip(ids, paths, strict=True):
        assert git(path, "symbolic-ref", "HEAD").strip() == f"refs/heads/orchestra/{task_id}"
        assert git(path, "status", "--porcelain") == ""
        (path / f"{task_id}.txt").write_text(f"{task_id}\n")
        (path / "README.md").write_text(f"{task_id} was here\n")

    def finish(task_id: str) -> Collected:
        barrier.wait()
        result = iso.collect(task_id, orchestra / "patches")
        iso.remove(task_id)
        return result

    with ThreadPoolExecutor(len(ids)) as pool:
        results = dict(zip(ids, pool.map(finish, ids), strict=True))
    for task_id, result in results.items():
        assert sorted(result.changed_files) == ["README.md", f"{task_id}.txt"]
        assert git(git_repo, "show", f"orchestra/{task_id}:README.md") == f"{task_id} was here\n"
    assert registered(git_repo) == [os.path.realpath(git_repo)]
    flagged = overlaps({k: v.changed_files for k, v in results.items()})
    assert flagged["par-0"] == ids[1:]


def test_a_git_lock_held_by_another_process_is_waited_out(git_repo: Path, iso: Isolation) -> None:
    lock = git_repo / ".git" / "refs" / "heads" / "orchestra" / "waiting.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    released = threading.Timer(0.3, lock.unlink)
    released.start()
    try:
        path = iso.create("waiting")
    finally:
        released.join()
    assert git(path, "symbolic-ref", "HEAD").strip() == "refs/heads/orchestra/waiting"


# -- the user's main tree -------------------------------------------------------------------


def test_uncommitted_work_in_the_main_tree_is_untouched(
    git_repo: Path, iso: Isolation, orchestra: Path
) -> None:
    (git_repo / "README.md").write_text("user's unsaved edit\n")
    (git_repo / "src" / "app.py").write_text("staged by the user\n")
    git(git_repo, "add", "src/app.py")
    (git_repo / "scratch.txt").write_text("untracked\n")
    before = main_tree_state(git_repo)
    index_before = (git_repo / ".git" / "index").read_bytes()

    path = iso.create("polite")
    assert (path / "README.md").read_text() != "user's unsaved edit\n"
    (path / "old.txt").unlink()
    (path / "new.txt").write_text("new\n")
    result = iso.collect("polite", orchestra / "patches")
    iso.remove("polite")
    iso.prune()

    assert sorted(result.changed_files) == ["new.txt", "old.txt"]
    assert (git_repo / ".git" / "index").read_bytes() == index_before
    assert main_tree_state(git_repo) == before


def test_git_variables_inherited_from_a_hook_do_not_redirect_commands(
    git_repo: Path, iso: Isolation, orchestra: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_before = (git_repo / ".git" / "index").read_bytes()
    monkeypatch.setenv("GIT_DIR", str(git_repo / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(git_repo))
    monkeypatch.setenv("GIT_INDEX_FILE", str(git_repo / ".git" / "index"))
    path = iso.create("hooked")
    (path / "hooked.txt").write_text("x\n")
    result = iso.collect("hooked", orchestra / "patches")
    iso.remove("hooked")
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_WORK_TREE")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert result.changed_files == ["hooked.txt"]
    assert (git_repo / ".git" / "index").read_bytes() == index_before
    assert git(git_repo, "status", "--porcelain") == "?? .orchestra/\n"


def test_hostile_repository_config_does_not_break_commits_or_patches(
    git_repo: Path, orchestra: Path
) -> None:
    hooks = git_repo.parent / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "commit-msg", "post-checkout", "post-commit"):
        (hooks / hook).write_text("#!/bin/sh\nexit 1\n")
        (hooks / hook).chmod(0o755)
    for key, value in (
        ("core.hooksPath", str(hooks)),
        ("commit.gpgSign", "true"),
        ("gpg.program", "false"),
        ("diff.noprefix", "true"),
        ("format.useAutoBase", "true"),
        ("format.coverLetter", "true"),
        ("format.signOff", "true"),
        ("user.useConfigOnly", "true"),
        ("color.ui", "always"),
        ("diff.renames", "copies"),
    ):
        git(git_repo, "config", key, value)
    iso = Isolation(git_repo, orchestra)
    path = iso.create("hostile")
    (path / "README.md").write_text("changed\n")
    (path / "src" / "app.py").rename(path / "src" / "moved.py")
    result = iso.collect("hostile", orchestra / "patches")
    assert sorted(result.changed_files) == ["README.md", "src/app.py", "src/moved.py"]
    assert result.patch is not None
    apply_in_clone(git_repo, iso.base_commit, result.patch, git_repo.parent / "clone")


def test_an_agent_that_leaves_head_detached_or_merges_is_still_collected(
    git_repo: Path, iso: Isolation, orchestra: Path
) -> None:
    path = iso.create("wanderer")
    git(path, "checkout", "-q", "-b", "side")
    (path / "side.txt").write_text("side\n")
    git(path, "add", "side.txt")
    git(path, *AGENT_IDENTITY, "commit", "-q", "-m", "side")
    git(path, "checkout", "-q", "--detach", iso.base_commit)
    (path / "README.md").write_text("detached\n")
    git(path, *AGENT_IDENTITY, "commit", "-q", "-am", "detached")
    git(path, *AGENT_IDENTITY, "merge", "-q", "--no-ff", "--no-edit", "side")
    (path / "loose.txt").write_text("loose\n")

    result = iso.collect("wanderer", orchestra / "patches")
    assert head(git_repo, "orchestra/wanderer") == head(path)
    assert sorted(result.changed_files) == ["README.md", "loose.txt", "side.txt"]
    assert result.patch is not None
    clone = apply_in_clone(git_repo, iso.base_commit, result.patch, git_repo.parent / "clone")
    assert head(clone, "HEAD^{tree}") == head(git_repo, "orchestra/wanderer^{tree}")


# -- names and errors -----------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["a..b", ".hidden", "x.lock", "trailing.", "-dash", "v1.2_x"])
def test_every_valid_task_id_gets_a_valid_branch(iso: Isolation, task_id: str) -> None:
    path = iso.create(task_id)
    branch = git(path, "symbolic-ref", "--short", "HEAD").strip()
    assert branch == branch_name(task_id)
    assert branch.startswith("orchestra/")
    if task_id in {"-dash", "v1.2_x"}:
        assert branch == f"orchestra/{task_id}"


def test_invalid_task_ids_are_rejected(iso: Isolation, orchestra: Path) -> None:
    for bad in ("../escape", "a/b", "", ".."):
        with pytest.raises(WorktreeError):
            iso.create(bad)
    with pytest.raises(WorktreeError, match="no worktree"):
        iso.collect("never-created", orchestra / "patches")


def test_git_errors_are_one_line_orchestra_errors(git_repo: Path, iso: Isolation) -> None:
    # A branch named ``orchestra`` makes ``orchestra/<id>`` impossible to create.
    git(git_repo, "branch", "orchestra")
    with pytest.raises(WorktreeError) as caught:
        iso.create("blocked")
    message = str(caught.value)
    assert isinstance(caught.value, OrchestraError)
    assert "\n" not in message
    assert message.startswith("git worktree add failed")
    assert "orchestra/blocked" in message


# -- bases: the working tree, dependencies ------------------------------------------------


def test_the_snapshot_holds_uncommitted_and_untracked_files_not_ignored_ones(
    git_repo: Path, orchestra: Path
) -> None:
    (git_repo / ".gitignore").write_text("*.log\n")
    git(git_repo, "add", ".gitignore")
    git(git_repo, *AGENT_IDENTITY, "commit", "-q", "-m", "ignore logs")
    clean = Isolation(git_repo, orchestra, base="worktree")
    assert clean.base_commit == head(git_repo)  # nothing uncommitted: HEAD itself
    (git_repo / "README.md").write_text("edited\n")
    (git_repo / "old.txt").unlink()
    (git_repo / "new.txt").write_text("untracked\n")
    (git_repo / "debug.log").write_text("ignored\n")
    (orchestra / "tasks").mkdir(parents=True)
    (orchestra / "tasks" / "t.json").write_text("{}")
    index_before = (git_repo / ".git" / "index").read_bytes()

    iso = Isolation(git_repo, orchestra, base="worktree")

    assert iso.base.ref == "worktree"
    assert sorted(iso.uncommitted()) == ["README.md", "new.txt", "old.txt"]
    path = iso.create("t1", iso.base_commit)
    assert (path / "README.md").read_text() == "edited\n"
    assert (path / "new.txt").read_text() == "untracked\n"
    assert not (path / "old.txt").exists()
    assert not (path / "debug.log").exists() and not (path / ".orchestra").exists()
    assert (git_repo / ".git" / "index").read_bytes() == index_before
    assert head(git_repo, f"{iso.base_commit}^") == head(git_repo)


def test_a_dependent_starts_from_its_dependencys_branch_or_a_merge_of_several(
    git_repo: Path, iso: Isolation
) -> None:
    for task_id, name in (("a", "a.txt"), ("b", "b.txt")):
        path = iso.create(task_id)
        (path / name).write_text(f"{task_id}\n")
        iso.collect(task_id, git_repo / ".orchestra" / "patches")
        iso.remove(task_id)
    one = iso.start("c", [Dependency("a")])
    assert one.ref == "orchestra/a" and one.commit == head(git_repo, "orchestra/a")
    both = iso.start("c", [Dependency("a"), Dependency("b")])
    assert both.ref == "orchestra/a + orchestra/b"
    path = iso.create("c", both.commit)
    assert (path / "a.txt").is_file() and (path / "b.txt").is_file()
    (path / "c.txt").write_text("c\n")
    collected = iso.collect("c", git_repo / ".orchestra" / "patches", both.commit)
    assert collected.changed_files == ["c.txt"]
    assert iso.start("c", [], "HEAD").commit == iso.base_commit


def test_conflicting_dependencies_and_a_missing_result_are_named(
    git_repo: Path, iso: Isolation
) -> None:
    for task_id in ("x", "y"):
        path = iso.create(task_id)
        (path / "README.md").write_text(f"rewritten by {task_id}\n")
        (path / f"{task_id}.txt").write_text("own\n")
        iso.collect(task_id, git_repo / ".orchestra" / "patches")
        iso.remove(task_id)
    with pytest.raises(MergeConflict, match=r"'x', 'y' conflict in README.md$"):
        iso.start("z", [Dependency("x"), Dependency("y")])
    with pytest.raises(WorktreeError, match=r"dependency 'gone' .*no branch orchestra/gone"):
        iso.start("z", [Dependency("gone")])


def test_a_dependency_result_from_another_checkout_is_rebuilt_from_its_patch(
    git_repo: Path, iso: Isolation
) -> None:
    patches = git_repo / ".orchestra" / "patches"
    path = iso.create("lint")
    (path / "src" / "app.py").write_text("def main() -> int:\n    return 1\n")
    (path / "blob.bin").write_bytes(BINARY)
    collected = iso.collect("lint", patches)
    iso.remove("lint")
    expected_tree = head(git_repo, "orchestra/lint^{tree}")
    git(git_repo, "branch", "-D", "orchestra/lint")  # as in a fresh checkout of a later run

    start = iso.start("changelog", [Dependency("lint", iso.base_commit, collected.patch)])

    assert head(git_repo, f"{start.commit}^{{tree}}") == expected_tree
    assert head(git_repo, "orchestra/lint") == start.commit  # for its other dependents
    unchanged = iso.start("x", [Dependency("quiet", iso.base_commit, None)])
    assert unchanged.commit == iso.base_commit  # it changed nothing: its result is its base
