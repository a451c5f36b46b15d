"""Putting task specs into the queue, idempotently, and checking a queue before a run."""

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from orchestra_ci import transitions
from orchestra_ci.agents import AgentSpec, require_agent
from orchestra_ci.errors import UsageError
from orchestra_ci.record import FINISHED, TaskRecord, new_record, timestamp
from orchestra_ci.schedule import find_cycle
from orchestra_ci.store import Store

if TYPE_CHECKING:  # specs come from the tasks file or from issues; loaded only then
    from orchestra_ci.task_spec import TaskSpec


@dataclass
class LoadResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    requeued: list[str] = field(default_factory=list)  # finished tasks that run again
    retired: list[str] = field(default_factory=list)  # pending tasks their source dropped
    # The agents of the tasks left to run (pending or running) once loaded: for run.json,
    # without a second pass over the queue.
    agents: set[str] = field(default_factory=set)

    def __str__(self) -> str:
        text = f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}"
        if self.requeued:
            text += f", queued again {len(self.requeued)}"
        if self.retired:
            text += f", retired {len(self.retired)} (no longer in their source)"
        return text


def _spec_fields(spec: "TaskSpec") -> dict[str, object]:
    return {
        "agent": spec.agent,
        "prompt": spec.prompt,
        "timeout": spec.timeout,
        "maxRetries": spec.max_retries,
        "priority": spec.priority,
        "dependsOn": list(spec.depends_on),
        "backoff": spec.backoff,
        "backoffMax": spec.backoff_max,
        "verify": spec.verify,
        "requireChanges": spec.require_changes,
        "stallTimeout": spec.stall_timeout,
        "base": spec.base,
        "maxCostUsd": spec.max_cost_usd,
        "maxTurns": spec.max_turns,
    }


_KEPT = (
    "taskId",
    "status",
    "agent",
    "prompt",
    "timeout",
    "maxRetries",
    "priority",
    "dependsOn",
    "backoff",
    "backoffMax",
    "verify",
    "requireChanges",
    "stallTimeout",
    "base",
    "maxCostUsd",
    "maxTurns",
    "sourceFile",
    "source",
    "createdAt",
    "completedAt",
)


def _projection(record: TaskRecord) -> TaskRecord:
    return {k: record[k] for k in _KEPT if k in record}  # type: ignore[literal-required,return-value]


def check_queue(
    records: Iterable[TaskRecord],
    agents: dict[str, AgentSpec],
    where: str = "queue",
    root: Path | None = None,
    loaded: Collection[str] | None = None,
) -> None:
    """Reject what would make a run fail before it starts: unknown agents, missing prompt
    templates, unknown dependencies and dependency cycles (among tasks that can still run).
    Only the ``loaded`` tasks (default: all) must name a known agent: a task queued earlier
    whose agent has since gone from the config fails alone when its turn comes."""
    by_id = {r["taskId"]: r for r in records}
    graph: dict[str, Sequence[str]] = {}
    used: set[str] = set()
    for task_id, record in by_id.items():
        if record["status"] not in ("pending", "running"):
            continue
        origin = record.get("sourceFile") or where
        if loaded is not None and task_id not in loaded and record["agent"] not in agents:
            graph[task_id] = record.get("dependsOn") or []
            continue
        require_agent(agents, record["agent"], f"{origin}: task {task_id!r}")
        used.add(record["agent"])
        deps = record.get("dependsOn") or []
        for dep in deps:
            if dep not in by_id:
                raise UsageError(f"{origin}: task {task_id!r}: depends on unknown task {dep!r}")
        graph[task_id] = deps
    for name in sorted(used):
        template = agents[name].prompt_template_file
        if template and root is not None and not (root / template).is_file():
            raise UsageError(f"agent {name!r}: promptTemplateFile {template!r} not found")
    cycle = find_cycle(graph)
    if cycle:
        raise UsageError(f"{where}: dependency cycle: {' -> '.join(cycle)}")


def origin(record: TaskRecord) -> str:
    """Which source a queued task came from: its tasks file, or ``issue``, ``cli``..."""
    return record.get("sourceFile") or record.get("source") or "cli"


@dataclass(frozen=True)
class Change:
    """What loading a spec does to its task: ``add`` it, ``update`` a pending task's
    definition, or ``requeue`` a finished one (``reason`` goes into its history)."""

    kind: Literal["add", "update", "requeue"]
    fields: dict[str, object]
    reason: str = ""


def change_for(current: TaskRecord | None, spec: "TaskSpec") -> Change | None:
    """A complete task stays complete; a failed one runs again only when its definition
    changed; an issue task whose issue got the trigger label again after it finished runs
    again, as new attempts on its record (pure)."""
    fields = _spec_fields(spec)
    if current is None:
        return Change("add", fields)
    changed = any(current.get(k) != v for k, v in fields.items())
    status = current["status"]
    if status == "pending" and changed:
        return Change("update", fields)
    if status == "failed" and changed:
        return Change("requeue", fields, "its definition changed")
    relabeled = timestamp(spec.labeled_at) or 0.0
    finished = timestamp(current.get("completedAt"))
    if status in FINISHED and finished is not None and relabeled > finished:
        return Change("requeue", fields, f"issue #{spec.issue_number} was labelled again")
    return None


def _new(spec: "TaskSpec", fields: dict[str, object], order: int) -> TaskRecord:
    record = new_record(spec.id, spec.agent, spec.prompt, source=spec.source)
    record.update(fields)  # type: ignore[typeddict-item]
    record["order"] = order
    if spec.source_file:
        record["sourceFile"] = spec.source_file
    if spec.issue_number is not None:
        record["issueNumber"] = spec.issue_number
    return record


def _retired_reason(where: str) -> str:
    if where == "issue":
        return "its issue is closed or no longer carries the trigger label"
    return f"no longer in {where}"


def enqueue(
    store: Store,
    specs: "Sequence[TaskSpec]",
    agents: dict[str, AgentSpec],
    *,
    complete_sources: Mapping[str, Collection[str]] | None = None,
    now: datetime | None = None,
) -> LoadResult:
    """Add new tasks, update pending ones whose definition changed, and put finished ones
    that should run again back in the queue (see :func:`change_for`), with the finished
    tasks that build on them (:func:`transitions.dependents_to_rerun`). ``complete_sources``
    maps each source read whole (a tasks file, every labelled issue) to the ids it has
    (all of them, also those of other shards): a pending task from it that it no longer
    has is retired: cancelled, with the reason, never run.

    Everything is checked against the queue first; on any problem nothing is written.
    """
    now = now or datetime.now(UTC)
    store.ensure()
    with store.locked():
        # Only what loading compares and checks: a large queue is not held in memory twice.
        existing = {r["taskId"]: _projection(r) for r in store.iter_records()}
        planned: dict[str, TaskRecord] = dict(existing)
        writes: list[tuple[str, TaskRecord]] = []
        unchanged = 0
        for order, spec in enumerate(specs):
            change = change_for(existing.get(spec.id), spec)
            if change is None:
                unchanged += 1
                continue
            if change.kind == "add":
                record = _new(spec, change.fields, order)
            else:
                full = store.read(spec.id) or existing[spec.id]
                if change.kind == "requeue":
                    full = transitions.requeue(full, change.reason, now)
                record = {**full, **change.fields}  # type: ignore[typeddict-item]
            writes.append((change.kind, record))
            planned[spec.id] = record
        again = {record["taskId"] for kind, record in writes if kind == "requeue"}
        for task_id, reason in transitions.dependents_to_rerun(planned, again).items():
            full = store.read(task_id) or existing[task_id]
            record = transitions.requeue(full, reason, now)
            writes.append(("requeue", record))
            planned[task_id] = record
        for task_id, current in existing.items():
            where = origin(current)
            has = (complete_sources or {}).get(where)
            if current["status"] == "pending" and has is not None and task_id not in has:
                full = store.read(task_id) or current
                record = transitions.retire(full, _retired_reason(where), now)
                writes.append(("retire", record))
                planned[task_id] = record
        where = (specs[0].source_file or specs[0].source) if specs else "queue"
        loaded = {spec.id for spec in specs}
        check_queue(planned.values(), agents, where=where, root=store.root, loaded=loaded)
        result = LoadResult(unchanged=unchanged)
        result.agents = {
            r["agent"] for r in planned.values() if r["status"] in ("pending", "running")
        }
        # Written, then made durable with two flushes for all of them (not two per task).
        added = [record for kind, record in writes if kind == "add"]
        result.added = sum(store.create_many(added)) if added else 0
        changed = [(kind, record) for kind, record in writes if kind != "add"]
        if changed:
            store.write_many([record for _, record in changed])
        for kind, record in changed:
            if kind == "update":
                result.updated += 1
            elif kind == "requeue":
                store.sentinel(record["taskId"], "done").unlink(missing_ok=True)
                store.sentinel(record["taskId"], "error").unlink(missing_ok=True)
                result.requeued.append(record["taskId"])
            else:
                result.retired.append(record["taskId"])
    return result
