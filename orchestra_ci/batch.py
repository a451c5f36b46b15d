"""One batch, as both ``orchestra-ci run`` and the Action do it: load the sources, run the
queue, then report (results, job summary, outputs, artifact, issue comments, labels)."""

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from orchestra_ci import STARTED, workflow
from orchestra_ci.agents import AgentSpec, load_agents
from orchestra_ci.console import Console
from orchestra_ci.engine import Engine, RunOutcome
from orchestra_ci.errors import UsageError
from orchestra_ci.loading import check_queue, enqueue
from orchestra_ci.presets import DEFAULT_CONFIG_FILE
from orchestra_ci.record import TaskRecord, new_record
from orchestra_ci.redact import redactor
from orchestra_ci.report import RunReport
from orchestra_ci.settings import Settings, split_list
from orchestra_ci.store import Store

if TYPE_CHECKING:  # the tasks file's models and YAML load only when there is a tasks file
    from orchestra_ci.tasksfile import TaskSpec

log = structlog.get_logger("orchestra_ci")


@dataclass
class Sources:
    specs: "list[TaskSpec]" = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # issue number -> reason


@dataclass
class GitHubContext:
    """PyGithub handles for the repository, built only when issues are involved."""

    gh: Any
    repo: Any
    comments: Any = None
    reporter: Any = None


def resolve(root: Path, path: Path | None) -> Path | None:
    if path is None:
        return None
    return path if path.is_absolute() else root / path


def agents_for(root: Path, settings: Settings) -> dict[str, AgentSpec]:
    config = resolve(root, settings.agent_config)
    if config is None and (root / DEFAULT_CONFIG_FILE).is_file():
        config = root / DEFAULT_CONFIG_FILE
    return load_agents(config)


def connect_github(settings: Settings) -> GitHubContext:
    from orchestra_ci.ghclient import GitHubConfig, call, connect

    repository = settings.repository
    if not repository or settings.github_token is None:
        raise UsageError(
            "issues and pull requests need the repository (GITHUB_REPOSITORY or --repo "
            "OWNER/NAME) and a token (GITHUB_TOKEN or --github-token)"
        )
    token = settings.github_token.get_secret_value()
    redactor.add(token)
    gh = connect(
        GitHubConfig(
            token=token,
            repository=repository,
            api_url=settings.api_url,
            max_wait=settings.github_max_wait,
            timeout=settings.github_timeout,
            min_interval=settings.github_min_interval,
            write_interval=settings.github_write_interval,
        )
    )
    import github

    try:
        repo = call(lambda: gh.get_repo(repository))
    except github.GithubException as exc:
        message = exc.data.get("message") if isinstance(exc.data, dict) else exc.status
        raise UsageError(f"cannot open repository {repository!r}: {message}") from None
    return GitHubContext(gh, repo)


def load_sources(
    root: Path,
    settings: Settings,
    github_ctx: GitHubContext | None,
    env: Mapping[str, str] | None = None,
) -> Sources:
    sources = Sources()
    tasks_file = resolve(root, settings.tasks_file)
    if tasks_file is None and (root / ".orchestra/tasks.yml").is_file():
        tasks_file = root / ".orchestra/tasks.yml"
    if tasks_file is not None:
        from orchestra_ci.tasksfile import load_tasks_file

        sources.specs += load_tasks_file(
            tasks_file, root, settings.default_agent, settings.max_retries
        )
    if settings.issue_label and github_ctx is not None:
        from orchestra_ci.issues import IssueTaskOptions, event_issue, scan

        env = os.environ if env is None else env
        found = scan(
            github_ctx.repo,
            IssueTaskOptions(
                label=settings.issue_label,
                agent=settings.issue_agent or settings.default_agent,
                max_retries=settings.max_retries,
                allow_users=split_list(settings.trusted_users),
                allow_bots=split_list(settings.trusted_bots),
                only=event_issue(
                    env.get("GITHUB_EVENT_NAME"),
                    env.get("GITHUB_EVENT_PATH"),
                    settings.issue_label,
                ),
            ),
        )
        taken = {s.id for s in sources.specs}
        sources.specs += [s for s in found.specs if s.id not in taken]
        sources.skipped = {n: d.reason for n, d in found.skipped.items()}
    return sources


def dry_run(store: Store, agents: dict[str, AgentSpec], specs: "list[TaskSpec]") -> int:
    records = {r["taskId"]: r for r in store.all()}
    for spec in specs:
        if spec.id not in records or records[spec.id]["status"] == "pending":
            records[spec.id] = new_record(
                spec.id, spec.agent, spec.prompt, depends_on=spec.depends_on, priority=spec.priority
            )
    check_queue(records.values(), agents, root=store.root)
    pending = sorted(
        (r for r in records.values() if r["status"] == "pending"),
        key=lambda r: (-(r.get("priority") or 0), r["taskId"]),
    )
    for r in pending:
        deps = f" after {', '.join(r['dependsOn'])}" if r.get("dependsOn") else ""
        print(f"would run {r['taskId']} with {r['agent']}{deps}")
    print(f"{len(pending)} tasks would run (dry run: nothing was queued or started)")
    return 0


def run_url(env: Mapping[str, str]) -> str | None:
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return None


class _IssueStatus:
    """Engine observer: mirrors issue tasks' state into their status comments."""

    def __init__(self, ctx: GitHubContext, store: Store, links: Any) -> None:
        from orchestra_ci.comments import IssueReporter, StatusComments, identity

        login = identity(
            ctx.gh, "github-actions[bot]" if os.environ.get("GITHUB_ACTIONS") else None
        )
        ctx.comments = StatusComments(ctx.repo, login)
        self.reporter = IssueReporter(ctx.comments)
        self.store = store
        self.links = links

    def __call__(self, record: TaskRecord) -> None:
        from orchestra_ci.comments import status_comment_body

        number = record.get("issueNumber")
        if number is None:
            return
        tail = ""
        if record["status"] == "failed":
            try:
                tail = (
                    self.store.log_path(record["taskId"])
                    .read_bytes()[-8192:]
                    .decode(errors="replace")
                )
            except OSError:
                tail = ""
        self.reporter.update(
            number, record["taskId"], status_comment_body(record, self.links, tail)
        )


def run_batch(
    root: Path,
    settings: Settings,
    *,
    daemon: bool = False,
    dry: bool = False,
    env: Mapping[str, str] | None = None,
) -> int:
    env = os.environ if env is None else env
    store = Store(root)
    agents = agents_for(root, settings)
    needs_github = settings.issue_label or settings.create_prs
    github_ctx = connect_github(settings) if needs_github else None
    sources = load_sources(root, settings, github_ctx, env)
    only: frozenset[str] | None = None
    if settings.shard:
        sources.specs, only = shard_of(sources.specs, settings, root)
    if dry:
        return dry_run(store, agents, sources.specs)
    enqueue(store, sources.specs, agents)  # also checks the whole queue, new tasks or not

    from orchestra_ci.comments import Links

    links = Links(run_url=run_url(env))
    observer: _IssueStatus | None = None
    if github_ctx is not None and settings.comments:
        observer = _IssueStatus(github_ctx, store, links)
        _announce(observer, github_ctx, store, sources)

    console = Console()
    engine = Engine(
        store,
        agents,
        settings,
        redactor=redactor,
        daemon=daemon,
        on_progress=console.status if console.live else None,
        on_change=observer,
        only=only,
        shard=settings.shard,
        started=STARTED,
    )
    try:
        outcome = asyncio.run(engine.run())
    finally:
        console.close()
    _report(store, settings, outcome, env, github_ctx, observer, links, only)
    from orchestra_ci.summary import text

    sys.stdout.write(text(outcome.report, str(store.results_path.relative_to(store.root))))
    if daemon and engine.stop_signal is not None:
        return 0
    return outcome.exit_code


def _announce(observer: _IssueStatus, ctx: GitHubContext, store: Store, sources: Sources) -> None:
    """Queued comments for issue tasks, and an explanation on issues we will not run."""
    from orchestra_ci.comments import skipped_body
    from orchestra_ci.issues import issue_task_id

    for record in store.all():
        if record.get("issueNumber") is not None and record["status"] == "pending":
            observer(record)
    for number, reason in sources.skipped.items():
        observer.reporter.update(
            number, issue_task_id(number), skipped_body(issue_task_id(number), reason)
        )


def _report(
    store: Store,
    settings: Settings,
    outcome: RunOutcome,
    env: Mapping[str, str],
    ctx: GitHubContext | None,
    observer: _IssueStatus | None,
    links: Any,
    only: frozenset[str] | None = None,
) -> None:
    if settings.create_prs and ctx is not None:
        _open_pull_requests(store, settings, ctx, only)
        report = engine_report(store, outcome.report)
    else:
        report = outcome.report
    in_actions = env.get("GITHUB_ACTIONS") == "true"
    artifact_id: int | None = None
    artifact_url: str | None = None
    if in_actions:
        artifact_id, artifact_url = _publish(store, artifact_name(settings), env)
    outputs = {
        "total": str(report.totals["total"]),
        "complete": str(report.totals["complete"]),
        "failed": str(report.totals["failed"]),
        "pending": str(report.totals["pending"]),
        "results": str(store.results_path),
        "artifact-id": str(artifact_id or ""),
    }
    workflow.write_outputs(outputs, env)
    from orchestra_ci.summary import markdown

    summary_links = {}
    if links.run_url:
        summary_links["workflow run"] = links.run_url
    if artifact_url:
        summary_links["artifact (logs, patches, results.json)"] = artifact_url
    if settings.repository:
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        summary_links["issues"] = f"{server}/{settings.repository}/issues"
    workflow.write_summary(redactor(markdown(report, summary_links)), env)
    if in_actions:
        _print_groups(store, report)
    if ctx is not None and observer is not None:
        from orchestra_ci.comments import Links, move_labels

        observer.links = Links(run_url=links.run_url, artifact_url=artifact_url)
        for record in store.all():
            if record.get("issueNumber") is not None and record["status"] in ("complete", "failed"):
                observer(record)
        observer.reporter.close()
        for record in store.all():
            number = record.get("issueNumber")
            if number is None or record["status"] not in ("complete", "failed"):
                continue
            add = settings.done_label if record["status"] == "complete" else settings.failed_label
            try:
                move_labels(ctx.repo, number, settings.issue_label or "", add)
            except Exception as exc:
                log.warning("label update failed", issue=number, error=redactor(str(exc)))


def _open_pull_requests(
    store: Store, settings: Settings, ctx: GitHubContext, only: frozenset[str] | None
) -> None:
    from orchestra_ci.pulls import PullRequestError, open_or_update, push
    from orchestra_ci.worktrees import find_repo

    repo_top = find_repo(store.root)
    if repo_top is None:
        log.warning("pull requests need a git repository", root=str(store.root))
        return
    base = settings.pr_base or ctx.repo.default_branch
    token = settings.github_token.get_secret_value() if settings.github_token else None
    for record in store.all():
        branch = record.get("branch")
        if only is not None and record["taskId"] not in only:
            continue
        if record["status"] != "complete" or not branch or not record.get("patch"):
            continue
        try:
            push(repo_top, branch, settings.git_remote, token)
            url = open_or_update(ctx.repo, record, base)
        except PullRequestError as exc:
            log.warning("pull request not opened", task=record["taskId"], error=str(exc))
            print(workflow.command("warning", str(exc), title=f"orchestra-ci: {record['taskId']}"))
            continue

        def set_url(r: TaskRecord, url: str = url) -> None:
            r["prUrl"] = url

        store.update(record["taskId"], set_url)
        log.info("pull request ready", task=record["taskId"], url=url)


def engine_report(store: Store, previous: RunReport) -> RunReport:
    """The final report rebuilt from the records (after PR links were added)."""
    from orchestra_ci import report as report_module

    rebuilt = report_module.build(
        store.all(),
        run_id=previous.run_id,
        started_at=previous.started_at,
        ended_at=previous.ended_at,
        time_budget=previous.time_budget,
        parallel=previous.parallel,
        stopped_by=previous.stopped_by,
        exit_code=previous.exit_code,
        shard=previous.shard,
    )
    report_module.write(store.results_path, rebuilt)
    return rebuilt


def artifact_name(settings: Settings) -> str:
    """One artifact per shard: the merge job downloads them all."""
    if not settings.shard:
        return settings.artifact_name
    k, n = settings.shard.split("/")
    return f"{settings.artifact_name}-shard-{k.strip()}-of-{n.strip()}"


def shard_of(
    specs: "list[TaskSpec]", settings: Settings, root: Path
) -> "tuple[list[TaskSpec], frozenset[str]]":
    """The K-th shard of the loaded tasks, split exactly as ``plan`` splits them."""
    from orchestra_ci import sharding

    try:
        k, n = sharding.parse_shard(settings.shard or "")
        assignment = sharding.assign(sharding.shard_tasks(specs), n, _durations(root, settings))
    except ValueError as exc:
        raise UsageError(f"shard: {exc}") from None
    mine = frozenset(sharding.tasks_in(assignment, k))
    return [s for s in specs if s.id in mine], mine


def _durations(root: Path, settings: Settings) -> dict[str, float] | None:
    from orchestra_ci import sharding

    path = resolve(root, settings.durations_file)
    return sharding.durations_from_report(path) if path is not None else None


def plan(root: Path, settings: Settings, shards: int, env: Mapping[str, str]) -> dict[str, Any]:
    """The ``strategy.matrix`` for N shards of the configured sources (also written to
    ``$GITHUB_OUTPUT`` as ``matrix``)."""
    import json

    from orchestra_ci import sharding

    github_ctx = connect_github(settings) if settings.issue_label else None
    specs = load_sources(root, settings, github_ctx, env).specs
    check_queue(
        [new_record(s.id, s.agent, s.prompt, depends_on=s.depends_on) for s in specs],
        agents_for(root, settings),
        root=root,
    )
    try:
        assignment = sharding.assign(
            sharding.shard_tasks(specs), shards, _durations(root, settings)
        )
        result = sharding.matrix(assignment, shards)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    workflow.write_outputs({"matrix": json.dumps(result, separators=(",", ":"))}, env)
    return result


def _publish(store: Store, name: str, env: Mapping[str, str]) -> tuple[int | None, str | None]:
    from orchestra_ci import artifacts

    try:
        result = artifacts.publish(store.dir, name, env)
    except Exception as exc:
        log.warning("artifact upload failed", error=redactor(str(exc)))
        print(workflow.command("warning", f"artifact upload failed: {redactor(str(exc))}"))
        return None, None
    if result.artifact_id is None:
        return None, None
    url = run_url(env)
    return result.artifact_id, (f"{url}/artifacts/{result.artifact_id}" if url else None)


def _print_groups(store: Store, report: RunReport) -> None:
    """A log group per task (tail of its log) and an error annotation per failed task."""
    for task in report.tasks:
        if not task.attempts:
            continue
        try:
            tail = store.log_path(task.id).read_bytes()[-32768:].decode(errors="replace")
        except OSError:
            tail = ""
        workflow.print_log_group(sys.stdout, f"{task.id}: {task.status}", redactor(tail))
    for task in report.tasks:
        if task.status == "failed":
            print(
                workflow.command(
                    "error",
                    redactor(task.error or "failed"),
                    title=f"orchestra-ci: {task.id} failed",
                )
            )
    sys.stdout.flush()


def merge_run(
    root: Path,
    settings: Settings,
    dirs: list[Path],
    expected_shards: int | None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Merge the shards' results.json into one report, summary and final issue update."""
    from orchestra_ci import merge
    from orchestra_ci import report as report_module
    from orchestra_ci.summary import text

    env = os.environ if env is None else env
    found = merge.find_reports(dirs)
    if not found.reports and not expected_shards:
        raise UsageError("merge: no results.json under " + ", ".join(map(str, dirs)))
    merged = merge.merge_dirs(dirs, expected_shards)
    store = Store(root)
    store.dir.mkdir(parents=True, exist_ok=True)
    report_module.write(store.results_path, merged)
    links: dict[str, str] = {}
    url = run_url(env)
    if url:
        links["workflow run"] = url
    if settings.repository:
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        links["issues"] = f"{server}/{settings.repository}/issues"
    workflow.write_summary(redactor(merge.markdown(merged, links)), env)
    workflow.write_outputs(
        {
            "total": str(merged.totals["total"]),
            "complete": str(merged.totals["complete"]),
            "failed": str(merged.totals["failed"]),
            "pending": str(merged.totals["pending"]),
            "results": str(store.results_path),
            "missing-shards": ",".join(merged.missing_shards),
        },
        env,
    )
    for label in merged.missing_shards:
        print(workflow.command("error", f"shard {label} did not report", title="orchestra-ci"))
    for label in merged.failed_shards:
        print(workflow.command("warning", f"shard {label} failed", title="orchestra-ci"))
    if settings.issue_label and settings.comments and settings.github_token is not None:
        _final_issue_updates(settings, merged, env)
    sys.stdout.write(text(merged, str(store.results_path.relative_to(root))))
    return merged.exit_code or 0


def _final_issue_updates(settings: Settings, merged: RunReport, env: Mapping[str, str]) -> None:
    from orchestra_ci.comments import (
        IssueReporter,
        Links,
        StatusComments,
        identity,
        move_labels,
        status_comment_body,
    )

    ctx = connect_github(settings)
    login = identity(ctx.gh, "github-actions[bot]" if env.get("GITHUB_ACTIONS") else None)
    reporter = IssueReporter(StatusComments(ctx.repo, login))
    links = Links(run_url=run_url(env))
    for task in merged.tasks:
        if task.issue_number is None or task.status not in ("complete", "failed"):
            continue
        reporter.update(
            task.issue_number, task.id, status_comment_body(record_from_report(task), links)
        )
    reporter.close()
    for task in merged.tasks:
        if task.issue_number is None or task.status not in ("complete", "failed"):
            continue
        add = settings.done_label if task.status == "complete" else settings.failed_label
        try:
            move_labels(ctx.repo, task.issue_number, settings.issue_label or "", add)
        except Exception as exc:
            log.warning("label update failed", issue=task.issue_number, error=redactor(str(exc)))


def record_from_report(task: Any) -> TaskRecord:
    """Enough of a task record, rebuilt from a report entry, to render its comment."""
    return {
        "taskId": task.id,
        "status": task.status,
        "agent": task.agents[-1] if task.agents else "",
        "prompt": "",
        "createdAt": "",
        "attempts": [
            {
                "number": a.number,
                "agent": a.agent,
                "startedAt": a.started_at,
                "endedAt": a.ended_at or a.started_at,
            }
            for a in task.attempts
        ],
        "errorMessage": task.error,
        "retryCount": task.retry_count,
        "prUrl": task.pr_url,
        "patch": task.patch,
        "issueNumber": task.issue_number,
    }
