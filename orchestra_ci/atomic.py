"""Crash-safe file writes: unique temp file, fsync, rename, fsync of the directory."""

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_temp(path: Path, data: bytes | Iterable[bytes], durable: bool = True) -> Path:
    """A new temp file next to ``path`` holding ``data`` (flushed to disk if ``durable``),
    for the caller to rename over ``path``."""
    tmp = _temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        for chunk in [data] if isinstance(data, bytes) else data:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
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


def write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new bytes, never a mix.

    ``durable=False`` skips the fsyncs: still atomic, but may be lost on power failure
    (for files whose loss is harmless, such as a claim: the task would just run again).
    """
    tmp = write_temp(path, data, durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    """Like :func:`write_bytes` for content produced piece by piece."""
    tmp = write_temp(path, chunks)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_bytes(path: Path, data: bytes, *, sync_dir: bool = True) -> bool:
    """Create ``path`` atomically only if it does not exist; return False if it did.

    ``sync_dir=False`` leaves the directory fsync to the caller, who creates many files
    and syncs the directory once (the files themselves are always fsynced)."""
    tmp = write_temp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    if sync_dir:
        fsync_dir(path.parent)
    return True


def read_bytes(path: Path) -> bytes:
    """A whole small file in four system calls (``Path.read_bytes`` makes about seven:
    it also stats, seeks and asks whether the file is a terminal); scans of a large queue
    read every record."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def dump_json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def write_json(path: Path, value: Any, *, durable: bool = True) -> None:
    write_bytes(path, dump_json(value), durable=durable)
