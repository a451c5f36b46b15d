"""The task record: one JSON object per task, in agent-orchestrator's camelCase shape.

Records stay plain dicts (typed as ``TaskRecord``) so that fields written by other tools
survive a round trip and the hot read paths (``status``, ``start``) need no model library.
"""

import os
import re
from datetime import UTC, datetime
from typing import Literal, NotRequired, Required, TypedDict

Status = Literal["pending", "running", "complete", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("pending", "running", "complete", "failed", "cancelled")
FINISHED: frozenset[str] = frozenset({"complete", "failed", "cancelled"})

Outcome = Literal[
    "success",
    "failed",
    "timeout",
    "stalled",
    "not_found",
    "interrupted",
    "cancelled",
    "rate_limited",
    "quota_exhausted",
    "fatal",
]

TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,100}")
DEFAULT_MAX_RETRIES = 3


class Attempt(TypedDict, total=False):
    number: Required[int]
    agent: Required[str]
    startedAt: Required[str]
    endedAt: str
    exitCode: int | None
    outcome: Outcome
    error: str
    runnerId: str
    pid: int
    marker: str
    costUsd: float
    turns: int
    inputTokens: int
    outputTokens: int
    argv: list[str]  # the command line it ran, secrets masked
    requests: int  # API requests through the credential proxy


class RetryEntry(TypedDict):
    """agent-orchestrator's retry history entry."""

    attempt: int
    timestamp: str
    error: str
    retriedFrom: str


class HistoryEntry(TypedDict):
    """Something that happened to the task outside its attempts (e.g. put back in the queue
    because its definition changed), kept across runs."""

    at: str
    event: str
    reason: str


class TaskRecord(TypedDict, total=False):
    taskId: Required[str]
    status: Required[Status]
    agent: Required[str]
    prompt: Required[str]
    createdAt: Required[str]
    updatedAt: str
    startedAt: str | None
    completedAt: str | None
    retryCount: int
    maxRetries: int
    retryHistory: list[RetryEntry]
    priority: int
    timeout: float | None
    dependsOn: list[str]
    errorMessage: str | None
    blockedBy: str | None
    logFile: str
    source: str
    sourceFile: NotRequired[str]
    issueNumber: int | None
    attempts: list[Attempt]
    nextAttemptAt: str | None
    runnerId: str | None
    pid: int | None
    backoff: float | None
    backoffMax: float | None
    nextAgent: str | None
    verify: str | None
    requireChanges: bool | None
    stallTimeout: float | None
    maxCostUsd: float | None
    maxTurns: int | None
    verifyOutput: str | None
    base: str | None  # the task's own `base` (head, worktree or a ref); None: the setting's
    baseRef: str | None  # what its worktree started from (a branch, `worktree`, ...)
    baseCommit: str | None  # ... and that commit: its patch is relative to it
    branch: str | None
    patch: str | None
    changedFiles: list[str]
    prUrl: str | None
    history: list[HistoryEntry]
    order: int  # its place among the tasks loaded with it (file order breaks creation ties)


def iso(instant: datetime) -> str:
    """How a record stores an instant."""
    return instant.isoformat(timespec="milliseconds")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def parse_time(value: str) -> datetime:
    """Parse a stored timestamp; naive ones (written by agent-orchestrator) are local time."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.astimezone()


def timestamp(value: object) -> float | None:
    """A stored timestamp as an instant (epoch seconds); None when it is missing or not one
    we can read. Compare instants, never the strings: naive local times and UTC ones sort
    differently as text."""
    if not isinstance(value, str) or not value:
        return None
    try:
        # A naive time's timestamp() reads it as local time, as parse_time does, without
        # the time zone lookup: 7 x faster, and ``status`` takes two per task.
        return datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError):
        return None


def check_task_id(task_id: str) -> str:
    if not TASK_ID_PATTERN.fullmatch(task_id) or task_id in {".", ".."}:
        raise ValueError(
            f"invalid task id {task_id!r}: use 1-100 characters from A-Z a-z 0-9 . _ -"
        )
    return task_id


def new_task_id(agent: str) -> str:
    """A fresh id that does not collide: agent, UTC time and 48 random bits."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", agent)[:60] or "task"
    return f"{prefix}-{stamp}-{os.urandom(6).hex()}"


def new_record(
    task_id: str,
    agent: str,
    prompt: str,
    *,
    source: str = "cli",
    max_retries: int = DEFAULT_MAX_RETRIES,
    priority: int = 0,
    timeout: float | None = None,
    depends_on: list[str] | None = None,
    backoff: float | None = None,
    backoff_max: float | None = None,
) -> TaskRecord:
    created = now_iso()
    return {
        "taskId": check_task_id(task_id),
        "status": "pending",
        "agent": agent,
        "prompt": prompt,
        "createdAt": created,
        "updatedAt": created,
        "startedAt": None,
        "completedAt": None,
        "retryCount": 0,
        "maxRetries": max_retries,
        "retryHistory": [],
        "priority": priority,
        "timeout": timeout,
        "dependsOn": list(depends_on or []),
        "errorMessage": None,
        "blockedBy": None,
        "logFile": f".orchestra/logs/{task_id}.log",
        "source": source,
        "attempts": [],
        "nextAttemptAt": None,
        "backoff": backoff,
        "backoffMax": backoff_max,
    }


_OPTIONAL_TYPES: dict[str, tuple[type, ...]] = {
    "retryCount": (int,),
    "maxRetries": (int,),
    "priority": (int,),
    "timeout": (int, float, type(None)),
    "errorMessage": (str, type(None)),
    "blockedBy": (str, type(None)),
    "issueNumber": (int, type(None)),
    "order": (int,),
    "nextAttemptAt": (str, type(None)),
    "completedAt": (str, type(None)),
    "startedAt": (str, type(None)),
    "backoff": (int, float, type(None)),
    "backoffMax": (int, float, type(None)),
    "nextAgent": (str, type(None)),
    "runnerId": (str, type(None)),
    "base": (str, type(None)),
    "baseRef": (str, type(None)),
    "baseCommit": (str, type(None)),
    "branch": (str, type(None)),
    "patch": (str, type(None)),
    "prUrl": (str, type(None)),
}
_LISTS = ("dependsOn", "retryHistory", "attempts", "changedFiles", "history")


def sort_key(record: TaskRecord, created: float | None = None) -> tuple[float, int, str]:
    """Creation order: the creation instant (``created``, when the caller has parsed it
    already), then the place in the file it was loaded from (tasks loaded together share an
    instant), then the id."""
    if created is None:
        created = timestamp(record.get("createdAt"))
    return (created or 0.0, record.get("order") or 0, record["taskId"])


def problem(task_id: str, value: object) -> str | None:
    """Why a parsed record file (``tasks/<task_id>.json``) cannot be used as a task, or
    None. Only what the queue relies on is checked, so records written by agent-orchestrator
    (naive local times, fields of its own) pass."""
    if not isinstance(value, dict):
        return f"not a task record (a JSON {type(value).__name__}, not an object)"
    found = value.get("taskId")
    if not isinstance(found, str):
        return "no taskId"
    if found != task_id:
        return f"its taskId {found!r} is not its file name {task_id!r}.json (a copy?)"
    status = value.get("status")
    if status not in STATUSES:
        return "no status" if status is None else f"unknown status {status!r}"
    for name in ("agent", "prompt"):
        if not isinstance(value.get(name), str):
            return f"field {name!r} is missing or not text"
    for name, types in _OPTIONAL_TYPES.items():
        if name in value and (not isinstance(value[name], types) or isinstance(value[name], bool)):
            return f"field {name!r} has the wrong type ({type(value[name]).__name__})"
    for name in _LISTS:
        if name in value and value[name] is not None and not isinstance(value[name], list):
            return f"field {name!r} is not a list"
    if any(not isinstance(d, str) for d in value.get("dependsOn") or []):
        return "field 'dependsOn' holds something that is not a task id"
    if any(
        not isinstance(a, dict) or not isinstance(a.get("number"), int)
        for a in value.get("attempts") or []
    ):
        return "field 'attempts' holds something that is not an attempt"
    return None
