"""Putting task specs into the queue, idempotently, and checking a queue before a run."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestra_ci.agents import AgentSpec, require_agent
from orchestra_ci.errors import UsageError
from orchestra_ci.record import TaskRecord, new_record
from orchestra_ci.schedule import find_cycle
from orchestra_ci.store import Store

if TYPE_CHECKING:  # specs come from the tasks file or from issues; loaded only then
    from orchestra_ci.task_spec import TaskSpec


@dataclass(frozen=True)
class LoadResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


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
    "sourceFile",
    "createdAt",
)


def _projection(record: TaskRecord) -> TaskRecord:
    return {k: record[k] for k in _KEPT if k in record}  # type: ignore[literal-required,return-value]


def check_queue(
    records: Iterable[TaskRecord],
    agents: dict[str, AgentSpec],
    where: str = "queue",
    root: Path | None = None,
) -> None:
    """Reject what would make a run fail before it starts: unknown agents, missing prompt
    templates, unknown dependencies and dependency cycles (among tasks that can still run)."""
    by_id = {r["taskId"]: r for r in records}
    graph: dict[str, Sequence[str]] = {}
    used: set[str] = set()
    for task_id, record in by_id.items():
        if record["status"] not in ("pending", "running"):
            continue
        origin = record.get("sourceFile") or where
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


def enqueue(store: Store, specs: "Sequence[TaskSpec]", agents: dict[str, AgentSpec]) -> LoadResult:
    """Add new tasks and update pending ones whose definition changed.

    Everything is checked against the queue first; on any problem nothing is written.
    """
    store.ensure()
    with store.locked():
        # Only what loading compares and checks: a large queue is not held in memory twice.
        existing = {r["taskId"]: _projection(r) for r in store.iter_records()}
        planned: dict[str, TaskRecord] = dict(existing)
        writes: list[tuple[str, TaskRecord]] = []
        unchanged = 0
        for spec in specs:
            fields = _spec_fields(spec)
            current = existing.get(spec.id)
            if current is None:
                record = new_record(spec.id, spec.agent, spec.prompt, source=spec.source)
                record.update(fields)  # type: ignore[typeddict-item]
                if spec.source_file:
                    record["sourceFile"] = spec.source_file
                if spec.issue_number is not None:
                    record["issueNumber"] = spec.issue_number
                writes.append(("add", record))
            elif current["status"] == "pending" and any(
                current.get(k) != v for k, v in fields.items()
            ):
                full = store.read(spec.id) or current
                record = {**full, **fields}  # type: ignore[typeddict-item]
                writes.append(("update", record))
            else:
                unchanged += 1
                continue
            planned[spec.id] = record
        where = (specs[0].source_file or specs[0].source) if specs else "queue"
        check_queue(planned.values(), agents, where=where, root=store.root)
        added = updated = 0
        for kind, record in writes:
            if kind == "add":
                store.create(record, sync_dir=False)
                added += 1
            else:
                store.write(record)
                updated += 1
        if added:
            store.sync()
    return LoadResult(added, updated, unchanged)
