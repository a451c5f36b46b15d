"""Deterministic shards of a queue, for a GitHub Actions matrix (``plan`` and ``run --shard``).

Every shard job computes the same assignment from the same input, so each task runs in
exactly one shard without any coordination. The input must therefore be the same in the
``plan`` job and in every shard: the same tasks and, when shards are balanced by measured
durations, the same previous ``results.json``.

Rules of :func:`assign`:

* Tasks linked by ``depends_on`` (in either direction, transitively) form one component
  and stay in one shard, so a shard never waits for a task that runs elsewhere.
  Dependencies on ids that are not in the input are ignored.
* Components are placed longest first (LPT greedy) on the least loaded shard. The load is
  the number of tasks, or the sum of measured durations when durations are given: a task
  without a measurement counts as the median of the measured tasks (1.0 when none was
  measured).
* Ties are broken without Python's ``hash()`` (which is seeded per process): components
  of equal weight go higher ``priority`` first, then by a SHA-256 of their smallest id;
  shards of equal load by fewer tasks, then lower shard number. The input order never
  matters.

The greedy keeps ``max load - min load <= weight of the largest component``.
"""

import hashlib
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeGuard

#: GitHub Actions runs at most this many jobs from one matrix.
MAX_MATRIX_JOBS = 256


class ShardTask(NamedTuple):
    """What sharding needs to know about a task."""

    id: str
    depends_on: Sequence[str] = ()
    priority: int = 0


class _TaskLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def depends_on(self) -> Sequence[str]: ...

    @property
    def priority(self) -> int: ...


def shard_tasks(tasks: Iterable[_TaskLike]) -> list[ShardTask]:
    """:class:`ShardTask` values from anything with ``id``, ``depends_on`` and ``priority``
    attributes (a ``TaskSpec``, say)."""
    return [ShardTask(t.id, tuple(t.depends_on), t.priority) for t in tasks]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``1 <= K <= N``; ValueError naming the input otherwise."""
    shown = repr(text if len(text) <= 40 else text[:39] + "…")
    parts = text.strip().split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() and p.strip().isascii() for p in parts):
        raise ValueError(f"invalid shard {shown}: use K/N, e.g. 2/3 for the 2nd of 3 shards")
    try:
        index, count = int(parts[0]), int(parts[1])
    except ValueError:  # more digits than int() converts
        raise ValueError(f"invalid shard {shown}: number too large") from None
    if count < 1:
        raise ValueError(f"invalid shard {shown}: the number of shards must be at least 1")
    if not 1 <= index <= count:
        upper = count if count < 10**9 else "N"
        raise ValueError(f"invalid shard {shown}: K must be between 1 and {upper}")
    return index, count


def shard_label(index: int, count: int) -> str:
    """``(2, 3)`` -> ``"2/3"``, the form ``run --shard`` takes."""
    return f"{index}/{count}"


def _stable_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _components(tasks: Sequence[ShardTask]) -> list[list[str]]:
    """Connected components of the dependency graph, each sorted, sorted by smallest id."""
    parent = {t.id: t.id for t in tasks}

    def find(node: str) -> str:
        root = node
        while parent[root] != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    for task in tasks:
        for dep in task.depends_on:
            if dep in parent:
                a, b = find(task.id), find(dep)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # the root is the smallest id
    groups: dict[str, list[str]] = {}
    for task_id in parent:
        groups.setdefault(find(task_id), []).append(task_id)
    return sorted((sorted(members) for members in groups.values()), key=lambda c: c[0])


def _usable(value: object) -> TypeGuard[int | float]:
    """A duration worth using: a finite number >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int too large for a float
        return False


def weights(ids: Iterable[str], durations: Mapping[str, float] | None = None) -> dict[str, float]:
    """The load each task counts for: 1.0 each without durations; else its measured
    duration, or the median of the measured tasks (1.0 when none was measured)."""
    ids = sorted(set(ids))
    if durations is None:
        return dict.fromkeys(ids, 1.0)
    measured = {i: float(durations[i]) for i in ids if i in durations and _usable(durations[i])}
    fill = statistics.median(sorted(measured.values())) if measured else 1.0
    return {i: measured.get(i, fill) for i in ids}


def assign(
    tasks: Sequence[ShardTask],
    shards: int,
    durations: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Task id -> shard number (1..``shards``), sorted by id. See the module's docstring.

    Raises ValueError when ``shards`` < 1 or two tasks share an id.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"the number of shards must be an integer >= 1, not {shards!r}")
    tasks = [ShardTask(t[0], tuple(t[1]), t[2]) for t in tasks]
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"task ids must be unique; repeated: {', '.join(twice)}")
    weight = weights(ids, durations)
    priority = {t.id: t.priority for t in tasks}

    placed: list[tuple[float, int, str, str, list[str]]] = []
    for members in _components(tasks):
        load = math.fsum(weight[m] for m in members)
        top = max(priority[m] for m in members)
        placed.append((-load, -top, _stable_hash(members[0]), members[0], members))
    placed.sort(key=lambda c: c[:4])

    loads = [0.0] * shards
    counts = [0] * shards
    result: dict[str, int] = {}
    for neg_load, _, _, _, members in placed:
        target = min(range(shards), key=lambda s: (loads[s], counts[s], s))
        loads[target] += -neg_load
        counts[target] += len(members)
        for member in members:
            result[member] = target + 1
    return dict(sorted(result.items()))


def tasks_in(assignment: Mapping[str, int], index: int) -> list[str]:
    """The ids of shard ``index``'s tasks, sorted."""
    return sorted(task_id for task_id, shard in assignment.items() if shard == index)


def matrix(assignment: Mapping[str, int], shards: int) -> dict[str, Any]:
    """The ``strategy.matrix`` for ``shards`` jobs, e.g. for 3 shards::

        {"shard": ["1/3", "2/3", "3/3"],
         "include": [{"shard": "1/3", "tasks": 4},
                     {"shard": "2/3", "tasks": 3},
                     {"shard": "3/3", "tasks": 3}]}

    A workflow uses it as ``matrix: ${{ fromJSON(needs.plan.outputs.matrix) }}`` and
    passes ``${{ matrix.shard }}`` to ``run --shard``. Each ``include`` entry matches one
    ``shard`` value and only adds ``tasks`` (how many tasks the plan put in that shard),
    available as ``${{ matrix.tasks }}`` (e.g. to skip an empty shard's run step). Every
    shard is listed, even an empty one, so the merge can tell a missing shard from an empty
    one.

    Raises ValueError when ``shards`` is not between 1 and :data:`MAX_MATRIX_JOBS`, or a
    task's shard is outside 1..``shards``.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"the number of shards must be an integer >= 1, not {shards!r}")
    if shards > MAX_MATRIX_JOBS:
        raise ValueError(
            f"{shards} shards: GitHub Actions runs at most {MAX_MATRIX_JOBS} jobs per matrix"
        )
    counts = [0] * shards
    for task_id, shard in assignment.items():
        if not 1 <= shard <= shards:
            raise ValueError(f"task {task_id!r} is in shard {shard}, outside 1..{shards}")
        counts[shard - 1] += 1
    labels = [shard_label(i, shards) for i in range(1, shards + 1)]
    return {
        "shard": labels,
        "include": [{"shard": label, "tasks": n} for label, n in zip(labels, counts, strict=True)],
    }


def durations_from_report(path: Path) -> dict[str, float]:
    """Measured duration per task id from a previous ``results.json`` (``tasks[].duration``).

    Tolerant of what is missing: a task without an id, or without a usable duration (one
    that is absent, not a number, negative or not finite) is skipped; a missing
    ``duration`` falls back to the sum of the attempts' durations. A task that never
    started (an empty ``attempts`` list) has no measurement. An id seen twice keeps the
    larger duration. Raises ValueError (naming the file) when the file cannot be read or is
    not a JSON object.
    """
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a results.json report (expected a JSON object)")
    tasks = data.get("tasks")
    found: dict[str, float] = {}
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict) or not isinstance(task.get("id"), str):
            continue
        attempts = task.get("attempts")
        if isinstance(attempts, list) and not attempts:
            continue
        duration = task.get("duration")
        if not _usable(duration) and isinstance(attempts, list):
            spans = [a.get("duration") for a in attempts if isinstance(a, dict)]
            usable = [float(s) for s in spans if _usable(s)]
            duration = math.fsum(usable) if usable else None
        if _usable(duration):
            found[task["id"]] = max(float(duration), found.get(task["id"], 0.0))
    return dict(sorted(found.items()))
