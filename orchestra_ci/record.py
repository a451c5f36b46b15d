"""The task record: one JSON object per task, in agent-orchestrator's camelCase shape.

Records stay plain dicts (typed as ``TaskRecord``) so that fields written by other tools
survive a round trip and the hot read paths (``status``, ``start``) need no model library.
"""

import re
import secrets
from datetime import UTC, datetime
from typing import Literal, NotRequired, Required, TypedDict

Status = Literal["pending", "running", "complete", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("pending", "running", "complete", "failed", "cancelled")
FINISHED: frozenset[str] = frozenset({"complete", "failed", "cancelled"})

Outcome = Literal[
    "success",
    "failed",
    "timeout",
    "not_found",
    "interrupted",
    "cancelled",
    "rate_limited",
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
    requests: int  # API requests through the credential proxy


class RetryEntry(TypedDict):
    """agent-orchestrator's retry history entry."""

    attempt: int
    timestamp: str
    error: str
    retriedFrom: str


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
    verifyOutput: str | None
    branch: str | None
    patch: str | None
    changedFiles: list[str]
    prUrl: str | None


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
        return parse_time(value).timestamp()
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
    return f"{prefix}-{stamp}-{secrets.token_hex(6)}"


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
