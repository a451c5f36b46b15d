"""orchestra_ci.atomic: atomic replace, exclusive create, failure cleanup, stale temp files,
batched flushes."""

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestra_ci import atomic

SIZE = 1 << 20  # large enough that a non-atomic write is seen half-done
PAYLOAD_A = b"A" * SIZE
PAYLOAD_B = b"B" * (SIZE - 4096) + b"b" * 4096

READER = textwrap.dedent(
    """
    import json, os, sys
    path, ready, stop, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    payloads = {b"A" * size: "A", b"B" * (size - 4096) + b"b" * 4096: "B"}
    reads, seen, bad = 0, [], []

    def check():
        global reads
        with open(path, "rb") as f:
            data = f.read()
        reads += 1
        name = payloads.get(data)
        if name is None:
            bad.append({"len": len(data), "head": data[:1].decode(), "tail": data[-1:].decode()})
        elif name not in seen:
            seen.append(name)

    check()
    open(ready, "w").close()
    while not os.path.exists(stop):
        check()
    check()
    print(json.dumps({"reads": reads, "seen": seen, "bad": bad[:5], "nbad": len(bad)}))
    """
)


def entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_write_bytes_creates_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    atomic.write_bytes(path, b"one")
    assert path.read_bytes() == b"one"
    atomic.write_bytes(path, b"two, longer")
    assert path.read_bytes() == b"two, longer"
    atomic.write_bytes(path, b"")
    assert path.read_bytes() == b""
    assert entries(tmp_path) == ["f.json"]


def test_concurrent_reader_never_sees_a_mix_or_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    atomic.write_bytes(path, PAYLOAD_A)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(ready), str(stop), str(SIZE)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        while not ready.exists():
            assert reader.poll() is None, "reader died before it started"
        for i in range(200):
            atomic.write_bytes(path, PAYLOAD_B if i % 2 == 0 else PAYLOAD_A)
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0
    result = json.loads(out)
    assert result["nbad"] == 0, result["bad"]
    assert result["reads"] >= 2
    assert "A" in result["seen"]
    assert path.read_bytes() == PAYLOAD_A  # the 200th rewrite
    assert entries(tmp_path) == ["big.json", "ready", "stop"]


def test_create_bytes_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    assert atomic.create_bytes(path, b"first") is True
    assert atomic.create_bytes(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert entries(tmp_path) == ["task.json"]


RACER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from orchestra_ci import atomic
    directory, go, me, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    open(go + "." + me, "w").close()
    while not os.path.exists(go):
        pass
    won = [atomic.create_bytes(directory / f"t{i}.json", me.encode()) for i in range(n)]
    print(json.dumps(won))
    """
)


def test_two_processes_racing_to_create_exactly_one_wins(tmp_path: Path) -> None:
    target = tmp_path / "q"
    target.mkdir()
    go = tmp_path / "go"
    n = 30
    names = ("p1", "p2")
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(target), str(go), name, str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    try:
        while not all((tmp_path / f"go.{name}").exists() for name in names):
            assert all(proc.poll() is None for proc in racers), "a racer died before the start"
        go.touch()
        results = {}
        for name, proc in zip(names, racers, strict=True):
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0
            results[name] = json.loads(out)
    finally:
        for proc in racers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i in range(n):
        winners = [name for name in names if results[name][i]]
        assert len(winners) == 1, (i, results)
        assert (target / f"t{i}.json").read_bytes() == winners[0].encode()
    assert entries(target) == sorted(f"t{i}.json" for i in range(n))


def _fail(*args: object) -> None:
    raise OSError(5, "injected failure")


@pytest.mark.parametrize("victim", ["fsync", "replace"])
def test_failed_write_keeps_previous_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim: str
) -> None:
    path = tmp_path / "rec.json"
    atomic.write_bytes(path, b"previous")
    monkeypatch.setattr(os, victim, _fail)
    with pytest.raises(OSError, match="injected"):
        atomic.write_bytes(path, b"new contents")
    monkeypatch.undo()
    assert path.read_bytes() == b"previous"
    assert entries(tmp_path) == ["rec.json"]


def test_failed_write_json_leaves_nothing_when_file_is_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "fsync", _fail)
    with pytest.raises(OSError):
        atomic.write_json(tmp_path / "new.json", {"a": 1})
    monkeypatch.undo()
    assert entries(tmp_path) == []


@pytest.mark.parametrize("victim", ["fsync", "link"])
def test_failed_create_leaves_no_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim: str
) -> None:
    monkeypatch.setattr(os, victim, _fail)
    with pytest.raises(OSError, match="injected"):
        atomic.create_bytes(tmp_path / "task.json", b"data")
    monkeypatch.undo()
    assert entries(tmp_path) == []


def test_write_json_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    value = {"taskId": "t", "prompt": 'héllo "quoted"\nline', "n": [1, 2]}
    atomic.write_json(path, value)
    assert json.loads(path.read_text(encoding="utf-8")) == value
    assert path.read_bytes().endswith(b"\n")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_remove_stale_temp_files(tmp_path: Path) -> None:
    dead = _dead_pid()
    live_child = subprocess.Popen(["sleep", "30"])
    try:
        stale = [
            f".task.json.{dead}.0a1b2c3d.tmp",
            f".results.json.{dead}.ffffffff.tmp",
            f".x.{dead}.00.tmp",
        ]
        kept = [
            f".task.json.{os.getpid()}.0a1b2c3d.tmp",
            f".other.json.{live_child.pid}.12345678.tmp",
            ".gitignore",
            ".hidden.tmp",
            ".a.notapid.0a1b2c3d.tmp",
            f"task.json.{dead}.0a1b2c3d.tmp",  # not a dotfile
            f".task.json.{dead}.0a1b2c3d.tmp.bak",
            "task.json",
        ]
        for name in stale + kept:
            (tmp_path / name).write_text("x")

        assert atomic.remove_stale_temp_files(tmp_path) == len(stale)
        assert entries(tmp_path) == sorted(kept)
        assert atomic.remove_stale_temp_files(tmp_path) == 0
    finally:
        live_child.kill()
        live_child.wait()


def test_remove_stale_temp_files_in_missing_directory(tmp_path: Path) -> None:
    assert atomic.remove_stale_temp_files(tmp_path / "absent") == 0


def test_a_writer_killed_mid_write_leaves_a_temp_file_that_is_then_removed(
    tmp_path: Path,
) -> None:
    """The temp name carries the writer's pid, so a dead writer's leftover is recognised."""
    script = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from orchestra_ci import atomic
        os.fsync = lambda fd: os._exit(9)  # die after writing, before the rename
        atomic.write_bytes(Path(sys.argv[1]), b"new")
        """
    )
    path = tmp_path / "task.json"
    path.write_bytes(b"old")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], check=False)
    assert proc.returncode == 9
    leftovers = [n for n in entries(tmp_path) if n != "task.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".task.json.")
    assert path.read_bytes() == b"old"
    assert atomic.remove_stale_temp_files(tmp_path) == 1
    assert entries(tmp_path) == ["task.json"]


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    monkeypatch.setattr(atomic, "_datasync", counting)
    return calls


def test_durable_write_fsyncs_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_fsyncs(monkeypatch)
    atomic.write_bytes(tmp_path / "f", b"data")
    assert sorted(calls) == ["dir", "file"]
    calls.clear()
    assert atomic.create_bytes(tmp_path / "g", b"data")
    assert sorted(calls) == ["dir", "file"]


def test_non_durable_write_skips_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_fsyncs(monkeypatch)
    path = tmp_path / "f.pid"
    atomic.write_bytes(path, b"123\n", durable=False)
    atomic.write_json(tmp_path / "g.json", {"x": 1}, durable=False)
    assert calls == []
    assert path.read_bytes() == b"123\n"
    assert entries(tmp_path) == ["f.pid", "g.json"]


def test_pid_exists() -> None:
    assert atomic.pid_exists(os.getpid())
    assert not atomic.pid_exists(_dead_pid())


def test_a_large_batch_is_one_syncfs_on_linux(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("syncfs is Linux's")
    calls = _count_fsyncs(monkeypatch)
    files = [tmp_path / f"f{n}" for n in range(atomic.SYNCFS_BATCH)]
    for path in files:
        path.write_bytes(b"data")
    atomic.flush(tmp_path, [*files, tmp_path])
    assert calls == []


def test_flush_without_syncfs_fsyncs_each_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_syncfs", None)
    calls = _count_fsyncs(monkeypatch)
    files = [tmp_path / f"f{n}" for n in range(atomic.SYNCFS_BATCH)]
    for path in files:
        path.write_bytes(b"data")
    atomic.flush(tmp_path, [*files, tmp_path])
    assert sorted(calls) == ["dir"] + ["file"] * atomic.SYNCFS_BATCH


def test_a_small_batch_is_flushed_file_by_file_and_a_large_one_with_one_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """syncfs waits for everything dirty on the file system (agents' builds, an image just
    unpacked): only a batch large enough to be worth it pays for that."""
    syncfs_calls: list[int] = []
    monkeypatch.setattr(atomic, "syncfs_function", lambda: syncfs_calls.append)
    fsyncs = _count_fsyncs(monkeypatch)
    files = [tmp_path / f"f{n}" for n in range(atomic.SYNCFS_BATCH)]
    for path in files:
        path.write_bytes(b"x")
    atomic.flush(tmp_path, [*files[:3], tmp_path])  # files and their directory
    assert (syncfs_calls, sorted(fsyncs)) == ([], ["dir", "file", "file", "file"])
    atomic.flush(tmp_path, files)
    assert len(syncfs_calls) == 1 and len(fsyncs) == 4


@pytest.mark.parametrize("pydantic_loaded", [True, False])
def test_records_are_written_as_the_json_module_would_indent_them(
    pydantic_loaded: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pydantic_core

    if pydantic_loaded:
        monkeypatch.setitem(sys.modules, "pydantic_core", pydantic_core)
    else:
        monkeypatch.delitem(sys.modules, "pydantic_core")
    record = {
        "taskId": "t-1",
        "prompt": 'Fix "quoting" \\ tabs\tand newlines\n in caf\u00e9 \u2603 \U0001f600 \u2028',
        "retryCount": 2,
        "cost": 0.125,
        "big": 10**20,
        "pid": None,
        "ok": True,
        "dependsOn": [],
        "results": {},
        "attempts": [{"number": 1, "usage": {"turns": 3, "argv": ["claude", "-p"]}}],
    }
    expected = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    assert atomic.dump_json(record) == expected.encode()
    assert json.loads(atomic.dump_json(record)) == record


@pytest.mark.parametrize("size", [0, 1, (1 << 16) - 1, 1 << 16, (1 << 16) + 1, 3 << 16])
def test_read_bytes_reads_a_file_whole_whatever_its_size(tmp_path: Path, size: int) -> None:
    """One read serves a file shorter than the first read's buffer; a longer one is read on."""
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert atomic.read_bytes(tmp_path / "f") == data
    assert atomic.read_bytes(str(tmp_path / "f")) == data
