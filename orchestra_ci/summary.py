"""Human summaries rendered from a run report."""

from collections.abc import Mapping, Sequence
from typing import Any

from orchestra_ci.durations import format_duration
from orchestra_ci.record import timestamp
from orchestra_ci.report import RunReport


def text(report: RunReport, results_path: str) -> str:
    """A few lines for the terminal at the end of a run: totals, then each failed task."""
    totals = report.totals
    parts = [
        f"{totals[s]} {s}"
        for s in ("complete", "failed", "pending", "running", "cancelled")
        if totals.get(s)
    ]
    start, end = timestamp(report.started_at), timestamp(report.ended_at)
    took = f" in {format_duration(end - start)}" if start is not None and end is not None else ""
    lines = [f"{totals['total']} tasks: {', '.join(parts) or 'nothing to do'}{took}"]
    if report.stopped_by:
        lines[0] += f" (stopped by {report.stopped_by})"
    for task in report.tasks:
        if task.status == "failed":
            lines.append(f"  failed  {task.id}: {task.error or 'failed'}")
    lines += [f"  quota   {line}" for line in quota_lines(report)]
    lines.append(f"report: {results_path}")
    return "\n".join(lines) + "\n"


_ICONS = {"complete": "✅", "failed": "❌", "pending": "⏸️", "running": "⏳", "cancelled": "🚫"}
_GANTT_TASKS = 60
_TABLE_ROWS = 1000


def cell(text: str, limit: int = 200) -> str:
    """One table cell: a single line whose pipes cannot start a new column.

    Backslashes are escaped too, or one in the text would escape the backslash put before
    a pipe and leave the pipe to split the cell. Cut first, so no escape is cut in half.
    """
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|")


def quota_lines(report: RunReport) -> list[str]:
    """One line per agent whose quota ran out: until when, and what the run did about it."""
    return [
        f"{q['agent']}: {q['error']} ("
        + (
            "paused until then)"
            if q.get("paused")
            else "not used again in this run; its tasks stay pending)"
        )
        for q in report.quota
    ]


def _gantt_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_. " else "-" for c in text)[:60] or "task"


def gantt(report: RunReport) -> str:
    """A mermaid gantt chart: one section per task, one bar per attempt."""
    lines = ["```mermaid", "gantt", "  dateFormat x", "  axisFormat %H:%M:%S"]
    shown = [t for t in report.tasks if t.attempts][:_GANTT_TASKS]
    for task in shown:
        lines.append(f"  section {_gantt_name(task.id)}")
        for attempt in task.attempts:
            start = timestamp(attempt.started_at)
            end = timestamp(attempt.ended_at) or start
            if start is None or end is None:
                continue
            tag = {
                "success": "done, ",
                "failed": "crit, ",
                "timeout": "crit, ",
                "stalled": "crit, ",
                "quota_exhausted": "active, ",
            }.get(attempt.outcome or "", "")
            name = _gantt_name(f"{attempt.agent} #{attempt.number} {attempt.outcome or ''}")
            lines.append(
                f"  {name} :{tag}{int(start * 1000)}, {int(max(end, start + 0.001) * 1000)}"
            )
    lines.append("```")
    if not shown:
        return ""
    more = len([t for t in report.tasks if t.attempts]) - len(shown)
    note = f"\n_{more} more tasks are not drawn._\n" if more > 0 else ""
    return "\n".join(lines) + "\n" + note


def carried_on(restored: Mapping[str, Any]) -> str:
    """The summary's line naming the run whose queue this one carried on from."""
    age = restored.get("ageSeconds")
    ago = f", {format_duration(float(age))} old" if isinstance(age, int | float) else ""
    run = restored.get("runId")
    return (
        f"Carried on from run {run if run is not None else '(unknown)'} "
        f"(artifact {restored.get('artifactId')}{ago})."
    )


def markdown(
    report: RunReport, links: dict[str, str] | None = None, sections: Sequence[str] = ()
) -> str:
    """The job summary: totals, ``sections`` (Markdown that must show before the tasks, such
    as the merge job's shards), a table of tasks, a gantt chart of the run, links."""
    links = links or {}
    totals = report.totals
    start, end = timestamp(report.started_at), timestamp(report.ended_at)
    took = format_duration(end - start) if start is not None and end is not None else "-"
    out = ["## orchestra-ci", ""]
    counts = " · ".join(
        f"{_ICONS[s]} {totals[s]} {s}"
        for s in ("complete", "failed", "pending", "running", "cancelled")
        if totals.get(s)
    )
    out.append(f"**{totals['total']} tasks** · {counts or 'nothing to do'} · took {took}")
    if report.time_budget is not None:
        out[-1] += f" · budget {format_duration(report.time_budget)}"
    if report.stopped_by:
        out[-1] += f" · stopped by {report.stopped_by}"
    if report.restored_from:
        out += ["", carried_on(report.restored_from)]
    for section in sections:
        out += ["", section.rstrip("\n")]
    out += ["", "| task | status | agent | attempts | time | result |", "|---|---|---|---|---|---|"]
    for task in report.tasks[:_TABLE_ROWS]:
        result = task.pr_url or task.error or (task.patch or "")
        name = task.id
        if task.issue_number is not None and "issues" in links:
            name = f"[{task.id}]({links['issues']}/{task.issue_number})"
        out.append(
            f"| {cell(name, 300)} | {_ICONS.get(task.status, '')} {task.status} | "
            f"{cell(', '.join(task.agents))} | {len(task.attempts)} | "
            f"{format_duration(task.duration)} | {cell(result)} |"
        )
    if len(report.tasks) > _TABLE_ROWS:
        out.append(f"\n_{len(report.tasks) - _TABLE_ROWS} more tasks are in results.json._")
    if report.quarantined:
        out += ["", "### Quarantined", "", "Moved to `.orchestra/quarantine/` and not run:", ""]
        out += [cell(f"- `{q['file']}`: {q['reason']}", 500) for q in report.quarantined]
    if report.quota:
        out += ["", "### Quota", ""]
        out += [cell(f"- {line}", 500) for line in quota_lines(report)]
    chart = gantt(report)
    if chart:
        out += ["", "### Timeline", "", chart]
    link_lines = [f"- [{label}]({url})" for label, url in links.items() if label != "issues"]
    if link_lines:
        out += ["", "### Links", "", *link_lines]
    return "\n".join(out) + "\n"
