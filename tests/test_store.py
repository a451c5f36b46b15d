"""orchestra_ci.store: records, the queue lock, sentinels and runner leases."""

import contextlib
import errno
import fcntl
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestra_ci import atomic
from orchestra_ci.errors import StoreError, TaskNotFound, UsageError
from orchestra_ci.record import TaskRecord, new_record, parse_time
from orchestra_ci.store import Change, RunnerLease, Store, _parse
from tests.conftest import alive, wait_for


def queue_lock_is_held(store: Store) -> bool:
    """Try the queue lock on a fresh open file description (flock conflicts even in-process)."""
    fd = os.open(store.dir / "queue.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        assert exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
        return True
    finally:
        os.close(fd)
    return False


def add(store: Store, task_id: str, **fields: object) -> TaskRecord:
    record = new_record(task_id, "fake", f"prompt of {task_id}")
    record.update(fields)  # type: ignore[typeddict-item]
    assert store.create(record)
    return record


# -- records ------------------------------------------------------------------------------


def test_create_then_read_get_all_ids(store: Store) -> None:
    a = add(store, "a", priority=5)
    add(store, "b")
    assert store.read("a") == a
    assert store.get("a") == a
    assert sorted(store.ids()) == ["a", "b"]
    assert sorted(r["taskId"] for r in store.all()) == ["a", "b"]
    assert json.loads(store.record_path("a").read_text()) == a


def test_create_makes_the_directories(tmp_path: Path) -> None:
    store = Store(tmp_path / "fresh")
    assert store.ids() == []
    assert store.all() == []
    assert store.create(new_record("t1", "fake", "p"))
    assert store.ids() == ["t1"]


def test_create_refuses_an_existing_id_and_keeps_the_original(store: Store) -> None:
    add(store, "dup")
    other = new_record("dup", "other-agent", "another prompt")
    assert store.create(other) is False
    assert store.get("dup")["agent"] == "fake"
    assert store.get("dup")["prompt"] == "prompt of dup"


def test_records_created_together_are_flushed_together(store: Store) -> None:
    add(store, "old")
    flushes = store.flushes
    records = [new_record(f"n{i}", "fake", "p") for i in range(20)]
    records.append(new_record("old", "other-agent", "another prompt"))
    created = store.create_many(records)
    assert created == [True] * 20 + [False]
    assert store.flushes - flushes == 2  # their data, then the directory
    assert store.get("old")["agent"] == "fake"
    assert sorted(store.ids()) == sorted(["old", *(f"n{i}" for i in range(20))])
    assert sorted(os.listdir(store.tasks_dir)) == sorted(f"{i}.json" for i in store.ids())


def test_records_written_together_are_flushed_together(store: Store) -> None:
    records = [add(store, f"w{i}") for i in range(5)]
    for record in records:
        record["status"] = "cancelled"
    flushes = store.flushes
    store.write_many(records)
    assert store.flushes - flushes == 2
    assert {r["status"] for r in store.all()} == {"cancelled"}


def test_a_failed_write_of_many_records_leaves_no_temp_file(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [add(store, f"w{i}") for i in range(3)]

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "flush", full)
    for record in records:
        record["status"] = "cancelled"
    with pytest.raises(StoreError, match="No space left"):
        store.write_many(records)
    with pytest.raises(StoreError, match="No space left"):
        store.create_many([new_record("new", "fake", "p")])
    monkeypatch.undo()
    assert {r["status"] for r in store.all()} == {"pending"}
    assert sorted(os.listdir(store.tasks_dir)) == ["w0.json", "w1.json", "w2.json"]


def test_stale_temp_files_of_dead_writers_go_from_tasks_and_beside_the_report(
    store: Store,
) -> None:
    """A runner killed while writing run.json or results.json leaves its temp file there."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.ensure()
    stale = [
        store.tasks_dir / f".t.json.{dead.pid}.0a1b2c3d.tmp",
        store.dir / f".run.json.{dead.pid}.0a1b2c3d.tmp",
        store.dir / f".results.json.{dead.pid}.0a1b2c3d.tmp",
    ]
    for path in stale:
        path.write_text("{")
    assert store.remove_stale_temp_files() == 3
    assert not [p for p in stale if p.exists()]


def test_ids_ignore_sentinels_logs_and_temp_files(store: Store) -> None:
    add(store, "real")
    (store.tasks_dir / "real.done").write_text("x")
    (store.tasks_dir / "real.pid").write_text("1")
    (store.tasks_dir / ".real.json.123.abcd.tmp").write_text("{")
    store.log_path("real").write_text("log")
    assert store.ids() == ["real"]
    assert [r["taskId"] for r in store.all()] == ["real"]


def test_read_missing_returns_none_and_get_raises(store: Store) -> None:
    assert store.read("nope") is None
    with pytest.raises(TaskNotFound, match="nope"):
        store.get("nope")


@pytest.mark.parametrize("bad_id", ["", "../outside", "a/b", ".", "..", "x" * 101, "sp ace"])
def test_get_of_a_malformed_id_is_task_not_found(store: Store, bad_id: str) -> None:
    (store.root / "outside.json").write_text(json.dumps(new_record("outside", "fake", "p")))
    with pytest.raises(TaskNotFound) as info:
        store.get(bad_id)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == 2


def test_write_persists_and_keeps_unknown_fields(store: Store) -> None:
    record = add(store, "t")
    record["status"] = "running"
    record["customField"] = {"nested": [1, 2]}  # type: ignore[typeddict-unknown-key]
    store.write(record)
    again = store.get("t")
    assert again["status"] == "running"
    assert again["customField"] == {"nested": [1, 2]}  # type: ignore[typeddict-item]
    parse_time(again["updatedAt"])  # a valid timestamp


def test_update_changes_returns_and_persists(store: Store) -> None:
    add(store, "t", foreign="kept")

    def change(r: TaskRecord) -> None:
        r["status"] = "failed"
        r["errorMessage"] = "boom"

    returned = store.update("t", change)
    assert returned["status"] == "failed"
    on_disk = store.get("t")
    assert on_disk == returned
    assert on_disk["errorMessage"] == "boom"
    assert on_disk["foreign"] == "kept"  # type: ignore[typeddict-item]


def test_update_redoes_the_change_on_a_version_written_meanwhile(store: Store) -> None:
    add(store, "t")
    seen: list[int | None] = []

    def change(r: TaskRecord) -> None:
        seen.append(r.get("priority"))
        if len(seen) == 1:  # another writer lands between our read and our rename
            other = store.get("t")
            other["priority"] = 7
            store.write(other)
        r["errorMessage"] = "mine"

    returned = store.update("t", change)
    on_disk = store.get("t")
    assert seen == [0, 7]  # applied again, to the other writer's version
    assert on_disk == returned
    assert on_disk["priority"] == 7 and on_disk["errorMessage"] == "mine"
    assert not [p for p in store.tasks_dir.iterdir() if p.name.endswith(".tmp")]


def test_update_runs_then_under_the_lock_after_the_write(store: Store) -> None:
    add(store, "t")
    observed: list[tuple[str, bool]] = []

    def then(r: TaskRecord) -> None:
        observed.append((store.get("t")["status"], queue_lock_is_held(store)))

    store.update("t", lambda r: r.update({"status": "complete"}), then=then)
    assert observed == [("complete", True)]


def test_update_that_raises_writes_nothing_and_releases_the_lock(store: Store) -> None:
    add(store, "t")
    before = store.record_path("t").read_bytes()

    def change(r: TaskRecord) -> None:
        r["status"] = "complete"
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError):
        store.update("t", change)
    assert store.record_path("t").read_bytes() == before
    assert not queue_lock_is_held(store)


def test_update_of_a_missing_task_raises(store: Store) -> None:
    with pytest.raises(TaskNotFound):
        store.update("ghost", lambda r: None)
    assert not store.record_path("ghost").exists()


def test_updates_of_many_records_share_one_lock_and_two_flushes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c"):
        add(store, name)
    locks = 0
    locked = Store.locked

    @contextlib.contextmanager
    def counting(self: Store) -> Iterator[None]:
        nonlocal locks
        locks += 1
        with locked(self):
            yield

    monkeypatch.setattr(Store, "locked", counting)
    flushes = store.flushes
    held: list[bool] = []

    def complete(r: TaskRecord) -> None:
        r["status"] = "complete"

    def refuse(r: TaskRecord) -> None:
        raise RuntimeError("changed my mind")

    changes = [
        Change("a", complete, then=lambda r: held.append(queue_lock_is_held(store))),
        Change("ghost", complete),
        Change("b", lambda r: {**r, "status": "failed"}),  # type: ignore[typeddict-item]
        Change("c", refuse),
    ]
    results = store.update_many(changes)
    assert [type(r).__name__ for r in results] == ["dict", "TaskNotFound", "dict", "RuntimeError"]
    assert (locks, store.flushes - flushes, held) == (1, 2, [True])
    assert [store.get(t)["status"] for t in ("a", "b", "c")] == ["complete", "failed", "pending"]
    assert store.get("a") == results[0]
    assert store.names() == {"a.json", "b.json", "c.json"}  # no temp file left


def test_a_failed_flush_fails_every_update_it_held_and_leaves_the_records(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b"):
        add(store, name)
    before = {t: store.record_path(t).read_bytes() for t in ("a", "b")}

    def full(directory: Path, paths: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "flush", full)
    results = store.update_many([Change(t, lambda r: r.update(status="failed")) for t in "ab"])
    assert all(isinstance(r, StoreError) and "No space left" in str(r) for r in results)
    assert {t: store.record_path(t).read_bytes() for t in ("a", "b")} == before
    assert store.names() == {"a.json", "b.json"}


def test_a_flush_does_not_wait_for_another_threads_flush(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A round's claims must not queue behind the finishes' device flush.
    second_started = threading.Event()
    seen: list[str] = []

    def flush(directory: Path, paths: object) -> None:
        if not seen:
            seen.append("first")
            assert second_started.wait(10), "the second flush waited for the first"
        else:
            seen.append("second")
            second_started.set()

    monkeypatch.setattr(atomic, "flush", flush)
    first = threading.Thread(target=store.commit, args=("a",))
    first.start()
    wait_for(lambda: seen == ["first"], "the first flush")
    store.commit("b")
    first.join(10)
    assert seen == ["first", "second"] and store.flushes == 2


def test_rewrites_of_many_records_run_under_one_lock(store: Store) -> None:
    add(store, "a")
    add(store, "b")
    with store.rewriting_many(["a", "ghost", "b"]) as rewrites:
        assert queue_lock_is_held(store)
        records = [rewrite.read() for rewrite in rewrites]
        assert [r and r["taskId"] for r in records] == ["a", None, "b"]
        first = records[0]
        assert first is not None
        rewrites[0].put({**first, "status": "running"})
    assert not queue_lock_is_held(store)
    assert [store.get(t)["status"] for t in ("a", "b")] == ["running", "pending"]
    assert store.names() == {"a.json", "b.json"}


def test_a_rewrite_puts_its_version_under_the_lock_and_frees_the_old_after_it(
    store: Store,
) -> None:
    add(store, "t")
    old = store.record_path("t").stat().st_ino
    seen: list[tuple[str, bool, bool]] = []
    with store.rewriting_many(["t"]) as (rewrite,):
        record = rewrite.read()
        assert record is not None and queue_lock_is_held(store)
        record["status"] = "running"
        rewrite.put(record)
        # The old version is still open here, so its inode cannot have been reused yet.
        rewrite.held.callback(
            lambda: seen.append(
                (store.get("t")["status"], queue_lock_is_held(store), rewrite.placed)
            )
        )
    assert seen == [("running", False, True)]  # released after the lock was
    assert store.record_path("t").stat().st_ino != old
    assert store.names() == {"t.json"}  # no temp file left
    assert store.get("t")["updatedAt"] >= record["createdAt"]


def test_with_free_later_the_replaced_version_is_freed_by_free_replaced(store: Store) -> None:
    add(store, "t")
    freed: list[bool] = []
    with store.rewriting_many(["t"], free_later=True) as (rewrite,):
        record = rewrite.read()
        assert record is not None
        rewrite.put({**record, "status": "running"})
        rewrite.held.callback(lambda: freed.append(True))
    assert freed == [] and store.get("t")["status"] == "running"
    store.free_replaced()
    assert freed == [True]
    store.free_replaced()  # nothing left: a no-op
    assert freed == [True]
    assert store.names() == {"t.json"}


def test_rewrites_use_the_spare_temp_files_and_the_rest_are_dropped(store: Store) -> None:
    add(store, "a")
    add(store, "b")
    store.make_spares(3)
    spares = store.names() - {"a.json", "b.json"}
    assert len(spares) == 3 and all(n.startswith(".spare.") for n in spares)
    assert store.ids() == ["a", "b"]  # spares are no records
    with store.rewriting_many(["a", "b"]) as rewrites:
        for rewrite in rewrites:
            record = rewrite.read()
            assert record is not None
            rewrite.put({**record, "status": "running"})
    assert [store.get(t)["status"] for t in ("a", "b")] == ["running", "running"]
    assert len(store.names() - {"a.json", "b.json"}) == 1  # two spares became the records
    store.make_spares(2)
    assert len(store.names() - {"a.json", "b.json"}) == 2
    store.drop_spares()
    assert store.names() == {"a.json", "b.json"}


def test_spares_of_a_runner_that_died_are_removed_as_stale(store: Store) -> None:
    add(store, "t")
    # No process has that pid (above the kernel's pid_max).
    (store.tasks_dir / ".spare.999999999.0a1b2c3d0.tmp").write_bytes(b"")
    assert store.remove_stale_temp_files() == 1
    assert store.names() == {"t.json"}


def test_a_rewrite_that_puts_nothing_leaves_the_record_and_no_temp_file(store: Store) -> None:
    add(store, "t")
    before = store.record_path("t").read_bytes()
    with store.rewriting_many(["t"]) as (rewrite,):
        assert rewrite.read() is not None
    with pytest.raises(RuntimeError), store.rewriting_many(["t"]):
        raise RuntimeError("changed my mind")
    assert store.record_path("t").read_bytes() == before
    assert store.names() == {"t.json"}
    assert not queue_lock_is_held(store)


def test_a_rewrite_of_a_removed_record_reads_none(store: Store) -> None:
    with store.rewriting_many(["ghost"]) as (rewrite,):
        assert rewrite.read() is None
    assert store.names() == set()


def test_a_rewrite_quarantines_a_record_it_cannot_use(store: Store) -> None:
    add(store, "t")
    store.record_path("t").write_text("{not json")
    with store.rewriting_many(["t"]) as (rewrite,):
        assert rewrite.read() is None
    assert [name for name, _ in store.quarantined()] == ["t.json"]
    assert store.ids() == []


def test_delete_removes_every_file_of_the_task(store: Store) -> None:
    add(store, "gone")
    add(store, "stays")
    store.write_done("gone")
    store.write_error("gone", "e")
    store.write_pid("gone", 1)
    store.log_path("gone").write_text("log")
    store.patches_dir.mkdir(parents=True)
    (store.patches_dir / "gone.patch").write_text("diff")
    (store.worktrees_dir / "gone" / "sub").mkdir(parents=True)
    store.write_done("stays")
    store.log_path("stays").write_text("log")

    store.delete("gone")

    assert store.ids() == ["stays"]
    assert sorted(os.listdir(store.tasks_dir)) == ["stays.done", "stays.json"]
    assert os.listdir(store.logs_dir) == ["stays.log"]
    assert os.listdir(store.patches_dir) == []
    assert not (store.worktrees_dir / "gone").exists()
    store.delete("gone")  # deleting again is harmless


def quarantined(store: Store) -> dict[str, str]:
    return dict(store.quarantined())


def test_a_truncated_record_is_quarantined_and_the_rest_of_the_queue_reads(store: Store) -> None:
    add(store, "good")
    path = store.record_path("bad")
    path.write_text('{"taskId": "bad", "status": ')
    assert [r["taskId"] for r in store.all()] == ["good"]
    assert not path.exists()
    assert (store.quarantine_dir / "bad.json").read_text() == '{"taskId": "bad", "status": '
    assert quarantined(store)["bad.json"].startswith("not valid JSON")
    with pytest.raises(TaskNotFound):
        store.get("bad")


def odd(extra: str) -> bytes:
    """A record of task ``odd`` with ``extra`` fields (JSON text) added."""
    return (
        '{"taskId": "odd", "status": "pending", "agent": "a", "prompt": "p"' + extra + "}"
    ).encode()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[1, 2]", "not a task record (a JSON list, not an object)"),
        (b'{"status": "pending"}', "no taskId"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"taskId": "odd", "agent": "a", "prompt": "p"}', "no status"),
        (b'{"taskId": "odd", "status": "paused", "agent": "a", "prompt": "p"}', "unknown status"),
        (b'{"taskId": "other", "status": "pending", "agent": "a", "prompt": "p"}', "a copy?"),
        (
            odd(', "blockedBy": []'),
            "field 'blockedBy' has the wrong type (list)",
        ),
        (
            odd(', "retryCount": "x"'),
            "field 'retryCount' has the wrong type (str)",
        ),
        (
            odd(', "attempts": {}'),
            "field 'attempts' is not a list",
        ),
    ],
)
def test_a_record_that_is_not_a_usable_task_is_quarantined_with_its_reason(
    store: Store, content: bytes, reason: str
) -> None:
    store.record_path("odd").write_bytes(content)
    assert store.read("odd") is None
    assert reason in quarantined(store)["odd.json"]
    assert (store.quarantine_dir / "odd.json").read_bytes() == content


def test_a_second_bad_copy_of_one_name_does_not_overwrite_the_first(store: Store) -> None:
    for text in ("{", "[]"):
        store.record_path("x").write_text(text)
        store.read("x")
    assert quarantined(store) == {
        "x.json": "not valid JSON (Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1))",
        "x.json.1": "not a task record (a JSON list, not an object)",
    }


def test_an_agent_orchestrator_record_is_not_quarantined(store: Store) -> None:
    legacy = {
        "taskId": "legacy",
        "status": "pending",
        "agent": "claude",
        "prompt": "fix it",
        "createdAt": "2024-05-01T10:00:00.000",
        "retryCount": 0,
        "maxRetries": 3,
        "retryHistory": [],
        "priority": 0,
        "logFile": ".orchestra/logs/legacy.log",
    }
    store.record_path("legacy").write_text(json.dumps(legacy))
    assert store.read("legacy") == legacy
    assert quarantined(store) == {}


def test_an_unreadable_record_is_quarantined(store: Store) -> None:
    path = store.record_path("dir")
    path.mkdir()
    assert store.all() == []
    assert "cannot be read" in quarantined(store)["dir.json"]


# -- the queue lock -------------------------------------------------------------------------


def set_priority_7(record: TaskRecord) -> None:
    record["priority"] = 7


@pytest.mark.timeout(20)
def test_lock_is_reentrant_within_a_process(store: Store) -> None:
    add(store, "t")
    assert not queue_lock_is_held(store)
    with store.locked():
        assert queue_lock_is_held(store)
        with store.locked():
            store.update("t", set_priority_7)  # takes the lock a third time
        assert queue_lock_is_held(store)  # the inner exits did not release the outer hold
        assert store.get("t")["priority"] == 7
    assert not queue_lock_is_held(store)


def open_descriptors_on(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path.resolve())
    return count


def test_an_interrupted_lock_wait_leaves_the_lock_usable_and_free(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(fd: int, operation: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fcntl, "flock", interrupted)
    with pytest.raises(KeyboardInterrupt), store.locked():
        pass
    monkeypatch.undo()
    assert not queue_lock_is_held(store)
    with store.locked():
        assert queue_lock_is_held(store)
    assert not queue_lock_is_held(store)


@pytest.mark.linux_only
def test_the_lock_file_is_opened_once_and_closed_with_the_store(root: Path) -> None:
    store = Store(root)
    for _ in range(3):
        with store.locked():
            pass
    assert open_descriptors_on(store.dir / "queue.lock") == 1
    lock = store.dir / "queue.lock"
    del store
    gc.collect()
    assert open_descriptors_on(lock) == 0


def test_the_lock_excludes_other_threads_of_the_process(store: Store) -> None:
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def holder() -> None:
        with store.locked():
            inside.set()
            release.wait(5)
            order.append("holder leaves")

    thread = threading.Thread(target=holder)
    thread.start()
    inside.wait(5)
    threading.Timer(0.2, release.set).start()
    with store.locked():  # waits for the other thread, although flock alone would not
        order.append("main enters")
    thread.join()
    assert order == ["holder leaves", "main enters"]


COUNTER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from orchestra_ci.store import Store
    root, go, me = sys.argv[1], sys.argv[2], sys.argv[3]
    store = Store(Path(root))
    open(go + "." + me, "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)

    def bump(record):
        record["counter"] = record.get("counter", 0) + 1

    for _ in range(100):
        store.update("shared", bump)
    """
)


@pytest.mark.timeout(60)
def test_concurrent_updates_from_four_processes_lose_nothing(store: Store) -> None:
    add(store, "shared", counter=0)
    go = store.root / "go"
    names = [f"w{i}" for i in range(4)]
    workers = [
        subprocess.Popen([sys.executable, "-c", COUNTER, str(store.root), str(go), name])
        for name in names
    ]
    try:
        while not all((store.root / f"go.{name}").exists() for name in names):
            assert all(w.poll() is None for w in workers), "a worker died before the start"
        go.touch()
        codes = [w.wait(timeout=50) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert codes == [0, 0, 0, 0]
    assert store.get("shared")["counter"] == 400  # type: ignore[typeddict-item]
    assert sorted(os.listdir(store.tasks_dir)) == ["shared.json"]


# -- sentinels ------------------------------------------------------------------------------


def test_write_done(store: Store) -> None:
    store.write_done("t")
    path = store.sentinel("t", "done")
    assert path == store.tasks_dir / "t.done"
    assert path.read_bytes() == b""  # an empty file, as agent-orchestrator's protocol writes
    store.write_done("t")  # writing it again is harmless
    assert path.read_bytes() == b""


def test_write_error_and_read_error(store: Store) -> None:
    store.write_error("t", "agent exited with code 3", "last lines of output")
    body = json.loads(store.sentinel("t", "error").read_text())
    assert body["error"] == "agent exited with code 3"
    assert body["details"] == "last lines of output"
    parse_time(body["timestamp"])
    assert store.read_error("t") == body


def test_read_error_of_an_agent_json_error(store: Store) -> None:
    store.sentinel("t", "error").write_text(json.dumps({"error": "quota", "extra": 1}))
    assert store.read_error("t") == {"error": "quota", "extra": 1}


def test_read_error_turns_agent_free_text_into_error(store: Store) -> None:
    store.sentinel("t", "error").write_text("  could not push: permission denied\n")
    result = store.read_error("t")
    assert result is not None
    assert result["error"] == "could not push: permission denied"


@pytest.mark.parametrize("content", [b"", b"\n  \n", b"\xff\xfe bad bytes"])
def test_read_error_of_empty_or_binary_text_still_gives_an_error(
    store: Store, content: bytes
) -> None:
    store.sentinel("t", "error").write_bytes(content)
    result = store.read_error("t")
    assert result is not None
    assert isinstance(result["error"], str) and result["error"].strip()


def test_read_error_without_a_file_is_none(store: Store) -> None:
    assert store.read_error("t") is None


def test_write_pid_and_read_pid(store: Store) -> None:
    assert store.read_pid("t") is None
    store.write_pid("t", 12345)
    assert store.read_pid("t") == 12345
    store.write_pid("t", 7)
    assert store.read_pid("t") == 7
    store.sentinel("t", "pid").write_text("not a pid\n")
    assert store.read_pid("t") is None


# -- runner leases --------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import subprocess, sys, time
    from pathlib import Path
    from orchestra_ci.store import Change, RunnerLease, Store
    lease = RunnerLease(Store(Path(sys.argv[1])), sys.argv[2])
    if sys.argv[3] == "child":
        child = subprocess.Popen(["sleep", "60"], close_fds=False, stdout=subprocess.DEVNULL)
        print(child.pid, flush=True)
    else:
        print(0, flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def start_holder(
    store: Store, runner_id: str, mode: str, holders: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.root), runner_id, mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    holders.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the lease holder died"
    return proc, int(line)


def test_runner_alive_while_another_process_holds_the_lease(
    store: Store, holders: list[subprocess.Popen[str]]
) -> None:
    proc, _ = start_holder(store, "runner-1", "plain", holders)
    lock = store.runners_dir / "runner-1.lock"
    assert store.runner_alive("runner-1")
    assert store.runner_alive("runner-1")  # asking does not take the lease away
    assert lock.exists()
    assert not store.runner_alive("runner-2")

    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert not store.runner_alive("runner-1")
    assert not lock.exists()
    assert not store.runner_alive("runner-1")


def test_a_killed_runners_surviving_child_does_not_keep_it_alive(
    store: Store, holders: list[subprocess.Popen[str]]
) -> None:
    proc, child_pid = start_holder(store, "runner-c", "child", holders)
    try:
        assert store.runner_alive("runner-c")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert alive(child_pid)
        assert not store.runner_alive("runner-c")
        assert not (store.runners_dir / "runner-c.lock").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signal.SIGKILL)


def test_lease_in_this_process_and_release(store: Store) -> None:
    lease = RunnerLease(store, "me")
    assert store.runner_alive("me")
    assert (store.runners_dir / "me.lock").read_text().strip() == str(os.getpid())
    lease.release()
    assert not store.runner_alive("me")
    assert not (store.runners_dir / "me.lock").exists()
    lease.release()  # twice is harmless


@pytest.mark.linux_only
def test_lease_descriptor_is_not_inherited_by_children(store: Store) -> None:
    lease = RunnerLease(store, "parent")
    lock = (store.runners_dir / "parent.lock").resolve()
    child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        open_files = []
        for fd in os.listdir(f"/proc/{child.pid}/fd"):
            with contextlib.suppress(FileNotFoundError):
                open_files.append(os.readlink(f"/proc/{child.pid}/fd/{fd}"))
        assert str(lock) not in open_files
        lease.release()
        assert child.poll() is None
        assert not store.runner_alive("parent")
    finally:
        lease.release()
        child.kill()
        child.wait()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1}',
        b'{"a": "\xc3\xa9t\xc3\xa9"}\n',
        b'  {"a": 1}',
        b'\xef\xbb\xbf{"a": 1}',  # a byte-order mark, as some editors write
        b'{"a": 1}\n\t \r\n',
        b'{"a": 1}\x0c',
        b'{"a": "\xc3\xa9"} x',
        b'{"a": 1}{"b": 2}',
        b'{"a": \xff}',
        b'"\xc3\xa9t\xc3\xa9"  ',
        b"",
        b"[1, 2",
    ],
)
def test_records_parse_as_json_loads_parses_them(raw: bytes) -> None:
    """The fast path takes what ``json.loads`` takes, and fails where it fails, alike."""
    try:
        expected: object = json.loads(raw)
    except ValueError as exc:
        with pytest.raises(type(exc)) as got:
            _parse(raw)
        assert str(got.value) == str(exc)
    else:
        assert _parse(raw) == expected
