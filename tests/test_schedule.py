"""The scheduler: readiness, ordering, blocking, retry timers and cycle detection."""

import itertools
import sys
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra_ci.record import Status, TaskRecord
from orchestra_ci.schedule import Blocked, Scheduler, find_cycle

T0 = 1_700_000_000.0  # an arbitrary "now" (seconds since the epoch)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def rec(
    task_id: str,
    status: Status = "pending",
    *,
    deps: tuple[str, ...] = (),
    priority: int = 0,
    created: float = T0 - 1000,
    next_at: float | None = None,
) -> TaskRecord:
    return {
        "taskId": task_id,
        "status": status,
        "agent": "fake",
        "prompt": "p",
        "createdAt": iso(created),
        "priority": priority,
        "dependsOn": list(deps),
        "nextAttemptAt": iso(next_at) if next_at is not None else None,
    }


def run_one(s: Scheduler, task_id: str, status: str = "complete") -> None:
    s.started(task_id)
    s.finished(task_id, status)


# -- ordering ------------------------------------------------------------------------------


def test_empty_scheduler_has_nothing_to_do() -> None:
    s = Scheduler()
    assert s.take(T0, 10) == []
    assert not s.has_ready()
    assert s.next_wake() is None
    assert not s.waiting_on_dependencies()


def test_priority_first_then_created_at() -> None:
    s = Scheduler(
        [
            rec("old-low", priority=0, created=T0 - 300),
            rec("new-high", priority=10, created=T0 - 10),
            rec("old-high", priority=10, created=T0 - 200),
            rec("new-low", priority=0, created=T0 - 100),
            rec("negative", priority=-5, created=T0 - 999),
        ]
    )
    assert s.take(T0, 10) == ["old-high", "new-high", "old-low", "new-low", "negative"]


def test_take_respects_limit_and_keeps_the_rest() -> None:
    s = Scheduler([rec(f"t{i}", created=T0 - 100 + i) for i in range(5)])
    assert s.take(T0, 2) == ["t0", "t1"]
    assert s.take(T0, 0) == []
    assert s.take(T0, 10) == ["t2", "t3", "t4"]
    assert s.take(T0, 10) == []


def test_taken_task_is_not_offered_twice() -> None:
    s = Scheduler([rec("a")])
    assert s.take(T0, 5) == ["a"]
    assert s.take(T0, 5) == []
    assert not s.has_ready()


def test_a_forgotten_task_is_not_offered_again_and_its_dependents_go_on() -> None:
    s = Scheduler([rec("gone"), rec("after", deps=("gone",)), rec("other")])
    assert s.take(T0, 1) == ["gone"]
    s.forget("gone")  # its record vanished between take and claim
    assert s.take(T0, 5) == ["after", "other"]
    assert s.take(T0, 5) == [] and not s.has_ready()
    assert s.count("pending") == 0


def test_a_task_added_after_its_dependency_was_forgotten_does_not_wait() -> None:
    s = Scheduler([rec("gone")])
    s.forget("gone")
    s.put(rec("late", deps=("gone",)))
    assert s.take(T0, 5) == ["late"]


def test_only_pending_tasks_are_taken() -> None:
    s = Scheduler(
        [
            rec("p"),
            rec("r", "running"),
            rec("c", "complete"),
            rec("f", "failed"),
            rec("x", "cancelled"),
        ]
    )
    assert s.take(T0, 10) == ["p"]
    assert s.count("running") == 1
    assert s.count("complete") == 1


def test_release_offers_the_task_again() -> None:
    s = Scheduler([rec("a", created=T0 - 2), rec("b", created=T0 - 1)])
    assert s.take(T0, 2) == ["a", "b"]
    s.release("a")
    assert s.has_ready()
    assert s.take(T0, 5) == ["a"]


def test_release_of_a_started_task_does_nothing() -> None:
    s = Scheduler([rec("a")])
    assert s.take(T0, 1) == ["a"]
    s.started("a")
    s.release("a")
    assert s.take(T0, 5) == []
    assert s.status["a"] == "running"


def test_put_replaces_what_is_known() -> None:
    s = Scheduler([rec("a", priority=0, created=T0 - 2), rec("b", priority=0, created=T0 - 1)])
    s.put(rec("b", priority=5, created=T0 - 1))
    assert s.take(T0, 1) == ["b"]
    s.put(rec("a", "complete"))
    assert s.take(T0, 5) == []
    assert s.count("complete") == 1


# -- dependencies --------------------------------------------------------------------------


def test_dependency_gates_readiness() -> None:
    s = Scheduler([rec("a"), rec("b", deps=("a",))])
    assert s.waiting_on_dependencies()
    assert s.take(T0, 10) == ["a"]
    assert s.take(T0, 10) == []
    run_one(s, "a")
    assert not s.waiting_on_dependencies()
    assert s.take(T0, 10) == ["b"]


def test_dependency_needs_all_deps_complete() -> None:
    s = Scheduler([rec("a"), rec("b"), rec("c", deps=("a", "b"))])
    assert sorted(s.take(T0, 2)) == ["a", "b"]
    run_one(s, "a")
    assert s.take(T0, 10) == []
    run_one(s, "b")
    assert s.take(T0, 10) == ["c"]


def test_dependency_already_complete_is_met() -> None:
    s = Scheduler([rec("a", "complete"), rec("b", deps=("a",))])
    assert not s.waiting_on_dependencies()
    assert s.take(T0, 10) == ["b"]


def test_dependency_added_after_dependent_is_honoured() -> None:
    s = Scheduler([rec("b", deps=("a",))])
    assert s.take(T0, 10) == []
    assert s.waiting_on_dependencies()
    s.put(rec("a", "complete"))
    assert s.take(T0, 10) == ["b"]


def test_running_or_requeued_dependency_still_blocks() -> None:
    s = Scheduler([rec("a"), rec("b", deps=("a",))])
    assert s.take(T0, 1) == ["a"]
    s.started("a")
    assert s.take(T0, 10) == []
    s.finished("a", "pending")  # interrupted: back in the queue
    assert s.take(T0, 10) == ["a"]
    assert s.waiting_on_dependencies()


def test_failed_dependency_blocks_dependent() -> None:
    s = Scheduler([rec("a"), rec("b", deps=("a",)), rec("other")])
    s.take(T0, 10)
    run_one(s, "a", "failed")
    blocked = s.pop_blocked()
    assert blocked == [Blocked("b", "a", "failed")]
    assert blocked[0].message == "blocked: dependency 'a' failed"
    assert s.status["b"] == "failed"
    assert s.pop_blocked() == []
    assert s.take(T0, 10) == []
    assert not s.waiting_on_dependencies()


def test_cancelled_dependency_blocks_dependent() -> None:
    s = Scheduler([rec("a"), rec("b", deps=("a",))])
    s.put(rec("a", "cancelled"))
    blocked = s.pop_blocked()
    assert blocked == [Blocked("b", "a", "cancelled")]
    assert blocked[0].message == "blocked: dependency 'a' was cancelled"
    assert s.take(T0, 10) == []


def test_dependent_of_already_failed_task_is_blocked_when_put() -> None:
    s = Scheduler([rec("a", "failed"), rec("b", deps=("a",)), rec("c", deps=("b",))])
    assert {(b.task_id, b.blocker) for b in s.pop_blocked()} == {("b", "a"), ("c", "b")}
    assert s.count("failed") == 3
    assert s.take(T0, 10) == []


def test_blocking_is_transitive_and_names_the_direct_blocker() -> None:
    s = Scheduler(
        [rec("root"), rec("mid", deps=("root",)), rec("leaf", deps=("mid",)), rec("free")]
    )
    assert sorted(s.take(T0, 10)) == ["free", "root"]
    run_one(s, "root", "failed")
    blocked = {b.task_id: b for b in s.pop_blocked()}
    assert set(blocked) == {"mid", "leaf"}
    assert blocked["mid"].blocker == "root"
    assert blocked["leaf"].blocker == "mid"
    assert blocked["leaf"].blocker_status == "failed"
    assert s.status["free"] == "claiming"


def test_blocking_does_not_touch_finished_or_running_dependents() -> None:
    s = Scheduler([rec("a"), rec("b", "complete", deps=("a",)), rec("c", "running", deps=("a",))])
    s.put(rec("a", "failed"))
    assert s.pop_blocked() == []
    assert s.status["b"] == "complete"
    assert s.status["c"] == "running"


def test_long_failed_chain_blocks_everything_without_recursion() -> None:
    n = max(5_000, sys.getrecursionlimit() + 100)
    records = [rec("t0")] + [rec(f"t{i}", deps=(f"t{i - 1}",)) for i in range(1, n)]
    s = Scheduler(records)
    assert s.take(T0, 10) == ["t0"]
    run_one(s, "t0", "failed")
    blocked = s.pop_blocked()
    assert len(blocked) == n - 1
    assert s.count("failed") == n
    assert not s.waiting_on_dependencies()


def test_long_chain_put_in_reverse_order_then_root_fails() -> None:
    n = 5_000
    s = Scheduler([rec(f"t{i}", deps=(f"t{i - 1}",)) for i in range(n - 1, 0, -1)])
    s.put(rec("t0", "failed"))
    assert len(s.pop_blocked()) == n - 1
    assert s.count("failed") == n


def test_long_chain_of_completions_runs_in_order() -> None:
    n = 5_000
    s = Scheduler([rec("t0")] + [rec(f"t{i}", deps=(f"t{i - 1}",)) for i in range(1, n)])
    order = []
    while batch := s.take(T0, 10):
        assert len(batch) == 1
        order.extend(batch)
        run_one(s, batch[0])
    assert order == [f"t{i}" for i in range(n)]


# -- retry timers --------------------------------------------------------------------------


def test_next_attempt_at_delays_a_pending_task() -> None:
    s = Scheduler([rec("later", next_at=T0 + 30, priority=10), rec("now")])
    assert s.next_wake() == pytest.approx(T0 + 30)
    assert s.take(T0, 10) == ["now"]
    assert s.take(T0 + 29, 10) == []
    assert s.take(T0 + 30, 10) == ["later"]
    assert s.next_wake() is None


def test_next_attempt_at_in_the_past_is_ready() -> None:
    s = Scheduler([rec("a", next_at=T0 - 5)])
    assert s.take(T0, 10) == ["a"]


def test_finished_pending_with_not_before_sets_a_retry_timer() -> None:
    s = Scheduler([rec("a")])
    assert s.take(T0, 1) == ["a"]
    s.started("a")
    s.finished("a", "pending", not_before=T0 + 10)
    assert s.next_wake() == pytest.approx(T0 + 10)
    assert s.take(T0 + 5, 10) == []
    assert s.take(T0 + 10, 10) == ["a"]


def test_finished_pending_without_not_before_is_ready_at_once() -> None:
    s = Scheduler([rec("a")])
    s.take(T0, 1)
    s.started("a")
    s.finished("a", "pending")
    assert s.has_ready()
    assert s.next_wake() is None
    assert s.take(T0, 10) == ["a"]


def test_rescheduled_later_is_not_taken_at_the_old_time() -> None:
    s = Scheduler([rec("a", next_at=T0 + 10)])
    s.put(rec("a", next_at=T0 + 60))
    assert s.take(T0 + 10, 10) == []
    assert s.take(T0 + 60, 10) == ["a"]


def test_next_wake_ignores_tasks_that_are_no_longer_waiting() -> None:
    s = Scheduler([rec("a", next_at=T0 + 10), rec("b", next_at=T0 + 20)])
    assert s.next_wake() == pytest.approx(T0 + 10)
    s.put(rec("a", "cancelled"))
    assert s.next_wake() == pytest.approx(T0 + 20)


def test_timer_of_a_task_waiting_on_a_dependency_starts_after_both() -> None:
    s = Scheduler([rec("dep"), rec("a", deps=("dep",), next_at=T0 + 10)])
    assert s.take(T0, 10) == ["dep"]
    assert s.next_wake() is None
    run_one(s, "dep")
    assert s.take(T0 + 5, 10) == []
    assert s.next_wake() == pytest.approx(T0 + 10)
    assert s.take(T0 + 10, 10) == ["a"]


# -- counting ------------------------------------------------------------------------------


def test_count_tracks_statuses() -> None:
    s = Scheduler([rec("a"), rec("b"), rec("c", "complete")])
    assert s.count("pending") == 2
    s.take(T0, 1)
    s.started("a")
    assert s.count("running") == 1
    assert s.count("pending") == 1
    s.finished("a", "complete")
    assert s.count("complete") == 2


# -- cycles --------------------------------------------------------------------------------


def assert_is_cycle(graph: dict[str, list[str]], cycle: list[str] | None) -> None:
    assert cycle is not None
    assert len(cycle) >= 2
    assert cycle[0] == cycle[-1]
    for a, b in itertools.pairwise(cycle):
        assert b in graph[a], f"{a} does not depend on {b}"
    assert len(set(cycle[:-1])) == len(cycle) - 1


def test_find_cycle_self_dependency() -> None:
    graph = {"a": ["a"]}
    assert find_cycle(graph) == ["a", "a"]


def test_find_cycle_two_nodes() -> None:
    graph = {"a": ["b"], "b": ["a"]}
    cycle = find_cycle(graph)
    assert_is_cycle(graph, cycle)
    assert cycle is not None
    assert set(cycle) == {"a", "b"}


def test_find_cycle_reached_from_an_acyclic_prefix() -> None:
    graph = {"start": ["x"], "x": ["y"], "y": ["z"], "z": ["x"], "lone": []}
    cycle = find_cycle(graph)
    assert_is_cycle(graph, cycle)
    assert cycle is not None
    assert set(cycle) == {"x", "y", "z"}
    assert "start" not in cycle


def test_find_cycle_none_for_dags() -> None:
    assert find_cycle({}) is None
    assert find_cycle({"a": []}) is None
    assert find_cycle({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}) is None
    assert find_cycle({"a": ["b", "b"], "b": []}) is None


def test_find_cycle_ignores_dependencies_outside_the_graph() -> None:
    assert find_cycle({"a": ["missing"], "b": ["a", "elsewhere"]}) is None


def test_find_cycle_on_long_chain_does_not_recurse() -> None:
    n = 5_000
    chain = {f"t{i}": [f"t{i + 1}"] for i in range(n)}
    assert find_cycle(chain) is None
    chain[f"t{n}"] = ["t0"]
    cycle = find_cycle(chain)
    assert_is_cycle(chain, cycle)
    assert cycle is not None
    assert len(cycle) == n + 2


# -- property: random DAGs run in topological order ----------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[str, list[str], int]]:
    """Tasks ``t0..tn`` where each may depend only on earlier ones (so the graph is a DAG),
    each with a priority; the list is shuffled so input order says nothing."""
    n = draw(st.integers(min_value=1, max_value=25))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, i - 1), max_size=4, unique=True)) if i else []
        priority = draw(st.integers(-2, 2))
        tasks.append((f"t{i}", [f"t{d}" for d in deps], priority))
    return draw(st.permutations(tasks))


@settings(max_examples=150, deadline=None)
@given(tasks=dags(), limits=st.lists(st.integers(1, 4), min_size=1, max_size=10))
def test_random_dags_run_in_topological_order(
    tasks: list[tuple[str, list[str], int]], limits: list[int]
) -> None:
    graph = {task_id: deps for task_id, deps, _ in tasks}
    assert find_cycle(graph) is None
    s = Scheduler(
        rec(task_id, deps=tuple(deps), priority=priority, created=T0 - 100 + int(task_id[1:]))
        for task_id, deps, priority in tasks
    )
    done: set[str] = set()
    taken: list[str] = []
    step = 0
    while True:
        batch = s.take(T0, limits[step % len(limits)])
        step += 1
        if not batch:
            break
        # every task offered has all its dependencies complete
        for task_id in batch:
            assert set(graph[task_id]) <= done
        taken.extend(batch)
        for task_id in batch:
            run_one(s, task_id)
            done.add(task_id)
        assert step <= len(tasks) + 1
    assert sorted(taken) == sorted(graph)
    assert len(taken) == len(set(taken))
    position = {task_id: i for i, task_id in enumerate(taken)}
    for task_id, deps in graph.items():
        for dep in deps:
            assert position[dep] < position[task_id]
    assert not s.waiting_on_dependencies()
    assert s.count("complete") == len(graph)


@settings(max_examples=100, deadline=None)
@given(tasks=dags(), data=st.data())
def test_random_dags_one_failure_blocks_exactly_its_descendants(
    tasks: list[tuple[str, list[str], int]], data: st.DataObject
) -> None:
    graph = {task_id: deps for task_id, deps, _ in tasks}
    victim = data.draw(st.sampled_from(sorted(graph)))
    descendants: set[str] = set()
    frontier = {victim}
    while frontier:
        frontier = {t for t, deps in graph.items() if frontier & set(deps)} - descendants
        descendants |= frontier
    s = Scheduler(rec(task_id, deps=tuple(deps)) for task_id, deps, _ in tasks)
    taken: list[str] = []
    while batch := s.take(T0, 3):
        taken.extend(batch)
        for task_id in batch:
            run_one(s, task_id, "failed" if task_id == victim else "complete")
    blocked = s.pop_blocked()
    assert {b.task_id for b in blocked} == descendants
    assert len(blocked) == len(descendants)
    for b in blocked:
        assert b.blocker == victim or b.blocker in descendants
        assert b.blocker in graph[b.task_id]
    assert set(taken) == set(graph) - descendants
    assert len(taken) == len(set(taken))


def test_age_is_compared_as_an_instant_across_time_zones(tokyo: None) -> None:
    # Written by agent-orchestrator an hour earlier, in naive local (Tokyo) time; as text
    # it sorts after the newer UTC timestamp.
    old = rec("old")
    old["createdAt"] = datetime.fromtimestamp(T0 - 3600).isoformat()  # naive local time
    new = rec("new", created=T0)
    assert old["createdAt"] > new["createdAt"]
    assert Scheduler([new, old]).take(T0, 2) == ["old", "new"]
