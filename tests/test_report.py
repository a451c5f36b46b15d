"""orchestra_ci.report: results.json built from task records."""

import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci import report
from orchestra_ci.record import Attempt, Outcome, TaskRecord, new_record
from orchestra_ci.store import Store

T0 = "2024-05-01T10:00:00.000+00:00"


def at(seconds: float) -> str:
    """An ISO timestamp ``seconds`` after T0."""
    whole, frac = divmod(seconds, 1)
    minutes, secs = divmod(int(whole), 60)
    return f"2024-05-01T10:{minutes:02d}:{secs:02d}.{round(frac * 1000):03d}+00:00"


def attempt(
    number: int,
    agent: str,
    start: float,
    end: float | None,
    exit_code: int | None = None,
    outcome: Outcome | None = None,
    error: str | None = None,
) -> Attempt:
    a: Attempt = {"number": number, "agent": agent, "startedAt": at(start)}
    if end is not None:
        a["endedAt"] = at(end)
        a["exitCode"] = exit_code
    if outcome is not None:
        a["outcome"] = outcome
    if error is not None:
        a["error"] = error
    return a


def make(
    task_id: str, status: str, attempts: list[Attempt], agent: str = "claude", **extra: Any
) -> TaskRecord:
    record = new_record(task_id, agent, f"do {task_id}", source=extra.pop("source", "cli"))
    record["status"] = status  # type: ignore[typeddict-item]
    record["attempts"] = attempts
    record["retryCount"] = max(len(attempts) - 1, 0)
    record.update(extra)  # type: ignore[typeddict-item]
    return record


@pytest.fixture
def records() -> list[TaskRecord]:
    return [
        make(
            "alpha",
            "complete",
            [
                attempt(1, "claude", 0, 1.5, 1, "failed", "agent exited with code 1"),
                attempt(2, "codex", 10, 12, None, "timeout", "timed out after 2s"),
                attempt(3, "claude", 20, 20.25, 0, "success"),
            ],
            source="file",
            changedFiles=["src/a.py"],
            patch=".orchestra/patches/alpha.patch",
        ),
        make(
            "beta",
            "failed",
            [attempt(1, "codex", 0, 3, 2, "failed", "agent exited with code 2")],
            agent="codex",
            source="issue",
            issueNumber=42,
            errorMessage="agent exited with code 2",
            prUrl=None,
        ),
        make("gamma", "pending", [], agent="aider"),
        make("delta", "running", [attempt(1, "claude", 5, None)]),
        make(
            "eps",
            "failed",
            [],
            blockedBy="beta",
            errorMessage="dependency 'beta' failed",
        ),
        make("zeta", "cancelled", [attempt(1, "gemini", 0, 0.5, -15, "cancelled")]),
        make("eta", "complete", [attempt(1, "claude", 0, 60, 0, "success")], retryCount=0),
    ]


def build(records: list[TaskRecord], **kwargs: Any) -> report.RunReport:
    args: dict[str, Any] = {
        "run_id": "run-1",
        "started_at": T0,
        "ended_at": at(100),
        "time_budget": 3600.0,
        "parallel": 4,
    }
    args.update(kwargs)
    return report.build(records, **args)


def by_id(built: report.RunReport) -> dict[str, report.TaskReport]:
    return {t.id: t for t in built.tasks}


def test_totals_per_status(records: list[TaskRecord]) -> None:
    built = build(records)
    assert built.totals == {
        "total": 7,
        "pending": 1,
        "running": 1,
        "complete": 2,
        "failed": 2,
        "cancelled": 1,
    }


def test_totals_of_an_empty_run_are_zero() -> None:
    built = build([])
    assert built.tasks == []
    assert built.totals == dict.fromkeys(
        ("total", "pending", "running", "complete", "failed", "cancelled"), 0
    )


def test_run_fields(records: list[TaskRecord]) -> None:
    built = build(records, stopped_by="budget", exit_code=1)
    assert built.run_id == "run-1"
    assert built.started_at == T0
    assert built.ended_at == at(100)
    assert built.time_budget == 3600.0
    assert built.parallel == 4
    assert built.stopped_by == "budget"
    assert built.exit_code == 1


def test_tasks_are_listed_by_id(records: list[TaskRecord]) -> None:
    assert [t.id for t in build(records).tasks] == sorted(r["taskId"] for r in records)


def test_agents_used_in_order_without_duplicates(records: list[TaskRecord]) -> None:
    tasks = by_id(build(records))
    assert tasks["alpha"].agents == ["claude", "codex"]
    assert tasks["beta"].agents == ["codex"]
    assert tasks["zeta"].agents == ["gemini"]
    assert tasks["gamma"].agents == ["aider"]  # never attempted: the configured agent


def test_attempts_with_durations(records: list[TaskRecord]) -> None:
    alpha = by_id(build(records))["alpha"]
    assert [a.number for a in alpha.attempts] == [1, 2, 3]
    assert [a.agent for a in alpha.attempts] == ["claude", "codex", "claude"]
    assert [a.duration for a in alpha.attempts] == [1.5, 2.0, 0.25]
    assert [a.exit_code for a in alpha.attempts] == [1, None, 0]
    assert [a.outcome for a in alpha.attempts] == ["failed", "timeout", "success"]
    assert alpha.attempts[0].error == "agent exited with code 1"
    assert alpha.attempts[0].started_at == at(0)
    assert alpha.attempts[0].ended_at == at(1.5)


def test_task_duration_is_the_sum_of_attempt_durations(records: list[TaskRecord]) -> None:
    tasks = by_id(build(records))
    assert tasks["alpha"].duration == pytest.approx(3.75)  # not the 20.25 s wall span
    assert tasks["beta"].duration == pytest.approx(3.0)
    assert tasks["eta"].duration == pytest.approx(60.0)
    assert tasks["gamma"].duration == 0
    assert tasks["gamma"].attempts == []


def test_unfinished_attempt_has_no_duration(records: list[TaskRecord]) -> None:
    delta = by_id(build(records))["delta"]
    assert delta.attempts[0].ended_at is None
    assert delta.attempts[0].duration is None
    assert delta.attempts[0].exit_code is None
    assert delta.duration == 0


def test_source_issue_number_retry_count_and_outcome_fields(records: list[TaskRecord]) -> None:
    tasks = by_id(build(records))
    assert tasks["alpha"].source == "file"
    assert tasks["alpha"].issue_number is None
    assert tasks["alpha"].retry_count == 2
    assert tasks["alpha"].changed_files == ["src/a.py"]
    assert tasks["alpha"].patch == ".orchestra/patches/alpha.patch"
    assert tasks["beta"].source == "issue"
    assert tasks["beta"].issue_number == 42
    assert tasks["beta"].retry_count == 0
    assert tasks["beta"].error == "agent exited with code 2"
    assert tasks["eps"].blocked_by == "beta"
    assert tasks["eps"].error == "dependency 'beta' failed"
    assert tasks["gamma"].source == "cli"
    assert tasks["gamma"].log == ".orchestra/logs/gamma.log"
    assert {t.status for t in tasks.values()} == {
        "complete",
        "failed",
        "pending",
        "running",
        "cancelled",
    }


def test_foreign_record_without_our_fields(records: list[TaskRecord]) -> None:
    """A record written by agent-orchestrator: naive local times, no attempts or source."""
    foreign: dict[str, Any] = {
        "taskId": "legacy",
        "status": "complete",
        "agent": "claude",
        "prompt": "p",
        "createdAt": "2024-05-01T10:00:00",
        "retryCount": None,
    }
    legacy = by_id(build([foreign]))["legacy"]  # type: ignore[list-item]
    assert legacy.agents == ["claude"]
    assert legacy.source == "cli"
    assert legacy.retry_count == 0
    assert legacy.attempts == []
    assert legacy.duration == 0


def test_naive_timestamps_give_durations() -> None:
    record = make("n", "complete", [])
    record["attempts"] = [
        {
            "number": 1,
            "agent": "claude",
            "startedAt": "2024-05-01T10:00:00",
            "endedAt": "2024-05-01T10:00:04.5",
            "exitCode": 0,
        }
    ]
    task = build([record]).tasks[0]
    assert task.attempts[0].duration == pytest.approx(4.5)
    assert task.duration == pytest.approx(4.5)


def snake_keys(value: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "_" in key:
                found.append(f"{path}.{key}")
            found += snake_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += snake_keys(item, f"{path}[{i}]")
    return found


def test_written_json_uses_camel_case_keys(tmp_path: Path, records: list[TaskRecord]) -> None:
    path = tmp_path / "results.json"
    report.write(path, build(records, stopped_by="budget", exit_code=1))
    data = json.loads(path.read_text())

    assert snake_keys(data) == []
    assert data["runId"] == "run-1"
    assert data["startedAt"] == T0
    assert data["endedAt"] == at(100)
    assert data["timeBudget"] == 3600.0
    assert data["stoppedBy"] == "budget"
    assert data["exitCode"] == 1
    assert data["schemaVersion"] == report.SCHEMA_VERSION
    assert data["parallel"] == 4
    assert data["totals"]["complete"] == 2

    tasks = {t["id"]: t for t in data["tasks"]}
    alpha, beta, eps = tasks["alpha"], tasks["beta"], tasks["eps"]
    assert alpha["retryCount"] == 2
    assert alpha["agents"] == ["claude", "codex"]
    assert alpha["changedFiles"] == ["src/a.py"]
    assert alpha["duration"] == pytest.approx(3.75)
    assert [a["exitCode"] for a in alpha["attempts"]] == [1, None, 0]
    assert alpha["attempts"][0]["startedAt"] == at(0)
    assert alpha["attempts"][0]["endedAt"] == at(1.5)
    assert beta["issueNumber"] == 42
    assert beta["source"] == "issue"
    assert "prUrl" in beta
    assert eps["blockedBy"] == "beta"
    assert os.listdir(tmp_path) == ["results.json"]


def test_written_report_loads_back(tmp_path: Path, records: list[TaskRecord]) -> None:
    built = build(records)
    path = tmp_path / "results.json"
    report.write(path, built)
    assert report.RunReport.model_validate_json(path.read_text()) == built
    report.write(path, build(records[:1]))  # rewritten in place
    assert [t["id"] for t in json.loads(path.read_text())["tasks"]] == ["alpha"]


def test_build_from_records_in_the_store(store: Store, records: list[TaskRecord]) -> None:
    for record in records:
        assert store.create(record)
    built = build(store.all())
    assert built.totals["total"] == len(records)
    assert by_id(built)["alpha"].duration == pytest.approx(3.75)


# -- overlaps -------------------------------------------------------------------------------


def test_overlaps() -> None:
    assert report.overlaps({}) == {}
    assert report.overlaps({"a": ["x", "y"], "b": ["y"], "c": ["z"], "d": ["x", "z"], "e": []}) == {
        "a": ["b", "d"],
        "b": ["a"],
        "c": ["d"],
        "d": ["a", "c"],
        "e": [],
    }
    assert report.overlaps({"solo": ["x", "x"]}) == {"solo": []}
