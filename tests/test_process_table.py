"""The process table through Linux's /proc and through psutil (as on macOS) gives the same
answers about the same real processes."""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from orchestra_ci.process_table import Features, ProcessTable

LINUX = ProcessTable(Features.of_this_system())
PORTABLE = ProcessTable(Features(proc=False, pidfd=False, subreaper=False))

pytestmark = pytest.mark.linux_only  # the comparison needs both sides


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping child in its own session, with a variable in its environment."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={**os.environ, "PROBE_VAR": "probe-value"},
        start_new_session=True,
    )
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("table", [LINUX, PORTABLE], ids=["proc", "psutil"])
def test_a_live_child_its_group_environment_and_place_among_the_children(
    table: ProcessTable, child: subprocess.Popen[bytes]
) -> None:
    assert table.group(child.pid) == child.pid  # its own session: it leads its group
    assert table.live(child.pid)
    assert child.pid in table.pids() and os.getpid() not in table.pids()
    assert child.pid in (table.children() or [])
    assert table.has_variable(child.pid, "PROBE_VAR", "probe-value")
    assert not table.has_variable(child.pid, "PROBE_VAR", "probe")  # the whole value
    assert not table.has_variable(child.pid, "OTHER_VAR", "probe-value")


@pytest.mark.parametrize("table", [LINUX, PORTABLE], ids=["proc", "psutil"])
def test_a_zombie_is_not_live_and_a_reaped_process_is_gone(
    table: ProcessTable, child: subprocess.Popen[bytes]
) -> None:
    child.kill()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert table.group(child.pid) is None
    assert not table.live(child.pid)
    assert not table.has_variable(child.pid, "PROBE_VAR", "probe-value")
    child.wait()
    with pytest.raises(OSError):
        table.group(child.pid)
    assert not table.live(child.pid)
    assert child.pid not in table.pids()


def test_both_see_the_same_processes() -> None:
    # Processes come and go between the two reads; this suite's own long-lived ones stay.
    assert {os.getppid()} <= set(LINUX.pids()) & set(PORTABLE.pids())


def test_only_linux_has_a_subreaper() -> None:
    assert PORTABLE.set_subreaper(True) is False
    assert LINUX.set_subreaper(True) is True
    assert LINUX.set_subreaper(False) is True
