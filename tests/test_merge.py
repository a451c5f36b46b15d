"""orchestra_ci.merge: shard reports found at any depth, merged without losing a task."""

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra_ci import merge, report, sharding, summary
from orchestra_ci.merge import MergedReport
from orchestra_ci.record import TaskRecord, new_record
from orchestra_ci.report import AttemptReport, RunReport, TaskReport


def merged_markdown(merged: MergedReport, links: dict[str, str] | None = None) -> str:
    """The merge job's summary, as ``merge_run`` writes it."""
    return summary.markdown(merged, links, [merge.shards_markdown(merged)])


def at(seconds: float) -> str:
    """An ISO timestamp ``seconds`` after 10:00:00."""
    minutes, secs = divmod(seconds, 60)
    return f"2024-05-01T10:{int(minutes):02d}:{secs:06.3f}+00:00"


def task(
    task_id: str,
    status: str = "complete",
    attempts: int = 1,
    start: float = 0.0,
    changed: list[str] | None = None,
    cost: float | None = None,
) -> TaskReport:
    tries = [
        AttemptReport(
            number=n,
            agent="fake",
            started_at=at(start + 10 * (n - 1)),
            ended_at=at(start + 10 * (n - 1) + 5),
            exit_code=0 if status == "complete" and n == attempts else 1,
            outcome="success" if status == "complete" and n == attempts else "failed",
            duration=5.0,
        )
        for n in range(1, attempts + 1)
    ]
    return TaskReport(
        id=task_id,
        source="file",
        agents=["fake"],
        status=status,
        attempts=tries,
        retry_count=max(attempts - 1, 0),
        duration=5.0 * attempts,
        cost_usd=cost,
        changed_files=changed or [],
        log=f".orchestra/logs/{task_id}.log",
    )


def run(
    shard: str | None,
    tasks: list[TaskReport],
    *,
    start: float = 0.0,
    end: float | None = 100.0,
    exit_code: int | None = 0,
    cost: float | None = None,
    stopped_by: str | None = None,
    run_id: str | None = None,
) -> RunReport:
    statuses = [t.status for t in tasks]
    return RunReport(
        run_id=run_id or f"run-{shard}",
        shard=shard,
        started_at=at(start),
        ended_at=at(end) if end is not None else None,
        time_budget=600.0,
        parallel=4,
        stopped_by=stopped_by,
        exit_code=exit_code,
        totals={
            "total": len(tasks),
            **{
                s: statuses.count(s)
                for s in ("pending", "running", "complete", "failed", "cancelled")
            },
        },
        cost_usd=cost,
        tasks=tasks,
    )


def three_shards() -> list[RunReport]:
    return [
        run("1/3", [task("a", cost=0.5), task("b", "failed", 2)], start=5, end=80, cost=0.5),
        run("2/3", [task("c"), task("d", "pending", 0)], start=2, end=120, cost=1.25),
        run("3/3", [task("e", cost=None)], start=9, end=60),
    ]


# -- merge ---------------------------------------------------------------------------------


def test_merge_of_three_shards_is_the_union() -> None:
    shards = three_shards()
    merged = merge.merge(shards, expected_shards=3)
    assert [t.id for t in merged.tasks] == ["a", "b", "c", "d", "e"]
    by_id = {t.id: t for s in shards for t in s.tasks}
    assert all(t == by_id[t.id] for t in merged.tasks)
    assert merged.totals == {
        "total": 5,
        "pending": 1,
        "running": 0,
        "complete": 3,
        "failed": 1,
        "cancelled": 0,
    }
    assert merged.started_at == at(2) and merged.ended_at == at(120)
    assert merged.cost_usd == pytest.approx(1.75)
    assert merged.parallel == 12 and merged.time_budget == 600.0
    assert merged.shard is None and merged.shard_count == 3
    assert [s.shard for s in merged.shards] == ["1/3", "2/3", "3/3"]
    assert [s.tasks for s in merged.shards] == [2, 2, 1]
    assert merged.missing_shards == [] and merged.failed_shards == []
    assert merged.conflicts == [] and merged.problems == []
    assert merged.exit_code == 0
    assert len({merged.run_id, *(s.run_id for s in shards)}) == 4  # its own, stable id
    assert merge.merge(list(reversed(shards)), 3).run_id == merged.run_id


def test_merged_report_reads_back_as_a_run_report() -> None:
    merged = merge.merge(three_shards())
    data = json.loads(merged.model_dump_json())
    assert data["shardCount"] == 3 and data["missingShards"] == [] and "failedShards" in data
    assert data["shards"][0]["runId"] == "run-1/3"
    plain = RunReport.model_validate(data)
    assert plain.tasks == merged.tasks and plain.totals == merged.totals
    assert MergedReport.model_validate(data) == merged


def test_merge_does_not_depend_on_the_order_of_the_reports() -> None:
    shards = [*three_shards(), run("2/3", [task("c", "failed")], run_id="again")]
    expected = merge.merge(shards).model_dump()
    rng = random.Random(3)
    for _ in range(10):
        rng.shuffle(shards)
        assert merge.merge(shards).model_dump() == expected


def test_merge_does_not_change_its_inputs() -> None:
    shards = [
        run("1/2", [task("x", changed=["f.py"])]),
        run("2/2", [task("y", changed=["f.py"])]),
    ]
    before = [s.model_dump() for s in shards]
    merged = merge.merge(shards)
    assert [s.model_dump() for s in shards] == before
    # overlaps are recomputed across shards: no single shard could see this one
    assert {t.id: t.overlaps for t in merged.tasks} == {"x": ["y"], "y": ["x"]}


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        ("complete", "failed", "complete"),
        ("failed", "complete", "complete"),
        ("failed", "cancelled", "failed"),
        ("cancelled", "running", "cancelled"),
        ("running", "pending", "running"),
        ("pending", "complete", "complete"),
        ("weird", "pending", "pending"),
    ],
)
def test_a_task_in_two_shards_keeps_the_most_advanced_state(
    first: str, second: str, kept: str
) -> None:
    merged = merge.merge(
        [run("1/2", [task("dup", first), task("one")]), run("2/2", [task("dup", second)])]
    )
    assert [t.id for t in merged.tasks] == ["dup", "one"]
    assert merged.tasks[0].status == kept
    assert len(merged.conflicts) == 1
    conflict = merged.conflicts[0]
    assert conflict.id == "dup" and conflict.status == kept
    assert conflict.kept == ("1/2" if kept == first else "2/2")
    assert [(e.shard, e.status) for e in conflict.reports] == [("1/2", first), ("2/2", second)]
    assert merged.totals["total"] == 2
    text = merged_markdown(merged)
    assert f"- dup: {first} in 1/2, {second} in 2/2; kept {kept} from {conflict.kept}" in text


def test_equal_states_keep_the_task_with_more_attempts() -> None:
    merged = merge.merge(
        [run("1/2", [task("dup", "failed", 1)]), run("2/2", [task("dup", "failed", 3)])]
    )
    assert len(merged.tasks[0].attempts) == 3
    assert merged.conflicts[0].kept == "2/2"


def test_a_missing_shard_is_named() -> None:
    shards = three_shards()
    merged = merge.merge([shards[0], shards[2]], expected_shards=3)
    assert merged.missing_shards == ["2/3"]
    assert merged.exit_code == 1
    assert [t.id for t in merged.tasks] == ["a", "b", "e"]
    # without expected_shards, N comes from the labels
    assert merge.merge([shards[0], shards[2]]).missing_shards == ["2/3"]
    # the last shards missing
    first_two = [run("1/4", [task("a")]), run("2/4", [task("b")])]
    assert merge.merge(first_two, expected_shards=4).missing_shards == ["3/4", "4/4"]
    assert merge.merge(first_two).missing_shards == ["3/4", "4/4"]  # the labels say "of 4"
    text = merged_markdown(merged)
    assert "⚠️ 1 missing: 2/3" in text
    assert "| 2/3 | ⚠️ missing | - | - | - | no report found" in text


def test_no_report_at_all_names_every_shard() -> None:
    merged = merge.merge([], expected_shards=2)
    assert merged.missing_shards == ["1/2", "2/2"]
    assert merged.tasks == [] and merged.totals["total"] == 0 and merged.exit_code == 1
    assert "| 1/2 | ⚠️ missing" in merged_markdown(merged)


def test_a_failed_shard_is_named() -> None:
    shards = three_shards()
    shards[1] = run("2/3", shards[1].tasks, exit_code=1)
    shards[2] = run("3/3", shards[2].tasks, exit_code=None, end=None)  # never finished
    merged = merge.merge(shards, 3)
    assert merged.failed_shards == ["2/3", "3/3"]
    assert merged.missing_shards == []
    assert merged.exit_code == 1
    assert merged.ended_at == at(100)  # the latest known end
    assert [t.id for t in merged.tasks] == ["a", "b", "c", "d", "e"]  # their tasks stay
    text = merged_markdown(merged)
    assert "❌ 2 failed: 2/3, 3/3" in text
    assert "| 2/3 | ❌ failed | 2 | 1 |" in text
    assert "| 3/3 | ❌ did not finish | 1 | - | - |" in text
    shards[1] = run("2/3", shards[1].tasks, exit_code=143, stopped_by="signal")
    merged = merge.merge(shards, 3)
    assert merged.exit_code == 143 and merged.stopped_by == "signal"
    assert "❌ failed (stopped by signal)" in merged_markdown(merged)


def test_odd_labels_are_problems_but_their_tasks_are_kept() -> None:
    merged = merge.merge(
        [
            run("1/3", [task("a")]),
            run("1/3", [task("b")], run_id="twin"),
            run("2/4", [task("c")]),
            run("nonsense", [task("d")]),
            run(None, [task("e")], run_id="unlabelled"),
        ],
        expected_shards=3,
    )
    assert [t.id for t in merged.tasks] == ["a", "b", "c", "d", "e"]
    assert merged.missing_shards == ["2/3", "3/3"]
    assert "shard 1/3 reported 2 times" in merged.problems
    assert "report run-2/4 is shard 2/4, but 3 were expected" in merged.problems
    assert "report run-nonsense: invalid shard label 'nonsense'" in merged.problems
    assert "report unlabelled does not say which shard it is" in merged.problems
    text = merged_markdown(merged)
    for problem in merged.problems:
        assert f"- {problem}" in text


def test_reports_disagreeing_on_the_shard_count() -> None:
    merged = merge.merge([run("1/2", [task("a")]), run("2/3", [task("b")])])
    assert merged.shard_count == 3
    assert merged.missing_shards == ["1/3", "3/3"]
    assert "the reports disagree on the number of shards: 2, 3" in merged.problems


def test_a_plain_unsharded_report_merges_without_problems() -> None:
    merged = merge.merge([run(None, [task("a")], run_id="solo")])
    assert merged.run_id == "solo" and merged.shard_count is None
    assert merged.missing_shards == [] and merged.problems == [] and merged.exit_code == 0
    assert "**1 report**" in merged_markdown(merged)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        merge.merge([], expected_shards=0)
    with pytest.raises(ValueError, match="one source per report"):
        merge.merge(three_shards(), sources=["x"])


@settings(max_examples=100, deadline=None)
@given(
    placements=st.lists(
        st.tuples(
            st.sampled_from([f"t{i}" for i in range(12)]),
            st.integers(min_value=1, max_value=4),
            st.sampled_from(["pending", "running", "complete", "failed", "cancelled"]),
        ),
        max_size=30,
    )
)
def test_no_task_is_ever_dropped(placements: list[tuple[str, int, str]]) -> None:
    per_shard: dict[int, dict[str, TaskReport]] = {i: {} for i in range(1, 5)}
    for task_id, shard, status in placements:
        per_shard[shard][task_id] = task(task_id, status)
    reports = [run(f"{i}/4", list(tasks.values())) for i, tasks in per_shard.items()]
    merged = merge.merge(reports)
    everywhere: dict[str, list[str]] = {}
    for r in reports:
        for t in r.tasks:
            everywhere.setdefault(t.id, []).append(t.status)
    assert [t.id for t in merged.tasks] == sorted(everywhere)
    assert merged.totals["total"] == len(everywhere)
    assert sorted(c.id for c in merged.conflicts) == sorted(
        i for i, seen in everywhere.items() if len(seen) > 1
    )
    for t in merged.tasks:
        assert merge.STATE_RANK[t.status] == max(merge.STATE_RANK[s] for s in everywhere[t.id])


# -- finding reports -----------------------------------------------------------------------


def put(path: Path, report_: RunReport | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(report_, str):
        path.write_text(report_)
    else:
        report.write(path, report_)
    return path


def test_reports_are_found_at_any_depth(tmp_path: Path) -> None:
    shards = three_shards()
    artifact = put(tmp_path / "artifact" / "results.json", shards[0])  # an extracted artifact
    root = put(tmp_path / "shard-root" / ".orchestra" / "results.json", shards[1])
    deep = put(tmp_path / "downloads" / "orchestra-2" / "a" / "b" / "results.json", shards[2])
    found = merge.find_reports(
        [tmp_path / "artifact", tmp_path / "shard-root", tmp_path / "downloads"]
    )
    assert found.reports == [artifact, root, deep] and found.missing == []
    # one DIR holding everything
    assert merge.find_reports([tmp_path]).reports == sorted([artifact, root, deep])
    # a results.json given as itself, and a file reached twice is listed once
    found = merge.find_reports([root, tmp_path / "shard-root", tmp_path])
    assert found.reports == [root, *sorted([artifact, deep])]


def test_a_dir_without_any_report_is_reported(tmp_path: Path) -> None:
    put(tmp_path / "good" / "results.json", three_shards()[0])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "results.txt").write_text("{}")
    found = merge.find_reports([tmp_path / "good", tmp_path / "empty", tmp_path / "nowhere"])
    assert len(found.reports) == 1
    assert found.missing == [tmp_path / "empty", tmp_path / "nowhere"]


def test_git_worktrees_and_symlinks_are_not_searched(tmp_path: Path) -> None:
    shard = three_shards()[0]
    real = put(tmp_path / "root" / ".orchestra" / "results.json", shard)
    put(tmp_path / "root" / ".orchestra" / "worktrees" / "t1" / "results.json", shard)
    put(tmp_path / "root" / ".git" / "results.json", shard)
    (tmp_path / "outside").mkdir()
    put(tmp_path / "outside" / "x" / "results.json", shard)
    os.symlink(tmp_path / "outside", tmp_path / "root" / "link")
    os.symlink(real, tmp_path / "root" / "results.json")
    assert merge.find_reports([tmp_path / "root"]).reports == [real]


def test_merge_dirs_names_missing_dirs_and_unreadable_reports(tmp_path: Path) -> None:
    shards = three_shards()
    put(tmp_path / "s1" / ".orchestra" / "results.json", shards[0])
    put(tmp_path / "s2" / "results.json", "{not json")
    put(tmp_path / "s2" / "fixtures" / "results.json", '{"something": "else"}')
    newer = shards[1].model_copy(update={"schema_version": 99})
    put(tmp_path / "s2" / "later" / "results.json", newer)
    (tmp_path / "s3").mkdir()
    merged = merge.merge_dirs([tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"], 3)
    assert [t.id for t in merged.tasks] == ["a", "b"]
    assert merged.missing_dirs == [str(tmp_path / "s3")]
    assert [Path(u.path).relative_to(tmp_path).as_posix() for u in merged.unreadable] == [
        "s2/fixtures/results.json",
        "s2/later/results.json",
        "s2/results.json",
    ]
    errors = [u.error for u in merged.unreadable]
    assert errors[0].startswith("not a results.json report: runId: Field required")
    assert "schema version 99 is newer" in errors[1]
    assert errors[2].startswith("not a results.json report:")
    assert merged.missing_shards == ["2/3", "3/3"]
    assert merged.shards[0].source == str(tmp_path / "s1" / ".orchestra" / "results.json")
    text = merged_markdown(merged)
    assert f"- no results.json under {tmp_path / 's3'}" in text
    assert f"- {tmp_path / 's2' / 'results.json'}: not a results.json report" in text


# -- the summary ---------------------------------------------------------------------------


def test_markdown_puts_the_shards_before_the_task_table() -> None:
    shards = three_shards()
    merged = merge.merge([shards[0], shards[2]], 3)
    text = merged_markdown(merged, {"run": "https://example.com/run/1"})
    assert text.startswith("## orchestra-ci\n")
    assert text.index("### Shards") < text.index("| task | status |")
    assert "**3 shards** · 2 reported · ⚠️ 1 missing: 2/3" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "/3 |" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| 1/3", "| 2/3", "| 3/3"]
    assert rows[0] == "| 1/3 | ✅ ok | 2 | 0 | 1m15s | run-1/3 |"
    assert "### Timeline" in text and "- [run](https://example.com/run/1)" in text
    assert "| b | ❌ failed |" in text  # the task table of summary.markdown is there


def test_markdown_escapes_what_it_shows() -> None:
    merged = merge.merge(
        [run("1/1", [task("a")])], sources=["dir|with|pipes/results.json"], expected_shards=1
    )
    assert "dir\\|with\\|pipes/results.json" in merge.shards_markdown(merged)


def test_markdown_caps_the_list_of_conflicts() -> None:
    tasks = [task(f"t{i:03d}") for i in range(80)]
    merged = merge.merge([run("1/2", tasks), run("2/2", tasks)])
    text = merged_markdown(merged)
    assert len(merged.conflicts) == 80
    assert "- _30 more are in results.json._" in text


# -- three shards end to end -----------------------------------------------------------------


def record(task_id: str, shard: int, depends_on: list[str]) -> TaskRecord:
    r = new_record(task_id, "fake", f"do {task_id}", source="file", depends_on=depends_on)
    r["status"] = "complete"
    r["attempts"] = [
        {
            "number": 1,
            "agent": "fake",
            "startedAt": at(shard),
            "endedAt": at(shard + 1),
            "exitCode": 0,
            "outcome": "success",
        }
    ]
    return r


def test_three_shards_planned_run_and_merged(tmp_path: Path) -> None:
    """Plan 3 shards, "run" each in its own directory, then merge what they left."""
    specs = [sharding.ShardTask(f"task-{i:02d}", (), 0) for i in range(20)]
    specs += [sharding.ShardTask("docs", ("task-03",), 0)]
    plan = sharding.assign(specs, 3)
    strategy = sharding.matrix(plan, 3)
    dirs = []
    for entry in strategy["include"]:
        index, count = sharding.parse_shard(entry["shard"])
        mine = sharding.tasks_in(plan, index)
        assert len(mine) == entry["tasks"]
        deps = {s.id: list(s.depends_on) for s in specs}
        built = report.build(
            [record(t, index, deps[t]) for t in mine],
            run_id=f"gh-{index}",
            started_at=at(index),
            ended_at=at(index + 30),
            time_budget=None,
            parallel=4,
            exit_code=0,
        )
        built.shard = entry["shard"]
        where = tmp_path / f"orchestra-shard-{index}-of-{count}"
        (where / ".orchestra").mkdir(parents=True)
        report.write(where / ".orchestra" / "results.json", built)
        dirs.append(where)

    merged = merge.merge_dirs(dirs)
    assert [t.id for t in merged.tasks] == sorted(s.id for s in specs)
    assert merged.conflicts == [] and merged.missing_shards == [] and merged.exit_code == 0
    ran_in = [s.tasks for s in merged.shards]
    assert sum(ran_in) == len(specs) and max(ran_in) - min(ran_in) <= 2

    # the artifacts of shard 2 never arrived
    lost = set(sharding.tasks_in(plan, 2))
    for path in (dirs[1] / ".orchestra").iterdir():
        path.unlink()
    merged = merge.merge_dirs(dirs, expected_shards=3)
    assert merged.missing_shards == ["2/3"]
    assert merged.missing_dirs == [str(dirs[1])]
    assert {t.id for t in merged.tasks} == {s.id for s in specs} - lost
    text = merged_markdown(merged)
    assert "⚠️ 1 missing: 2/3" in text and f"no results.json under {dirs[1]}" in text


def test_an_agent_out_of_quota_in_any_shard_is_named_once_with_its_latest_reset() -> None:
    first, second, third = three_shards()
    soon = {
        "agent": "codex",
        "resetsAt": at(200),
        "paused": True,
        "error": "quota exhausted until A",
    }
    later = {
        "agent": "codex",
        "resetsAt": at(900),
        "paused": False,
        "error": "quota exhausted until B",
    }
    unknown = {"agent": "claude", "resetsAt": None, "paused": False, "error": "quota exhausted"}
    shards = [
        first.model_copy(update={"quota": [soon]}),
        second.model_copy(update={"quota": [later, unknown]}),
        third,
    ]
    merged = merge.merge(shards, expected_shards=3)
    assert merged.quota == [unknown, later]
    assert merge.merge(list(reversed(shards)), 3).quota == [unknown, later]
