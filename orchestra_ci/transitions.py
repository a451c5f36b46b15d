"""What a record becomes: pure functions from (record, what happened, now) to the new record.

Each function returns a new record and leaves its argument alone; none reads a clock, a
file or the environment, so the engine and the queue commands only act on what they
return (write it, write its sentinels, tell the scheduler). Times are compared as
instants, never as strings: records written by agent-orchestrator carry naive local times,
ours carry UTC offsets, and the two do not sort as text.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestra_ci.record import FINISHED, Attempt, Outcome, TaskRecord, iso, timestamp

if TYPE_CHECKING:  # the queue commands (cancel, retry) need no retry policy, nor tenacity
    from orchestra_ci.retry_policy import Decision


def _copy(record: TaskRecord) -> TaskRecord:
    """A copy whose attempts may be changed without touching ``record``'s."""
    new = record.copy()
    if "attempts" in record:
        new["attempts"] = [a.copy() for a in record.get("attempts") or []]
    return new


def is_due(record: TaskRecord, now: datetime) -> bool:
    """A pending task whose retry delay (if any) has passed."""
    if record["status"] != "pending":
        return False
    not_before = timestamp(record.get("nextAttemptAt"))
    return not_before is None or not_before <= now.timestamp()


def claim(record: TaskRecord, *, agent: str, runner_id: str, now: datetime) -> TaskRecord:
    """The task taken by ``runner_id`` for a new attempt with ``agent``."""
    new = _copy(record)
    attempts = new.setdefault("attempts", [])
    number = len(attempts) + 1
    started = iso(now)
    attempts.append(
        {
            "number": number,
            "agent": agent,
            "startedAt": started,
            "runnerId": runner_id,
            "marker": f"{runner_id}.{record['taskId']}.{number}",
        }
    )
    new["status"] = "running"
    new["runnerId"] = runner_id
    new["startedAt"] = record.get("startedAt") or started
    new["nextAttemptAt"] = None
    return new


def fail(record: TaskRecord, error: str, now: datetime) -> TaskRecord:
    """Failed without another attempt (e.g. no usable agent is left)."""
    new = _copy(record)
    new.update({"status": "failed", "completedAt": iso(now), "errorMessage": error})
    return new


def block(record: TaskRecord, blocker: str, message: str, now: datetime) -> TaskRecord:
    """A pending task whose dependency ``blocker`` failed for good fails with it; a task
    in any other state is left as it is."""
    if record["status"] != "pending":
        return record
    new = fail(record, message, now)
    new["blockedBy"] = blocker
    return new


def interrupt(record: TaskRecord, now: datetime, error: str) -> TaskRecord:
    """A running task whose runner is gone goes back to pending; its unfinished attempt
    ends ``interrupted`` (which does not count against ``maxRetries``)."""
    if record["status"] != "running":
        return record
    new = _copy(record)
    for attempt in (new.get("attempts") or [])[-1:]:
        if "outcome" not in attempt:
            attempt.update({"endedAt": iso(now), "outcome": "interrupted", "error": error})
    new.update({"status": "pending", "runnerId": None, "pid": None})
    return new


def cancel(record: TaskRecord, now: datetime) -> TaskRecord:
    """Cancelled by the user. Raises ValueError for a task that has already finished."""
    if record["status"] in FINISHED:
        raise ValueError(f"task {record['taskId']!r} is already {record['status']}")
    new = _copy(record)
    new.update({"status": "cancelled", "completedAt": iso(now), "errorMessage": "cancelled"})
    return new


def noted(record: TaskRecord, event: str, reason: str, now: datetime) -> TaskRecord:
    """``record`` with an entry added to its history."""
    new = _copy(record)
    new["history"] = [
        *(record.get("history") or []),
        {"at": iso(now), "event": event, "reason": reason},
    ]
    return new


def requeue(record: TaskRecord, reason: str, now: datetime) -> TaskRecord:
    """A finished task back in the queue for new attempts on its record (its definition
    changed, its issue was labelled again), with the reason in its history."""
    return noted(retry(record), "requeued", reason, now)


def dependents_to_rerun(
    records: Mapping[str, TaskRecord], rerun: Collection[str]
) -> dict[str, str]:
    """The tasks that must run again because the tasks ``rerun`` will: every finished one
    (complete or failed) that depends on them, directly or through other tasks, since it
    built on results that are about to change. Maps each to why (for its history, with
    :func:`requeue`). Cancelled tasks stay cancelled; pending and running ones are left
    alone (a pending one will build on the new results anyway)."""
    dependents: dict[str, set[str]] = {}
    for task_id, record in records.items():
        # A task blocked by another waited for it, whether or not its record still says so.
        blocker = record.get("blockedBy")
        for dependency in [*(record.get("dependsOn") or []), *([blocker] if blocker else [])]:
            dependents.setdefault(dependency, set()).add(task_id)
    reasons: dict[str, str] = {}
    seen = set(rerun)
    frontier = sorted(seen)
    while frontier:
        current = frontier.pop(0)
        for task_id in sorted(dependents.get(current, ())):
            if task_id in seen:
                continue
            seen.add(task_id)
            frontier.append(task_id)
            if records[task_id]["status"] in ("complete", "failed"):
                reasons[task_id] = f"its dependency {current!r} runs again"
    return reasons


def retire(record: TaskRecord, reason: str, now: datetime) -> TaskRecord:
    """A task that can no longer run because its source no longer has it: cancelled, and
    kept with its attempts and the reason."""
    new = noted(record, "retired", reason, now)
    new.update({"status": "cancelled", "completedAt": iso(now), "errorMessage": reason})
    return new


def retry(record: TaskRecord) -> TaskRecord:
    """A failed or cancelled task back in the queue with a fresh retry allowance."""
    new = _copy(record)
    new.update(
        {
            "status": "pending",
            "retryCount": 0,
            "errorMessage": None,
            "blockedBy": None,
            "completedAt": None,
            "nextAttemptAt": None,
            "runnerId": None,
            "pid": None,
        }
    )
    return new


@dataclass(frozen=True)
class AttemptEnd:
    """What happened to the task's running attempt. ``error`` is already redacted."""

    outcome: Outcome
    error: str | None = None
    exit_code: int | None = None
    pid: int | None = None
    usage: Mapping[str, Any] = field(default_factory=dict)  # attempt fields: costUsd, argv...
    results: Mapping[str, Any] = field(default_factory=dict)  # task fields: branch, patch...


def outcome_of(record: TaskRecord, end: AttemptEnd) -> Outcome:
    """A task cancelled while its attempt ran ends ``cancelled``, whatever the agent did."""
    return "cancelled" if record["status"] == "cancelled" else end.outcome


def finish(record: TaskRecord, end: AttemptEnd, decision: "Decision", now: datetime) -> TaskRecord:
    """The running attempt ended as ``end``; the task does what ``decision`` (from
    :func:`orchestra_ci.retry_policy.decide` on :func:`outcome_of`) says."""
    new = _copy(record)
    outcome = outcome_of(record, end)
    stamp = iso(now)
    attempt: Attempt = new["attempts"][-1]
    attempt.update({"endedAt": stamp, "exitCode": end.exit_code, "outcome": outcome})
    attempt.update(end.usage)  # type: ignore[typeddict-item]
    new.update(end.results)  # type: ignore[typeddict-item]
    if end.pid is not None:
        attempt["pid"] = end.pid
    error = "cancelled" if outcome == "cancelled" else end.error
    if error:
        attempt["error"] = error
    new["runnerId"] = None
    new["pid"] = None
    if decision.action == "switch":
        new.update({"status": "pending", "nextAgent": decision.agent, "errorMessage": error or ""})
    elif decision.action == "complete":
        new.update({"status": "complete", "completedAt": stamp, "errorMessage": None})
    elif decision.action == "retry":
        count = (record.get("retryCount") or 0) + 1
        new["retryCount"] = count
        new["retryHistory"] = [
            *(record.get("retryHistory") or []),
            {
                "attempt": count,
                "timestamp": stamp,
                "error": error or "",
                "retriedFrom": record["taskId"],
            },
        ]
        new["nextAttemptAt"] = iso(now + timedelta(seconds=decision.delay))
        new.update({"status": "pending", "errorMessage": error or ""})
    elif decision.action == "requeue":
        new["status"] = "pending"
    elif decision.action == "wait":
        new.update({"status": "pending", "errorMessage": error or ""})
    elif decision.action == "cancel":
        new.update({"status": "cancelled", "completedAt": record.get("completedAt") or stamp})
    else:
        new.update({"status": "failed", "completedAt": stamp, "errorMessage": error or ""})
    return new
