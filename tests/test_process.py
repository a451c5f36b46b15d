"""One attempt as a real process group: timeouts, stray children, output handling."""

import asyncio
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestra_ci.process import (
    Control,
    Launch,
    ProcessResult,
    Supervisor,
    run_attempt,
)
from orchestra_ci.redact import Redactor
from tests.conftest import FAKE_AGENT_SCRIPT, alive

FAKE = [sys.executable, FAKE_AGENT_SCRIPT]


def launch(tmp_path: Path, argv: list[str], **kw: object) -> Launch:
    defaults: dict[str, object] = {
        "argv": argv,
        "cwd": tmp_path,
        "env": dict(os.environ),
        "log_path": tmp_path / "logs" / "t.log",
        "header": "== header ==\n",
        # Unique across test sessions: a marker is how a stop finds an attempt's processes
        # machine-wide, and two suites running at once have the same tmp_path names.
        "marker": f"test-{tmp_path.name}-{secrets.token_hex(4)}",
        "timeout": 30.0,
        "grace": 0.5,
        "redactor": Redactor(),
    }
    defaults.update(kw)
    return Launch(**defaults)  # type: ignore[arg-type]


def run(
    spec: Launch,
    control: Control | None = None,
    stop_after: float | None = None,
    supervisor: Supervisor | None = None,
) -> tuple[ProcessResult, list[int]]:
    started: list[int] = []

    async def main() -> ProcessResult:
        ctl = control or Control()
        if stop_after is not None:
            asyncio.get_running_loop().call_later(stop_after, ctl.stop, "cancelled", 0.5)
        return await run_attempt(spec, ctl, started.append, supervisor or Supervisor())

    return asyncio.run(main()), started


@pytest.fixture(params=["linux", "without_linux_extras"])
def system(request: pytest.FixtureRequest) -> str:
    """Each stopping test twice: with what Linux offers, and as on macOS (no /proc, no
    pidfds, no subreaper), where psutil answers and exits are polled."""
    if request.param == "without_linux_extras":
        request.getfixturevalue("without_linux_extras")
    return str(request.param)


def test_exit_code_and_log(tmp_path: Path) -> None:
    result, started = run(launch(tmp_path, [*FAKE, "exit=7"]))
    assert result.exit_code == 7 and result.stop_reason is None and result.spawn_error is None
    assert started == [result.pid]
    log = (tmp_path / "logs/t.log").read_text()
    assert log.startswith("== header ==\nfake agent: task")
    assert log.endswith("[orchestra-ci: exit code 7]\n")
    assert b"fake agent: done" in result.tail


def test_timeout_kills_the_whole_group_including_sigterm_ignoring_child(
    tmp_path: Path, system: str
) -> None:
    result, _ = run(launch(tmp_path, [*FAKE, "child_ignores_term hang"], timeout=1.0))
    assert result.stop_reason == "timeout"
    assert not alive(result.pid or 0)
    assert not alive(int((tmp_path / "child.pid").read_text()))


def test_timeout_kills_a_daemon_that_left_the_group(tmp_path: Path, system: str) -> None:
    result, _ = run(launch(tmp_path, [*FAKE, "daemon hang"], timeout=1.0))
    assert result.stop_reason == "timeout"
    assert not alive(int((tmp_path / "daemon.pid").read_text()))


def test_children_left_behind_by_an_exited_agent_are_stopped(tmp_path: Path, system: str) -> None:
    result, _ = run(launch(tmp_path, [*FAKE, "child_ignores_term exit=0"]))
    assert result.exit_code == 0
    assert not alive(int((tmp_path / "child.pid").read_text()))


SCRUBBED_DAEMON = """
import subprocess, sys
daemon = subprocess.Popen(
    ["sleep", "3600"], env={}, start_new_session=True,
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
open(sys.argv[1], "w").write(str(daemon.pid))
"""


@pytest.fixture
def adopting() -> Iterator[Supervisor]:
    """A supervisor that is the child subreaper (Linux only)."""
    supervisor = Supervisor()
    if not supervisor.adopt(True):
        pytest.skip("no child subreaper on this system")
    try:
        yield supervisor
    finally:
        supervisor.stop_adopted(0.0)
        supervisor.adopt(False)


@pytest.mark.linux_only
def test_a_marked_daemon_left_by_an_exited_agent_is_found_among_adopted_orphans(
    tmp_path: Path, adopting: Supervisor
) -> None:
    result, _ = run(launch(tmp_path, [*FAKE, "daemon exit=0"]), supervisor=adopting)
    assert result.exit_code == 0
    daemon = int((tmp_path / "daemon.pid").read_text())
    assert not alive(daemon)
    assert daemon not in (adopting.adopted() or [])  # stopped and reaped: no zombie is kept


@pytest.mark.linux_only
def test_orphans_without_the_marker_are_stopped_at_the_end_of_the_run(
    tmp_path: Path, adopting: Supervisor
) -> None:
    pid_file = tmp_path / "daemon.pid"
    argv = [sys.executable, "-c", SCRUBBED_DAEMON, str(pid_file)]
    result, _ = run(launch(tmp_path, argv), supervisor=adopting)
    assert result.exit_code == 0
    daemon = int(pid_file.read_text())
    # Nothing ties it to its attempt, but it is this process's child now ...
    assert alive(daemon) and daemon in (adopting.adopted() or [])
    adopting.stop_adopted(0.5)
    # ... so the end of the run stops and reaps it.
    assert not alive(daemon) and not Path(f"/proc/{daemon}").exists()


def test_without_a_subreaper_the_supervisor_adopts_nothing(without_linux_extras: object) -> None:
    supervisor = Supervisor()
    assert supervisor.adopt(True) is False and supervisor.adopting is False


def test_cancel_through_control(tmp_path: Path, system: str) -> None:
    result, _ = run(launch(tmp_path, [*FAKE, "hang"]), stop_after=0.5)
    assert result.stop_reason == "cancelled"
    assert not alive(result.pid or 0)


def test_agent_that_closes_its_output_and_runs_on_still_times_out(
    tmp_path: Path, system: str
) -> None:
    script = "import os, time; print('bye', flush=True); os.close(1); os.close(2); time.sleep(60)"
    result, _ = run(launch(tmp_path, [sys.executable, "-c", script], timeout=1.0))
    assert result.stop_reason == "timeout"
    assert b"bye" in result.tail


def test_output_is_capped_with_a_marker(tmp_path: Path) -> None:
    result, _ = run(launch(tmp_path, [*FAKE, "flood=3000000"], log_cap=100_000))
    assert result.exit_code == 0
    log = (tmp_path / "logs/t.log").read_bytes()
    assert b"[orchestra-ci: log truncated at 100000 bytes]" in log
    assert len(log) < 100_000 + 1000
    assert len(result.tail) <= 64 * 1024


def test_binary_output_is_logged_verbatim(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4
    script = f"import sys; sys.stdout.buffer.write({payload!r})"
    result, _ = run(launch(tmp_path, [sys.executable, "-c", script], header=""))
    assert result.exit_code == 0
    assert (tmp_path / "logs/t.log").read_bytes().startswith(payload)


def test_missing_command_is_a_spawn_error(tmp_path: Path) -> None:
    result, started = run(launch(tmp_path, ["definitely-not-a-command-xyz", "hi"]))
    assert result.spawn_error == "command not found: 'definitely-not-a-command-xyz'"
    assert started == []


@pytest.mark.parametrize(
    "prompt",
    [
        "plain",
        "quotes ' \" ` and $(rm -rf /) ; | & > < * ? ~ {taskId}",
        "line one\nline two\r\n\ttabbed",
        "unicode: café ☃ 𝄞 \u202e bidi",
        " leading and trailing spaces ",
    ],
)
def test_prompt_reaches_the_agent_as_one_argv_element(tmp_path: Path, prompt: str) -> None:
    out = tmp_path / "argv.json"
    script = "import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))"
    result, _ = run(launch(tmp_path, [sys.executable, "-c", script, str(out), prompt]))
    assert result.exit_code == 0
    assert json.loads(out.read_text()) == [str(out), prompt]
