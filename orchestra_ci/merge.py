"""One report from the shards' ``results.json`` files (``orchestra-ci merge DIR...``).

Nothing is dropped silently: every task of every report is in the merged report; a task
reported by several shards keeps its most advanced state and is listed as a conflict; a
shard that did not report, a shard that failed, a DIR without any report and a report that
cannot be read are all named in the merged report and in its summary.
"""

import hashlib
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field, ValidationError

from orchestra_ci import summary
from orchestra_ci.durations import format_duration
from orchestra_ci.record import STATUSES, now_iso, timestamp
from orchestra_ci.report import SCHEMA_VERSION, ReportModel, RunReport, TaskReport, overlaps
from orchestra_ci.sharding import parse_shard, shard_label
from orchestra_ci.store import RESULTS_FILE

#: Higher is more advanced: the state kept when shards disagree about a task.
STATE_RANK = {"complete": 4, "failed": 3, "cancelled": 2, "running": 1, "pending": 0}
_CONFLICTS_SHOWN = 50


class ShardReport(ReportModel):
    """One report that went into the merge."""

    shard: str | None = None
    source: str | None = None
    run_id: str = Field(alias="runId")
    started_at: str = Field(alias="startedAt")
    ended_at: str | None = Field(default=None, alias="endedAt")
    exit_code: int | None = Field(default=None, alias="exitCode")
    stopped_by: str | None = Field(default=None, alias="stoppedBy")
    tasks: int
    failed: bool


class ConflictEntry(ReportModel):
    shard: str
    status: str


class Conflict(ReportModel):
    """A task reported by more than one shard."""

    id: str
    kept: str
    status: str
    reports: list[ConflictEntry]


class Unreadable(ReportModel):
    path: str
    error: str


class MergedReport(RunReport):
    """A :class:`RunReport` (anything that reads ``results.json`` reads it) plus the shards.

    ``shardCount`` is the number of shards expected (given, or read from the reports'
    ``K/N`` labels); ``missingShards`` and ``failedShards`` are labels (or, for a report
    without a label, its path or run id); ``problems`` are one-line notes on anything odd
    (a label that does not fit, a shard reported twice, ...).
    """

    shard_count: int | None = Field(default=None, alias="shardCount")
    shards: list[ShardReport] = Field(default_factory=list)
    missing_shards: list[str] = Field(default_factory=list, alias="missingShards")
    failed_shards: list[str] = Field(default_factory=list, alias="failedShards")
    conflicts: list[Conflict] = Field(default_factory=list)
    missing_dirs: list[str] = Field(default_factory=list, alias="missingDirs")
    unreadable: list[Unreadable] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)


# -- finding and reading the reports -----------------------------------------------------


class FoundReports(NamedTuple):
    reports: list[Path]
    """Every ``results.json`` found, in the order of the DIRs, then sorted by path."""
    missing: list[Path]
    """The DIRs under which none was found (or that do not exist)."""


def _skip(parent: str, name: str) -> bool:
    """Directories never searched: git's own, and the task worktrees (repo checkouts)."""
    return name == ".git" or (name == "worktrees" and os.path.basename(parent) == ".orchestra")


def find_reports(dirs: Sequence[Path]) -> FoundReports:
    """Every ``results.json`` at any depth under each DIR.

    A DIR may be an extracted artifact (``results.json`` at its top), a shard's root
    (``.orchestra/results.json``), a directory holding many of those (what
    ``actions/download-artifact`` writes), or a ``results.json`` file itself. Symbolic
    links are not followed; ``.git`` and ``.orchestra/worktrees`` are not searched. A file
    reached through two DIRs is listed once.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    missing: list[Path] = []
    for top in dirs:
        here: list[Path] = []
        if top.is_file() and not top.is_symlink():
            here.append(top)
        elif top.is_dir():
            for parent, dirnames, filenames in os.walk(top, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not _skip(parent, d))
                path = Path(parent, RESULTS_FILE)
                if RESULTS_FILE in filenames and path.is_file() and not path.is_symlink():
                    here.append(path)
        new = [p for p in sorted(here) if p.resolve() not in seen]
        seen.update(p.resolve() for p in new)
        found.extend(new)
        if not here:
            missing.append(top)
    return FoundReports(found, missing)


def read_report(path: Path) -> RunReport:
    """Load one ``results.json``; ValueError with a one-line reason when it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    try:
        report = RunReport.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "report"
        raise ValueError(f"not a results.json report: {where}: {first['msg']}") from None
    if report.schema_version > SCHEMA_VERSION:
        raise ValueError(
            f"schema version {report.schema_version} is newer than this orchestra-ci reads "
            f"({SCHEMA_VERSION})"
        )
    return report


# -- merging ------------------------------------------------------------------------------


def _rank(status: str) -> int:
    return STATE_RANK.get(status, -1)


def _parsed(label: str | None) -> tuple[int, int] | None:
    try:
        return parse_shard(label) if label is not None else None
    except ValueError:
        return None


def _label(report: RunReport) -> tuple[int, int] | None:
    return _parsed(report.shard)


def _last_end(task: TaskReport) -> float:
    ends = [timestamp(a.ended_at) or timestamp(a.started_at) for a in task.attempts]
    known = [e for e in ends if e is not None]
    return max(known) if known else -math.inf


def _merged_run_id(reports: Sequence[RunReport]) -> str:
    ids = sorted({r.run_id for r in reports})
    if len(ids) == 1:
        return ids[0]
    return "merged-" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]


def _exit_code(shards: Sequence[ShardReport], missing: bool) -> int:
    codes = [s.exit_code for s in shards]
    if not missing and all(c == 0 for c in codes):
        return 0
    failures = [c for c in codes if c is not None and c != 0]
    return max(failures) if failures else 1


def merge(
    reports: Sequence[RunReport],
    expected_shards: int | None = None,
    *,
    sources: Sequence[str | None] | None = None,
) -> MergedReport:
    """Merge shard reports into one.

    * Tasks: the union. A task in several reports keeps the most advanced state
      (complete > failed > cancelled > running > pending > anything else); among equals
      the one with more attempts, then the later last attempt, then the lower shard. Each
      such task is listed in ``conflicts``. Overlaps (tasks that changed the same files)
      are recomputed across all shards.
    * ``totals`` recomputed; ``startedAt`` the earliest, ``endedAt`` the latest;
      ``costUsd`` the sum of the reports' costs (what was spent, duplicates included);
      ``parallel`` the sum; ``timeBudget`` the largest; ``stoppedBy`` the distinct reasons.
    * Shards: each report's ``shard`` label (``"2/3"``). ``expected_shards`` (else the N
      of the labels) gives which shards are missing. A shard failed when its ``exitCode``
      is not 0 (null too: the run did not finish). ``exitCode`` is 0 when every shard
      reported 0 and none is missing, else the largest failing code (1 when none is known).

    ``sources`` (one per report) names where each report came from. The result does not
    depend on the order of ``reports``. Raises ValueError when ``expected_shards`` < 1.
    """
    if expected_shards is not None and expected_shards < 1:
        raise ValueError(f"the number of shards must be at least 1, not {expected_shards}")
    if sources is not None and len(sources) != len(reports):
        raise ValueError("give one source per report")
    given = list(zip(reports, sources or [None] * len(reports), strict=True))

    def order(item: tuple[RunReport, str | None]) -> tuple[int, int, int, str, str, str]:
        report, source = item
        label = _label(report)
        return (
            0 if label else 1,
            label[1] if label else 0,
            label[0] if label else 0,
            report.shard or "",
            report.run_id,
            source or "",
        )

    given.sort(key=order)
    problems: list[str] = []

    # which shards reported
    counts = sorted({label[1] for r, _ in given if (label := _label(r))})
    shard_count = expected_shards
    if shard_count is None and counts:
        shard_count = counts[-1]
        if len(counts) > 1:
            problems.append(
                "the reports disagree on the number of shards: " + ", ".join(str(c) for c in counts)
            )
    names: list[str] = []
    shard_rows: list[ShardReport] = []
    by_label: dict[str, list[str]] = {}
    for report, source in given:
        name = report.shard or source or report.run_id
        names.append(name)
        label = _label(report)
        where = f"report {source or report.run_id}"
        if report.shard is not None and label is None:
            problems.append(f"{where}: invalid shard label {report.shard!r}")
        elif label is None and shard_count is not None:
            problems.append(f"{where} does not say which shard it is")
        elif label is not None and shard_count is not None and label[1] != shard_count:
            problems.append(f"{where} is shard {report.shard}, but {shard_count} were expected")
        if report.shard is not None:
            by_label.setdefault(report.shard, []).append(source or report.run_id)
        shard_rows.append(
            ShardReport(
                shard=report.shard,
                source=source,
                run_id=report.run_id,
                started_at=report.started_at,
                ended_at=report.ended_at,
                exit_code=report.exit_code,
                stopped_by=report.stopped_by,
                tasks=len(report.tasks),
                failed=report.exit_code != 0,
            )
        )
    for label_text, where_all in by_label.items():
        if len(where_all) > 1:
            problems.append(f"shard {label_text} reported {len(where_all)} times")
    present = {label[0] for r, _ in given if (label := _label(r)) and label[1] == shard_count}
    missing = [
        shard_label(i, shard_count)
        for i in range(1, (shard_count or 0) + 1)
        if shard_count is not None and i not in present
    ]
    failed = list(dict.fromkeys(n for n, row in zip(names, shard_rows, strict=True) if row.failed))

    # tasks
    candidates: dict[str, list[tuple[int, TaskReport]]] = {}
    for index, (report, _) in enumerate(given):
        for task in report.tasks:
            candidates.setdefault(task.id, []).append((index, task))
    tasks: list[TaskReport] = []
    conflicts: list[Conflict] = []
    for task_id in sorted(candidates):
        found = candidates[task_id]
        index, best = min(
            found,
            key=lambda c: (-_rank(c[1].status), -len(c[1].attempts), -_last_end(c[1]), c[0]),
        )
        tasks.append(best.model_copy(deep=True))
        if len(found) > 1:
            conflicts.append(
                Conflict(
                    id=task_id,
                    kept=names[index],
                    status=best.status,
                    reports=[ConflictEntry(shard=names[i], status=t.status) for i, t in found],
                )
            )
    shared = overlaps({t.id: t.changed_files for t in tasks if t.changed_files})
    for task in tasks:
        task.overlaps = shared.get(task.id, [])

    statuses = Counter(t.status for t in tasks)
    starts = [(t, r.started_at) for r, _ in given if (t := timestamp(r.started_at)) is not None]
    ends = [(t, r.ended_at) for r, _ in given if (t := timestamp(r.ended_at)) is not None]
    now = now_iso() if not given else None
    costs = [r.cost_usd for r, _ in given if r.cost_usd is not None]
    budgets = [r.time_budget for r, _ in given if r.time_budget is not None]
    stopped = sorted({r.stopped_by for r, _ in given if r.stopped_by})
    return MergedReport(
        run_id=_merged_run_id([r for r, _ in given]) if given else "merged-empty",
        started_at=min(starts)[1] if starts else (now or given[0][0].started_at),
        ended_at=max(ends)[1] if ends else now,
        time_budget=max(budgets) if budgets else None,
        parallel=sum(r.parallel for r, _ in given),
        stopped_by=", ".join(stopped) or None,
        exit_code=_exit_code(shard_rows, bool(missing)),
        totals={"total": len(tasks), **{s: statuses.get(s, 0) for s in STATUSES}},
        cost_usd=math.fsum(costs) if costs else None,
        tasks=tasks,
        shard_count=shard_count,
        shards=shard_rows,
        missing_shards=missing,
        failed_shards=failed,
        conflicts=conflicts,
        problems=problems,
        quota=_quota([r for r, _ in given]),
    )


def _quota(reports: Sequence[RunReport]) -> list[dict[str, Any]]:
    """The agents whose quota ran out in any shard, each once: the shard whose reset is the
    latest (an unknown reset counts as the latest: the agent was out for that shard's run)."""

    def lateness(entry: dict[str, Any]) -> tuple[bool, float]:
        resets = timestamp(entry.get("resetsAt"))
        return (resets is None, resets or 0.0)

    by_agent: dict[str, dict[str, Any]] = {}
    for report in reports:
        for entry in report.quota:
            kept = by_agent.get(entry["agent"])
            if kept is None or lateness(entry) > lateness(kept):
                by_agent[entry["agent"]] = entry
    return [by_agent[agent] for agent in sorted(by_agent)]


def merge_dirs(dirs: Sequence[Path], expected_shards: int | None = None) -> MergedReport:
    """:func:`find_reports`, :func:`read_report` each, :func:`merge`; DIRs without a report
    and reports that cannot be read are kept in ``missingDirs`` and ``unreadable``."""
    found = find_reports(dirs)
    reports: list[RunReport] = []
    sources: list[str | None] = []
    unreadable: list[Unreadable] = []
    for path in found.reports:
        try:
            reports.append(read_report(path))
        except ValueError as exc:
            unreadable.append(Unreadable(path=str(path), error=str(exc)))
            continue
        sources.append(str(path))
    merged = merge(reports, expected_shards, sources=sources)
    merged.missing_dirs = [str(d) for d in found.missing]
    merged.unreadable = unreadable
    return merged


def task_homes(merged: MergedReport) -> dict[str, Path]:
    """For each merged task, the directory (beside its shard's ``results.json``) that holds
    the files of the copy the merge kept: its record, sentinels, log and patch. A shard
    reports only its own tasks, so the queue it restored from the previous run (every
    shard's tasks) never outweighs the shard that ran them."""
    kept = {c.id: c.kept for c in merged.conflicts}
    homes: dict[str, Path] = {}
    for row in merged.shards:
        if row.source is None:
            continue
        path = Path(row.source)
        try:
            ids = [t.id for t in read_report(path).tasks]
        except ValueError:
            continue
        name = row.shard or row.source or row.run_id
        for task_id in ids:
            if task_id not in homes or kept.get(task_id) == name:
                homes[task_id] = path.parent
    return homes


# -- the summary --------------------------------------------------------------------------


def _took(start: str | None, end: str | None) -> str:
    a, b = timestamp(start), timestamp(end)
    return format_duration(max(b - a, 0.0)) if a is not None and b is not None else "-"


def _shard_row(row: ShardReport) -> str:
    if row.exit_code is None:
        status = "❌ did not finish"
    elif row.failed:
        status = "❌ failed"
    else:
        status = "✅ ok"
    if row.stopped_by:
        status += f" (stopped by {row.stopped_by})"
    code = "-" if row.exit_code is None else str(row.exit_code)
    cell = summary.cell
    return (
        f"| {cell(row.shard or '-')} | {status} | {row.tasks} | {code} | "
        f"{_took(row.started_at, row.ended_at)} | {cell(row.source or row.run_id, 300)} |"
    )


def _ordered_rows(merged: MergedReport) -> list[str]:
    """Rows in shard order: each expected shard (reported or missing), then the rest."""
    rows: list[str] = []
    used: set[int] = set()
    count = merged.shard_count or 0
    for index in range(1, count + 1):
        label = shard_label(index, count)
        matching = [i for i, s in enumerate(merged.shards) if _parsed(s.shard) == (index, count)]
        used.update(matching)
        rows.extend(_shard_row(merged.shards[i]) for i in matching)
        if label in merged.missing_shards:
            rows.append(
                f"| {label} | ⚠️ missing | - | - | - | no report found: its tasks are not in "
                "this summary |"
            )
    rows.extend(_shard_row(s) for i, s in enumerate(merged.shards) if i not in used)
    return rows


def shards_markdown(merged: MergedReport) -> str:
    """The "Shards" section: each shard's status, the missing ones, conflicts, problems."""
    reported = len(merged.shards)
    head = f"**{reported} report{'s' if reported != 1 else ''}**"
    if merged.shard_count is not None:
        head = f"**{merged.shard_count} shard{'s' if merged.shard_count != 1 else ''}**"
        head += f" · {reported} reported"
    if merged.failed_shards:
        head += f" · ❌ {len(merged.failed_shards)} failed: {', '.join(merged.failed_shards)}"
    if merged.missing_shards:
        head += f" · ⚠️ {len(merged.missing_shards)} missing: {', '.join(merged.missing_shards)}"
    out = ["### Shards", "", summary.cell(head, 2000), ""]
    out += ["| shard | status | tasks | exit code | took | report |", "|---|---|---|---|---|---|"]
    out += _ordered_rows(merged)
    if merged.conflicts:
        out += ["", "**Tasks reported by more than one shard** (the most advanced state is kept):"]
        for conflict in merged.conflicts[:_CONFLICTS_SHOWN]:
            seen = ", ".join(f"{e.status} in {e.shard}" for e in conflict.reports)
            out.append(
                summary.cell(
                    f"- {conflict.id}: {seen}; kept {conflict.status} from {conflict.kept}", 1000
                )
            )
        more = len(merged.conflicts) - _CONFLICTS_SHOWN
        if more > 0:
            out.append(f"- _{more} more are in results.json._")
    notes = [f"no results.json under {d}" for d in merged.missing_dirs]
    notes += [f"{u.path}: {u.error}" for u in merged.unreadable]
    notes += merged.problems
    if notes:
        out += ["", "**Problems:**"]
        out += [summary.cell(f"- {note}", 1000) for note in notes]
    return "\n".join(out) + "\n"
