"""Task isolation with git worktrees: one worktree and branch per task, changes out as patches.

Each task runs in ``.orchestra/worktrees/<id>`` on branch ``orchestra/<id>``, created from
its base: the run's base commit (``HEAD``, a snapshot of the working tree, or a ref), or,
for a task with dependencies, their result branches (merged when there are several).
Afterwards everything the agent left there is committed on that branch with a fixed
identity, the branch's changes since the task's base are exported as
``patches/<id>.patch`` and the worktree is removed; the branch stays for pull requests.

Only the ``git`` binary is used, through ``subprocess`` with argv lists (never a shell).
The user's main working tree, index and HEAD are never touched: every command runs either
in a task's worktree or is one of ``worktree add/remove/prune/list`` and read-only queries.

Concurrency: calls that change state shared between worktrees (``.git/worktrees/``, the
registration of worktrees, branch resets) run under a lock held by this object's threads
and, through ``flock`` on ``.orchestra/worktrees.lock``, by other runner processes on the
same queue. Work inside one worktree (checkout, staging, committing) runs outside the lock
so tasks proceed in parallel. A git ``.lock`` file held by some other git process (the
user's IDE, a ``git gc``) is waited out with a short tenacity retry instead of failing.
"""

import contextlib
import contextvars
import fcntl
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestra_ci import atomic
from orchestra_ci.errors import OrchestraError
from orchestra_ci.record import check_task_id

BRANCH_PREFIX = "orchestra/"
COMMIT_NAME = "orchestra-ci"
COMMIT_EMAIL = "orchestra-ci@noreply.invalid"
LOCK_FILE = "worktrees.lock"

# Variables that point git at another repository or index. Inherited from a git hook or an
# alias (pytest run from a pre-commit hook, say) they would make ``git add`` in a task's
# worktree write the main repository's index, so they are dropped for every call.
_REPO_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
)

# Settings that would make an unattended commit or a patch fail or come out unusable:
# hooks (a failing pre-commit, a post-checkout per task), signing with no key in CI,
# automatic gc racing parallel tasks, patches without ``a/``/``b/`` prefixes or with a
# base-commit trailer that needs an upstream.
_CONFIG = (
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.fsmonitor=false",
    "color.ui=false",
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
    "format.useAutoBase=false",
    "format.coverLetter=false",
    "format.signOff=false",
)

_LOCK_CONTENTION = re.compile(r"\.lock'?: File exists")
_MAX_MESSAGE = 1000


class WorktreeError(OrchestraError):
    """A git operation for task isolation failed; the message is git's stderr on one line."""


class _LockContention(WorktreeError):
    """Another git process held one of git's ``.lock`` files: worth another try."""


class _GitMissing(WorktreeError):
    """No ``git`` executable: :func:`find_repo` then reports no repository."""


@dataclass(frozen=True)
class Dependency:
    """A dependency of a task, with what its record says of its result: the commit it
    started from and its patch, to rebuild the result from when its branch is not in this
    repository (a queue carried over from an earlier run in another checkout)."""

    task_id: str
    base_commit: str | None = None
    patch: Path | None = None


class MergeConflict(WorktreeError):
    """The results of a task's dependencies do not merge: the task cannot start."""


@dataclass(frozen=True)
class Base:
    """Where a task's worktree starts: ``ref`` as it was asked for (a branch, ``HEAD``,
    ``worktree``, the dependencies' branches) and the commit it resolved to."""

    ref: str
    commit: str


@dataclass(frozen=True)
class Collected:
    """What a task changed relative to the run's base commit."""

    patch: Path | None
    changed_files: list[str] = field(default_factory=list)
    commits: int = 0


# -- running git ----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_LOCATION_VARS}
    env.update(
        {
            "GIT_AUTHOR_NAME": COMMIT_NAME,
            "GIT_AUTHOR_EMAIL": COMMIT_EMAIL,
            "GIT_COMMITTER_NAME": COMMIT_NAME,
            "GIT_COMMITTER_EMAIL": COMMIT_EMAIL,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_EDITOR": ":",
            "GIT_OPTIONAL_LOCKS": "0",
            "LC_ALL": "C",
        }
    )
    return env


def _one_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    text = " | ".join(line for line in lines if line)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _git_once(
    cwd: Path, args: Sequence[str], ok: tuple[int, ...], index: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    argv = ["git", "-C", str(cwd)]
    for setting in _CONFIG:
        argv += ["-c", setting]
    argv += args
    env = _env()
    if index is not None:  # a private index: the user's own is never read or written
        env["GIT_INDEX_FILE"] = str(index)
    try:
        proc = subprocess.run(
            argv, capture_output=True, stdin=subprocess.DEVNULL, env=env, check=False
        )
    except FileNotFoundError:
        raise _GitMissing("git is not installed or not on PATH") from None
    except OSError as exc:
        raise WorktreeError(f"cannot run git: {exc.strerror or exc}") from None
    if proc.returncode not in ok:
        detail = _one_line(proc.stderr) or f"exit code {proc.returncode}"
        error = _LockContention if _LOCK_CONTENTION.search(detail) else WorktreeError
        command = " ".join(args[:2] if args[0] == "worktree" else args[:1])
        raise error(f"git {command} failed in {cwd}: {detail}")
    return proc


def _git(
    cwd: Path, *args: str, ok: tuple[int, ...] = (0,), index: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git -C cwd ARGS``; raise :class:`WorktreeError` unless its exit code is in ``ok``.

    Git takes its ``.lock`` files without waiting; if another git process holds one, the
    command failed before changing anything, so it is simply run again a little later.
    """
    try:
        return _git_once(cwd, args, ok, index)
    except _LockContention as exc:
        made: _LockContention | None = exc
    # Only now, off the path of every command that finds no lock held.
    import tenacity

    def attempt() -> subprocess.CompletedProcess[bytes]:
        nonlocal made
        if made is not None:  # tenacity's first attempt: the one just made
            failed, made = made, None
            raise failed
        return _git_once(cwd, args, ok, index)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_LockContention),
        stop=tenacity.stop_after_attempt(8),
        wait=tenacity.wait_exponential(multiplier=0.05, max=1.0) + tenacity.wait_random(0, 0.05),
        reraise=True,
    )
    return retrying(attempt)


def git_output(cwd: Path, *args: str) -> bytes:
    """``git -C cwd ARGS``'s standard output, run as :func:`_git` runs it; for
    ``git_credentials``, which also edits a repository's files."""
    return _git(cwd, *args).stdout


def git_value(cwd: Path, *args: str) -> str | None:
    """What a git query prints, stripped; None outside a repository, without git, or when
    the query fails (for the run's manifest: the base commit, the branch)."""
    try:
        proc = _git_once(cwd, args, ok=(0, 1, 128, 129))
    except WorktreeError:
        return None
    return (os.fsdecode(proc.stdout).strip() or None) if proc.returncode == 0 else None


def _out(cwd: Path, *args: str) -> str:
    return os.fsdecode(_git(cwd, *args).stdout).strip()


def _paths(raw: bytes) -> list[str]:
    """NUL-separated paths from ``-z`` output; undecodable bytes escaped, so JSON-safe."""
    return [p.decode("utf-8", "backslashreplace") for p in raw.split(b"\0") if p]


def _rmtree(path: Path) -> None:
    """Delete a directory even if an agent left read-only files or directories in it."""
    if not os.path.lexists(path):
        return
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
        return
    except OSError:
        pass
    for directory, _, _ in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(directory, stat.S_IRWXU)
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise WorktreeError(f"cannot remove {path}: {exc.strerror or exc}") from None


# -- public API -----------------------------------------------------------------------------


def find_repo(root: Path) -> Path | None:
    """The top-level of the work tree containing ``root`` if it has at least one commit.

    None outside a repository, in a bare one, in one without commits, or without git.
    A repository git refuses to open (owned by another user, not in ``safe.directory``)
    raises instead: silently running without isolation would surprise more.
    """
    found = locate_repo(root)
    return found if isinstance(found, Path) else None


# What locate_repo found per directory, inside a `remembered_repos` block (else None).
_remembered: contextvars.ContextVar[dict[Path, Path | str] | None] = contextvars.ContextVar(
    "remembered_repos", default=None
)


@contextlib.contextmanager
def remembered_repos() -> Iterator[None]:
    """Inside the block, :func:`locate_repo` asks git once per directory: a run's start-up
    looks its repository up for the credentials it holds back and for the worktrees, and
    each look is one or two ``git`` processes. What git refuses is asked again."""
    token = _remembered.set({})
    try:
        yield
    finally:
        _remembered.reset(token)


def locate_repo(root: Path) -> Path | str:
    """:func:`find_repo`'s top-level, or, where it finds none, why, in a few words."""
    known = _remembered.get()
    if known is None:
        return _locate_repo(root)
    key = Path(root).resolve()
    if key not in known:
        known[key] = _locate_repo(root)
    return known[key]


def _locate_repo(root: Path) -> Path | str:
    try:
        proc = _git_once(Path(root), ["rev-parse", "--show-toplevel"], ok=(0, 1, 128, 129))
    except _GitMissing:
        return "git is not installed"
    if proc.returncode != 0:
        detail = _one_line(proc.stderr)
        if "dubious ownership" in detail:
            raise WorktreeError(
                f"git refuses the repository at {root}: {detail} "
                "(add it with git config --global --add safe.directory PATH)"
            )
        return "it is not in a git repository"
    top = os.fsdecode(proc.stdout).rstrip("\n")
    if not top:
        return "it is not in a git repository"
    head = _git_once(Path(top), ["rev-parse", "--verify", "-q", "HEAD^{commit}"], ok=(0, 1, 128))
    return Path(top) if head.returncode == 0 else "its git repository has no commits yet"


def branch_name(task_id: str) -> str:
    """``orchestra/<id>``; ids that are not a valid ref component (``a..b``, ``x.lock``,
    ``.x``, ``x.``) get their dots replaced and a hash of the id appended instead."""
    if (
        task_id.startswith(".")
        or task_id.endswith(".")
        or ".." in task_id
        or task_id.endswith(".lock")
    ):
        digest = hashlib.sha256(task_id.encode()).hexdigest()[:10]
        return f"{BRANCH_PREFIX}{task_id.replace('.', '_')}-{digest}"
    return BRANCH_PREFIX + task_id


def _checked(task_id: str) -> str:
    try:
        return check_task_id(task_id)
    except ValueError as exc:
        raise WorktreeError(str(exc)) from None


class Isolation:
    """The worktrees of one run: branches start from :attr:`base` (the run's ``base``
    setting) unless a task names its own base or depends on other tasks."""

    def __init__(self, repo_top: Path, orchestra_dir: Path, base: str | None = None) -> None:
        self.repo_top = Path(repo_top).resolve()
        self.orchestra_dir = Path(orchestra_dir).resolve()
        self.worktrees_dir = self.orchestra_dir / "worktrees"
        self._thread_lock = threading.Lock()
        self._resolve_lock = threading.RLock()  # a snapshot resolves `head` first
        self._bases: dict[str, Base] = {}
        self.base = self.resolve(base or "head")
        self.base_commit = self.base.commit

    # -- bases ----------------------------------------------------------------------------

    def resolve(self, base: str) -> Base:
        """The commit a ``base`` value names: ``head`` (HEAD, reported under its branch's
        name), ``worktree`` (a snapshot of the working tree, see :meth:`snapshot`) or any
        revision. Resolved once per run: every task asking for one base gets one commit."""
        with self._resolve_lock:
            if base not in self._bases:
                self._bases[base] = self._resolve(base)
            return self._bases[base]

    def _resolve(self, base: str) -> Base:
        if base == "worktree":
            return Base("worktree", self.snapshot())
        revision = "HEAD" if base == "head" else base
        if revision.startswith("-"):
            raise WorktreeError(f"invalid base revision {revision!r}")
        proc = _git(
            self.repo_top, "rev-parse", "--verify", "-q", f"{revision}^{{commit}}", ok=(0, 1, 128)
        )
        if proc.returncode != 0:
            what = "the repository has no commits yet" if base == "head" else "no such commit"
            detail = _one_line(proc.stderr) or what
            raise WorktreeError(f"cannot use {revision!r} as base in {self.repo_top}: {detail}")
        ref = revision
        if revision == "HEAD":
            branch = _git(self.repo_top, "symbolic-ref", "-q", "--short", "HEAD", ok=(0, 1))
            ref = os.fsdecode(branch.stdout).strip() or "HEAD"
        return Base(ref, os.fsdecode(proc.stdout).strip())

    def _outside_queue(self) -> list[str]:
        """A pathspec that leaves the queue directory (and the worktrees in it) out."""
        try:
            inside = self.orchestra_dir.relative_to(self.repo_top).as_posix()
        except ValueError:
            return ["."]
        return [".", f":(exclude){inside}"]

    def uncommitted(self) -> list[str]:
        """Files of the working tree that differ from HEAD: changed, deleted, and untracked
        ones that are not ignored (the queue directory left out). Agents starting from HEAD
        do not see them."""
        out = _git(
            self.repo_top,
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=all",
            "--no-renames",
            "--",
            *self._outside_queue(),
        ).stdout
        return sorted(entry[3:] for entry in _paths(out))

    def snapshot(self) -> str:
        """A commit of the working tree as it is: HEAD plus its uncommitted changes and its
        untracked files that are not ignored (the queue directory left out), or HEAD itself
        when there are none. It is built in a private index: the user's index, HEAD and
        files stay as they are."""
        head = self.resolve("head").commit
        with tempfile.TemporaryDirectory(prefix="orchestra-index-") as tmp:
            index = Path(tmp) / "index"
            _git(self.repo_top, "read-tree", head, index=index)
            _git(self.repo_top, "add", "--all", "--", *self._outside_queue(), index=index)
            tree = os.fsdecode(_git(self.repo_top, "write-tree", index=index).stdout).strip()
        if tree == _out(self.repo_top, "rev-parse", f"{head}^{{tree}}"):
            return head
        message = "orchestra-ci: snapshot of the working tree"
        return _out(self.repo_top, "commit-tree", tree, "-p", head, "-m", message)

    def start(
        self, task_id: str, dependencies: Sequence[Dependency], base: str | None = None
    ) -> Base:
        """Where the task's worktree starts. With dependencies: the result branch of the
        one, or a merge of the several made here (:class:`MergeConflict` names the files
        and tasks when they do not merge). Without: ``base``, or the run's base."""
        if not dependencies:
            return self.resolve(base) if base else self.base
        tips = [(self.branch(dep.task_id), self._result(dep)) for dep in dependencies]
        if len(tips) == 1:
            return Base(*tips[0])
        names = [dep.task_id for dep in dependencies]
        return Base(" + ".join(b for b, _ in tips), self._merge(task_id, names, tips))

    def _commit(self, revision: str) -> str | None:
        proc = _git(
            self.repo_top, "rev-parse", "--verify", "-q", f"{revision}^{{commit}}", ok=(0, 1, 128)
        )
        return os.fsdecode(proc.stdout).strip() if proc.returncode == 0 else None

    def _result(self, dependency: Dependency) -> str:
        """The dependency's result commit: its branch, else rebuilt from its patch on the
        commit it started from (and its branch set to it, for its dependents and PRs)."""
        branch = self.branch(dependency.task_id)
        tip = self._commit(f"refs/heads/{branch}")
        if tip is not None:
            return tip
        base = self._commit(dependency.base_commit) if dependency.base_commit else None
        patch = dependency.patch
        if base is None or (patch is not None and not patch.is_file()):
            raise WorktreeError(
                f"the result of dependency {dependency.task_id!r} is not in this repository "
                f"(no branch {branch}, and no patch and base commit to rebuild it from)"
            )
        tip = base
        if patch is not None:
            with tempfile.TemporaryDirectory(prefix="orchestra-index-") as tmp:
                index = Path(tmp) / "index"
                _git(self.repo_top, "read-tree", base, index=index)
                _git(self.repo_top, "apply", "--cached", "--binary", str(patch), index=index)
                tree = os.fsdecode(_git(self.repo_top, "write-tree", index=index).stdout).strip()
            message = f"orchestra-ci: {dependency.task_id} (rebuilt from its patch)"
            tip = _out(self.repo_top, "commit-tree", tree, "-p", base, "-m", message)
        with self._locked():
            _git(self.repo_top, "update-ref", f"refs/heads/{branch}", tip)
        return tip

    def _merge(
        self, task_id: str, dependencies: Sequence[str], tips: Sequence[tuple[str, str]]
    ) -> str:
        """One commit merging the dependencies' results, made without a work tree."""
        commit = tips[0][1]
        for number, (_, tip) in enumerate(tips[1:], start=1):
            proc = _git(
                self.repo_top,
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                "-z",
                commit,
                tip,
                ok=(0, 1),
            )
            tree, *conflicted = _paths(proc.stdout)
            if proc.returncode == 1:
                merged = ", ".join(repr(d) for d in dependencies[: number + 1])
                files = ", ".join(sorted(set(conflicted)))
                raise MergeConflict(f"the results of its dependencies {merged} conflict in {files}")
            message = f"orchestra-ci: merge the dependencies of {task_id}"
            commit = _out(
                self.repo_top, "commit-tree", tree, "-p", commit, "-p", tip, "-m", message
            )
        return commit

    # -- naming ---------------------------------------------------------------------------

    def path(self, task_id: str) -> Path:
        return self.worktrees_dir / _checked(task_id)

    def branch(self, task_id: str) -> str:
        return branch_name(_checked(task_id))

    # -- locking and registrations --------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            try:
                self.orchestra_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(
                    self.orchestra_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            except OSError as exc:
                raise WorktreeError(f"cannot lock {self.orchestra_dir}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _registered(self) -> set[str]:
        """Real paths of the worktrees git knows about (the main one included)."""
        out = _git(self.repo_top, "worktree", "list", "--porcelain").stdout
        return {
            os.path.realpath(os.fsdecode(line[len(b"worktree ") :]))
            for line in out.splitlines()
            if line.startswith(b"worktree ")
        }

    def _discard(self, path: Path, registered: bool) -> None:
        """Remove a worktree directory and its registration; its branch is kept."""
        if registered:
            try:
                # Twice --force: also when it has changes or is locked (crash mid-``add``).
                _git(self.repo_top, "worktree", "remove", "--force", "--force", str(path))
                return
            except WorktreeError:
                pass  # e.g. its .git file is gone: delete by hand and prune below
        _rmtree(path)
        if registered:
            _git(self.repo_top, "worktree", "prune")

    # -- lifecycle ------------------------------------------------------------------------

    def prune(self, running: Iterable[str] = ()) -> list[str]:
        """Remove worktrees a crashed run left behind; return the task ids removed, sorted.

        Registrations whose directory is gone are pruned; then every directory under
        ``worktrees/`` is removed unless it is a registered worktree of a task in
        ``running``. Branches are kept. Call it at start-up with the tasks that live
        runners are running, under the queue lock so no task is claimed in between.
        """
        keep = set(running)
        removed: list[str] = []
        with self._locked():
            _git(self.repo_top, "worktree", "prune")
            if not self.worktrees_dir.is_dir():
                return []
            registered = self._registered()
            for entry in sorted(os.scandir(self.worktrees_dir), key=lambda e: e.name):
                if not entry.is_dir(follow_symlinks=False):
                    continue
                path = Path(entry.path)
                is_registered = os.path.realpath(path) in registered
                if entry.name in keep and is_registered:
                    continue
                self._discard(path, is_registered)
                removed.append(entry.name)
        return removed

    def create(self, task_id: str, start: str | None = None) -> Path:
        """A fresh worktree for the task on ``orchestra/<id>`` at ``start`` (a commit, from
        :meth:`start`; default the run's base commit).

        Whatever an earlier attempt left (its worktree, commits on its branch) is
        replaced, so every attempt starts from its base. Safe to call from several
        threads at once for different tasks.
        """
        path = self.path(task_id)
        branch = self.branch(task_id)
        with self._locked():
            try:
                self.worktrees_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WorktreeError(f"cannot create {self.worktrees_dir}: {exc.strerror}") from None
            # A registration whose directory vanished would keep the branch "checked out".
            _git(self.repo_top, "worktree", "prune")
            registered = os.path.realpath(path) in self._registered()
            if registered or os.path.lexists(path):
                self._discard(path, registered)
            _git(
                self.repo_top,
                "worktree",
                "add",
                "--quiet",
                "--no-checkout",
                "--no-track",
                "-B",
                branch,
                str(path),
                start or self.base_commit,
            )
        # Writing the files touches only this worktree: done outside the lock, in parallel.
        _git(path, "reset", "--hard", "--quiet")
        return path

    def collect(self, task_id: str, patches_dir: Path, base: str | None = None) -> Collected:
        """Commit what the agent left, export the branch's changes since ``base`` (the
        commit the worktree started from; default the run's base commit).

        Everything in the worktree is staged (new, modified and deleted files; ignored
        files stay out as usual) and committed as ``orchestra-ci: <id>``; commits the
        agent made itself are kept. The patch is ``patches_dir/<id>.patch``, written
        atomically, or removed (a stale one from an earlier attempt) when nothing changed.
        """
        path = self.path(task_id)
        branch = self.branch(task_id)
        if not (path / ".git").exists():
            raise WorktreeError(f"no worktree for task {task_id} at {path}")
        _git(path, "add", "--all")
        staged = _git(path, "diff", "--cached", "--quiet", "--no-ext-diff", ok=(0, 1))
        if staged.returncode == 1:
            _git(path, "commit", "--quiet", "--no-verify", "-m", f"orchestra-ci: {task_id}")
        base = base or self.base_commit
        head = _out(path, "rev-parse", "--verify", "HEAD^{commit}")
        current = _git(path, "symbolic-ref", "-q", "HEAD", ok=(0, 1))
        if os.fsdecode(current.stdout).strip() != f"refs/heads/{branch}":
            # The agent switched branches or detached HEAD: its work is where HEAD is.
            _git(path, "update-ref", "-m", "orchestra-ci: collect", f"refs/heads/{branch}", head)
        commits = int(_out(path, "rev-list", "--count", f"{base}..{head}"))
        diff = _git(path, "diff", "--name-only", "-z", "--no-renames", base, head, "--")
        changed = _paths(diff.stdout)
        patch_path = Path(patches_dir) / f"{_checked(task_id)}.patch"
        if not changed:
            patch_path.unlink(missing_ok=True)
            return Collected(None, [], commits)
        data = _format_patch(path, base, head, task_id)
        try:
            patch_path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(patch_path, data)
        except OSError as exc:
            raise WorktreeError(f"cannot write {patch_path}: {exc.strerror or exc}") from None
        return Collected(patch_path, changed, commits)

    def remove(self, task_id: str) -> None:
        """Remove the task's worktree, changes and all; its branch is kept. Idempotent."""
        path = self.path(task_id)
        with self._locked():
            registered = os.path.realpath(path) in self._registered()
            if registered or os.path.lexists(path):
                self._discard(path, registered)


def _format_patch(cwd: Path, base: str, head: str, task_id: str) -> bytes:
    """``git format-patch`` of base..head, one mail per commit, binary-safe.

    A history ``git am`` could not replay on the base (merge commits, or the agent
    reset below the base) is exported as one commit of the net change instead; that
    commit object is never referenced by a branch.
    """
    merges = _out(cwd, "rev-list", "--merges", f"{base}..{head}")
    linear = _git(cwd, "merge-base", "--is-ancestor", base, head, ok=(0, 1))
    tip = head
    if merges or linear.returncode != 0:
        tree = _out(cwd, "rev-parse", f"{head}^{{tree}}")
        message = f"orchestra-ci: {task_id}"
        tip = _out(cwd, "commit-tree", tree, "-p", base, "-m", message)
    return _git(
        cwd,
        "format-patch",
        "--stdout",
        "--binary",
        "--full-index",
        "-U3",
        "--no-signature",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        f"{base}..{tip}",
    ).stdout
