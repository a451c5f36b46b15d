"""Carrying the queue over: choosing the artifact and checking its zip (in-process), then
restoring it through PyGithub and real HTTP against the fake GitHub."""

import io
import json
import os
import stat
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci import state
from orchestra_ci.artifacts import build_zip
from orchestra_ci.errors import UsageError
from orchestra_ci.ghclient import GitHubConfig, connect
from orchestra_ci.record import new_record
from orchestra_ci.state import (
    Candidate,
    Limits,
    Lookup,
    StateUnavailable,
    check_members,
    choose,
    lookup_from_env,
    parse_run_ref,
    pull_artifact,
    pull_run,
    restore_previous,
    unpack,
)
from orchestra_ci.store import Store
from tests.doubles.fake_github import FakeGitHub, Fault, Repo

REPO = "octo/widgets"
NAME = "orchestra-ci"
WORKFLOW = 7
FAST = Limits(attempts=2, retry_wait=0.01, timeout=5)
T0 = datetime(2025, 5, 1, 3, 0, tzinfo=UTC)


# ----------------------------------------------------------------------------- helpers


def queue_zip(tmp_path: Path, tasks: dict[str, str], *, label: str = "q") -> bytes:
    """The artifact a run leaves: its queue (task id -> status) zipped by build_zip, with a
    log for every task and a .done sentinel for the complete ones."""
    store = Store(tmp_path / f"made-{label}").ensure()
    for task_id, status in tasks.items():
        record = new_record(task_id, "fake", f"prompt of {task_id}")
        record["status"] = status
        store.create(record)
        store.log_path(task_id).write_text(f"log of {task_id} ({label})\n")
        if status == "complete":
            store.write_done(task_id)
    store.results_path.write_text(json.dumps({"label": label}))
    return build_zip(store.dir, tmp_path / f"{label}.zip").read_bytes()


def raw_zip(members: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def record_json(task_id: str, status: str = "pending") -> bytes:
    record = new_record(task_id, "fake", "p")
    record["status"] = status
    return json.dumps(record).encode()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (the queue lock aside) with its bytes."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "queue.lock"
    }


def candidate(artifact_id: int, run_id: int, **fields: Any) -> Candidate:
    values: dict[str, Any] = {
        "name": NAME,
        "branch": "main",
        "head_sha": "abc",
        "expired": False,
        "created_at": T0 + timedelta(minutes=artifact_id),
        "size": 10,
        "download_url": f"https://api.example/artifacts/{artifact_id}/zip",
    }
    values.update(fields)
    return Candidate(artifact_id=artifact_id, run_id=run_id, **values)


@pytest.fixture
def queue(tmp_path: Path) -> Store:
    return Store(tmp_path / "checkout").ensure()


@pytest.fixture
def repo(fake_github: FakeGitHub) -> Repo:
    return fake_github.add_repo(REPO)


@pytest.fixture
def gh_repo(fake_github: FakeGitHub, repo: Repo) -> Iterator[Any]:
    """The repository through the project's own PyGithub plumbing (no urllib3 retries or
    politeness pauses, to keep the tests quick)."""
    gh = connect(
        GitHubConfig(
            token=fake_github.token,
            repository=REPO,
            api_url=fake_github.url,
            timeout=5,
            retries=0,
            max_wait=1,
            min_interval=0,
            write_interval=0,
        )
    )
    yield gh.get_repo(REPO)
    gh.close()


# ----------------------------------------------------------------------------- choosing


def test_the_branch_is_the_pull_requests_head_or_else_the_ref_name() -> None:
    pull = {"GITHUB_HEAD_REF": "feature", "GITHUB_REF_NAME": "12/merge", "GITHUB_RUN_ID": "99"}

    assert lookup_from_env(NAME, pull) == Lookup(NAME, "feature", 99)
    assert lookup_from_env(NAME, {"GITHUB_HEAD_REF": "", "GITHUB_REF_NAME": "main"}) == Lookup(
        NAME, "main", None
    )
    assert lookup_from_env(NAME, {}) == Lookup(NAME, None, None)


def test_choose_the_newest_unexpired_artifact_of_an_earlier_run_of_the_same_workflow() -> None:
    workflows = {1: WORKFLOW, 2: WORKFLOW, 3: 99, 4: WORKFLOW, 5: WORKFLOW, 6: WORKFLOW}
    asked: list[int] = []

    def workflow_of(run_id: int) -> int | None:
        asked.append(run_id)
        return workflows.get(run_id)

    candidates = [
        candidate(10, 1),  # older match
        candidate(20, 2),  # the newest match
        candidate(30, 3),  # another workflow
        candidate(40, 4, branch="other"),
        candidate(50, 5, expired=True),
        candidate(60, 6, name=f"{NAME}-shard-1-of-2"),
        candidate(70, 42),  # the current run
        candidate(80, 8),  # a run that is gone
    ]

    chosen = choose(candidates, Lookup(NAME, "main", 42), WORKFLOW, workflow_of)

    assert chosen is not None and chosen.artifact_id == 20
    assert asked == [8, 3, 2]  # newest first, and no further than the match


def test_without_a_current_run_or_branch_any_workflow_and_branch_will_do() -> None:
    candidates = [candidate(10, 1), candidate(20, 2, branch="other")]

    def no_lookup(run_id: int) -> int | None:
        raise AssertionError("no workflow to compare with")

    chosen = choose(candidates, Lookup(NAME), None, no_lookup)

    assert chosen is not None and chosen.artifact_id == 20
    assert choose([candidate(10, 1, expired=True)], Lookup(NAME), None, no_lookup) is None


# ----------------------------------------------------------------------------- checking zips


def zip_infos(*names: str, size: int = 10) -> list[zipfile.ZipInfo]:
    infos = []
    for name in names:
        info = zipfile.ZipInfo(name)
        info.file_size = size
        infos.append(info)
    return infos


def test_a_queue_as_build_zip_makes_it_passes_the_member_check(tmp_path: Path) -> None:
    data = queue_zip(tmp_path, {"a": "complete", "b": "failed"})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        problems = check_members(archive.infolist(), Limits())

    assert problems == []
    assert "tasks/a.done" in names and "results.json" in names
    assert check_members(zip_infos("run.json", "tasks/", "patches/a.patch"), Limits()) == []


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../evil", "'..' in its path"),
        ("tasks/../../evil.json", "'..' in its path"),
        ("/etc/cron.d/evil", "absolute path"),
        ("C:/evil.json", "absolute path"),
        ("tasks\\a.json", "not a run file"),
        ("agent-config.json", "not a run file"),
        ("tasks/.a.json.1.tmp", "not a run file"),
        ("tasks/.hidden.json", "not a run file"),
        ("worktrees/a/file", "not a run file"),
        ("tasks/a.pid", "not a run file"),
    ],
)
def test_members_that_are_not_run_files_are_refused(name: str, problem: str) -> None:
    problems = check_members(zip_infos("tasks/a.json", name), Limits())

    assert len(problems) == 1 and problem in problems[0] and repr(name) in problems[0]


def test_symlinks_duplicates_encryption_and_sizes_are_refused() -> None:
    link, secret, odd = zip_infos("logs/a.log", "tasks/b.json", "tasks/c.json")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    secret.flag_bits |= 0x1
    odd.compress_type = zipfile.ZIP_BZIP2
    duplicated = zip_infos("tasks/a.json", "tasks/a.json")

    assert [p.split(" ", 1)[1] for p in check_members([link, secret, odd], Limits())] == [
        "is a symbolic link",
        "is encrypted",
        "uses an unsupported compression method",
    ]
    assert check_members(duplicated, Limits()) == ["'tasks/a.json' appears twice"]
    assert check_members(zip_infos("a.log", "b.log", size=1), Limits(max_members=1))[0] == (
        "it has 2 members, more than 1"
    )
    bomb = zip_infos("logs/a.log", size=3 << 30) + zip_infos("logs/b.log", size=2 << 30)
    assert check_members(bomb, Limits())[0].startswith("it unpacks to 5368709120 bytes")


def test_a_run_is_given_by_its_id_or_its_url() -> None:
    url = "https://github.com/octo/widgets/actions/runs/123"

    assert parse_run_ref(" 123 ") == (None, 123)
    assert parse_run_ref(url) == ("octo/widgets", 123)
    assert parse_run_ref(f"{url}/attempts/2?check_suite_focus=true") == ("octo/widgets", 123)
    assert parse_run_ref(f"{url}/job/456#step:3:1") == ("octo/widgets", 123)
    for bad in (
        "",
        "run-5",
        "https://github.com/octo/widgets/pull/5",
        "ftp://x/o/r/actions/runs/1",
    ):
        with pytest.raises(UsageError, match="not a run id or a run URL"):
            parse_run_ref(bad)


# ----------------------------------------------------------------------------- unpacking


def test_unpack_puts_the_queue_in_place_and_skips_records_it_cannot_trust(
    tmp_path: Path, queue: Store
) -> None:
    data = raw_zip(
        {
            "tasks/good.json": record_json("good", "complete"),
            "tasks/good.done": b"",
            "tasks/list.json": b"[1, 2]",
            "tasks/broken.json": b"{not json",
            "tasks/renamed.json": record_json("other"),
            "tasks/orphan.error": b'{"error": "x"}',
            "logs/good.log": b"the log\n",
            "results.json": b"{}",
        }
    )
    (tmp_path / "a.zip").write_bytes(data)

    unpacked = unpack(tmp_path / "a.zip", queue)

    assert unpacked.files == 4
    assert sorted(unpacked.skipped) == [
        "tasks/broken.json: not valid JSON",
        "tasks/list.json: not a JSON object",
        "tasks/orphan.error: no task record for 'orphan' in the artifact",
        "tasks/renamed.json: its taskId is not 'renamed'",
    ]
    assert [r["taskId"] for r in queue.all()] == ["good"]
    assert queue.log_path("good").read_text() == "the log\n"
    assert queue.sentinel("good", "done").exists() and queue.results_path.exists()
    assert not list(queue.dir.glob(".restore-*"))


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({"../evil": b"x"}, id="dot-dot"),
        pytest.param({"tasks/a.json": b"{}", "/tmp/evil": b"x"}, id="absolute"),
        pytest.param({"logs/zeros.log": bytes(3 << 20)}, id="zip-bomb"),
        pytest.param("symlink", id="symlink"),
    ],
)
def test_an_unsafe_zip_is_refused_and_nothing_is_written(
    tmp_path: Path, queue: Store, members: dict[str, bytes] | str
) -> None:
    queue.create(new_record("kept", "fake", "p"))
    before = snapshot(queue.dir)
    data = (
        raw_zip({"tasks/a.json": record_json("a")}, symlink="logs/a.log")
        if members == "symlink"
        else raw_zip(members)  # type: ignore[arg-type]
    )
    (tmp_path / "bad.zip").write_bytes(data)

    with pytest.raises(StateUnavailable) as caught:
        unpack(tmp_path / "bad.zip", queue, limits=Limits(max_unpacked=1 << 20))

    assert caught.value.kind == "unsafe"
    assert str(caught.value).startswith("the artifact is not a queue to restore: ")
    assert snapshot(queue.dir) == before
    assert not (tmp_path / "evil").exists() and not (queue.root / "evil").exists()


def test_a_corrupt_zip_leaves_the_existing_queue_as_it_was(tmp_path: Path, queue: Store) -> None:
    queue.create(new_record("a", "fake", "old"))
    before = snapshot(queue.dir)
    data = bytearray(
        raw_zip({"logs/a.log": b"new log " * 100, "tasks/a.json": record_json("a", "complete")})
    )
    data[data.index(b"new log")] ^= 0xFF  # bad CRC, found while extracting
    (tmp_path / "crc.zip").write_bytes(bytes(data))
    (tmp_path / "junk.zip").write_bytes(b"PK\x03\x04 not really")

    for name in ("crc.zip", "junk.zip"):
        with pytest.raises(StateUnavailable) as caught:
            unpack(tmp_path / name, queue)
        assert caught.value.kind == "corrupt" and "zip is corrupt" in str(caught.value)

    assert snapshot(queue.dir) == before
    assert not list(queue.dir.glob(".restore-*"))


def test_a_crash_while_moving_files_leaves_each_file_old_or_complete(
    tmp_path: Path, queue: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for task_id in ("a", "b"):
        queue.create(new_record(task_id, "fake", "old"))
        queue.log_path(task_id).write_text("old log\n")
    old = snapshot(queue.dir)
    (tmp_path / "new.zip").write_bytes(queue_zip(tmp_path, {"a": "complete", "b": "failed"}))
    replace = os.replace
    moves: list[str] = []

    def crash_on_the_fourth(source: Any, target: Any) -> None:
        if len(moves) == 3:
            raise OSError(5, "Input/output error")
        moves.append(Path(target).relative_to(queue.dir).as_posix())
        replace(source, target)

    monkeypatch.setattr(state.os, "replace", crash_on_the_fourth)
    with pytest.raises(StateUnavailable, match="Input/output error"):
        unpack(tmp_path / "new.zip", queue)
    monkeypatch.undo()

    now = snapshot(queue.dir)
    new = snapshot(Store(tmp_path / "made-q").dir)
    assert moves == ["logs/a.log", "logs/b.log", "results.json"]  # records go last
    assert set(now) >= set(old)
    for name, data in now.items():
        assert data in (old.get(name), new.get(name)), name
    assert [r["status"] for r in queue.all()] == ["pending", "pending"]  # old records kept
    assert not list(queue.dir.glob(".restore-*"))


def test_a_restored_task_drops_sentinels_its_artifact_lacks_and_clear_drops_other_tasks(
    tmp_path: Path, queue: Store
) -> None:
    for task_id in ("a", "local"):
        record = new_record(task_id, "fake", "old")
        record["status"] = "complete"
        queue.create(record)
        queue.write_done(task_id)
    (tmp_path / "q.zip").write_bytes(queue_zip(tmp_path, {"a": "pending"}))

    unpack(tmp_path / "q.zip", queue)
    assert not queue.sentinel("a", "done").exists()
    assert queue.get("a")["status"] == "pending" and queue.get("local")["status"] == "complete"

    unpack(tmp_path / "q.zip", queue, clear=True)
    assert [r["taskId"] for r in queue.all()] == ["a"]
    assert not queue.sentinel("local", "done").exists()


# ----------------------------------------------------------------------------- restoring over HTTP


def artifact_on(
    fake: FakeGitHub, repo: Repo, data: bytes, hours: int, **options: Any
) -> tuple[int, int]:
    """An artifact ``hours`` after T0 (from a new run of WORKFLOW on main unless told);
    returns (artifact id, run id)."""
    options.setdefault("workflow_id", WORKFLOW)
    made = fake.add_artifact(
        repo, options.pop("name", NAME), data, created_at=T0 + timedelta(hours=hours), **options
    )
    return made.id, made.run_id


def test_the_newest_artifact_of_the_same_workflow_and_branch_is_restored_across_pages(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    wanted = queue_zip(tmp_path, {"done": "complete", "left": "pending"}, label="wanted")
    other = queue_zip(tmp_path, {"wrong": "complete"}, label="other")
    current = fake_github.add_run(repo, workflow_id=WORKFLOW, created_at=T0 + timedelta(days=9))
    older_id, _ = artifact_on(fake_github, repo, other, 0)
    wanted_id, wanted_run = artifact_on(fake_github, repo, wanted, 1)
    artifact_on(fake_github, repo, other, 2, workflow_id=99)
    artifact_on(fake_github, repo, other, 3, expired=True)
    for hour in range(4, 104):
        artifact_on(fake_github, repo, other, hour, branch="feature")
    artifact_on(fake_github, repo, other, 104, name=f"{NAME}-shard-1-of-2")
    artifact_on(fake_github, repo, other, 105, run=current.id)
    now = T0 + timedelta(days=9, hours=1)

    restored = restore_previous(
        gh_repo, queue, Lookup(NAME, "main", current.id), token=fake_github.token, now=now
    )

    assert (restored.artifact_id, restored.run_id, restored.artifact_name) == (
        wanted_id,
        wanted_run,
        NAME,
    )
    assert restored.created_at == T0 + timedelta(hours=1)
    assert restored.age_seconds == (now - restored.created_at).total_seconds()
    assert restored.head_sha == fake_github.repo(repo).runs[wanted_run].head_sha
    assert restored.files == 6 and restored.skipped == ()  # 2 records, .done, 2 logs, results
    assert {r["taskId"]: r["status"] for r in queue.all()} == {
        "done": "complete",
        "left": "pending",
    }
    assert queue.sentinel("done", "done").exists()
    assert json.loads(queue.results_path.read_text()) == {"label": "wanted"}
    listings = fake_github.find_requests("GET", r"/actions/artifacts$")
    assert [r.param("page") for r in listings] == [None, "2"]
    assert all(r.param("name") == NAME for r in listings)
    # the current run, then candidates newest first up to the match; never the older one
    runs = [r.route.rsplit("/", 1)[1] for r in fake_github.find_requests("GET", r"/runs/\d+$")]
    assert runs[0] == str(current.id) and runs[-1] == str(wanted_run) and len(runs) == 3
    assert not fake_github.find_requests("GET", rf"/artifacts/{older_id}/zip$")


def test_the_token_goes_to_the_api_but_never_to_the_blob_host(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    artifact_id, _ = artifact_on(fake_github, repo, queue_zip(tmp_path, {"a": "complete"}), 1)

    pull_artifact(gh_repo, queue, artifact_id, token=fake_github.token)

    (api,) = fake_github.find_requests("GET", rf"/artifacts/{artifact_id}/zip$")
    blobs = fake_github.blob_requests()
    assert api.header("Authorization") == "Bearer <redacted>" and api.status == 302
    assert len(blobs) == 1 and blobs[0].status == 200
    assert blobs[0].header("Authorization") is None


def test_a_first_run_has_nothing_to_restore(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    current = fake_github.add_run(repo, workflow_id=WORKFLOW)
    artifact_on(fake_github, repo, queue_zip(tmp_path, {"a": "pending"}), 1, run=current.id)

    with pytest.raises(StateUnavailable) as caught:
        restore_previous(gh_repo, queue, Lookup(NAME, "main", current.id), token=fake_github.token)

    assert caught.value.kind == "none"
    assert str(caught.value) == (
        f"no earlier run of this workflow on 'main' left an artifact named {NAME!r}"
    )
    assert queue.all() == []


def test_expired_artifacts_are_skipped_and_a_410_is_a_reason(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    data = queue_zip(tmp_path, {"a": "pending"})
    expired_id, _ = artifact_on(fake_github, repo, data, 1, expired=True)
    fresh_id, _ = artifact_on(fake_github, repo, data, 0)
    fake_github.inject(Fault.server_error(rf"/artifacts/{fresh_id}/zip$", 410, message="Gone"))

    with pytest.raises(StateUnavailable) as listed:
        pull_artifact(gh_repo, queue, expired_id, token=fake_github.token)
    with pytest.raises(StateUnavailable) as raced:  # expired between the listing and the zip
        restore_previous(gh_repo, queue, Lookup(NAME, "main"), token=fake_github.token)

    assert listed.value.kind == raced.value.kind == "expired"
    assert str(listed.value) == f"artifact {expired_id} ({NAME!r}) has expired"
    assert "410" in str(raced.value)
    assert not fake_github.find_requests("GET", rf"/artifacts/{expired_id}/zip$")
    assert queue.all() == []

    fake_github.repo(repo).artifacts[fresh_id].expired = True
    with pytest.raises(StateUnavailable, match=r"named 'orchestra-ci' \(2 expired\)$"):
        restore_previous(gh_repo, queue, Lookup(NAME, "main"), token=fake_github.token)


def test_without_actions_read_the_reason_says_what_permission_is_missing(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    current = fake_github.add_run(repo, workflow_id=WORKFLOW)
    artifact_on(fake_github, repo, queue_zip(tmp_path, {"a": "pending"}), 1)
    fake_github.deny_actions()

    with pytest.raises(StateUnavailable) as caught:
        restore_previous(gh_repo, queue, Lookup(NAME, "main", current.id), token=fake_github.token)

    reason = str(caught.value)
    assert caught.value.kind == "forbidden"
    assert "`permissions: actions: read`" in reason and "403" in reason
    assert "\n" not in reason and fake_github.token not in reason
    assert queue.all() == []


def test_a_missing_run_or_artifact_is_a_reason_naming_what_exists(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    data = queue_zip(tmp_path, {"a": "complete"})
    run = fake_github.add_run(repo, workflow_id=WORKFLOW, head_sha="f" * 40)
    for name in ("orchestra-ci-shard-1-of-2", "orchestra-ci-shard-2-of-2"):
        fake_github.add_artifact(repo, name, data, run=run.id)

    failures = []
    for attempt in (
        lambda: pull_run(gh_repo, queue, run.id, NAME, token=fake_github.token),
        lambda: pull_run(gh_repo, queue, 999_999, NAME, token=fake_github.token),
        lambda: pull_artifact(gh_repo, queue, 999_999, token=fake_github.token),
    ):
        with pytest.raises(StateUnavailable) as caught:
            attempt()
        failures.append((caught.value.kind, str(caught.value)))
    restored = pull_run(
        gh_repo, queue, run.id, "orchestra-ci-shard-2-of-2", token=fake_github.token
    )

    assert failures == [
        (
            "none",
            f"run {run.id} has no artifact named {NAME!r} "
            "(it has: 'orchestra-ci-shard-1-of-2', 'orchestra-ci-shard-2-of-2')",
        ),
        ("missing", "listing the artifacts of run 999999: not found (404 Not Found)"),
        ("missing", "reading artifact 999999: not found (404 Not Found)"),
    ]
    assert (restored.run_id, restored.head_sha) == (run.id, "f" * 40)
    assert queue.get("a")["status"] == "complete"


def test_a_too_big_artifact_is_refused_before_and_while_downloading(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    data = queue_zip(tmp_path, {"a": "complete"})
    artifact_id, _ = artifact_on(fake_github, repo, data, 1)
    small = Limits(max_download=len(data) - 1, attempts=1)

    with pytest.raises(StateUnavailable) as listed:
        pull_artifact(gh_repo, queue, artifact_id, token=fake_github.token, limits=small)
    url = gh_repo.get_artifact(artifact_id).archive_download_url
    with pytest.raises(StateUnavailable) as streamed:
        state.download(url, fake_github.token, tmp_path / "out.zip", small)

    assert listed.value.kind == streamed.value.kind == "unsafe"
    assert "limit" in str(listed.value) and "larger than" in str(streamed.value)
    assert queue.all() == [] and not list(queue.dir.glob(".restore-*"))


def test_network_failures_are_retried_then_a_reason_without_the_signed_url(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    artifact_id, _ = artifact_on(fake_github, repo, queue_zip(tmp_path, {"a": "complete"}), 1)
    fake_github.inject(Fault.server_error(r"/zip$", 502), Fault.drop(r"^/_blobs/", times=1))

    pull_artifact(
        gh_repo,
        queue,
        artifact_id,
        token=fake_github.token,
        limits=Limits(attempts=3, retry_wait=0.01, timeout=5),
    )
    assert queue.get("a")["status"] == "complete"

    fake_github.inject(Fault.drop(r"^/_blobs/", times=None))
    with pytest.raises(StateUnavailable) as caught:
        pull_artifact(gh_repo, queue, artifact_id, token=fake_github.token, limits=FAST)

    reason = str(caught.value)
    assert caught.value.kind == "network"
    assert reason == "downloading the artifact: connection failed (ConnectionError)"
    assert len(fake_github.find_requests("GET", r"/zip$")) == 3 + 2  # 3 to succeed, 2 to fail


def test_a_rate_limited_token_gives_a_reason(
    tmp_path: Path, fake_github: FakeGitHub, repo: Repo, gh_repo: Any, queue: Store
) -> None:
    artifact_on(fake_github, repo, queue_zip(tmp_path, {"a": "pending"}), 1)
    fake_github.inject(Fault.primary_rate_limit(r"/actions/artifacts$", reset_in=3600, times=None))

    with pytest.raises(StateUnavailable) as caught:
        restore_previous(gh_repo, queue, Lookup(NAME, "main"), token=fake_github.token, limits=FAST)

    assert caught.value.kind == "rate_limit"
    assert "rate limit" in str(caught.value)
