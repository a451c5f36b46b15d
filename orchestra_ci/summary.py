"""Human summaries rendered from a run report."""

from orchestra_ci.durations import format_duration
from orchestra_ci.record import timestamp
from orchestra_ci.report import RunReport


def text(report: RunReport, results_path: str) -> str:
    """A few lines for the terminal at the end of a run: totals, then each failed task."""
    totals = report.totals
    parts = [
        f"{totals[s]} {s}" for s in ("complete", "failed", "pending", "cancelled") if totals.get(s)
    ]
    start, end = timestamp(report.started_at), timestamp(report.ended_at)
    took = f" in {format_duration(end - start)}" if start is not None and end is not None else ""
    lines = [f"{totals['total']} tasks: {', '.join(parts) or 'nothing to do'}{took}"]
    if report.stopped_by:
        lines[0] += f" (stopped by {report.stopped_by})"
    for task in report.tasks:
        if task.status == "failed":
            lines.append(f"  failed  {task.id}: {task.error or 'failed'}")
    lines.append(f"report: {results_path}")
    return "\n".join(lines) + "\n"
