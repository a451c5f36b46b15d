"""Queue operations behind the small CLI commands; each is one locked read-modify-write.

Kept free of pydantic and structlog so that ``start``, ``cancel`` and friends start fast.
"""

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestra_ci import transitions
from orchestra_ci.errors import UsageError
from orchestra_ci.presets import agent_names
from orchestra_ci.record import (
    FINISHED,
    TaskRecord,
    check_task_id,
    new_record,
    new_task_id,
    timestamp,
)
from orchestra_ci.sanitize import check_prompt
from orchestra_ci.store import Store


def start_task(
    store: Store,
    agent: str,
    prompt: str,
    *,
    task_id: str | None,
    config_file: Path | None,
    timeout: float | None = None,
    max_retries: int = 3,
    priority: int = 0,
    depends_on: Iterable[str] = (),
) -> str:
    """Queue one task and return its id."""
    if agent not in agent_names(config_file):
        known = ", ".join(sorted(agent_names(config_file)))
        raise UsageError(f"unknown agent {agent!r} (known: {known})")
    try:
        check_prompt(prompt)
    except ValueError:
        raise UsageError("prompt must be non-empty and contain no NUL byte") from None
    if max_retries < 0:
        raise UsageError("--max-retries must be >= 0")
    try:
        tid = check_task_id(task_id) if task_id else new_task_id(agent)
        deps = [check_task_id(d) for d in depends_on]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with store.ensure().locked():
        for dep in deps:
            if store.read(dep) is None:
                raise UsageError(f"--depends-on: no task {dep!r} in the queue")
        record = new_record(
            tid,
            agent,
            prompt,
            max_retries=max_retries,
            priority=priority,
            timeout=timeout,
            depends_on=deps,
        )
        if not store.create(record):
            raise UsageError(f"a task with id {tid!r} already exists")
    return tid


def _still_stopping(store: Store, record: TaskRecord) -> bool:
    """A finished task whose last attempt a live runner is still winding down (after a
    ``cancel``): the runner writes the record once more, so leave it alone until then."""
    runner = record.get("runnerId")
    return record["status"] in FINISHED and bool(runner) and store.runner_alive(str(runner))


def retry_tasks(store: Store, task_id: str | None) -> list[str]:
    """Put a failed or cancelled task (or, with None, every failed one) back to pending,
    with the finished tasks that depend on it (they build on its new result; see
    :func:`transitions.dependents_to_rerun`), noted in their history."""
    with store.locked():
        records = {r["taskId"]: r for r in store.all()}
        if task_id is not None:
            record = store.get(task_id)
            if record["status"] not in ("failed", "cancelled"):
                raise UsageError(
                    f"task {task_id!r} is {record['status']}; only failed or cancelled tasks "
                    "can be retried"
                )
            if _still_stopping(store, record):
                raise UsageError(
                    f"task {task_id!r} is still being stopped by its runner; try again shortly"
                )
            chosen = {task_id}
        else:
            chosen = {i for i, r in records.items() if r["status"] == "failed"}
        dependents = transitions.dependents_to_rerun(records, chosen)
        now = datetime.now(UTC)
        for tid in sorted(chosen | set(dependents)):
            reason = dependents.get(tid)

            def again(record: TaskRecord, why: str | None = reason) -> TaskRecord:
                return transitions.requeue(record, why, now) if why else transitions.retry(record)

            store.update(tid, again)
            store.sentinel(tid, "error").unlink(missing_ok=True)
            store.sentinel(tid, "done").unlink(missing_ok=True)
    return sorted(chosen | set(dependents))


def cancel_task(store: Store, task_id: str, grace: float = 5.0) -> str:
    """Cancel a pending or running task; a running agent's whole process tree is stopped.

    Returns the status the task had."""
    previous = ""

    def apply(record: TaskRecord) -> TaskRecord:
        nonlocal previous
        previous = record["status"]
        try:
            return transitions.cancel(record, datetime.now(UTC))
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    with store.locked():
        record = store.update(task_id, apply)
        pid = store.read_pid(task_id)
    attempts = record.get("attempts") or []
    marker = attempts[-1].get("marker") if attempts else None
    if previous == "running" and marker:
        if pid is None:
            # Claimed but not started yet: the runner writes the pid right after the spawn.
            pid = _wait_for_pid(store, task_id, record.get("runnerId"), _PID_WAIT)
        if pid is not None:
            from orchestra_ci.process import kill_attempt  # asyncio is not needed otherwise

            kill_attempt(pid, marker, grace)
    return previous


_PID_WAIT = 10.0


def _wait_for_pid(store: Store, task_id: str, runner_id: str | None, limit: float) -> int | None:
    """The pid of the attempt being started, or None once it cannot start any more
    (the attempt ended, the runner is gone, the record was removed, or ``limit`` passed)."""
    deadline = time.monotonic() + limit
    while True:
        pid = store.read_pid(task_id)
        if pid is not None:
            return pid
        record = store.read(task_id)
        attempts = (record.get("attempts") or []) if record else []
        if (
            record is None
            or not attempts
            or "endedAt" in attempts[-1]
            or not runner_id
            or not store.runner_alive(runner_id)
            or time.monotonic() >= deadline
        ):
            return None
        time.sleep(0.02)


def set_timeout(store: Store, task_id: str, seconds: float) -> None:
    def apply(record: TaskRecord) -> None:
        record["timeout"] = seconds

    store.update(task_id, apply)


@dataclass(frozen=True)
class Cleaned:
    """What ``clean`` removed: the tasks, the tasks among them that a tasks file queued
    (file -> ids: the next load queues them again while they are in it), and their
    branches when asked to delete those too."""

    tasks: list[str]
    from_files: dict[str, list[str]] = field(default_factory=dict)
    branches: list[str] = field(default_factory=list)


def clean_tasks(
    store: Store,
    statuses: Iterable[str],
    older_than: float | None = None,
    *,
    branches: bool = False,
) -> Cleaned:
    """Delete finished tasks (and their files) in ``statuses``, optionally only old ones;
    with ``branches``, their ``orchestra/<id>`` branches as well."""
    wanted = set(statuses)
    bad = wanted - FINISHED
    if bad:
        raise UsageError(
            f"--status: can only clean finished tasks ({', '.join(sorted(FINISHED))}), "
            f"not {', '.join(sorted(bad))}"
        )
    repo = _repository(store) if branches else None
    cutoff = time.time() - older_than if older_than is not None else None
    removed: list[TaskRecord] = []
    with store.locked():
        for record in store.all():
            if record["status"] not in wanted or _still_stopping(store, record):
                continue
            if cutoff is not None:
                finished = timestamp(record.get("completedAt") or record.get("createdAt"))
                if finished is None or finished > cutoff:
                    continue  # only tasks known to be old enough
            store.delete(record["taskId"])
            removed.append(record)
    ids = sorted(r["taskId"] for r in removed)
    from_files: dict[str, list[str]] = {}
    for record in sorted(removed, key=lambda r: r["taskId"]):
        if record.get("sourceFile"):
            from_files.setdefault(str(record["sourceFile"]), []).append(record["taskId"])
    deleted = _delete_branches(repo, ids) if repo is not None else []
    return Cleaned(ids, from_files, deleted)


def _repository(store: Store) -> Path:
    from orchestra_ci.worktrees import find_repo  # git is needed only for --branches

    repo = find_repo(store.root)
    if repo is None:
        raise UsageError(f"--branches: {store.root} is not in a git repository with commits")
    return repo


def _delete_branches(repo: Path, task_ids: Iterable[str]) -> list[str]:
    """Delete the tasks' branches that exist; the worktrees of removed tasks are pruned
    first (git keeps a branch whose worktree is registered, even with its folder gone)."""
    from orchestra_ci.worktrees import BRANCH_PREFIX, branch_name, git_output

    listed = git_output(
        repo, "for-each-ref", "--format=%(refname:short)", f"refs/heads/{BRANCH_PREFIX}"
    )
    existing = set(listed.decode(errors="replace").split())
    names = sorted(name for name in map(branch_name, task_ids) if name in existing)
    if names:
        git_output(repo, "worktree", "prune")
        git_output(repo, "branch", "-D", *names)
    return names
