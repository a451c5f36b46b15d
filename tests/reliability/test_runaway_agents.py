"""Runaway agents: floods of output, binary garbage, closed output, daemons.

The runner's memory stays bounded whatever an agent prints (its peak RSS is read from
``/proc/self/status`` VmHWM by a wrapper around the CLI's ``main``), the log is capped with
a truncation marker, timeouts still hold, and no process outlives its task.
"""

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import cli_env, records, write_agents, write_tasks
from tests.reliability.conftest import kill_leftovers, orchestra, processes_of, wait_gone

MiB = 1024 * 1024
FLOOD = 200 * MiB
LOG_CAP = 50 * MiB  # the default log_cap_bytes
RSS_LIMIT_KB = 200 * 1024

PEAK_RSS_WRAPPER = """
import os, sys
from orchestra_ci.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_RSS_FILE"], "w") as out:
        out.write(peak)
sys.exit(code)
"""

GARBAGE = """
import random, sys
seed, code = map(int, sys.argv[1].split())
data = random.Random(seed).randbytes(1 << 20)
nasty = b"\\x00\\xff\\xfe\\x1b[2J\\x1b]0;title\\x07\\r\\r\\n::error::injected\\n"
nasty += b"\\xc3\\x28\\xed\\xa0\\x80"
sys.stdout.buffer.write(nasty + data + nasty)
sys.stdout.flush()
sys.exit(code)
"""

CLOSER = """
import os, sys, time
os.close(1)
os.close(2)
time.sleep(float(sys.argv[1]))
"""

HOLDER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
open(sys.argv[1], "w").write(str(child.pid))
print("the child keeps our stdout open", flush=True)
"""

ESCAPER = """
import subprocess, sys
daemon = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(3600)"],
    env={},
    start_new_session=True,
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
open(sys.argv[1], "w").write(str(daemon.pid))
"""


def script_agent(code: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-c", code, "{prompt}"]}


def run_measured(
    root: Path, tmp_path: Path, *args: str, timeout: float = 180
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the CLI in a wrapper that reports the runner's own peak RSS (kB)."""
    wrapper = tmp_path / "peak_rss.py"
    wrapper.write_text(PEAK_RSS_WRAPPER)
    peak = tmp_path / "peak_rss.txt"
    result = subprocess.run(
        [sys.executable, str(wrapper), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(PEAK_RSS_FILE=str(peak)),
        check=False,
    )
    return result, int(peak.read_text())


@pytest.fixture
def leftovers(root: Path) -> Any:
    pids: list[int] = []
    yield pids
    kill_leftovers([*pids, *processes_of(root)])


@pytest.mark.linux_only  # the peak RSS comes from /proc/self/status
def test_a_200_mb_flood_keeps_memory_bounded_and_the_log_capped(
    root: Path, tmp_path: Path, leftovers: list[int]
) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake, max_retries: 0}\ntasks:\n"
        f"  - {{id: flood1, prompt: 'flood={FLOOD}'}}\n"
        f"  - {{id: flood2, prompt: 'flood={FLOOD}'}}\n",
    )

    result, peak_kb = run_measured(root, tmp_path, "run", "--parallel", "2")

    assert result.returncode == 0, result.stderr[-2000:]
    assert peak_kb < RSS_LIMIT_KB, f"runner peak RSS {peak_kb} kB"
    for task_id in ("flood1", "flood2"):
        assert records(root)[task_id]["status"] == "complete"
        log = root / ".orchestra" / "logs" / f"{task_id}.log"
        assert LOG_CAP < log.stat().st_size < LOG_CAP + 4096
        with log.open("rb") as f:
            f.seek(LOG_CAP - 1024)
            end = f.read()
        assert end.count(f"[orchestra-ci: log truncated at {LOG_CAP} bytes]".encode()) == 1
    json.loads((root / ".orchestra" / "results.json").read_text())
    (tmp_path / "numbers.json").write_text(json.dumps({"peak_rss_kb": peak_kb}))


def test_the_timeout_holds_while_an_agent_floods_and_hangs(
    root: Path, leftovers: list[int]
) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake, max_retries: 0}\ntasks:\n"
        f"  - {{id: flooder, prompt: 'flood={20 * MiB} hang', timeout: 2s}}\n",
    )
    started = time.monotonic()
    result = orchestra(root, "run", "--grace", "0.5")
    assert time.monotonic() - started < 60  # generous: the timeout is 2 s
    assert result.returncode == 1
    record = records(root)["flooder"]
    assert record["status"] == "failed"
    assert [a["outcome"] for a in record["attempts"]] == ["timeout"]
    assert not wait_gone([record["attempts"][0]["pid"]], 2.0)
    assert processes_of(root) == []


def test_binary_garbage_is_logged_as_is_and_breaks_nothing(root: Path, tmp_path: Path) -> None:
    write_agents(root, {"garbage": script_agent(GARBAGE)})
    write_tasks(
        root,
        "defaults: {agent: garbage, max_retries: 0}\ntasks:\n"
        "  - {id: junk-ok, prompt: '1 0'}\n  - {id: junk-fails, prompt: '2 1'}\n",
    )
    result = orchestra(root, "run")
    assert result.returncode == 1, result.stderr[-2000:]
    tasks = records(root)
    assert tasks["junk-ok"]["status"] == "complete"
    assert tasks["junk-fails"]["status"] == "failed"
    error = json.loads((root / ".orchestra/tasks/junk-fails.error").read_bytes())
    assert isinstance(error["details"], str)
    json.loads((root / ".orchestra/results.json").read_bytes())
    status = orchestra(root, "status", "--json")
    assert status.returncode == 0 and len(json.loads(status.stdout)) == 2
    assert orchestra(root, "status").returncode == 0
    for task_id, seed in (("junk-ok", 1), ("junk-fails", 2)):
        expected = random.Random(seed).randbytes(1 << 20)
        shown = subprocess.run(
            [sys.executable, "-m", "orchestra_ci", "--root", str(root), "logs", task_id],
            capture_output=True,
            env=cli_env(),
            check=True,
        ).stdout
        assert expected in shown  # byte for byte, in the log and through `logs`
        assert expected in (root / ".orchestra/logs" / f"{task_id}.log").read_bytes()


def test_an_agent_that_closes_its_output_and_runs_on(root: Path, leftovers: list[int]) -> None:
    write_agents(root, {"closer": script_agent(CLOSER)})
    write_tasks(
        root,
        "defaults: {agent: closer, max_retries: 0}\ntasks:\n"
        "  - {id: quiet-then-done, prompt: '1.5'}\n"
        "  - {id: quiet-then-hangs, prompt: '3600', timeout: 1.5s}\n",
    )
    started = time.monotonic()
    result = orchestra(root, "run", "--parallel", "2", "--grace", "0.5")
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    tasks = records(root)
    # The end of its output is not the end of the agent: the runner waits for the exit...
    done = tasks["quiet-then-done"]
    assert done["status"] == "complete" and done["attempts"][0]["exitCode"] == 0
    # ... and still enforces the timeout on one that never exits.
    assert [a["outcome"] for a in tasks["quiet-then-hangs"]["attempts"]] == ["timeout"]
    pids = [t["attempts"][0]["pid"] for t in tasks.values()]
    assert wait_gone(pids, 2.0) == []
    assert processes_of(root) == []


def test_a_child_holding_the_output_open_does_not_hold_up_the_run(
    root: Path, tmp_path: Path, leftovers: list[int]
) -> None:
    write_agents(root, {"holder": script_agent(HOLDER)})
    child_file = tmp_path / "child.pid"
    write_tasks(root, f"tasks:\n  - {{id: held, agent: holder, prompt: '{child_file}'}}\n")
    started = time.monotonic()
    result = orchestra(root, "run", "--grace", "0.5")
    assert time.monotonic() - started < 60
    assert result.returncode == 0, result.stderr[-2000:]
    child = int(child_file.read_text())
    leftovers.append(child)
    assert records(root)["held"]["status"] == "complete"
    assert wait_gone([child], 2.0) == []


def test_a_daemon_forked_by_the_agent_does_not_outlive_its_task(
    root: Path, leftovers: list[int]
) -> None:
    write_tasks(root, "tasks:\n  - {id: forks, agent: fake, prompt: 'daemon'}\n")
    result = orchestra(root, "run", "--grace", "0.5")
    assert result.returncode == 0, result.stderr[-2000:]
    daemon = int((root / "daemon.pid").read_text())
    leftovers.append(daemon)
    assert records(root)["forks"]["status"] == "complete"
    assert wait_gone([daemon], 2.0) == []
    left = processes_of(root)
    assert left == [], [psutil.Process(p).cmdline() for p in left]


@pytest.mark.linux_only  # only a child subreaper can find it
def test_a_daemon_that_scrubs_its_environment_does_not_outlive_the_run(
    root: Path, tmp_path: Path, leftovers: list[int]
) -> None:
    """With a new session and an empty environment, nothing ties the daemon to its task;
    the runner adopted it (child subreaper) and stops it when the run ends."""
    write_agents(root, {"escaper": script_agent(ESCAPER)})
    pid_file = tmp_path / "escaped.pid"
    write_tasks(root, f"tasks:\n  - {{id: escapes, agent: escaper, prompt: '{pid_file}'}}\n")
    result = orchestra(root, "run", "--grace", "0.5")
    assert result.returncode == 0, result.stderr[-2000:]
    daemon = int(pid_file.read_text())
    leftovers.append(daemon)
    assert wait_gone([daemon], 2.0) == []
