"""``results.json``: the run report that summaries, comments and shard merges render from."""

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestra_ci import atomic
from orchestra_ci.record import STATUSES, TaskRecord, timestamp

SCHEMA_VERSION = 1


def overlaps(changed: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """For every task, the other tasks that changed at least one of the same files.

    Every task of ``changed`` is a key (an empty list when it shares no file), in the
    order given; the other tasks are sorted.
    """
    by_file: dict[str, set[str]] = {}
    for task, files in changed.items():
        for name in files:
            by_file.setdefault(name, set()).add(task)
    result: dict[str, list[str]] = {}
    for task, files in changed.items():
        others: set[str] = set()
        for name in files:
            others |= by_file[name]
        others.discard(task)
        result[task] = sorted(others)
    return result


class ReportModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class AttemptReport(ReportModel):
    number: int
    agent: str
    started_at: str = Field(alias="startedAt")
    ended_at: str | None = Field(default=None, alias="endedAt")
    exit_code: int | None = Field(default=None, alias="exitCode")
    outcome: str | None = None
    error: str | None = None
    duration: float | None = None
    cost_usd: float | None = Field(default=None, alias="costUsd")
    turns: int | None = None


class TaskReport(ReportModel):
    id: str
    source: str
    issue_number: int | None = Field(default=None, alias="issueNumber")
    agents: list[str]
    status: str
    attempts: list[AttemptReport]
    retry_count: int = Field(alias="retryCount")
    duration: float
    cost_usd: float | None = Field(default=None, alias="costUsd")
    turns: int | None = None
    error: str | None = None
    blocked_by: str | None = Field(default=None, alias="blockedBy")
    patch: str | None = None
    changed_files: list[str] = Field(default_factory=list, alias="changedFiles")
    pr_url: str | None = Field(default=None, alias="prUrl")
    branch: str | None = None
    base_ref: str | None = Field(default=None, alias="baseRef")
    base_commit: str | None = Field(default=None, alias="baseCommit")
    overlaps: list[str] = Field(default_factory=list)
    log: str


class RunReport(ReportModel):
    schema_version: int = Field(default=SCHEMA_VERSION, alias="schemaVersion")
    run_id: str = Field(alias="runId")
    shard: str | None = Field(default=None, alias="shard")
    started_at: str = Field(alias="startedAt")
    ended_at: str | None = Field(default=None, alias="endedAt")
    time_budget: float | None = Field(default=None, alias="timeBudget")
    parallel: int
    stopped_by: str | None = Field(default=None, alias="stoppedBy")
    exit_code: int | None = Field(default=None, alias="exitCode")
    totals: dict[str, int]
    cost_usd: float | None = Field(default=None, alias="costUsd")
    restored_from: dict[str, Any] | None = Field(default=None, alias="restoredFrom")
    quarantined: list[dict[str, str]] = Field(default_factory=list)  # {file, reason}
    # Agents whose quota ran out: {agent, resetsAt (ISO or null), paused, error}.
    quota: list[dict[str, Any]] = Field(default_factory=list)
    tasks: list[TaskReport]


def _span(start: str | None, end: str | None) -> float | None:
    a, b = timestamp(start), timestamp(end)
    return round(b - a, 3) if a is not None and b is not None else None


def _total(values: list[float | None] | list[int | None]) -> Any:
    """Sum of the reported values; None when nothing was reported."""
    given = [v for v in values if v is not None]
    return sum(given) if given else None


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that have a value: the others keep their defaults (None). Pydantic keeps
    the set of the fields given on every instance, ~2 kB for all twenty of a task's: at
    10,000 tasks the final report's sets were a quarter of the run's peak memory."""
    return {name: value for name, value in fields.items() if value is not None}


def task_report(record: TaskRecord) -> TaskReport:
    attempts = [
        AttemptReport(
            **_given(
                number=a["number"],
                agent=a["agent"],
                started_at=a["startedAt"],
                ended_at=a.get("endedAt"),
                exit_code=a.get("exitCode"),
                outcome=a.get("outcome"),
                error=a.get("error"),
                duration=_span(a["startedAt"], a.get("endedAt")),
                cost_usd=a.get("costUsd"),
                turns=a.get("turns"),
            )
        )
        for a in record.get("attempts") or []
    ]
    agents = list(dict.fromkeys(a.agent for a in attempts)) or [record["agent"]]
    task_id = record["taskId"]
    return TaskReport(
        **_given(
            id=task_id,
            source=record.get("source") or "cli",
            issue_number=record.get("issueNumber"),
            agents=agents,
            status=record["status"],
            attempts=attempts,
            retry_count=record.get("retryCount") or 0,
            duration=round(sum(a.duration or 0.0 for a in attempts), 3),
            cost_usd=_total([a.cost_usd for a in attempts]),
            turns=_total([a.turns for a in attempts]),
            error=record.get("errorMessage"),
            blocked_by=record.get("blockedBy"),
            patch=record.get("patch"),
            changed_files=record.get("changedFiles") or [],
            pr_url=record.get("prUrl"),
            branch=record.get("branch"),
            base_ref=record.get("baseRef"),
            base_commit=record.get("baseCommit"),
            log=record.get("logFile") or f".orchestra/logs/{task_id}.log",
        )
    )


def build(
    records: Iterable[TaskRecord],
    *,
    run_id: str,
    started_at: str,
    ended_at: str | None,
    time_budget: float | None,
    parallel: int,
    stopped_by: str | None = None,
    exit_code: int | None = None,
    shard: str | None = None,
    quota: Sequence[Mapping[str, Any]] = (),
) -> RunReport:
    tasks = sorted((task_report(r) for r in records), key=lambda t: t.id)
    shared = overlaps({t.id: t.changed_files for t in tasks if t.changed_files})
    for task in tasks:
        task.overlaps = shared.get(task.id, [])
    totals = Counter(t.status for t in tasks)
    return RunReport(
        run_id=run_id,
        started_at=started_at,
        ended_at=ended_at,
        time_budget=time_budget,
        parallel=parallel,
        stopped_by=stopped_by,
        exit_code=exit_code,
        totals={
            "total": len(tasks),
            **{s: totals.get(s, 0) for s in STATUSES},
        },
        cost_usd=_total([t.cost_usd for t in tasks]),
        shard=shard,
        quota=[dict(q) for q in quota],
        tasks=tasks,
    )


def write(path: Path, report: RunReport) -> None:
    """Serialised task by task, so a 10,000-task report is never one big string."""
    head = report.model_dump_json(indent=2, exclude={"tasks"}).encode()
    tasks = report.tasks

    def chunks() -> Iterator[bytes]:
        yield head[: head.rfind(b"}")].rstrip() + b',\n  "tasks": ['
        for index, task in enumerate(tasks):
            body = task.model_dump_json(indent=2).replace("\n", "\n    ")
            yield (b",\n    " if index else b"\n    ") + body.encode()
        yield b"\n  ]\n}\n" if tasks else b"]\n}\n"

    atomic.write_chunks(path, chunks())
