"""Crash-safe file writes: unique temp file, fsync, rename, fsync of the directory; and
:func:`flush`, which makes a batch of them durable at once."""

import itertools
import json
import os
import stat
import sys
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, cast

# A temp file's name: the writer's pid (see remove_stale_temp_files), then a token made of a
# random part drawn once per process and a counter (a `load` names thousands: one
# random draw, a system call, for each was a measurable part of it).
_TOKEN = os.urandom(4).hex()
_COUNTER = itertools.count()


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{_TOKEN}{next(_COUNTER):x}.tmp")


def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd`` (``os.write`` may write less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def open_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temp file next to ``path``, open for writing, for the caller to fill
    and rename over ``path``: created before a lock is taken, it keeps the file creation
    (an inode allocation) out of the lock."""
    tmp = _temp_path(path)
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), tmp


def write_temp(path: Path, data: bytes | Iterable[bytes], durable: bool = True) -> Path:
    """A new temp file next to ``path`` holding ``data`` (flushed to disk if ``durable``),
    for the caller to rename over ``path``."""
    fd, tmp = open_temp(path)
    try:
        for chunk in [data] if isinstance(data, bytes) else data:
            write_all(fd, chunk)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def remove_stale_temp_files(directory: Path) -> int:
    """Delete temp files left by writers that died mid-write (their pid is gone)."""
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        parts = name.split(".")
        if not (name.startswith(".") and name.endswith(".tmp") and len(parts) >= 5):
            continue
        pid = parts[-3]
        if pid.isdigit() and not pid_exists(int(pid)):
            (directory / name).unlink(missing_ok=True)
            removed += 1
    return removed


def pid_exists(pid: int, *, group: bool = False) -> bool:
    """Is there a process ``pid`` (with ``group``: a process group ``pid``)?"""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_UNKNOWN: Any = object()
_syncfs: Callable[[int], int] | None = _UNKNOWN


def syncfs_function() -> Callable[[int], int] | None:
    """libc's ``syncfs(fd)`` (Linux): one call flushes every file and directory of the file
    system that ``fd`` is on, in one journal commit. None where there is none (macOS)."""
    global _syncfs
    if _syncfs is _UNKNOWN:
        import ctypes  # only writers that group their flushes pay for it

        try:
            function = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _syncfs = None
        else:
            function.argtypes = [ctypes.c_int]

            def call(fd: int) -> int:
                if function(fd) != 0:
                    number = ctypes.get_errno()
                    raise OSError(number, os.strerror(number))
                return 0

            _syncfs = call
    return _syncfs


# A batch of at least this many paths is flushed with one syncfs; a smaller one path by path.
SYNCFS_BATCH = 128
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def flush(directory: Path, paths: Collection[Path]) -> None:
    """Make ``paths`` durable (a file: its data; a directory: its entries), all on the file
    system of ``directory``.

    ``syncfs`` flushes the whole file system in one call: cheapest per file for a large
    batch (a ``load`` of many tasks), but it also waits for everything else dirty there,
    which is unbounded: agents building in their worktrees, or, in the Action, the image a
    runner has just unpacked (measured: 0.88 s for a one-task ``load`` right after a
    container was created, against a few ms for the task's own files). So a batch of fewer
    than :data:`SYNCFS_BATCH` paths, as a run's claims and finishes are, is flushed path by
    path (``fdatasync`` of each file, ``fsync`` of each directory): its cost is its own.
    """
    syncfs = syncfs_function() if len(paths) >= SYNCFS_BATCH else None
    if syncfs is None:
        for path in paths:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.fsync(fd)
                else:
                    _datasync(fd)
            finally:
                os.close(fd)
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def place(temp: Path, path: Path, *, create: bool = False) -> bool:
    """Put ``temp`` (from :func:`write_temp`) at ``path``: renamed over it, or with ``create``
    linked only where there is no file yet; False if there was one. ``temp`` is gone after,
    whatever happened."""
    if not create:
        try:
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return True
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)
    return True


def write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new bytes, never a mix.

    ``durable=False`` skips the fsyncs: still atomic, but may be lost on power failure
    (for files whose loss is harmless, such as a claim: the task would just run again).
    """
    place(write_temp(path, data, durable), path)
    if durable:
        fsync_dir(path.parent)


def write_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    """Like :func:`write_bytes` for content produced piece by piece."""
    place(write_temp(path, chunks), path)
    fsync_dir(path.parent)


def create_bytes(path: Path, data: bytes) -> bool:
    """Create ``path`` atomically only if it does not exist; return False if it did."""
    created = place(write_temp(path, data), path, create=True)
    if created:
        fsync_dir(path.parent)
    return created


def read_bytes(path: str | Path) -> bytes:
    """A whole small file in three system calls (``Path.read_bytes`` makes about seven:
    it also stats, seeks and asks whether the file is a terminal); scans of a large queue
    read every record."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # A short read of a regular file is its end: no second read to see nothing is left.
        first = os.read(fd, 1 << 16)
        return first if len(first) < 1 << 16 else first + read_fd(fd)
    finally:
        os.close(fd)


def read_fd(fd: int) -> bytes:
    """What is left to read of ``fd``."""
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def dump_json(value: Any) -> bytes:
    """``value`` as indented UTF-8 JSON: ``json.dumps(value, indent=2, ensure_ascii=False)``.

    Where pydantic is loaded (``run``, ``load``: every record written twice a run, or once),
    its serializer writes the same bytes (floats aside: ``1e-7``, not ``1e-07``) ten times
    faster than the json module, whose C encoder does not indent. Commands that write a
    record or two without pydantic (``start``, ``cancel``) keep the json module: importing
    pydantic-core would cost them more (~35 ms) than it saves."""
    core = sys.modules.get("pydantic_core")
    if core is not None:
        return cast(bytes, core.to_json(value, indent=2)) + b"\n"
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    write_bytes(path, dump_json(value), durable=durable)
