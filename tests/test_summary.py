"""orchestra_ci.summary: the terminal summary and the job summary (markdown)."""

import re
from collections.abc import Iterable

from orchestra_ci import report, summary
from orchestra_ci.record import Attempt, Outcome, Status, TaskRecord, new_record, timestamp
from orchestra_ci.workflow import SUMMARY_LIMIT, fit_summary

T0 = "2024-05-01T10:00:00.000+00:00"
ISSUES = "https://github.com/acme/app/issues"


def at(seconds: float) -> str:
    """An ISO timestamp ``seconds`` after T0."""
    whole, frac = divmod(seconds, 1)
    hours, rest = divmod(int(whole), 3600)
    minutes, secs = divmod(rest, 60)
    return f"2024-05-01T{10 + hours:02d}:{minutes:02d}:{secs:02d}.{round(frac * 1000):03d}+00:00"


def ms(seconds: float) -> int:
    stamp = timestamp(at(seconds))
    assert stamp is not None
    return round(stamp * 1000)


def attempt(
    number: int, agent: str, start: float, end: float | None, outcome: Outcome | None = None
) -> Attempt:
    a: Attempt = {"number": number, "agent": agent, "startedAt": at(start)}
    if end is not None:
        a["endedAt"] = at(end)
        a["exitCode"] = 0 if outcome == "success" else 1
    if outcome is not None:
        a["outcome"] = outcome
    return a


def task(
    task_id: str,
    status: Status,
    attempts: Iterable[Attempt] = (),
    *,
    error: str | None = None,
    pr_url: str | None = None,
    patch: str | None = None,
    issue: int | None = None,
) -> TaskRecord:
    record = new_record(task_id, "fake", "do it", source="issue" if issue else "cli")
    record["status"] = status
    record["attempts"] = list(attempts)
    record["errorMessage"] = error
    record["prUrl"] = pr_url
    record["patch"] = patch
    if issue is not None:
        record["issueNumber"] = issue
    return record


def build(
    records: Iterable[TaskRecord],
    *,
    ended_at: str | None = at(125),
    time_budget: float | None = None,
    stopped_by: str | None = None,
) -> report.RunReport:
    return report.build(
        records,
        run_id="run-1",
        started_at=at(0),
        ended_at=ended_at,
        time_budget=time_budget,
        parallel=2,
        stopped_by=stopped_by,
    )


def sample() -> report.RunReport:
    return build(
        [
            task(
                "alpha",
                "complete",
                [attempt(1, "fake", 0, 30, "failed"), attempt(2, "fake2", 31, 90, "success")],
                pr_url="https://github.com/acme/app/pull/5",
                error=None,
            ),
            task("beta", "failed", [attempt(1, "fake", 0, 600, "timeout")], error="timed out"),
            task("gamma", "failed", [attempt(1, "fake", 5, 6, "failed")], error="exit code 2"),
            task("delta", "pending"),
        ]
    )


def table_rows(markdown: str) -> list[list[str]]:
    """Body rows of the task table, split into cells as GFM does (backslash escapes)."""
    lines = markdown.split("\n")
    start = lines.index("|---|---|---|---|---|---|") + 1
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells, cell, i = [], "", 1
        while i < len(line):
            if line[i] == "\\" and i + 1 < len(line):
                cell += line[i + 1] if line[i + 1] in "\\|" else line[i : i + 2]
                i += 2
                continue
            if line[i] == "|":
                cells.append(cell.strip())
                cell = ""
            else:
                cell += line[i]
            i += 1
        rows.append(cells)
    return rows


def mermaid(markdown: str) -> list[str]:
    lines = markdown.split("\n")
    start = lines.index("```mermaid")
    end = lines.index("```", start)
    return lines[start + 1 : end]


BAR = re.compile(r"  (?P<name>[^:]+) :(?:(?P<tag>done|crit|active), )?(?P<start>\d+), (?P<end>\d+)")


def sections(chart: list[str]) -> dict[str, list[re.Match[str]]]:
    found: dict[str, list[re.Match[str]]] = {}
    current = None
    for line in chart:
        if line.startswith("  section "):
            current = line.removeprefix("  section ")
            found[current] = []
        elif (bar := BAR.fullmatch(line)) is not None:
            assert current is not None, f"bar outside a section: {line!r}"
            found[current].append(bar)
    return found


# --- text -----------------------------------------------------------------------------


def test_text_lists_totals_duration_and_each_failed_task() -> None:
    lines = summary.text(sample(), ".orchestra/results.json").splitlines()
    assert lines[0] == "4 tasks: 1 complete, 2 failed, 1 pending in 2m05s"
    assert lines[1:3] == ["  failed  beta: timed out", "  failed  gamma: exit code 2"]
    assert lines[-1] == "report: .orchestra/results.json"
    assert len(lines) == 4


def test_text_names_what_stopped_the_run() -> None:
    first = summary.text(build([], stopped_by="time budget"), "r.json").splitlines()[0]
    assert first == "0 tasks: nothing to do in 2m05s (stopped by time budget)"


def test_text_counts_tasks_still_running() -> None:
    records = [task("a", "running", [attempt(1, "fake", 0, None)]), task("b", "complete")]
    assert summary.text(build(records, ended_at=None), "r.json").splitlines()[0] == (
        "2 tasks: 1 complete, 1 running"
    )


def test_text_falls_back_when_a_failed_task_has_no_error() -> None:
    records = [task("a", "failed", [attempt(1, "fake", 0, 1, "failed")])]
    assert "  failed  a: failed" in summary.text(build(records), "r.json").splitlines()


# --- markdown -------------------------------------------------------------------------


def test_markdown_totals_line() -> None:
    md = summary.markdown(sample())
    assert "**4 tasks** · ✅ 1 complete · ❌ 2 failed · ⏸️ 1 pending · took 2m05s" in md.split("\n")


def test_markdown_totals_mention_budget_and_stop() -> None:
    md = summary.markdown(build([], time_budget=1800, stopped_by="time budget"))
    assert "**0 tasks** · nothing to do · took 2m05s · budget 30m00s · stopped by time budget" in (
        md.split("\n")
    )


def test_markdown_has_one_row_per_task() -> None:
    rows = table_rows(summary.markdown(sample()))
    assert [row[0] for row in rows] == ["alpha", "beta", "delta", "gamma"]
    assert all(len(row) == 6 for row in rows)
    alpha, beta, delta, _ = rows
    assert alpha[1:] == [
        "✅ complete",
        "fake, fake2",
        "2",
        "1m29s",
        "https://github.com/acme/app/pull/5",
    ]
    assert beta[1:] == ["❌ failed", "fake", "1", "10m00s", "timed out"]
    assert delta[1:] == ["⏸️ pending", "fake", "0", "0.0s", ""]


def test_markdown_escapes_pipes_and_backslashes_in_cells() -> None:
    error = "grep 'a\\|b' | wc -l failed\nsee C:\\logs\\ | tail"
    records = [task("a", "failed", [attempt(1, "fake", 0, 1, "failed")], error=error)]
    rows = table_rows(summary.markdown(build(records)))
    assert len(rows) == 1 and len(rows[0]) == 6
    assert rows[0][5] == " ".join(error.split())


def test_markdown_shortens_a_long_error_cell() -> None:
    records = [task("a", "failed", [attempt(1, "fake", 0, 1, "failed")], error="e" * 1000)]
    cell = table_rows(summary.markdown(build(records)))[0][5]
    assert cell.endswith("…") and len(cell) <= 200


def test_markdown_links_issue_tasks_when_given_the_issues_url() -> None:
    records = [task("issue-7", "complete", [attempt(1, "fake", 0, 5, "success")], issue=7)]
    rows = table_rows(summary.markdown(build(records), {"issues": ISSUES}))
    assert rows[0][0] == f"[issue-7]({ISSUES}/7)"
    assert table_rows(summary.markdown(build(records)))[0][0] == "issue-7"


def test_markdown_links_section() -> None:
    links = {
        "workflow run": "https://github.com/acme/app/actions/runs/1",
        "artifact": "https://github.com/acme/app/actions/runs/1/artifacts/9",
        "issues": ISSUES,
    }
    md = summary.markdown(sample(), links)
    tail = md.split("### Links\n", 1)[1].strip().split("\n")
    assert tail == [
        "- [workflow run](https://github.com/acme/app/actions/runs/1)",
        "- [artifact](https://github.com/acme/app/actions/runs/1/artifacts/9)",
    ]


def test_markdown_has_no_links_section_without_links() -> None:
    assert "### Links" not in summary.markdown(sample())
    assert "### Links" not in summary.markdown(sample(), {"issues": ISSUES})


def test_markdown_gantt_chart_has_a_section_per_task_that_ran() -> None:
    chart = mermaid(summary.markdown(sample()))
    assert chart[0] == "gantt"
    assert "  dateFormat x" in chart
    found = sections(chart)
    assert sorted(found) == ["alpha", "beta", "gamma"]  # delta never ran


def test_markdown_gantt_bars_follow_attempts_and_outcomes() -> None:
    found = sections(mermaid(summary.markdown(sample())))
    alpha = found["alpha"]
    assert [(b["tag"], int(b["start"]), int(b["end"])) for b in alpha] == [
        ("crit", ms(0), ms(30)),
        ("done", ms(31), ms(90)),
    ]
    assert "fake2" in alpha[1]["name"]
    assert [b["tag"] for b in found["beta"]] == ["crit"]  # a timeout is critical too


def test_markdown_gantt_draws_an_unfinished_attempt_and_an_untagged_outcome() -> None:
    records = [
        task("a", "running", [attempt(1, "fake", 10, None)]),
        task("b", "cancelled", [attempt(1, "fake", 0, 4, "cancelled")]),
    ]
    found = sections(mermaid(summary.markdown(build(records))))
    (running,) = found["a"]
    assert running["tag"] is None and int(running["end"]) > int(running["start"]) == ms(10)
    (cancelled,) = found["b"]
    assert cancelled["tag"] is None and int(cancelled["end"]) == ms(4)


def test_markdown_gantt_names_cannot_break_the_chart() -> None:
    records = [task("x", "failed", [attempt(1, "we:ird;agent#1\nname", 0, 1, "failed")])]
    chart = mermaid(summary.markdown(build(records)))
    bars = [line for line in chart if line.startswith("  ") and " :" in line]
    assert len(bars) == 1 and BAR.fullmatch(bars[0])
    assert bars[0].count(":") == 1 and "#" not in bars[0] and ";" not in bars[0]


def test_markdown_without_any_attempt_has_no_chart() -> None:
    md = summary.markdown(build([task("a", "pending"), task("b", "pending")]))
    assert "```mermaid" not in md
    assert "**2 tasks** · ⏸️ 2 pending" in md


def test_markdown_with_5000_tasks_fits_the_summary_limit() -> None:
    records = []
    for i in range(5000):
        status: Status = "failed" if i % 3 else "complete"
        outcome: Outcome = "failed" if i % 3 else "success"
        records.append(
            task(
                f"task-{i:05d}",
                status,
                [attempt(1, "agent-" + "é" * 40, i % 600, i % 600 + 5, outcome)],
                error=("échec 😀 | " * 40) if i % 3 else None,
            )
        )
    md = summary.markdown(build(records, ended_at=at(700)), {"workflow run": "https://x/run"})
    fitted = fit_summary(md)
    assert len(fitted.encode()) <= SUMMARY_LIMIT
    assert "**5000 tasks**" in fitted
    rows = table_rows(fitted)
    assert len(rows) == 1000 and all(len(row) == 6 for row in rows)
    assert "_4000 more tasks are in results.json._" in fitted
    assert "_4940 more tasks are not drawn._" in fitted
    assert fitted.count("```mermaid") <= 1 and fitted.count("```") % 2 == 0


def test_a_summary_too_big_for_the_limit_is_cut_and_still_fits() -> None:
    # Long multi-byte errors and agent names push 1,000 table rows past 1 MiB.
    records = [
        task(
            f"t{i:04d}",
            "failed",
            [attempt(1, "代理" * 100, i, i + 1, "failed")],
            error="😀" * 300,
        )
        for i in range(1200)
    ]
    md = summary.markdown(build(records, ended_at=at(1300)))
    assert len(md.encode()) > SUMMARY_LIMIT
    fitted = fit_summary(md)
    assert len(fitted.encode()) <= SUMMARY_LIMIT
    assert fitted.rstrip().endswith(
        "_Summary truncated to fit GitHub's 1 MiB limit; see results.json._"
    )
    assert md.startswith(fitted.split("\n\n_Summary truncated")[0])


# --- quota ----------------------------------------------------------------------------

SPENT = [
    {
        "agent": "codex",
        "resetsAt": None,
        "paused": False,
        "error": "quota exhausted until 14:05 UTC: You've hit your usage limit",
    },
    {
        "agent": "claude",
        "resetsAt": None,
        "paused": True,
        "error": "quota exhausted until 09:40 UTC",
    },
]


def with_quota() -> report.RunReport:
    return build([task("a", "pending")]).model_copy(update={"quota": SPENT})


def test_text_names_each_agent_out_of_quota_and_what_the_run_did() -> None:
    lines = summary.text(with_quota(), "r.json").splitlines()
    assert lines[1:3] == [
        "  quota   codex: quota exhausted until 14:05 UTC: You've hit your usage limit "
        "(not used again in this run; its tasks stay pending)",
        "  quota   claude: quota exhausted until 09:40 UTC (paused until then)",
    ]


def test_markdown_has_a_quota_section_only_when_a_quota_ran_out() -> None:
    md = summary.markdown(with_quota())
    assert "### Quota" in md
    assert "- codex: quota exhausted until 14:05 UTC: You've hit your usage limit" in md
    assert "### Quota" not in summary.markdown(build([task("a", "pending")]))
