"""What the system says about its processes: which exist, their process groups, their
environments, this process's children, and the means of waiting for one to exit.

Linux's ``/proc`` is read directly: stopping an attempt scans every process, and one read
of ``/proc/<pid>/stat`` per process keeps the scan cheap. Where there is no ``/proc``
(macOS) psutil answers the same questions, and where there are no pidfds or no child
subreaper (``prctl``), :class:`Features` says so, so that callers take their fallbacks:
a poll instead of a pidfd, a marker scan instead of the list of adopted orphans.
"""

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestra_ci import atomic

_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Features:
    """What this system offers beyond POSIX."""

    proc: bool  # Linux's /proc: stat, environ, task/<pid>/children
    pidfd: bool  # os.pidfd_open: wait for a process's exit in the event loop
    subreaper: bool  # prctl(PR_SET_CHILD_SUBREAPER): orphans become our children

    @classmethod
    def of_this_system(cls) -> "Features":
        linux = sys.platform.startswith("linux")
        return cls(
            proc=linux and os.path.isdir("/proc/self/task"),
            pidfd=hasattr(os, "pidfd_open"),
            subreaper=linux,
        )


class ProcessTable:
    """Queries on the system's processes, through ``/proc`` or psutil as ``features`` say."""

    def __init__(self, features: Features) -> None:
        self.features = features

    def group(self, pid: int) -> int | None:
        """A live process's process group; None for a zombie. Raises OSError (such as
        ProcessLookupError) or ValueError if there is no such process."""
        if self.features.proc:
            fields = atomic.read_bytes(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)[1].split()
            return None if fields[0] == b"Z" else int(fields[2])
        import psutil

        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.ZombieProcess:
            return None
        except psutil.Error as exc:
            raise ProcessLookupError(pid) from exc
        return os.getpgid(pid)

    def live(self, pid: int) -> bool:
        """Is ``pid`` a process that has not exited (zombies have)?"""
        try:
            return self.group(pid) is not None
        except (OSError, IndexError, ValueError):
            return False

    def pids(self) -> list[int]:
        """Every process's id, this one's left out."""
        own = os.getpid()
        if self.features.proc:
            try:
                entries = os.listdir("/proc")
            except OSError:
                return []
            return [int(e) for e in entries if e.isdigit() and int(e) != own]
        import psutil

        return [pid for pid in psutil.pids() if pid != own]

    def has_variable(self, pid: int, name: str, value: str) -> bool:
        """Does ``pid``'s environment hold ``name=value``? False where it cannot be read
        (another user's process, one exiting)."""
        if self.features.proc:
            try:
                environ = atomic.read_bytes(Path(f"/proc/{pid}/environ"))
            except OSError:
                return False
            return f"{name}={value}\0".encode() in environ
        import psutil

        try:
            return psutil.Process(pid).environ().get(name) == value
        except psutil.Error:
            return False

    def children(self) -> list[int] | None:
        """This process's children; None where that cannot be known."""
        if self.features.proc:
            path = Path(f"/proc/self/task/{os.getpid()}/children")
            try:
                return [int(pid) for pid in atomic.read_bytes(path).split()]
            except OSError:
                return None
        import psutil

        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process().children()]
        return None

    def set_subreaper(self, enable: bool) -> bool:
        """Become (or stop being) the reaper of orphaned descendants; False where the
        system has no such thing."""
        if not self.features.subreaper:
            return False
        import ctypes  # only here: Linux only, needed once per run

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, int(enable), 0, 0, 0) == 0)
        except (OSError, AttributeError):
            return False


SYSTEM = ProcessTable(Features.of_this_system())
