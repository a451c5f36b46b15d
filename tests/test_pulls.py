"""Which branch a task's pull request targets (pure)."""

from orchestra_ci.pulls import pull_request_body, stacked_base
from orchestra_ci.record import TaskRecord, new_record


def _task(task_id: str, *deps: str, patch: bool = True) -> TaskRecord:
    record = new_record(task_id, "fake", f"do {task_id}", depends_on=list(deps))
    record.update(status="complete", branch=f"orchestra/{task_id}")
    record["patch"] = f".orchestra/patches/{task_id}.patch" if patch else None
    return record


def test_one_dependency_stacks_several_do_not() -> None:
    tasks = {
        r["taskId"]: r
        for r in (
            _task("lint"),
            _task("noop", "lint", patch=False),
            _task("changelog", "noop"),
            _task("docs"),
            _task("release", "changelog", "docs"),
            _task("orphan", "missing"),
        )
    }
    assert stacked_base(tasks["lint"], tasks, "main") == "main"
    # past a dependency that changed nothing (it gets no PR) to the nearest that did
    assert stacked_base(tasks["changelog"], tasks, "main") == "orchestra/lint"
    assert stacked_base(tasks["release"], tasks, "main") == "main"
    assert stacked_base(tasks["orphan"], tasks, "main") == "main"
    assert "Builds on the results of `changelog`, `docs`" in pull_request_body(tasks["release"])
