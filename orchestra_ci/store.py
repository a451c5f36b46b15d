"""The ``.orchestra/`` directory: task records, sentinels, logs, locks.

Every record change happens under the queue lock (an ``flock`` on ``queue.lock``) as a
read-modify-write of the file on disk, so concurrent processes never lose an update.
Runners hold an ``flock`` on ``runners/<id>.lock`` for their whole life; the kernel drops it
when a runner dies, which is how a later run knows that a ``running`` task was orphaned.

Durable record writes are made in batches: a record's new content is flushed before it is
renamed into place and the directory after, and the records written together (the claims
of a scheduling round, the finishes that land together, a ``load`` of many tasks) share
those flushes (:func:`~orchestra_ci.atomic.flush`) instead of paying two fsyncs each.
"""

import contextlib
import errno
import fcntl
import json
import os
import sys
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

from orchestra_ci import atomic
from orchestra_ci.errors import StoreError, TaskNotFound, one_line
from orchestra_ci.record import TaskRecord, check_task_id, now_iso
from orchestra_ci.record import problem as record_problem

ORCHESTRA_DIR = ".orchestra"
RESULTS_FILE = "results.json"
MANIFEST_FILE = "run.json"  # what an exact re-run needs (see manifest.py)


def _read_raw(path: str | Path) -> bytes | None:
    """A record file's bytes; None if there is none. An OSError other than a missing file
    propagates (as :class:`StoreError` where the caller cannot quarantine)."""
    try:
        return atomic.read_bytes(path)
    except FileNotFoundError:
        return None


_DECODER = json.JSONDecoder()


def _parse(raw: bytes) -> Any:
    """``json.loads(raw)``, ~30 % faster for the common case (UTF-8, nothing before the
    value): ``loads`` of bytes first detects their encoding, then skips leading whitespace.
    Anything else takes ``loads`` itself, so what is accepted, and every error, is its."""
    try:
        text = raw.decode()
        value, end = _DECODER.raw_decode(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return json.loads(raw)
    if text[end:].strip(" \t\n\r"):  # JSON's whitespace only
        return json.loads(raw)
    return value


def _read_or_fail(path: Path) -> bytes | None:
    try:
        return _read_raw(path)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.dir = self.root / ORCHESTRA_DIR
        self.tasks_dir = self.dir / "tasks"
        self._tasks_prefix = os.path.join(os.fspath(self.tasks_dir), "")
        self.logs_dir = self.dir / "logs"
        self.patches_dir = self.dir / "patches"
        self.worktrees_dir = self.dir / "worktrees"
        self.runners_dir = self.dir / "runners"
        self.results_path = self.dir / RESULTS_FILE
        self.quarantine_dir = self.dir / "quarantine"
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._mutex = threading.RLock()
        self.flushes = 0  # made so far
        # For a runner's claims (see rewriting_many): temp files made ahead, and the
        # versions claims replaced, still to be freed.
        self._spares: list[tuple[int, Path]] = []
        self._replaced: list[contextlib.ExitStack] = []

    # -- layout -------------------------------------------------------------------------

    def ensure(self) -> "Store":
        for directory in (self.tasks_dir, self.logs_dir, self.runners_dir):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {directory}: {exc.strerror or exc}") from None
        return self

    def remove_stale_temp_files(self) -> int:
        """Delete temp files that writers killed mid-write left in ``tasks/`` and beside
        ``results.json`` and ``run.json``."""
        return sum(atomic.remove_stale_temp_files(d) for d in (self.tasks_dir, self.dir))

    def record_path(self, task_id: str) -> Path:
        return Path(self.record_file(task_id))

    def record_file(self, task_id: str) -> str:
        """:meth:`record_path` as a plain string: a scan of the queue reads every record,
        and a ``Path`` each cost ~3 µs of the ~25 µs that ``status`` spends on a record."""
        return f"{self._tasks_prefix}{task_id}.json"

    def sentinel(self, task_id: str, kind: str) -> Path:
        """``kind`` is ``done``, ``error`` or ``pid``."""
        return self.tasks_dir / f"{task_id}.{kind}"

    def log_path(self, task_id: str) -> Path:
        return self.logs_dir / f"{task_id}.log"

    # -- locking ------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the queue lock: re-entrant, and exclusive between this process's threads
        (a mutex) as well as between processes (``flock``)."""
        with self._mutex:
            if self._lock_depth == 0:
                fcntl.flock(self._lock_file(), fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _lock_file(self) -> int:
        """``queue.lock``, opened once per store and closed with it: a run takes the lock
        twice per task."""
        if self._lock_fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / "queue.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._lock_fd = fd
            weakref.finalize(self, os.close, fd)
        return self._lock_fd

    # -- records ------------------------------------------------------------------------

    def names(self) -> set[str]:
        """The file names in ``tasks/``: records, sentinels, temp files."""
        try:
            return set(os.listdir(self.tasks_dir))
        except FileNotFoundError:
            return set()

    def ids(self, names: Iterable[str] | None = None) -> list[str]:
        """Task ids, from ``names`` (a listing of ``tasks/`` already made) or the directory."""
        if names is None:
            try:
                names = os.listdir(self.tasks_dir)
            except FileNotFoundError:
                return []
        # Temp files end in .tmp, so an id may start with a dot like any other.
        return [n[:-5] for n in names if n.endswith(".json")]

    def read(self, task_id: str) -> TaskRecord | None:
        """The task's record; None when there is none, or when the file cannot be used as
        one: then it is quarantined (see :meth:`quarantine`) and the rest of the queue
        carries on without it."""
        path = self.record_file(task_id)
        try:
            raw = _read_raw(path)
        except OSError as exc:
            self.quarantine(Path(path), f"cannot be read: {exc.strerror or exc}")
            return None
        return None if raw is None else self._decode(path, task_id, raw)

    def _decode(self, path: str | Path, task_id: str, raw: bytes) -> TaskRecord | None:
        try:
            value = _parse(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason: str | None = f"not valid JSON ({exc})"
        except RecursionError:
            reason = "not valid JSON (nested too deeply)"
        else:
            reason = record_problem(task_id, value)
        if reason is not None:
            self.quarantine(Path(path), reason)
            return None
        return cast(TaskRecord, value)

    def quarantine(self, path: Path, reason: str) -> None:
        """Move an unusable record file to ``quarantine/`` with a ``.reason`` file beside it,
        and say so once, in one line. Another process that got there first wins."""
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = self.quarantine_dir / path.name
        n = 1
        while target.exists():
            target = self.quarantine_dir / f"{path.name}.{n}"
            n += 1
        try:
            atomic.write_bytes(target.with_name(target.name + ".reason"), f"{reason}\n".encode())
            os.replace(path, target)
        except FileNotFoundError:
            target.with_name(target.name + ".reason").unlink(missing_ok=True)
            return
        except OSError as exc:
            raise StoreError(f"cannot quarantine {path}: {exc.strerror or exc}") from None
        shown = target.relative_to(self.root)
        message = f"{path.name} cannot be used and was moved to {shown}: {reason}"
        print(f"orchestra-ci: warning: {one_line(message)}", file=sys.stderr, flush=True)

    def quarantined(self) -> list[tuple[str, str]]:
        """``(file, reason)`` for each record file in ``quarantine/``, by name."""
        try:
            names = sorted(os.listdir(self.quarantine_dir))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.endswith(".reason"):
                continue
            try:
                reason = (self.quarantine_dir / f"{name}.reason").read_text().strip()
            except OSError:
                reason = "unknown"
            found.append((name, reason))
        return found

    def get(self, task_id: str) -> TaskRecord:
        check_task_id_or_missing(task_id)
        record = self.read(task_id)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    def iter_records(self, only: Collection[str] | None = None) -> Iterator[TaskRecord]:
        """Records one at a time (optionally only some ids), for scans of large queues."""
        for task_id in self.ids():
            if only is not None and task_id not in only:
                continue
            record = self.read(task_id)
            if record is not None:
                yield record

    def all(self) -> list[TaskRecord]:
        return list(self.iter_records())

    def write(self, record: TaskRecord, *, durable: bool = True) -> None:
        """Replace a record atomically. ``durable=False`` skips the flushes, for changes
        whose loss in a power failure is harmless."""
        self.write_many([record], durable=durable)

    def write_many(self, records: Sequence[TaskRecord], *, durable: bool = True) -> None:
        """Replace records atomically, made durable together (two flushes for them all)."""
        for record in records:
            record["updatedAt"] = now_iso()
        if durable:
            self._put([(self.record_path(r["taskId"]), atomic.dump_json(r)) for r in records])
            return
        for record in records:
            path = self.record_path(record["taskId"])
            try:
                atomic.write_json(path, record, durable=False)
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc}") from exc

    def create(self, record: TaskRecord) -> bool:
        """Add a new record; False if a task with this id already exists."""
        return self.create_many([record])[0]

    def create_many(self, records: Sequence[TaskRecord]) -> list[bool]:
        """Add new records, durable together; for each, False if its task already existed
        (that file is left as it was)."""
        self.ensure()
        files = [(self.record_path(r["taskId"]), atomic.dump_json(r)) for r in records]
        return self._put(files, create=True)

    def commit(self, *task_ids: str) -> None:
        """Make the records of ``task_ids``, written with ``durable=False``, durable: one
        flush for them all."""
        paths = [self.record_path(task_id) for task_id in task_ids]
        try:
            self._flush([*paths, self.tasks_dir])
        except OSError as exc:
            raise StoreError(f"cannot write {self.tasks_dir}: {exc}") from exc

    def _flush(self, paths: Collection[Path]) -> None:
        """Make ``paths`` durable, in one :func:`~orchestra_ci.atomic.flush`. Callers batch
        their paths; concurrent callers (a claim batch, a finish batch) flush side by side,
        neither waiting for the other's device flush."""
        self.flushes += 1
        atomic.flush(self.tasks_dir, paths)

    def _put(self, files: Sequence[tuple[Path, bytes]], *, create: bool = False) -> list[bool]:
        """Write each file's temp copy, flush their data once, put them in place (``create``:
        only where there is no file yet), flush the directory once. Readers see each file
        whole, old or new; a crash at any moment leaves each either as it was or replaced.
        """
        temps: list[Path] = []
        placed: list[bool] = []
        where = files[0][0] if files else self.tasks_dir
        try:
            for path, data in files:
                where = path
                temps.append(atomic.write_temp(path, data, durable=False))
            where = self.tasks_dir
            self._flush(temps)
            for (path, _), temp in zip(files, temps, strict=True):
                where = path
                placed.append(atomic.place(temp, path, create=create))
            self._flush([self.tasks_dir])
        except OSError as exc:
            raise StoreError(f"cannot write {where}: {exc}") from exc
        finally:
            for temp in temps[len(placed) :]:
                temp.unlink(missing_ok=True)
        return placed

    def update(
        self,
        task_id: str,
        change: Callable[[TaskRecord], TaskRecord | None],
        *,
        then: Callable[[TaskRecord], None] | None = None,
    ) -> TaskRecord:
        """Read, change and durably write one record, atomically with respect to every other
        writer; ``then`` runs under the same queue lock once the record is in place.
        ``change`` edits the record it is given, or returns the new record (a transition).
        See :meth:`update_many`."""
        result = self.update_many([Change(task_id, change, then)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def update_many(self, changes: Sequence["Change"]) -> list[TaskRecord | Exception]:
        """:meth:`update` of several records, which share one acquisition of the queue lock
        and two flushes; for each, its new record or the exception it ended in (the others
        are still written).

        Each new version is written and flushed to disk before the lock is taken, and put in
        place only if its record did not change meanwhile (else its change is applied again
        under the lock): the lock is held for reads and renames, not for a device flush.
        """
        results: list[TaskRecord | Exception] = []
        staged: list[tuple[int, _Staged]] = []
        try:
            for change in changes:
                try:
                    item = self._stage(change)
                except Exception as exc:
                    results.append(exc)
                    continue
                staged.append((len(results), item))
                results.append(item.record)
            if not staged:
                return results
            self._flush([item.temp for _, item in staged if item.temp is not None])
            with contextlib.ExitStack() as held, self.locked():
                for index, item in staged:
                    try:
                        results[index] = self._swap(item, held)
                    except Exception as exc:
                        results[index] = exc
            self._flush([self.tasks_dir])
        except OSError as exc:  # a shared flush failed: so did every write it held
            error = StoreError(f"cannot write {self.tasks_dir}: {exc}")
            for index, _ in staged:
                results[index] = error
        finally:
            for _, item in staged:
                if item.temp is not None:
                    item.temp.unlink(missing_ok=True)
        return results

    def _stage(self, change: "Change") -> "_Staged":
        """The changed record, its new version in a temp file (not yet flushed)."""
        task_id = change.task_id
        check_task_id_or_missing(task_id)
        path = self.record_path(task_id)
        before = _read_or_fail(path)
        if before is None:
            raise TaskNotFound(task_id)
        found = self._decode(path, task_id, before)
        if found is None:
            raise TaskNotFound(task_id)
        record = _changed(found, change.change)
        record["updatedAt"] = now_iso()
        try:
            temp = atomic.write_temp(path, atomic.dump_json(record), durable=False)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc
        return _Staged(change, path, before, record, temp)

    def _swap(self, item: "_Staged", held: contextlib.ExitStack) -> TaskRecord:
        """Under the queue lock: put a staged version in place, or, if the record changed
        since it was staged, apply its change again to what is there now."""
        path, change = item.path, item.change
        try:
            current = self._read_held(path, held)
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        if current is None:
            raise TaskNotFound(change.task_id)
        record = item.record
        if current == item.before:
            assert item.temp is not None
            try:
                os.replace(item.temp, path)
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc}") from exc
            item.temp = None
        else:  # someone else wrote it meanwhile: redo the change on their version
            record = _changed(self.get(change.task_id), change.change)
            self.write(record)
        if change.then is not None:
            change.then(record)
        return record

    def _read_held(self, path: Path, held: contextlib.ExitStack) -> bytes | None:
        """``path``'s bytes (None if there is no such file), read through a descriptor that
        stays open until ``held`` closes. A rename over the file before then leaves the
        version it replaced to be freed at that close: its inode, and its blocks, which a
        file system mounted with ``discard`` trims on the spot (~0.14 ms a file measured on
        ext4). Closed after the queue lock is released, that is work the lock does not wait
        for."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        held.callback(os.close, fd)
        return atomic.read_fd(fd)

    @contextlib.contextmanager
    def rewriting_many(
        self, task_ids: Sequence[str], *, free_later: bool = False
    ) -> Iterator[list["Rewrite"]]:
        """Read-modify-writes of records under one acquisition of the queue lock, held as
        briefly as it can be: the temp file for each new version is created before the lock
        is taken (or was, by :meth:`make_spares`), the versions they replace are freed after
        it is released (with ``free_later``: by :meth:`free_replaced`). The block runs under
        the lock; a :meth:`Rewrite.put` there is atomic, not durable: :meth:`commit` it
        after.

        A runner's claims are made that way: an agent waits for its claim, and creating a
        file, or freeing one on a file system mounted with ``discard``, costs about as much
        as the rest of the claim (0.3 and 0.4 ms measured on ext4)."""
        held = contextlib.ExitStack()  # entered with the lock, closed after it
        rewrites: list[Rewrite] = []
        try:
            for task_id in task_ids:
                path = self.record_path(task_id)
                try:
                    fd, temp = self._spares.pop() if self._spares else atomic.open_temp(path)
                except OSError as exc:
                    raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
                rewrites.append(Rewrite(self, task_id, path, fd, temp, held))
            try:
                with self.locked():
                    yield rewrites
            finally:
                if free_later:
                    self._replaced.append(held)
                else:
                    held.close()
        finally:
            for rewrite in rewrites:
                rewrite.close()

    def make_spares(self, count: int) -> None:
        """Have ``count`` empty temp files ready in ``tasks/`` for the next rewrites."""
        while len(self._spares) < count:
            try:
                self._spares.append(atomic.open_temp(self.tasks_dir / "spare"))
            except OSError:
                return  # the rewrite will try (and report) it itself

    def free_replaced(self) -> None:
        """Free the versions that rewrites with ``free_later`` replaced."""
        while self._replaced:
            self._replaced.pop().close()

    def drop_spares(self) -> None:
        """Remove the temp files :meth:`make_spares` made that were not used."""
        while self._spares:
            fd, temp = self._spares.pop()
            os.close(fd)
            temp.unlink(missing_ok=True)

    def files_of(self, task_id: str) -> list[Path]:
        """Every file that belongs to a task (its record last), present or not."""
        return [
            self.sentinel(task_id, "done"),
            self.sentinel(task_id, "error"),
            self.sentinel(task_id, "pid"),
            self.log_path(task_id),
            self.patches_dir / f"{task_id}.patch",
            self.record_path(task_id),
        ]

    def delete(self, task_id: str) -> None:
        """Remove a task and every file that belongs to it."""
        import shutil  # here: with its compression modules, ~3 ms of every quick command

        for path in self.files_of(task_id):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.worktrees_dir / task_id, ignore_errors=True)

    # -- sentinels ----------------------------------------------------------------------

    def write_done(self, task_id: str) -> None:
        """An empty ``.done`` file, as agent-orchestrator's protocol has it. Creating an empty
        file is atomic by itself, and the durable record is the source of truth."""
        os.close(os.open(self.sentinel(task_id, "done"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC))

    def write_error(self, task_id: str, error: str, details: str = "") -> None:
        body = {"error": error, "details": details, "timestamp": now_iso()}
        atomic.write_json(self.sentinel(task_id, "error"), body, durable=False)

    def read_error(
        self, task_id: str, clean: Callable[[str], str] | None = None
    ) -> dict[str, Any] | None:
        """The ``.error`` sentinel as a dict; free text from an agent becomes ``error``.
        ``clean`` rewrites the file first if it changes its text (the runner masks secrets
        an agent wrote there: the file goes into the artifact)."""
        path = self.sentinel(task_id, "error")
        try:
            raw = atomic.read_bytes(path)
        except FileNotFoundError:
            return None
        if clean is not None:
            text = raw.decode("utf-8", "surrogateescape")
            cleaned = clean(text)
            if cleaned != text:
                raw = cleaned.encode("utf-8", "surrogateescape")
                atomic.write_bytes(path, raw, durable=False)
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            value = None
        if isinstance(value, dict):
            return value
        text = raw.decode(errors="replace").strip()
        return {"error": text or "agent wrote an empty .error file", "details": ""}

    def write_pid(self, task_id: str, pid: int) -> None:
        """Written in place, not through a temp file: it is written once per attempt, in one
        ``write()`` of a few bytes, so a reader sees all of it or an empty file, which reads
        as "unknown" (recovery then finds the agent by its attempt marker)."""
        fd = os.open(
            self.sentinel(task_id, "pid"),
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
            0o644,
        )
        try:
            os.write(fd, f"{pid}\n".encode())
        finally:
            os.close(fd)

    def read_pid(self, task_id: str) -> int | None:
        try:
            return int(self.sentinel(task_id, "pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    # -- runners ------------------------------------------------------------------------

    def runner_alive(self, runner_id: str) -> bool:
        """True while the runner that wrote ``runner_id`` still holds its lease."""
        path = self.runners_dir / f"{runner_id}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
        return False


class Rewrite:
    """One record's read-modify-write under the queue lock (see :meth:`Store.rewriting_many`)."""

    def __init__(
        self,
        store: Store,
        task_id: str,
        path: Path,
        fd: int,
        temp: Path,
        held: contextlib.ExitStack,
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.path = path
        self.held = held  # what is released after the lock
        self.placed = False
        self._fd = fd
        self._temp = temp

    def read(self) -> TaskRecord | None:
        """The record as it is now (see :meth:`Store.read`: an unusable file is
        quarantined)."""
        try:
            raw = self.store._read_held(self.path, self.held)
        except OSError as exc:
            self.store.quarantine(self.path, f"cannot be read: {exc.strerror or exc}")
            return None
        return None if raw is None else self.store._decode(self.path, self.task_id, raw)

    def put(self, record: TaskRecord) -> None:
        """Replace the record with ``record``, atomically; once."""
        assert not self.placed, "a rewrite puts one new version"
        record["updatedAt"] = now_iso()
        try:
            atomic.write_all(self._fd, atomic.dump_json(record))
            os.replace(self._temp, self.path)
        except OSError as exc:
            raise StoreError(f"cannot write {self.path}: {exc}") from exc
        self.placed = True

    def close(self) -> None:
        """Close the temp file; remove it if it was not put in place."""
        os.close(self._fd)
        if not self.placed:
            self._temp.unlink(missing_ok=True)


class Change(NamedTuple):
    """One record's change for :meth:`Store.update_many`: ``change`` edits the record it is
    given or returns a new one; ``then`` runs under the queue lock once it is in place."""

    task_id: str
    change: Callable[[TaskRecord], TaskRecord | None]
    then: Callable[[TaskRecord], None] | None = None


class _Staged:
    """A change of :meth:`Store.update_many` written to its temp file, to be put in place.
    (Plain classes here, not dataclasses: importing ``dataclasses`` costs every quick
    command, ``status`` among them, ~7 ms.)"""

    __slots__ = ("before", "change", "path", "record", "temp")

    def __init__(
        self, change: Change, path: Path, before: bytes, record: TaskRecord, temp: Path | None
    ) -> None:
        self.change = change
        self.path = path
        self.before = before  # the record as the change saw it
        self.record = record
        self.temp = temp  # None once renamed into place


def _changed(record: TaskRecord, change: Callable[[TaskRecord], TaskRecord | None]) -> TaskRecord:
    new = change(record)
    return record if new is None else new


def check_task_id_or_missing(task_id: str) -> None:
    """A malformed id names no task; say so instead of touching odd paths."""
    try:
        check_task_id(task_id)
    except ValueError:
        raise TaskNotFound(task_id) from None


class RunnerLease:
    """Marks a live runner: an exclusive ``flock`` held until :meth:`release` or death."""

    def __init__(self, store: Store, runner_id: str) -> None:
        self.store = store
        self.runner_id = runner_id
        store.ensure()
        self._path = store.runners_dir / f"{runner_id}.lock"
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self._fd >= 0:
            self._path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1
