"""Running one agent attempt: a process group, a capped log, a timeout, a clean kill.

Every agent starts in a new session (its own process group) with a marker variable in its
environment; stopping an attempt signals the group and every process that still carries
the marker, so children that ignore SIGTERM or left the group do not outlive the task.
"""

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestra_ci import atomic, process_table
from orchestra_ci.outcome import StopReason
from orchestra_ci.redact import Redactor

MARKER_VAR = "ORCHESTRA_ATTEMPT_ID"
_CHUNK = 65536
_TAIL = 65536


@dataclass
class Launch:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path
    header: str
    marker: str
    timeout: float | None
    grace: float
    redactor: Redactor  # masks secrets in the log
    log_cap: int = 50 * 1024 * 1024
    stdin: bytes | None = None  # what the agent reads on its standard input (else nothing)
    stall_timeout: float | None = None  # no output and no file change that long: stalled


@dataclass
class ProcessResult:
    exit_code: int | None
    stop_reason: StopReason | None = None
    spawn_error: str | None = None
    tail: bytes = b""
    pid: int | None = None


@dataclass
class Control:
    """Lets the runner stop an attempt from outside (cancel, budget, shutdown)."""

    reason: StopReason | None = None
    grace: float | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def stop(self, reason: StopReason, grace: float | None = None) -> None:
        if self.reason is None:
            self.reason = reason
        if grace is not None:
            self.grace = grace if self.grace is None else min(self.grace, grace)
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


_found: dict[tuple[str, str], str] = {}  # (command, PATH) -> executable, found before


def resolve_command(command: str, env: dict[str, str]) -> str | None:
    """The executable for ``command`` on the agent's PATH. What was found once is
    remembered (the search stats every PATH entry); what was not is looked for again, as
    it may be installed while the run goes on."""
    if os.sep in command:
        return command if os.access(command, os.X_OK) and Path(command).is_file() else None
    path = env.get("PATH", os.defpath)
    found = _found.get((command, path))
    if found is None:
        found = shutil.which(command, path=path)
        if found is not None:
            _found[command, path] = found
    return found


def _live(pid: int) -> bool:
    return process_table.SYSTEM.live(pid)


def attempt_pids(pgid: int | None, marker: str) -> list[int]:
    """Live (non-zombie) processes of an attempt: in its process group, or carrying its
    marker in their environment after leaving the group."""
    table = process_table.SYSTEM
    found = []
    for pid in table.pids():
        try:
            group = table.group(pid)
        except (OSError, IndexError, ValueError):
            continue
        if group is None:
            continue
        if group == pgid or table.has_variable(pid, MARKER_VAR, marker):
            found.append(pid)
    return found


def _signal_all(pgid: int | None, marker: str, sig: int) -> list[int]:
    """Send ``sig`` to the attempt's processes; the ones that were alive. The group gets
    it first, at once; the scan for marked processes outside it follows."""
    if pgid is not None and pgid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    pids = attempt_pids(pgid, marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return pids


def kill_attempt(pgid: int | None, marker: str, grace: float) -> None:
    """:func:`stop_attempt`, blocking (``cancel``, recovery, an agent stopped at once)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(stop_attempt(pgid, marker, grace))
        return
    # Called from a coroutine's synchronous part: block its loop while stopping.
    thread = threading.Thread(target=asyncio.run, args=(stop_attempt(pgid, marker, grace),))
    thread.start()
    thread.join()


async def stop_attempt(
    pgid: int | None,
    marker: str,
    grace: float,
    exited: "asyncio.Future[None] | None" = None,
) -> None:
    """SIGTERM everything of an attempt, wait up to ``grace``, SIGKILL what is left.

    Zombies count as gone: the agent itself may be an exited child its runner has not
    reaped yet. The wait is on the group leader's exit (``exited``, or a pidfd watched
    here), then a /proc scan for the rest: when a run stops, many attempts stop at once,
    and polling /proc for each from its own thread kept them all waiting on each other
    for the interpreter lock, well past the grace period.
    """
    watch = exited
    if watch is None and pgid is not None and pgid > 1:
        leader = pgid
        watch = _exited(leader, lambda: not _live(leader))
    try:
        signalled = _signal_all(pgid, marker, signal.SIGTERM)
        if not signalled:
            return
        if not await _gone(pgid, marker, grace, watch, signalled):
            signalled += _signal_all(pgid, marker, signal.SIGKILL)
            await _gone(pgid, marker, 1.0, watch, signalled)
    finally:
        if watch is not None and watch is not exited:
            watch.cancel()
            await asyncio.sleep(0)  # its done-callbacks close the pidfd


async def _gone(
    pgid: int | None,
    marker: str,
    timeout: float,
    leader: "asyncio.Future[None] | None",
    signalled: list[int],
) -> bool:
    """Wait up to ``timeout`` for the attempt's processes to be gone; True if they are.
    Each process signalled must be gone or a zombie, not just missing from the scan: one
    in the middle of exiting no longer shows its environment (so its marker), and reaping
    it before it is a zombie would leave the zombie behind."""
    deadline = time.monotonic() + timeout
    if leader is not None:
        done, _ = await asyncio.wait({leader}, timeout=max(0.0, timeout))
        if not done:
            return False  # the leader itself outlived the deadline
    while True:
        if not attempt_pids(pgid, marker) and not any(map(_live, signalled)):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(0.05, left))


class Supervisor:
    """A run's agents and what they leave behind.

    On Linux the runner becomes the child subreaper of its descendants (:meth:`adopt`):
    whatever an agent leaves running when it exits then becomes a child of the runner
    instead of init's, so finding leftovers is one read of our own children list instead
    of a scan of every process's environment after every attempt.
    """

    def __init__(self) -> None:
        self.agents: set[int] = set()  # started and not reaped: other children are orphans
        self.adopting = False

    def adopt(self, enable: bool) -> bool:
        """Become (or stop being) the reaper of orphaned descendants; False where the
        platform has no such thing (macOS)."""
        ok = process_table.SYSTEM.set_subreaper(enable)
        self.adopting = enable and ok and self.adopted() is not None
        return self.adopting

    def adopted(self) -> list[int] | None:
        """Children of this process other than the agents it started (None: unknown)."""
        children = process_table.SYSTEM.children()
        if children is None:
            return None
        return [pid for pid in children if pid not in self.agents]

    def reap_adopted(self) -> None:
        _reap(self.adopted() or [])

    def left_running(self, pgid: int, marker: str) -> bool:
        """Did a finished attempt leave processes running: in its group, or outside it
        (daemons carrying its marker)?"""
        if not self.adopting:
            return atomic.pid_exists(pgid, group=True) or bool(attempt_pids(None, marker))
        strays = self.adopted()
        if strays:
            _reap(strays)  # those that died with the agent (or since) are our zombies
            strays = self.adopted()
        if atomic.pid_exists(pgid, group=True):
            return True
        # Every live descendant of a finished agent would be our child.
        return bool(strays) and bool(attempt_pids(None, marker))

    def stop_adopted(self, grace: float) -> None:
        """Stop every orphan the run adopted (SIGTERM, ``grace``, SIGKILL) and reap it: at
        the end of a run nothing its agents started outlives it, even without the marker."""
        deadline = time.monotonic() + grace
        give_up = deadline + 2.0  # a process stuck in the kernel cannot hold up the runner
        sig = signal.SIGTERM
        while (strays := [pid for pid in self.adopted() or [] if _live(pid)]) and (
            time.monotonic() < give_up
        ):
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            if time.monotonic() >= deadline:
                sig = signal.SIGKILL
            time.sleep(0.02)
            _reap(strays)
        self.reap_adopted()


def _reap(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


class _LogPump:
    """Copies the agent's output to its log as it arrives, up to a cap, keeping the tail.

    It reads the pipe from the event loop's selector, so it needs no thread, and it does not
    decide when the attempt ends: a child that keeps the pipe open cannot hold up the run.
    """

    def __init__(self, log: Path, header: str, cap: int, redactor: Redactor) -> None:
        # Unbuffered: every chunk goes straight to the file, so the log is current while the
        # agent runs and nothing is lost if the runner is killed.
        self._log = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            self._put(header.encode())
        except BaseException:
            os.close(self._log)
            raise
        self.cap = cap
        self.last_output = time.monotonic()
        self.written = 0
        self.tail = bytearray()
        self.truncated = False
        self.redact = redactor.stream()  # secrets never reach the log, even split in two
        self.error: OSError | None = None
        self.eof: asyncio.Future[None] | None = None
        self._pipe = -1

    def attach(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        self.eof = loop.create_future()
        self._pipe = fd
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self._pipe, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.detach()
            return
        self.last_output = time.monotonic()
        self.tail += chunk
        if len(self.tail) > _TAIL:
            del self.tail[: len(self.tail) - _TAIL]
        self._write(self.redact.feed(chunk))

    def _write(self, chunk: bytes) -> None:
        if self.error is not None:
            return  # the log cannot be written (e.g. the disk is full): keep draining the pipe
        try:
            kept = chunk[: max(0, self.cap - self.written)]
            if kept:
                self._put(kept)
                self.written += len(kept)
            if len(kept) < len(chunk) and not self.truncated:
                self.truncated = True
                self._put(f"\n[orchestra-ci: log truncated at {self.cap} bytes]\n".encode())
        except OSError as exc:
            self.error = exc

    def _put(self, data: bytes) -> None:
        atomic.write_all(self._log, data)

    def detach(self) -> None:
        if self._pipe >= 0:
            self._write(self.redact.flush())
            asyncio.get_running_loop().remove_reader(self._pipe)
            os.close(self._pipe)
            self._pipe = -1
        if self.eof is not None and not self.eof.done():
            self.eof.set_result(None)

    def close(self, footer: str) -> None:
        try:
            if self.error is None:
                self._put(footer.encode())
        except OSError as exc:
            self.error = self.error or exc
        try:
            os.close(self._log)
        except OSError as exc:
            self.error = self.error or exc


def _exited(pid: int, has_exited: Callable[[], bool]) -> "asyncio.Future[None]":
    """A future that resolves when ``pid`` exits: a pidfd on Linux, elsewhere (macOS)
    polling ``has_exited`` every 50 ms. Cancelling the future stops watching."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        pidfd = os.pidfd_open(pid) if process_table.SYSTEM.features.pidfd else None
    except ProcessLookupError:
        done.set_result(None)
        return done
    except OSError:  # e.g. a kernel without pidfds, or none left
        pidfd = None
    if pidfd is None:

        async def poll() -> None:
            while not has_exited():
                await asyncio.sleep(0.05)
            if not done.done():
                done.set_result(None)

        poller = asyncio.ensure_future(poll())
        done.add_done_callback(lambda _: poller.cancel())
        return done

    def on_exit() -> None:
        if not done.done():
            done.set_result(None)

    def unwatch(_: "asyncio.Future[None]") -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)

    loop.add_reader(pidfd, on_exit)
    done.add_done_callback(unwatch)
    return done


@functools.cache
def _devnull() -> int:
    """One descriptor of /dev/null for every agent's stdin, opened once per process."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def _stdin(data: bytes | None) -> int | None:
    """A descriptor to read ``data`` from: an unlinked temporary file, not a pipe, so a
    large prompt never blocks on an agent that reads it late (or never)."""
    if data is None:
        return None
    fd, path = tempfile.mkstemp(prefix="orchestra-prompt-")
    os.unlink(path)
    try:
        atomic.write_all(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _tree_mtime(top: Path) -> int:
    """The newest modification time under ``top`` in ns; ``.git`` and the queue's own
    ``.orchestra`` (rewritten by the runner itself) left out."""
    newest = 0
    for directory, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d not in (".git", ".orchestra")]
        for name in [*dirs, *files]:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime_ns)
    return newest


async def _stalled(log: "_LogPump", workdir: Path, limit: float) -> None:
    """Return once the agent has printed nothing and changed no file in ``workdir`` for
    ``limit`` seconds (a hung CLI, or one waiting on a prompt nobody will answer).

    The first look at the files is one step in, not at the start (where it would hold up
    the agents starting beside this one): a file newer than the start is a change then. An
    agent done within a step costs no look at all."""
    step = min(max(1.0, limit / 20), limit)
    # File times are wall-clock times from the kernel's coarse clock: a second's margin.
    started = time.time_ns() - 1_000_000_000
    newest: int | None = None  # the newest file time at the last look
    changed = time.monotonic()
    while True:
        quiet = time.monotonic() - max(log.last_output, changed)
        if quiet >= limit:
            return
        await asyncio.sleep(min(step, limit - quiet))
        now_newest = await asyncio.to_thread(_tree_mtime, workdir)
        if now_newest > started if newest is None else now_newest != newest:
            changed = time.monotonic()
        newest = now_newest


async def run_attempt(
    launch: Launch,
    control: Control,
    on_start: Callable[[int], None],
    supervisor: Supervisor,
) -> ProcessResult:
    """Run one attempt to its end; never raises for agent failures."""
    args = (launch.log_path, launch.header, launch.log_cap, launch.redactor)
    try:
        log = _LogPump(*args)
    except FileNotFoundError:  # its directory is gone (removed by hand while running?)
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = _LogPump(*args)
    env = {**launch.env, MARKER_VAR: launch.marker}
    executable = resolve_command(launch.argv[0], env)
    if executable is None:
        message = f"command not found: {launch.argv[0]!r}"
        log.close(f"[orchestra-ci: {message}]\n")
        return ProcessResult(exit_code=None, spawn_error=message)
    read_end, write_end = os.pipe()
    stdin = _stdin(launch.stdin)
    try:
        proc = subprocess.Popen(
            [executable, *launch.argv[1:]],
            cwd=launch.cwd,
            env=env,
            stdin=_devnull() if stdin is None else stdin,
            stdout=write_end,
            stderr=write_end,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_end)
        message = f"cannot start {launch.argv[0]!r}: {exc.strerror or exc}"
        log.close(f"[orchestra-ci: {message}]\n")
        return ProcessResult(exit_code=None, spawn_error=message)
    finally:
        os.close(write_end)
        if stdin is not None:
            os.close(stdin)
    supervisor.agents.add(proc.pid)
    log.attach(read_end)
    try:
        on_start(proc.pid)
    except BaseException:
        # The attempt cannot be tracked (e.g. its .pid file cannot be written): stop it.
        kill_attempt(proc.pid, launch.marker, 0)
        proc.wait()
        supervisor.agents.discard(proc.pid)
        log.detach()
        log.close("")
        raise
    exited = _exited(proc.pid, lambda: proc.poll() is not None)
    stopper = asyncio.ensure_future(control.wait())
    watchers: set[asyncio.Future[None]] = {exited, stopper}
    stall = None
    if launch.stall_timeout:
        stall = asyncio.ensure_future(_stalled(log, launch.cwd, launch.stall_timeout))
        watchers.add(stall)
    stop_reason: StopReason | None = None
    try:
        done, _ = await asyncio.wait(
            watchers, timeout=launch.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if exited not in done:
            if stopper in done:
                stop_reason = control.reason
            else:
                stop_reason = "stalled" if stall in done else "timeout"
            grace = control.grace if control.grace is not None else launch.grace
            await stop_attempt(proc.pid, launch.marker, grace, exited)
            await exited
    finally:
        stopper.cancel()
        if stall is not None:
            stall.cancel()
        if not exited.done():  # we are being cancelled ourselves: take the agent down too
            kill_attempt(proc.pid, launch.marker, 0)
        code = proc.wait()
        supervisor.agents.discard(proc.pid)
        # Whatever the agent left running (children, daemons that left its session but carry
        # its marker) ends with the attempt.
        if supervisor.left_running(proc.pid, launch.marker):
            await stop_attempt(proc.pid, launch.marker, min(launch.grace, 2.0), exited)
            if supervisor.adopting:
                supervisor.reap_adopted()
        assert log.eof is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(log.eof), timeout=2)
        log.detach()
    footer = (
        f"[orchestra-ci: exit code {code}]\n"
        if stop_reason is None
        else f"[orchestra-ci: stopped ({stop_reason}), exit code {code}]\n"
    )
    log.close(footer)
    return ProcessResult(
        exit_code=code, stop_reason=stop_reason, tail=bytes(log.tail), pid=proc.pid
    )
