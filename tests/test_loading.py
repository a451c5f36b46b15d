"""orchestra_ci.loading: what loading the sources does to tasks already in the queue (as
when a run carries on from the previous run's state)."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci.loading import change_for, enqueue
from orchestra_ci.record import Status, TaskRecord, iso, new_record
from orchestra_ci.settings import Settings
from orchestra_ci.sources import agents_for
from orchestra_ci.store import Store
from orchestra_ci.task_spec import TaskSpec

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FILE = ".orchestra/tasks.yml"


def spec(task_id: str, prompt: str = "exit=0", **fields: Any) -> TaskSpec:
    values: dict[str, Any] = {
        "id": task_id,
        "agent": "fake",
        "prompt": prompt,
        "timeout": None,
        "max_retries": 3,
        "backoff": None,
        "backoff_max": None,
        "depends_on": [],
        "priority": 0,
        "source_file": FILE,
        **fields,
    }
    return TaskSpec(**values)


def issue_spec(number: int, labeled_at: str | None) -> TaskSpec:
    return spec(
        f"issue-{number}",
        "fix it",
        source="issue",
        source_file=None,
        issue_number=number,
        labeled_at=labeled_at,
    )


def queued(store: Store, s: TaskSpec, status: Status, completed: str | None = None) -> None:
    """``s`` in the queue as an earlier run left it."""
    enqueue(store, [s], agents(store))

    def finish(r: TaskRecord) -> None:
        r["status"] = status
        r["completedAt"] = completed
        r["retryCount"] = 2 if status == "failed" else 0
        r["attempts"] = [{"number": 1, "agent": "fake", "startedAt": "2026-05-01T00:00:00Z"}]

    store.update(s.id, finish)
    if status == "failed":
        store.sentinel(s.id, "error").write_text("boom")


def agents(store: Store) -> Any:
    return agents_for(store.root, Settings())


def test_change_for_is_pure_and_names_each_case() -> None:
    record = new_record("a", "fake", "exit=0")
    record.update({"maxRetries": 3, "sourceFile": FILE})
    assert change_for(None, spec("a")) is not None
    assert change_for(None, spec("a")).kind == "add"  # type: ignore[union-attr]
    pending = {**record, "status": "pending"}
    assert change_for(pending, spec("a")) is None  # type: ignore[arg-type]
    update = change_for(pending, spec("a", "exit=1"))  # type: ignore[arg-type]
    assert update is not None and update.kind == "update" and update.fields["prompt"] == "exit=1"
    complete = {**record, "status": "complete", "completedAt": "2026-05-01T00:00:00Z"}
    assert change_for(complete, spec("a", "exit=1")) is None  # type: ignore[arg-type]
    failed = {**record, "status": "failed", "completedAt": "2026-05-01T00:00:00Z"}
    assert change_for(failed, spec("a")) is None  # type: ignore[arg-type]
    requeue = change_for(failed, spec("a", "exit=1"))  # type: ignore[arg-type]
    assert requeue is not None and requeue.kind == "requeue"
    assert requeue.reason == "its definition changed"


def test_a_complete_task_stays_complete(store: Store) -> None:
    queued(store, spec("a"), "complete", "2026-05-01T00:00:00Z")
    result = enqueue(store, [spec("a", "exit=1")], agents(store), now=NOW)
    assert store.get("a")["status"] == "complete" and result.unchanged == 1


def test_a_failed_task_stays_failed_unless_its_definition_changed(store: Store) -> None:
    queued(store, spec("a"), "failed", "2026-05-01T00:00:00Z")
    assert enqueue(store, [spec("a")], agents(store), now=NOW).requeued == []
    assert store.get("a")["status"] == "failed"
    result = enqueue(store, [spec("a", "exit=0 # fixed")], agents(store), now=NOW)
    record = store.get("a")
    assert result.requeued == ["a"]
    assert record["status"] == "pending" and record["retryCount"] == 0
    assert record["prompt"] == "exit=0 # fixed"
    assert len(record["attempts"]) == 1  # the history is kept
    assert record["history"] == [
        {"at": iso(NOW), "event": "requeued", "reason": "its definition changed"}
    ]
    assert not store.sentinel("a", "error").exists()


def test_an_issue_labelled_again_after_it_finished_runs_again(store: Store) -> None:
    queued(store, issue_spec(5, "2026-04-30T00:00:00+00:00"), "complete", "2026-05-01T00:00:00Z")
    # Still carrying the label from before it finished (labels not moved): not run again.
    enqueue(store, [issue_spec(5, "2026-04-30T00:00:00+00:00")], agents(store), now=NOW)
    assert store.get("issue-5")["status"] == "complete"
    result = enqueue(store, [issue_spec(5, "2026-05-02T09:00:00+09:00")], agents(store), now=NOW)
    record = store.get("issue-5")
    assert result.requeued == ["issue-5"] and record["status"] == "pending"
    assert record["history"][-1]["reason"] == "issue #5 was labelled again"
    assert len(record["attempts"]) == 1


def test_the_label_instant_is_compared_not_its_text(store: Store) -> None:
    # 08:00+09:00 is 23:00 UTC the day before: earlier than the finish, though the text
    # sorts later.
    queued(store, issue_spec(6, None), "complete", "2026-05-01T00:00:00+00:00")
    enqueue(store, [issue_spec(6, "2026-05-01T08:00:00+09:00")], agents(store), now=NOW)
    assert store.get("issue-6")["status"] == "complete"


def test_a_pending_task_its_file_dropped_is_retired_not_run(store: Store) -> None:
    enqueue(store, [spec("keep"), spec("gone")], agents(store))
    other = spec("elsewhere", source_file=".orchestra/other.yml")
    enqueue(store, [other], agents(store))
    result = enqueue(
        store, [spec("keep")], agents(store), complete_sources={FILE: {"keep"}}, now=NOW
    )
    assert result.retired == ["gone"]
    gone = store.get("gone")
    assert gone["status"] == "cancelled"
    assert gone["errorMessage"] == f"no longer in {FILE}"
    assert gone["history"][-1]["event"] == "retired"
    assert store.get("keep")["status"] == "pending"
    assert store.get("elsewhere")["status"] == "pending"  # another file: not ours to judge


def test_another_shards_tasks_are_not_retired(store: Store) -> None:
    enqueue(store, [spec("mine"), spec("theirs")], agents(store))
    # This shard loads only "mine", but the file still has both.
    result = enqueue(
        store, [spec("mine")], agents(store), complete_sources={FILE: {"mine", "theirs"}}
    )
    assert result.retired == []
    assert store.get("theirs")["status"] == "pending"


@pytest.mark.parametrize("status", ["complete", "failed"])
def test_finished_tasks_are_never_retired(store: Store, status: Status) -> None:
    queued(store, spec("old"), status, "2026-05-01T00:00:00Z")
    result = enqueue(store, [], agents(store), complete_sources={FILE: set()})
    assert result.retired == [] and store.get("old")["status"] == status


def test_load_prints_what_changed(root: Path, cli: Any) -> None:
    tasks = root / ".orchestra" / "tasks.yml"
    tasks.write_text("tasks:\n  - id: a\n    prompt: exit=0\n  - id: b\n    prompt: exit=0\n")
    assert cli("load", "--tasks-file", str(tasks)).stdout.strip() == (
        "added 2, updated 0, unchanged 0"
    )
    tasks.write_text("tasks:\n  - id: a\n    prompt: exit=0\n")
    out = cli("load", "--tasks-file", str(tasks)).stdout.strip()
    assert out == "added 0, updated 0, unchanged 1, retired 1 (no longer in their source)"


def test_tasks_loaded_together_keep_their_file_order(store: Store) -> None:
    from orchestra_ci.record import sort_key

    ids = ["w2", "w10", "w1", "a"]
    enqueue(store, [spec(i) for i in ids], agents(store))
    assert [r["taskId"] for r in sorted(store.all(), key=sort_key)] == ids


def test_a_requeued_task_takes_the_tasks_built_on_it_along(store: Store) -> None:
    queued(store, spec("a"), "failed", "2026-05-01T00:00:00Z")
    queued(store, spec("b", depends_on=["a"]), "complete", "2026-05-01T00:00:00Z")
    result = enqueue(
        store, [spec("a", "exit=0 # fixed"), spec("b", depends_on=["a"])], agents(store), now=NOW
    )
    assert sorted(result.requeued) == ["a", "b"]
    b = store.get("b")
    assert b["status"] == "pending"
    assert b["history"] == [
        {"at": iso(NOW), "event": "requeued", "reason": "its dependency 'a' runs again"}
    ]


def test_a_load_of_many_tasks_is_flushed_once_for_all(store: Store) -> None:
    """Group commit: their data, then the directory, not two fsyncs per task."""
    store.ensure()
    flushes = store.flushes
    enqueue(store, [spec(f"t{i}") for i in range(50)], agents(store))
    assert store.flushes - flushes == 2
    enqueue(store, [spec(f"t{i}", "exit=1") for i in range(50)], agents(store))
    assert store.flushes - flushes == 4
    assert {r["prompt"] for r in store.all()} == {"exit=1"}
