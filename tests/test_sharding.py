"""orchestra_ci.sharding: deterministic, balanced shards that never split dependencies."""

import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestra_ci import report, sharding
from orchestra_ci.record import new_record
from orchestra_ci.sharding import ShardTask, assign, matrix, parse_shard
from orchestra_ci.task_spec import TaskSpec

# -- helpers ------------------------------------------------------------------------------


def components(tasks: Sequence[ShardTask]) -> list[set[str]]:
    """Connected components by a plain graph search (independent of the module's)."""
    ids = {t.id for t in tasks}
    edges: dict[str, set[str]] = {t.id: set() for t in tasks}
    for t in tasks:
        for dep in t.depends_on:
            if dep in ids:
                edges[t.id].add(dep)
                edges[dep].add(t.id)
    seen: set[str] = set()
    result = []
    for start in sorted(ids):
        if start in seen:
            continue
        group, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node not in group:
                group.add(node)
                stack.extend(edges[node] - group)
        seen |= group
        result.append(group)
    return result


def loads(assignment: Mapping[str, int], shards: int, weight: Mapping[str, float]) -> list[float]:
    totals = [0.0] * shards
    for task_id, shard in assignment.items():
        totals[shard - 1] += weight[task_id]
    return totals


@st.composite
def graphs(draw: st.DrawFn) -> list[ShardTask]:
    """Random tasks with random dependencies, some on ids that are not in the input."""
    count = draw(st.integers(min_value=0, max_value=40))
    ids = [f"t{i:02d}" for i in range(count)]
    tasks = []
    for task_id in ids:
        deps = draw(
            st.lists(st.sampled_from([*ids, "ghost-1", "ghost-2"]), max_size=3)
            if ids
            else st.just([])
        )
        tasks.append(ShardTask(task_id, tuple(deps), draw(st.integers(-3, 3))))
    return tasks


# -- parse_shard --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1/1", (1, 1)), ("2/3", (2, 3)), ("3/3", (3, 3)), (" 10/12 ", (10, 12)), ("01/3", (1, 3))],
)
def test_parse_shard_accepts_k_of_n(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0/3", "K must be between 1 and 3"),
        ("4/3", "K must be between 1 and 3"),
        ("1/0", "at least 1"),
        ("0/0", "at least 1"),
        ("3", "use K/N"),
        ("", "use K/N"),
        ("a/b", "use K/N"),
        ("1/3/3", "use K/N"),
        ("-1/3", "use K/N"),
        ("1.5/3", "use K/N"),
        ("1/", "use K/N"),
        ("/3", "use K/N"),
        ("\u0661/\u0663", "use K/N"),  # Arabic-Indic digits: isdigit() but not K/N
        ("1/" + "9" * 5000, "too large"),
        ("0/" + "9" * 4000, "between 1 and N"),
    ],
)
def test_parse_shard_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid shard") as info:
        parse_shard(text)
    assert message in str(info.value)
    assert len(str(info.value)) < 200


# -- assign -------------------------------------------------------------------------------


def sample_tasks() -> list[ShardTask]:
    tasks = [ShardTask(f"issue-{i}", (), i % 3) for i in range(1, 31)]
    tasks += [
        ShardTask("build", ()),
        ShardTask("test", ("build",)),
        ShardTask("docs", ("test", "not-in-queue")),
        ShardTask("lint", ()),
        ShardTask("fmt", ("lint",), 5),
    ]
    return tasks


def test_every_task_gets_exactly_one_shard_in_range() -> None:
    tasks = sample_tasks()
    result = assign(tasks, 4)
    assert sorted(result) == sorted(t.id for t in tasks)
    assert list(result) == sorted(result)  # sorted by id
    assert set(result.values()) == {1, 2, 3, 4}


def test_assignment_does_not_depend_on_input_order() -> None:
    tasks = sample_tasks()
    durations = {t.id: float(i % 7) for i, t in enumerate(tasks) if i % 4}
    expected = assign(tasks, 3)
    expected_timed = assign(tasks, 3, durations)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = tasks[:]
        rng.shuffle(shuffled)
        shuffled = [ShardTask(t.id, tuple(reversed(t.depends_on)), t.priority) for t in shuffled]
        assert assign(shuffled, 3) == expected
        assert assign(shuffled, 3, dict(reversed(durations.items()))) == expected_timed


SCRIPT = """
import json, sys
from orchestra_ci.sharding import ShardTask, assign
tasks = [ShardTask(f"task-{i}", (f"task-{i - 1}",) if i % 5 == 0 else (), i % 4)
         for i in range(1, 61)]
durations = {f"task-{i}": float(i % 9) for i in range(1, 61, 2)}
print(json.dumps([assign(tasks, 4), assign(tasks, 7, durations)]))
"""


def test_assignment_does_not_depend_on_the_hash_seed() -> None:
    outputs = set()
    for seed in ("0", "1", "123456", "4294967295"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1
    by_count, by_time = json.loads(outputs.pop())
    assert len(by_count) == 60 and set(by_count.values()) == {1, 2, 3, 4}
    assert len(by_time) == 60


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tasks=graphs(), shards=st.integers(min_value=1, max_value=6), data=st.data())
def test_dependency_components_are_never_split_and_counts_are_balanced(
    tasks: list[ShardTask], shards: int, data: st.DataObject
) -> None:
    result = assign(tasks, shards)
    assert sorted(result) == sorted(t.id for t in tasks)
    assert all(1 <= s <= shards for s in result.values())
    groups = components(tasks)
    for group in groups:
        assert len({result[m] for m in group}) == 1, group
    counts = loads(result, shards, dict.fromkeys(result, 1.0))
    largest = max((len(g) for g in groups), default=0)
    assert max(counts) - min(counts) <= largest
    # the same answer whatever the order of the input
    assert assign(data.draw(st.permutations(tasks)), shards) == result


@settings(max_examples=100, deadline=None)
@given(
    tasks=graphs(),
    shards=st.integers(min_value=1, max_value=5),
    seconds=st.lists(st.floats(min_value=0, max_value=1000), min_size=40, max_size=40),
    measured=st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_balance_by_duration_stays_within_the_largest_component(
    tasks: list[ShardTask], shards: int, seconds: list[float], measured: list[bool]
) -> None:
    durations = {t.id: seconds[i] for i, t in enumerate(tasks) if measured[i]}
    result = assign(tasks, shards, durations)
    weight = sharding.weights(result, durations)
    groups = components(tasks)
    for group in groups:
        assert len({result[m] for m in group}) == 1
    per_shard = loads(result, shards, weight)
    heaviest = max((math.fsum(weight[m] for m in g) for g in groups), default=0.0)
    assert max(per_shard) - min(per_shard) <= heaviest + 1e-6


def test_linked_tasks_stay_together_in_either_direction_and_through_cycles() -> None:
    tasks = [
        ShardTask("a", ("b",)),
        ShardTask("b", ()),
        ShardTask("c", ("b",)),  # a and c share a dependency: one component
        ShardTask("x", ("y",)),
        ShardTask("y", ("x", "y")),  # a cycle and a self-dependency
        *(ShardTask(f"solo-{i}", ("missing",)) for i in range(6)),
    ]
    result = assign(tasks, 4)
    assert result["a"] == result["b"] == result["c"]
    assert result["x"] == result["y"]


def test_durations_change_the_balance() -> None:
    tasks = [ShardTask(name, ()) for name in ("huge", "s1", "s2", "s3")]
    by_count = Counter(assign(tasks, 2).values())
    assert sorted(by_count.values()) == [2, 2]
    timed = assign(tasks, 2, {"huge": 600.0, "s1": 5.0, "s2": 5.0, "s3": 5.0})
    assert Counter(timed.values())[timed["huge"]] == 1  # the long task has a shard to itself
    assert {timed["s1"], timed["s2"], timed["s3"]} == {3 - timed["huge"]}


def test_unmeasured_tasks_count_as_the_median_of_the_measured_ones() -> None:
    durations = {"a": 1.0, "b": 3.0, "c": 10.0, "elsewhere": 1000.0}
    assert sharding.weights(["a", "b", "c", "new"], durations) == {
        "a": 1.0,
        "b": 3.0,
        "c": 10.0,
        "new": 3.0,
    }
    assert sharding.weights(["x", "y"], {"other": 5.0}) == {"x": 1.0, "y": 1.0}
    assert sharding.weights(["x", "y"]) == {"x": 1.0, "y": 1.0}
    bad: dict[str, Any] = {"a": math.nan, "b": -1.0, "c": math.inf, "d": True, "e": 4.0}
    assert sharding.weights("abcde", bad) == dict.fromkeys("abcde", 4.0)


def test_unmeasured_tasks_balance_with_measured_ones() -> None:
    # four 10 s tasks were measured; four new ones count 10 s each as well
    tasks = [ShardTask(f"old-{i}", ()) for i in range(4)] + [
        ShardTask(f"new-{i}", ()) for i in range(4)
    ]
    result = assign(tasks, 2, {f"old-{i}": 10.0 for i in range(4)})
    assert sorted(Counter(result.values()).values()) == [4, 4]


def test_tasks_that_took_no_time_are_still_spread_by_count() -> None:
    tasks = [ShardTask(f"t{i}", ()) for i in range(9)]
    result = assign(tasks, 3, {f"t{i}": 0.0 for i in range(9)})
    assert sorted(Counter(result.values()).values()) == [3, 3, 3]


def test_higher_priority_breaks_ties_so_it_is_spread_first() -> None:
    result = assign([ShardTask("a", (), 0), ShardTask("b", (), 9)], 2)
    assert result == {"a": 2, "b": 1}
    urgent = [ShardTask(f"urgent-{i}", (), 10) for i in range(3)]
    rest = [ShardTask(f"later-{i}", (), 0) for i in range(3)]
    result = assign(rest + urgent, 3)
    assert sorted(result[t.id] for t in urgent) == [1, 2, 3]


def test_more_shards_than_tasks_and_no_tasks() -> None:
    result = assign([ShardTask("a", ()), ShardTask("b", ())], 5)
    assert sorted(result.values()) == [1, 2]
    assert assign([], 3) == {}
    assert assign([ShardTask("only", ())], 1) == {"only": 1}


def test_plain_tuples_and_task_specs_are_accepted() -> None:
    spec = TaskSpec(
        id="docs",
        agent="fake",
        prompt="p",
        timeout=None,
        max_retries=0,
        backoff=None,
        backoff_max=None,
        depends_on=["lint"],
        priority=2,
    )
    converted = sharding.shard_tasks([spec])
    assert converted == [ShardTask("docs", ("lint",), 2)]
    tuples: list[Any] = [("lint", [], 0), ("docs", ["lint"], 2)]
    assert assign(tuples, 2) == assign([ShardTask("lint", (), 0), *converted], 2)


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unique; repeated: a"):
        assign([ShardTask("a", ()), ShardTask("a", ("b",)), ShardTask("b", ())], 2)
    for shards in (0, -1):
        with pytest.raises(ValueError, match=">= 1"):
            assign([ShardTask("a", ())], shards)


# -- matrix -------------------------------------------------------------------------------


def expand(strategy: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The jobs GitHub Actions makes of a matrix: the product of the lists, then each
    ``include`` entry is added to every combination whose original values it does not
    overwrite, or becomes a job of its own when it fits none."""
    keys = [k for k in strategy if k not in ("include", "exclude")]
    jobs: list[dict[str, Any]] = [{}]
    for key in keys:
        jobs = [{**job, key: value} for job in jobs for value in strategy[key]]
    originals = [dict(job) for job in jobs]
    extra = []
    for entry in strategy.get("include", []):
        fits = [
            i
            for i, original in enumerate(originals)
            if all(original.get(k, v) == v for k, v in entry.items() if k in keys)
        ]
        for i in fits:
            jobs[i].update(entry)
        if not fits:
            extra.append(dict(entry))
    return jobs + extra


def test_matrix_shape() -> None:
    assignment = {"a": 1, "b": 1, "c": 2, "d": 3}
    assert matrix(assignment, 4) == {
        "shard": ["1/4", "2/4", "3/4", "4/4"],
        "include": [
            {"shard": "1/4", "tasks": 2},
            {"shard": "2/4", "tasks": 1},
            {"shard": "3/4", "tasks": 1},
            {"shard": "4/4", "tasks": 0},
        ],
    }


def test_matrix_makes_one_job_per_shard_with_a_shard_run_accepts() -> None:
    tasks = sample_tasks()
    strategy = json.loads(json.dumps(matrix(assign(tasks, 3), 3)))  # as fromJSON sees it
    jobs = expand(strategy)
    assert [job["shard"] for job in jobs] == ["1/3", "2/3", "3/3"]
    assert [parse_shard(job["shard"]) for job in jobs] == [(1, 3), (2, 3), (3, 3)]
    assert sum(job["tasks"] for job in jobs) == len(tasks)


def test_matrix_limits() -> None:
    assert len(matrix({}, sharding.MAX_MATRIX_JOBS)["shard"]) == 256
    with pytest.raises(ValueError, match="at most 256 jobs"):
        matrix({}, 257)
    with pytest.raises(ValueError, match=">= 1"):
        matrix({}, 0)
    with pytest.raises(ValueError, match=r"task 'a' is in shard 3, outside 1\.\.2"):
        matrix({"a": 3}, 2)


# -- durations from a previous report -----------------------------------------------------


def test_durations_from_a_real_report(tmp_path: Path) -> None:
    done = new_record("done", "fake", "p")
    done["status"] = "complete"
    done["attempts"] = [
        {"number": 1, "agent": "fake", "startedAt": "2024-05-01T10:00:00+00:00"},
        {
            "number": 2,
            "agent": "fake",
            "startedAt": "2024-05-01T10:00:00+00:00",
            "endedAt": "2024-05-01T10:00:42.500+00:00",
            "exitCode": 0,
            "outcome": "success",
        },
    ]
    never = new_record("never", "fake", "p")  # pending, no attempt: not measured
    path = tmp_path / "results.json"
    report.write(
        path,
        report.build(
            [done, never],
            run_id="r",
            started_at="2024-05-01T10:00:00+00:00",
            ended_at=None,
            time_budget=None,
            parallel=1,
        ),
    )
    assert sharding.durations_from_report(path) == {"done": 42.5}


def test_durations_from_report_tolerates_missing_fields(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(
            {
                "tasks": [
                    {"id": "plain", "duration": 12},
                    {"id": "from-attempts", "attempts": [{"duration": 2.0}, {"duration": None}]},
                    {"id": "bad", "duration": "soon", "attempts": [{}]},
                    {"id": "negative", "duration": -3},
                    {"id": "huge-int", "duration": 10**400},
                    {"id": "not-started", "duration": 0.0, "attempts": []},
                    {"duration": 5.0},
                    "not an object",
                    {"id": "twice", "duration": 1.0},
                    {"id": "twice", "duration": 7.0},
                ]
            }
        )
    )
    assert sharding.durations_from_report(path) == {
        "from-attempts": 2.0,
        "plain": 12.0,
        "twice": 7.0,
    }
    path.write_text("{}")
    assert sharding.durations_from_report(path) == {}
    path.write_text('{"tasks": "nope"}')
    assert sharding.durations_from_report(path) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), ("{", "invalid JSON"), ("[1, 2]", "not a results.json report")],
)
def test_durations_from_an_unusable_file(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        sharding.durations_from_report(path)
    assert str(path) in str(info.value)
