"""One batch, as both ``orchestra-ci run`` and the Action do it, as a pipeline of named steps.

:func:`run_batch` runs them in order over one :class:`Batch`: :func:`restore` (the previous
run's queue), :func:`load` (the sources),
:func:`shard`, :func:`queue`, :func:`retry`, :func:`announce`, :func:`run` (which has
:func:`record_manifest` done once the first agents run), :func:`pull_requests`,
:func:`publish`, :func:`outputs_and_summary` and :func:`close_issues`. Each step reads what
the earlier ones left in the batch and can be run alone; :func:`merge_run` reuses the last
two for the merge job of a sharded run.
"""

import asyncio
import dataclasses
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import structlog

from orchestra_ci import STARTED, workflow
from orchestra_ci.agents import AgentSpec
from orchestra_ci.console import Console
from orchestra_ci.errors import OrchestraError, UsageError
from orchestra_ci.loading import check_queue, enqueue
from orchestra_ci.record import Status, TaskRecord, new_record
from orchestra_ci.redact import Redactor
from orchestra_ci.settings import Settings, split_list
from orchestra_ci.sources import (
    GitHubContext,
    Sources,
    agent_config_for,
    agents_for,
    connect_github,
    load_sources,
    resolve,
    tasks_file_for,
)
from orchestra_ci.store import Store

if TYPE_CHECKING:
    from orchestra_ci.comments import IssueReporter, Links
    from orchestra_ci.merge import MergedReport
    from orchestra_ci.report import RunReport, TaskReport

log = structlog.get_logger("orchestra_ci")

_COMMENT_TAIL = 8192  # bytes of a failed task's log in its issue comment
_GROUP_TAIL = 32768  # bytes of each task's log in its log group


@dataclass
class Batch:
    """What the steps of one batch share: the inputs, and what each step found."""

    root: Path
    settings: Settings
    env: Mapping[str, str]
    redactor: Redactor
    store: Store
    agents: dict[str, AgentSpec]
    github: GitHubContext | None = None
    sources: Sources = field(default_factory=Sources)
    only: frozenset[str] | None = None  # this shard's tasks; None: every task
    reporter: "IssueReporter | None" = None  # issue status comments, when they are on
    report: "RunReport | None" = None
    exit_code: int = 0
    artifact_id: int | None = None
    artifact_url: str | None = None
    make_artifact: bool = False  # uploaded when the runner gives an artifact service
    restored_from: dict[str, Any] | None = None  # the run whose queue this one carries on
    queued_agents: set[str] = field(default_factory=set)  # of the tasks left to run
    console: Console = field(default_factory=Console)  # the log's: the status line joins it


def run_url(env: Mapping[str, str]) -> str | None:
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return None


def _links(batch: Batch) -> "Links":
    from orchestra_ci.comments import Links

    return Links(run_url=run_url(batch.env), artifact_url=batch.artifact_url)


def _log_tail(store: Store, task_id: str, size: int) -> str:
    try:
        return store.log_path(task_id).read_bytes()[-size:].decode(errors="replace")
    except OSError:
        return ""


def _comment(batch: Batch, record: TaskRecord) -> None:
    """Mirror an issue task's state into its status comment (the engine's observer)."""
    from orchestra_ci.comments import status_comment_body

    number = record.get("issueNumber")
    if number is None or batch.reporter is None:
        return
    tail = _log_tail(batch.store, record["taskId"], _COMMENT_TAIL)
    tail = tail if record["status"] == "failed" else ""
    batch.reporter.update(
        number, record["taskId"], status_comment_body(record, _links(batch), tail)
    )


def _reporter(ctx: GitHubContext, env: Mapping[str, str], redactor: Redactor) -> "IssueReporter":
    from orchestra_ci.comments import IssueReporter, StatusComments, identity

    login = identity(ctx.gh, "github-actions[bot]" if env.get("GITHUB_ACTIONS") else None)
    return IssueReporter(StatusComments(ctx.repo, login), redactor)


# -- the steps -----------------------------------------------------------------------------


def restore(batch: Batch) -> None:
    """With ``state: artifact``, unpack the queue the previous run of this workflow left (its
    artifact ``artifact_name``) into ``.orchestra/`` before the sources load. Whatever
    stands in the way is a notice and a fresh queue, never a failed run."""
    settings = batch.settings
    if settings.state != "artifact":
        return
    from orchestra_ci import manifest, state

    token = settings.token
    try:
        if not settings.repository or not token.strip():
            raise state.StateUnavailable(
                "carrying on needs the repository and a token (GITHUB_TOKEN)", "none"
            )
        if batch.github is None:
            batch.github = connect_github(settings)
        lookup = state.lookup_from_env(settings.artifact_name, batch.env)
        if lookup.branch is None:
            lookup = dataclasses.replace(lookup, branch=manifest.current_branch(batch.root))
        restored = state.restore_previous(batch.github.repo, batch.store, lookup, token=token)
    except OrchestraError as exc:
        message = f"starting with a fresh queue: {batch.redactor(str(exc))}"
        workflow.annotate(batch.env, "notice", message)
        return
    batch.restored_from = {
        "runId": restored.run_id,
        "artifactId": restored.artifact_id,
        "artifactName": restored.artifact_name,
        "createdAt": restored.created_at.isoformat(),
        "ageSeconds": round(restored.age_seconds),
    }
    log.info("carrying on from an earlier run", **batch.restored_from, files=restored.files)
    for skipped in restored.skipped:
        workflow.annotate(batch.env, "warning", f"not restored: {skipped}")


def load(batch: Batch) -> None:
    """The tasks of the tasks file and of the labelled issues (GitHub opened if needed)."""
    settings = batch.settings
    if batch.github is None and (settings.issue_label or settings.create_prs):
        batch.github = connect_github(settings)
    batch.sources = load_sources(batch.root, settings, batch.github, batch.env)


def shard(batch: Batch) -> None:
    """Keep the K-th shard of the loaded tasks, split exactly as ``plan`` splits them."""
    if not batch.settings.shard:
        return
    from orchestra_ci import sharding

    try:
        k, n = sharding.parse_shard(batch.settings.shard)
        durations = _durations(batch.root, batch.settings)
        assignment = sharding.assign(sharding.shard_tasks(batch.sources.specs), n, durations)
    except ValueError as exc:
        raise UsageError(f"shard: {exc}") from None
    batch.only = frozenset(sharding.tasks_in(assignment, k))
    batch.sources.specs = [s for s in batch.sources.specs if s.id in batch.only]


def dry_run(batch: Batch) -> int:
    """What :func:`queue` and :func:`run` would do, printed; nothing is written."""
    records = {r["taskId"]: r for r in batch.store.all()}
    for spec in batch.sources.specs:
        if spec.id not in records or records[spec.id]["status"] == "pending":
            records[spec.id] = new_record(
                spec.id, spec.agent, spec.prompt, depends_on=spec.depends_on, priority=spec.priority
            )
    check_queue(records.values(), batch.agents, root=batch.store.root)
    pending = sorted(
        (r for r in records.values() if r["status"] == "pending"),
        key=lambda r: (-(r.get("priority") or 0), r["taskId"]),
    )
    for r in pending:
        deps = f" after {', '.join(r['dependsOn'])}" if r.get("dependsOn") else ""
        print(f"would run {r['taskId']} with {r['agent']}{deps}")
    print(f"{len(pending)} tasks would run (dry run: nothing was queued or started)")
    return 0


def queue(batch: Batch) -> None:
    """Write the loaded tasks into the queue (this also checks the whole queue)."""
    result = enqueue(
        batch.store, batch.sources.specs, batch.agents, complete_sources=batch.sources.complete
    )
    batch.queued_agents = result.agents
    if result.retired:
        shown = ", ".join(result.retired[:20]) + (" ..." if len(result.retired) > 20 else "")
        count = len(result.retired)
        message = f"{count} queued tasks are no longer in their source and will not run: {shown}"
        log.info(message)
        workflow.annotate(batch.env, "notice", message)
    for task_id in result.requeued:
        log.info("task queued again", task=task_id)


def retry(batch: Batch) -> None:
    """Put the tasks the ``retry`` setting names (``failed``: every failed one) back in
    the queue, as ``orchestra-ci retry`` does."""
    wanted = split_list(batch.settings.retry or "")
    if not wanted:
        return
    from orchestra_ci.operations import retry_tasks

    again: list[str] = []
    for task_id in wanted:
        again += retry_tasks(batch.store, None if task_id == "failed" else task_id)
    batch.queued_agents |= {batch.store.get(task_id)["agent"] for task_id in set(again)}
    log.info("tasks queued again", tasks=sorted(set(again)), asked=wanted)


def record_manifest(batch: Batch) -> None:
    """``.orchestra/run.json``: what an exact re-run needs (see :mod:`manifest`)."""
    from orchestra_ci import manifest

    used = set(batch.queued_agents)
    used |= {f for name in list(used) if name in batch.agents for f in batch.agents[name].fallback}
    data = manifest.build(
        root=batch.root,
        settings=batch.settings,
        env=batch.env,
        tasks_file=tasks_file_for(batch.root, batch.settings),
        agent_config=agent_config_for(batch.root, batch.settings),
        agents=manifest.agent_versions(batch.agents, used),
        redactor=batch.redactor,
        restored_from=batch.restored_from,
    )
    try:
        manifest.write(batch.store.dir, data)
    except OSError as exc:
        log.warning("run.json not written", error=str(exc))


def announce(batch: Batch) -> None:
    """Start the issue status comments: queued on each issue task, and an explanation on
    each labelled issue that will not run."""
    if batch.github is None or not batch.settings.comments:
        return
    from orchestra_ci.comments import skipped_body
    from orchestra_ci.issues import issue_task_id

    batch.reporter = _reporter(batch.github, batch.env, batch.redactor)
    for record in batch.store.all():
        if record.get("issueNumber") is not None and record["status"] == "pending":
            _comment(batch, record)
    for number, reason in batch.sources.skipped.items():
        task_id = issue_task_id(number)
        batch.reporter.update(number, task_id, skipped_body(task_id, reason))


def run(batch: Batch, *, daemon: bool = False) -> None:
    """Run the queue until it drains, the time budget ends or a signal stops it."""
    from orchestra_ci.credentials import kept_from_agents
    from orchestra_ci.engine import Engine
    from orchestra_ci.worktrees import remembered_repos

    console = batch.console
    try:
        # The provider keys (behind the proxy) and the checkout's token stay out of the
        # agents' reach for exactly as long as agents run.
        with remembered_repos(), kept_from_agents(batch.root, batch.settings, batch.env) as proxy:
            engine = Engine(
                batch.store,
                batch.agents,
                batch.settings,
                redactor=batch.redactor,
                daemon=daemon,
                on_progress=console.status if console.live else None,
                on_change=(lambda record: _comment(batch, record)) if batch.reporter else None,
                only=batch.only,
                shard=batch.settings.shard,
                started=STARTED,
                proxy=proxy,
                # Written while the first agents run: it asks the agent CLIs their versions.
                on_started=lambda: record_manifest(batch),
            )
            outcome = asyncio.run(engine.run())
    finally:
        console.close()
    batch.report = outcome.report
    quarantined = [{"file": f, "reason": r} for f, r in batch.store.quarantined()]
    if batch.restored_from is not None or quarantined:
        from orchestra_ci import report as report_module

        update = {"restored_from": batch.restored_from, "quarantined": quarantined}
        batch.report = outcome.report.model_copy(update=update)
        report_module.write(batch.store.results_path, batch.report)
    batch.exit_code = outcome.exit_code


def pull_requests(batch: Batch) -> None:
    """Push each completed task's branch and open (or update) its pull request."""
    if not batch.settings.create_prs or batch.github is None or batch.report is None:
        return
    from orchestra_ci.pulls import PullRequestError, open_or_update, opens_pr, push, stacked_base
    from orchestra_ci.worktrees import find_repo

    store, settings = batch.store, batch.settings
    repo_top = find_repo(store.root)
    if repo_top is None:
        log.warning("pull requests need a git repository", root=str(store.root))
        return
    base = settings.pr_base or batch.github.repo.default_branch
    token = settings.token or None
    records = {r["taskId"]: r for r in store.all()}
    chosen = [
        r
        for r in records.values()
        if opens_pr(r) and (batch.only is None or r["taskId"] in batch.only)
    ]

    def not_opened(record: TaskRecord, exc: PullRequestError) -> None:
        message = batch.redactor(str(exc))
        log.warning("pull request not opened", task=record["taskId"], error=message)
        workflow.annotate(batch.env, "warning", message, f"orchestra-ci: {record['taskId']}")

    pushed = []
    for record in chosen:  # every branch first: a stacked PR's base must exist
        try:
            push(repo_top, str(record["branch"]), settings.git_remote, token)
        except PullRequestError as exc:
            not_opened(record, exc)
            continue
        pushed.append(record)
    for record in pushed:
        try:
            url = open_or_update(batch.github.repo, record, stacked_base(record, records, base))
        except PullRequestError as exc:
            not_opened(record, exc)
            continue

        def set_url(r: TaskRecord, url: str = url) -> None:
            r["prUrl"] = url

        store.update(record["taskId"], set_url)
        log.info("pull request ready", task=record["taskId"], url=url)
    batch.report = rebuilt_report(store, batch.report)


def publish(batch: Batch) -> None:
    """Upload ``.orchestra/`` as the workflow artifact, or keep its zip in ``.orchestra/``
    when the runner gives no artifact service."""
    if not batch.make_artifact:
        return
    from orchestra_ci import artifacts

    try:
        result = artifacts.publish(batch.store.dir, artifact_name(batch.settings), batch.env)
    except Exception as exc:
        message = f"artifact upload failed: {batch.redactor(str(exc))}"
        log.warning(message)
        workflow.annotate(batch.env, "warning", message)
        return
    if result.artifact_id is not None:
        batch.artifact_id = result.artifact_id
        url = run_url(batch.env)
        batch.artifact_url = f"{url}/artifacts/{result.artifact_id}" if url else None


def outputs_and_summary(batch: Batch) -> None:
    """Step outputs, the job summary and, in Actions, a log group per task."""
    assert batch.report is not None, "run the batch before reporting it"
    write_report(
        batch.report,
        batch.store,
        batch.settings,
        batch.env,
        batch.redactor,
        {"artifact-id": str(batch.artifact_id or "")},
        artifact_url=batch.artifact_url,
    )
    if batch.env.get("GITHUB_ACTIONS") == "true":
        _print_groups(batch.store, batch.report, batch.redactor)
        for item in batch.report.quarantined:
            message = f"{item['file']} was moved to .orchestra/quarantine/: {item['reason']}"
            print(workflow.command("warning", message, title="orchestra-ci: quarantined"))


def close_issues(batch: Batch) -> None:
    """The final status comment and the result label on each finished issue task."""
    if batch.github is None or batch.reporter is None or batch.report is None:
        return
    records = {r["taskId"]: r for r in batch.store.all()}
    for task in finished_issue_tasks(batch.report.tasks):
        record = records.get(task.id)
        if record is not None:
            _comment(batch, record)
    finish_issues(batch.reporter, batch.github, batch.settings, batch.report.tasks)


# -- steps shared with the merge job -------------------------------------------------------


def write_report(
    report: "RunReport",
    store: Store,
    settings: Settings,
    env: Mapping[str, str],
    redactor: Redactor,
    outputs: Mapping[str, str],
    *,
    artifact_url: str | None = None,
    sections: Sequence[str] = (),
) -> None:
    """The step outputs (the totals, results.json relative to the workspace, and
    ``outputs``) and the job summary. A workflow-command file that cannot be written is a
    warning: the run's result stands."""
    from orchestra_ci.summary import markdown

    totals = report.totals
    values = {
        **{name: str(totals[name]) for name in ("total", "complete", "failed", "pending")},
        "results": str(store.results_path.relative_to(store.root)),
        **outputs,
    }
    links = {}
    url = run_url(env)
    if url:
        links["workflow run"] = url
    if artifact_url:
        links["artifact (logs, patches, results.json)"] = artifact_url
    if settings.repository:
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        links["issues"] = f"{server}/{settings.repository}/issues"
    summary = redactor(markdown(report, links, sections))
    try:
        workflow.write_outputs(values, env)
    except OSError as exc:
        _not_written("step outputs", exc)
    try:
        workflow.write_summary(summary, env)
    except OSError as exc:
        _not_written("job summary", exc)


def _not_written(what: str, exc: OSError) -> None:
    message = f"{what} not written: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
    log.warning(message)
    print(workflow.command("warning", message, title="orchestra-ci"))


def finished_issue_tasks(tasks: "Iterable[TaskReport]") -> "list[TaskReport]":
    return [t for t in tasks if t.issue_number is not None and t.status in ("complete", "failed")]


def finish_issues(
    reporter: "IssueReporter",
    ctx: GitHubContext,
    settings: Settings,
    tasks: "Iterable[TaskReport]",
) -> None:
    """Wait for the last comments, then move each finished issue's labels: the result
    label goes on once its comment is final."""
    from orchestra_ci.comments import move_labels

    reporter.close()
    for task in finished_issue_tasks(tasks):
        add = settings.done_label if task.status == "complete" else settings.failed_label
        assert task.issue_number is not None
        try:
            move_labels(ctx.repo, task.issue_number, settings.issue_label or "", add)
        except Exception as exc:
            log.warning("label update failed", issue=task.issue_number, error=str(exc))


# -- the whole batch -----------------------------------------------------------------------


def run_batch(
    root: Path,
    settings: Settings,
    *,
    redactor: Redactor,
    daemon: bool = False,
    dry: bool = False,
    env: Mapping[str, str] | None = None,
    make_artifact: bool | None = None,
    console: Console | None = None,
) -> int:
    """``make_artifact``: by default only inside GitHub Actions."""
    env = os.environ if env is None else env
    batch = Batch(root, settings, env, redactor, Store(root), agents_for(root, settings))
    if console is not None:
        batch.console = console
    in_actions = env.get("GITHUB_ACTIONS") == "true"
    batch.make_artifact = in_actions if make_artifact is None else make_artifact
    if not dry:
        restore(batch)
    load(batch)
    shard(batch)
    if dry:
        return dry_run(batch)
    queue(batch)
    retry(batch)
    announce(batch)
    run(batch, daemon=daemon)
    pull_requests(batch)
    publish(batch)
    outputs_and_summary(batch)
    close_issues(batch)
    assert batch.report is not None
    from orchestra_ci.summary import text

    sys.stdout.write(text(batch.report, shown_path(batch.store.results_path)))
    return batch.exit_code


def shown_path(path: Path) -> str:
    """``path`` as the user can type it from where they stand."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive, on Windows
        return str(path)


def rebuilt_report(store: Store, previous: "RunReport") -> "RunReport":
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
    ).model_copy(
        update={"restored_from": previous.restored_from, "quarantined": previous.quarantined}
    )
    report_module.write(store.results_path, rebuilt)
    return rebuilt


def artifact_name(settings: Settings) -> str:
    """One artifact per shard: the merge job downloads them all."""
    if not settings.shard:
        return settings.artifact_name
    from orchestra_ci import sharding

    k, n = sharding.parse_shard(settings.shard)
    return f"{settings.artifact_name}-shard-{k}-of-{n}"


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
    if len(specs) < shards:
        idle = shards - len(set(assignment.values()))
        workflow.annotate(
            env,
            "notice",
            f"{len(specs)} tasks for {shards} shards: {idle} shards will have nothing to do",
        )
    workflow.write_outputs({"matrix": json.dumps(result, separators=(",", ":"))}, env)
    return result


def _print_groups(store: Store, report: "RunReport", redactor: Redactor) -> None:
    """A log group per task (tail of its log) and an error annotation per failed task."""
    for task in report.tasks:
        if task.attempts:
            tail = redactor(_log_tail(store, task.id, _GROUP_TAIL))
            workflow.print_log_group(sys.stdout, f"{task.id}: {task.status}", tail)
    for task in report.tasks:
        if task.status == "failed":
            message = redactor(task.error or "failed")
            print(workflow.command("error", message, title=f"orchestra-ci: {task.id} failed"))
    sys.stdout.flush()


def merge_run(
    root: Path,
    settings: Settings,
    dirs: list[Path],
    expected_shards: int | None,
    *,
    redactor: Redactor,
    env: Mapping[str, str] | None = None,
) -> int:
    """Merge the shards' results.json into one report, summary and final issue update; the
    shards' task files (``dirs`` holding their artifacts) become the merged queue, uploaded
    in Actions as ``artifact_name``: the state the next run carries on from."""
    from orchestra_ci import merge
    from orchestra_ci import report as report_module
    from orchestra_ci.summary import text

    env = os.environ if env is None else env
    found = merge.find_reports(dirs)
    if not found.reports and not expected_shards:
        raise UsageError("merge: no results.json under " + ", ".join(map(str, dirs)))
    merged = merge.merge_dirs(dirs, expected_shards)
    store = Store(root)
    store.ensure()
    _collect_queue(store, merge.task_homes(merged))
    report_module.write(store.results_path, merged)
    batch = Batch(root, settings, env, redactor, store, {}, report=merged)
    batch.make_artifact = env.get("GITHUB_ACTIONS") == "true"
    publish(batch)
    write_report(
        merged,
        store,
        settings,
        env,
        redactor,
        {
            "missing-shards": ",".join(merged.missing_shards),
            "artifact-id": str(batch.artifact_id or ""),
        },
        artifact_url=batch.artifact_url,
        sections=[merge.shards_markdown(merged)],
    )
    for label in merged.missing_shards:
        workflow.annotate(env, "error", f"shard {label} did not report")
    for label in merged.failed_shards:
        workflow.annotate(env, "warning", f"shard {label} failed")
    if settings.issue_label and settings.comments and settings.github_token is not None:
        _close_merged_issues(settings, merged, env, redactor)
    sys.stdout.write(text(merged, shown_path(store.results_path)))
    return merged.exit_code or 0


def _collect_queue(store: Store, homes: Mapping[str, Path]) -> None:
    """Copy each task's files from the shard directory that ran it into the queue, each
    file replaced atomically (a task's stale files from another copy are removed)."""
    import shutil

    from orchestra_ci.record import TASK_ID_PATTERN

    for task_id, home in sorted(homes.items()):
        if not TASK_ID_PATTERN.fullmatch(task_id):
            continue  # not a name we would ever write: never a path outside the queue
        for target in store.files_of(task_id):
            source = home / target.relative_to(store.dir)
            if source.resolve() == target.resolve():
                continue  # the shard's files are already the queue's
            if not source.is_file() or source.is_symlink():
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(source, partial)
            os.replace(partial, target)


def _close_merged_issues(
    settings: Settings, merged: "MergedReport", env: Mapping[str, str], redactor: Redactor
) -> None:
    from orchestra_ci.comments import Links, status_comment_body

    ctx = connect_github(settings)
    reporter = _reporter(ctx, env, redactor)
    links = Links(run_url=run_url(env))
    for task in finished_issue_tasks(merged.tasks):
        assert task.issue_number is not None
        body = status_comment_body(record_from_report(task), links)
        reporter.update(task.issue_number, task.id, body)
    finish_issues(reporter, ctx, settings, merged.tasks)


def record_from_report(task: "TaskReport") -> TaskRecord:
    """Enough of a task record, rebuilt from a report entry, to render its comment."""
    return {
        "taskId": task.id,
        "status": cast(Status, task.status),
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
