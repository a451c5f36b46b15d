"""orchestra_ci.batch: each step of the pipeline run alone, in-process."""

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci import batch, report, sharding
from orchestra_ci.errors import UsageError
from orchestra_ci.record import Status, TaskRecord, new_record
from orchestra_ci.redact import Redactor
from orchestra_ci.report import RunReport
from orchestra_ci.settings import Settings, load_settings
from orchestra_ci.sources import GitHubContext, agents_for
from orchestra_ci.store import Store
from orchestra_ci.task_spec import TaskSpec
from tests.conftest import LABEL, REPO, parse_outputs, records, write_tasks
from tests.doubles.fake_github import FakeGitHub

SECRET = "tok-very-secret-123456"


def spec(task_id: str, *deps: str, prompt: str = "exit=0") -> TaskSpec:
    return TaskSpec(
        id=task_id,
        agent="fake",
        prompt=prompt,
        timeout=None,
        max_retries=0,
        backoff=None,
        backoff_max=None,
        depends_on=list(deps),
        priority=0,
    )


def new_batch(root: Path, env: dict[str, str] | None = None, **flags: Any) -> batch.Batch:
    settings = load_settings(root, **{"isolation": "none", **flags})
    return batch.Batch(
        root,
        settings,
        env or {},
        Redactor([SECRET]),
        Store(root),
        agents_for(root, settings),
    )


def record(task_id: str, status: Status, error: str | None = None) -> TaskRecord:
    rec = new_record(task_id, "fake", "exit=0")
    rec["status"] = status
    if error is not None:
        rec["errorMessage"] = error
    return rec


def report_of(*records: TaskRecord) -> RunReport:
    return report.build(
        records,
        run_id="r1",
        started_at="2026-01-01T00:00:00+00:00",
        ended_at="2026-01-01T00:01:00+00:00",
        time_budget=None,
        parallel=1,
    )


# -- load, shard, queue --------------------------------------------------------------------


def test_load_reads_the_tasks_file_without_github(root: Path) -> None:
    write_tasks(root, "tasks:\n  - id: a\n    prompt: exit=0\n  - id: b\n    prompt: exit=0\n")
    b = new_batch(root)
    batch.load(b)
    assert [s.id for s in b.sources.specs] == ["a", "b"]
    assert b.github is None


def test_shard_keeps_exactly_the_plans_part_and_the_shards_cover_every_task(root: Path) -> None:
    specs = [spec("a"), spec("b", "a"), spec("c"), spec("d"), spec("e"), spec("f", "e")]
    assignment = sharding.assign(sharding.shard_tasks(specs), 3, None)
    seen: list[str] = []
    for k in (1, 2, 3):
        b = new_batch(root, shard=f"{k}/3")
        b.sources.specs = list(specs)
        batch.shard(b)
        kept = [s.id for s in b.sources.specs]
        assert kept == sorted(sharding.tasks_in(assignment, k))
        assert b.only == frozenset(kept)
        seen += kept
    assert sorted(seen) == ["a", "b", "c", "d", "e", "f"]


def test_a_bad_shard_stops_the_batch_before_anything_is_loaded(root: Path) -> None:
    with pytest.raises(UsageError, match=r"^--shard: invalid shard '4/3'"):
        new_batch(root, shard="4/3")


def test_no_shard_keeps_everything(root: Path) -> None:
    b = new_batch(root)
    b.sources.specs = [spec("a"), spec("b")]
    batch.shard(b)
    assert b.only is None and len(b.sources.specs) == 2


def test_artifact_name_per_shard(root: Path) -> None:
    assert batch.artifact_name(Settings(artifact_name="q")) == "q"
    assert batch.artifact_name(Settings(artifact_name="q", shard=" 2 / 3 ")) == "q-shard-2-of-3"


def test_queue_then_run_then_report(root: Path, tmp_path: Path) -> None:
    b = new_batch(root, parallel=2, env=None)
    b.sources.specs = [spec("a"), spec("b", "a"), spec("bad", prompt="exit=3")]
    batch.queue(b)
    assert {r: v["status"] for r, v in records(root).items()} == {
        "a": "pending",
        "b": "pending",
        "bad": "pending",
    }
    batch.run(b)
    assert b.report is not None and b.exit_code == 1
    assert b.report.totals["complete"] == 2 and b.report.totals["failed"] == 1


@pytest.mark.parametrize("asked", ["failed", "bad", "bad, other"])
def test_retry_puts_the_named_failed_tasks_back(root: Path, asked: str) -> None:
    b = new_batch(root, retry=asked)
    b.sources.specs = [spec("ok"), spec("bad", prompt="exit=3"), spec("other", prompt="exit=3")]
    batch.queue(b)
    batch.run(b)
    batch.retry(b)
    statuses = {task_id: r["status"] for task_id, r in records(root).items()}
    assert statuses["ok"] == "complete"
    assert statuses["bad"] == "pending"
    assert statuses["other"] == ("failed" if asked == "bad" else "pending")


def test_retry_of_an_unknown_task_is_a_usage_error(root: Path) -> None:
    b = new_batch(root, retry="nope")
    Store(root).ensure()
    with pytest.raises(UsageError, match="nope"):
        batch.retry(b)


# -- reporting -----------------------------------------------------------------------------


def test_outputs_name_results_relative_to_the_workspace_and_mask_secrets(
    root: Path, tmp_path: Path
) -> None:
    env = {
        "GITHUB_OUTPUT": str(tmp_path / "out.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    b = new_batch(root, env)
    b.report = report_of(record("a", "complete"), record("x", "failed", f"bad token {SECRET}"))
    b.artifact_id = 7
    batch.outputs_and_summary(b)
    outputs = parse_outputs((tmp_path / "out.txt").read_text())
    assert outputs["results"] == ".orchestra/results.json"
    assert outputs["total"] == "2" and outputs["failed"] == "1" and outputs["artifact-id"] == "7"
    summary = (tmp_path / "summary.md").read_text()
    assert "bad token ***" in summary and SECRET not in summary


def test_an_unwritable_output_file_is_a_warning_and_the_summary_is_still_written(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "GITHUB_OUTPUT": str(tmp_path / "missing-dir" / "out.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    b = new_batch(root, env)
    b.report = report_of(record("a", "complete"))
    batch.outputs_and_summary(b)
    assert "::warning title=orchestra-ci::step outputs not written" in capsys.readouterr().out
    assert "**1 tasks**" in (tmp_path / "summary.md").read_text()


def test_summary_sections_come_before_the_task_table(root: Path, tmp_path: Path) -> None:
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    store = Store(root)
    run = report_of(record("a", "complete"))
    batch.write_report(run, store, Settings(), env, Redactor(), {}, sections=["### Extra\n"])
    text = (tmp_path / "summary.md").read_text()
    assert text.index("### Extra") < text.index("| task | status |")


def test_publish_is_skipped_unless_asked(root: Path) -> None:
    b = new_batch(root, {"GITHUB_ACTIONS": ""})
    Store(root).ensure()
    batch.publish(b)
    assert b.artifact_id is None and b.artifact_url is None
    assert not (root / ".orchestra/artifacts").exists()


def test_publish_without_the_artifact_service_keeps_the_zip(root: Path) -> None:
    # In Actions, but the runner gave no artifact service (ACTIONS_RUNTIME_TOKEN unset).
    b = new_batch(root, {"GITHUB_ACTIONS": "true"})
    b.make_artifact = True
    Store(root).ensure()
    batch.publish(b)
    assert b.artifact_id is None and b.artifact_url is None
    assert (root / ".orchestra/artifacts/orchestra-results.zip").is_file()


# -- issues --------------------------------------------------------------------------------


@pytest.fixture
def announced(root: Path, fake_github: FakeGitHub) -> batch.Batch:
    """A batch over three labelled issues (one from an untrusted user), loaded, queued and
    announced."""
    repo = fake_github.add_repo(REPO)
    repo.collaborators["maintainer"] = "maintain"
    fake_github.add_issue(REPO, "Fix it", "exit=0", user="maintainer", labels=[LABEL])
    fake_github.add_issue(REPO, "Break it", "exit=1", user="maintainer", labels=[LABEL])
    fake_github.add_issue(REPO, "Sneak in", "exit=0", user="stranger", labels=[LABEL])
    b = new_batch(
        root,
        {"GITHUB_REPOSITORY": REPO, "GITHUB_RUN_ID": "9"},
        repository=REPO,
        github_token=fake_github.token,
        api_url=fake_github.url,
        issue_label=LABEL,
        default_agent="fake",
        max_retries=0,
        github_min_interval=0,
        github_write_interval=0,
    )
    batch.load(b)
    batch.queue(b)
    batch.announce(b)
    return b


def bodies(gh: FakeGitHub, number: int) -> list[str]:
    repo = gh.state.repo(REPO)
    assert repo is not None
    return [c.body for c in repo.comments_on(number)]


def labels(gh: FakeGitHub, number: int) -> set[str]:
    repo = gh.state.repo(REPO)
    assert repo is not None
    return set(repo.issues[number].labels)


def test_announce_comments_queued_and_explains_skipped_issues(
    announced: batch.Batch, fake_github: FakeGitHub
) -> None:
    b = announced
    assert b.reporter is not None
    b.reporter.close()
    assert [s.id for s in b.sources.specs] == ["issue-1", "issue-2"]
    assert any("queued" in body for body in bodies(fake_github, 1))
    assert any("not run" in body for body in bodies(fake_github, 3))


def test_close_issues_posts_the_final_state_then_moves_labels(
    announced: batch.Batch, fake_github: FakeGitHub
) -> None:
    b = announced
    batch.run(b)
    batch.close_issues(b)
    assert len(bodies(fake_github, 1)) == 1 and "done" in bodies(fake_github, 1)[0]
    assert "failed" in bodies(fake_github, 2)[0]
    assert labels(fake_github, 1) == {b.settings.done_label}
    assert labels(fake_github, 2) == {b.settings.failed_label}
    assert labels(fake_github, 3) == {LABEL}  # not run: left as it was


def test_no_comments_setting_means_no_reporter(root: Path, fake_github: FakeGitHub) -> None:
    b = new_batch(root, comments=False)
    b.github = GitHubContext(gh=None, repo=None)
    batch.announce(b)
    assert b.reporter is None


def test_run_batch_runs_every_step(root: Path, tmp_path: Path) -> None:
    write_tasks(root, "tasks:\n  - id: a\n    prompt: exit=0\n")
    summary = tmp_path / "summary.md"
    settings = load_settings(root, isolation="none", default_agent="fake")
    code = batch.run_batch(
        root, settings, redactor=Redactor(), env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert code == 0
    assert records(root)["a"]["status"] == "complete"
    assert "| a | ✅ complete" in summary.read_text()


def test_dry_run_writes_nothing(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Store(root).ensure().create(new_record("old", "fake", "exit=0"))
    b = new_batch(root)
    b.sources.specs = [spec("a")]
    assert batch.dry_run(b) == 0
    assert "2 tasks would run" in capsys.readouterr().out
    assert set(records(root)) == {"old"}


def test_the_manifest_names_the_agents_of_the_tasks_left_to_run(root: Path) -> None:
    from orchestra_ci import manifest

    store = Store(root).ensure()
    waiting = new_record("waiting", "fake2", "exit=0")  # queued by an earlier load
    failed = {**new_record("failed", "claude", "exit=0"), "status": "failed"}
    done = {**new_record("done", "codex", "exit=0"), "status": "complete"}
    store.create_many([waiting, failed, done])  # type: ignore[list-item]
    b = new_batch(root, retry="failed")
    b.sources.specs = [spec("a")]  # agent fake
    batch.queue(b)
    batch.retry(b)
    batch.record_manifest(b)
    data = manifest.read(b.store.dir)
    assert data is not None
    assert sorted(data["agents"]) == ["claude", "fake", "fake2"]  # not codex: nothing left


def test_the_manifest_holds_what_a_re_run_needs(git_repo: Path) -> None:
    from orchestra_ci import manifest
    from tests.conftest import FAKE_AGENT, write_agents

    (git_repo / ".orchestra").mkdir()
    write_agents(git_repo, {"fake": {**FAKE_AGENT, "env": {"FAKE_KEY": SECRET}}})
    write_tasks(git_repo, "tasks:\n  - id: a\n    prompt: exit=0\n")
    b = new_batch(git_repo, {"GITHUB_RUN_ID": "77"}, default_agent="fake", github_token=SECRET)
    b.restored_from = {"runId": 76, "artifactId": 5}
    batch.load(b)
    batch.queue(b)
    batch.record_manifest(b)
    data = manifest.read(b.store.dir)
    assert data is not None
    head = subprocess.run(
        ["git", "-C", str(git_repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert data["baseCommit"] == head and data["runId"] == "77"
    assert data["settings"]["default_agent"] == "fake" and "github_token" not in data["settings"]
    assert data["tasksFile"]["path"] == ".orchestra/tasks.yml"
    assert "id: a" in data["tasksFile"]["text"]
    assert SECRET not in json.dumps(data)  # the agent config's secret is masked
    assert data["agents"]["fake"]["command"] == FAKE_AGENT["command"]
    assert data["agents"]["fake"]["version"] is None  # not a known CLI: not run
    assert data["restoredFrom"] == {"runId": 76, "artifactId": 5}
    # ...and it travels in the artifact.
    from orchestra_ci.artifacts import run_files

    assert "run.json" in [name for name, _ in run_files(b.store.dir)]


@pytest.mark.parametrize("token", ["", "  "])
def test_issues_with_an_empty_token_are_a_clear_usage_error(root: Path, token: str) -> None:
    # An unset secret, or a pull request from a fork, gives the input as an empty string.
    b = new_batch(root, issue_label="agent", repository=REPO, github_token=token)
    with pytest.raises(UsageError, match=r"a token \(GITHUB_TOKEN or --github-token\)"):
        batch.load(b)


def test_a_bad_record_is_quarantined_and_every_other_task_runs(root: Path, tmp_path: Path) -> None:
    store = Store(root).ensure()
    (store.tasks_dir / "broken.json").write_text('{"taskId": "broken", "sta')
    (store.tasks_dir / "copy.json").write_text(
        json.dumps(new_record("a", "fake", "exit=0"))  # a backup copy of a's record
    )
    write_tasks(root, "tasks:\n  - id: a\n    prompt: exit=0\n  - id: b\n    prompt: exit=0\n")
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    settings = load_settings(root, isolation="none", default_agent="fake")
    assert batch.run_batch(root, settings, redactor=Redactor(), env=env) == 0
    assert {t: r["status"] for t, r in records(root).items()} == {"a": "complete", "b": "complete"}
    results = json.loads(store.results_path.read_text())
    assert [q["file"] for q in results["quarantined"]] == ["broken.json", "copy.json"]
    assert "is not its file name" in results["quarantined"][1]["reason"]
    text = summary.read_text()
    assert "### Quarantined" in text and "`broken.json`: not valid JSON" in text


def test_a_queued_task_whose_agent_is_gone_fails_alone(root: Path) -> None:
    store = Store(root).ensure()
    store.create(new_record("orphan", "gone-agent", "exit=0"))
    store.create(new_record("fine", "fake", "exit=0"))
    settings = load_settings(root, isolation="none")
    assert batch.run_batch(root, settings, redactor=Redactor(), env={}) == 1
    after = records(root)
    assert after["fine"]["status"] == "complete"
    assert after["orphan"]["status"] == "failed"
    assert after["orphan"]["errorMessage"] == (
        "agent 'gone-agent' is not defined: not a preset, and not in the agent config"
    )
    assert after["orphan"]["attempts"] == []


def test_a_new_task_naming_an_unknown_agent_is_still_a_usage_error(root: Path) -> None:
    b = new_batch(root)
    b.sources.specs = [spec("x").model_copy(update={"agent": "nope"})]
    with pytest.raises(UsageError, match="unknown agent 'nope'"):
        batch.queue(b)


def test_tasks_run_in_file_order_when_nothing_else_decides(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "starts.jsonl"
    ids = ["w2", "w10", "w1", "b"]
    write_tasks(
        root, "tasks:\n" + "".join(f"  - {{id: {i}, prompt: 'record={log}'}}\n" for i in ids)
    )
    settings = load_settings(root, isolation="none", default_agent="fake", parallel=1)
    assert batch.run_batch(root, settings, redactor=Redactor(), env={}) == 0
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["task"] for e in events if e["event"] == "start"] == ids
