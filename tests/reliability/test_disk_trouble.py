"""Disk trouble: writes that fail with ENOSPC.

A wrapper around the CLI's ``main`` makes ``orchestra_ci.atomic.open_temp`` (every record,
sentinel and report write starts with its temp file) and the pid file's write raise ENOSPC
from their Nth call on, as a full disk would, and notes what each file held when its write
failed. The run must report the error, every record must still hold its previous content,
and a later run on a healthy disk finishes the queue. A variant fills a real (tiny) tmpfs
when mounting one is allowed.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAKE_AGENT, cli_env, records, write_agents, write_tasks
from tests.reliability.conftest import events, kill_leftovers, orchestra, processes_of

ENOSPC_WRAPPER = """
import errno, json, os, re, sys
from pathlib import Path
from orchestra_ci import atomic
from orchestra_ci.cli import main
from orchestra_ci.store import Store

pattern = re.compile(os.environ["ENOSPC_MATCH"])
first = int(os.environ["ENOSPC_FROM"])
calls = 0

def full(path):
    \"\"\"Count writes to matching files; from the n-th on, fail like a full disk.\"\"\"
    global calls
    if pattern.search(path.name):
        calls += 1
        if calls >= first:
            try:
                before = path.read_text()
            except FileNotFoundError:
                before = None
            with open(os.environ["ENOSPC_LOG"], "a") as log:
                log.write(json.dumps({"path": str(path), "before": before, "call": calls}) + "\\n")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

real_temp = atomic.open_temp  # every replacing write of a file starts with its temp file
real_pid = Store.write_pid  # written in place

def open_temp(path):
    full(Path(path))
    return real_temp(path)

def write_pid(self, task_id, pid):
    full(self.sentinel(task_id, "pid"))
    return real_pid(self, task_id, pid)

atomic.open_temp = open_temp
Store.write_pid = write_pid
sys.exit(main(sys.argv[1:]))
"""

TASKS = 6


def disk_full_run(
    root: Path, tmp_path: Path, match: str, first: int, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    wrapper = tmp_path / "enospc.py"
    wrapper.write_text(ENOSPC_WRAPPER)
    failures = tmp_path / "enospc.jsonl"
    failures.unlink(missing_ok=True)
    env = cli_env(ENOSPC_MATCH=match, ENOSPC_FROM=str(first), ENOSPC_LOG=str(failures))
    result = subprocess.run(
        [sys.executable, str(wrapper), "--root", str(root), "run", "--parallel", "2"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return result, events(failures)


def reported(stderr: str) -> bool:
    """The error reached the user: a one-line message, or an error logged by the run."""
    for line in stderr.splitlines():
        if "No space left on device" not in line:
            continue
        if line.startswith("orchestra-ci: error: "):
            return True
        with contextlib.suppress(ValueError):
            if json.loads(line).get("level") in ("error", "warning"):
                return True
    return False


@pytest.mark.parametrize(
    ("match", "first"),
    [
        pytest.param(r"^t\d\.json$", 1, id="records-from-write-1"),  # the very first claim
        pytest.param(r"^t\d\.json$", 2, id="records-from-write-2"),
        pytest.param(r"^t\d\.json$", 4, id="records-from-write-4"),  # claims and finishes
        pytest.param(r"^t\d\.json$", 9, id="records-from-write-9"),
        pytest.param(r".", 1, id="any-from-write-1"),  # records, .error, results.json
        pytest.param(r".", 3, id="any-from-write-3"),
        pytest.param(r".", 6, id="any-from-write-6"),
        pytest.param(r".", 12, id="any-from-write-12"),
    ],
)
def test_a_full_disk_keeps_previous_records_and_is_reported(
    root: Path, tmp_path: Path, match: str, first: int
) -> None:
    record_file = tmp_path / "agents.jsonl"
    write_tasks(
        root,
        "defaults: {agent: fake, backoff: 0.05s}\ntasks:\n"
        + "".join(
            f"  - {{id: t{n}, prompt: 'record={record_file} sleep=0.1'}}\n" for n in range(TASKS)
        ),
    )
    assert orchestra(root, "load").returncode == 0
    try:
        result, failures = disk_full_run(root, tmp_path, match, first)

        assert failures, "the injected fault never fired; the scenario needs retuning"
        assert result.returncode != 0, result.stderr[-3000:]
        assert reported(result.stderr), result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        # Every write that failed left the file as it was (the disk stayed full after).
        first_failure: dict[str, Any] = {}
        for failure in failures:
            first_failure.setdefault(failure["path"], failure["before"])
        for path, before in first_failure.items():
            if path.endswith(".json") and "/tasks/" in path and before is not None:
                assert Path(path).read_text() == before, path
        assert len(records(root)) == TASKS  # every record still parses

        # Space is back: a normal run finishes the queue.
        again = orchestra(root, "run", "--parallel", "2", "--grace", "0.5")
        assert again.returncode == 0, again.stderr[-3000:]
        assert {r["status"] for r in records(root).values()} == {"complete"}
        assert not list((root / ".orchestra/tasks").glob("*.pid"))
        time.sleep(0.2)
        assert processes_of(root) == []
    finally:
        kill_leftovers(processes_of(root))


def test_a_failed_final_write_does_not_hang_the_run(root: Path, tmp_path: Path) -> None:
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        "  - {id: gate, prompt: 'sleep=0.1'}\n"
        "  - {id: after, prompt: 'sleep=0.1', depends_on: [gate]}\n",
    )
    assert orchestra(root, "load").returncode == 0
    try:
        # gate.json: call 1 is the claim, call 2 the final write, which fails.
        result, failures = disk_full_run(root, tmp_path, r"^gate\.json$", 2, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not end within 10 s (two 0.1 s tasks)")
    finally:
        kill_leftovers(processes_of(root))
    assert failures
    assert result.returncode != 0 and reported(result.stderr)


def test_an_agent_whose_pid_file_cannot_be_written_is_stopped(root: Path, tmp_path: Path) -> None:
    record_file = tmp_path / "agents.jsonl"
    write_tasks(
        root,
        f"tasks:\n  - {{id: h, agent: fake, prompt: 'record={record_file} hang', "
        "max_retries: 0, timeout: 60s}\n",
    )
    assert orchestra(root, "load").returncode == 0
    try:
        result, failures = disk_full_run(root, tmp_path, r"^h\.pid$", 1)
        assert failures and result.returncode == 1
        assert records(root)["h"]["status"] == "failed"
        agents = [e["pid"] for e in events(record_file)]
        time.sleep(0.5)
        assert processes_of(root) == [], f"agent {agents} still running"
    finally:
        kill_leftovers(processes_of(root))


# -- a real full disk ------------------------------------------------------------------------

FILLER = """
import pathlib, sys
once = pathlib.Path(sys.argv[1])  # outside the small disk: fill it only the first time
if once.exists():
    sys.exit(0)
once.write_text("filled")
with open("filler", "wb") as f:
    try:
        while True:
            f.write(b"x" * 65536)
            f.flush()
    except OSError as exc:
        print("disk full:", exc, flush=True)
print("y" * 100000, flush=True)  # and more output than the log can take now
"""


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        kill_leftovers(processes_of(where))
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


@pytest.mark.linux_only
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_an_agent_filling_a_real_disk(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk") as root:
        (root / ".orchestra").mkdir()
        write_agents(
            root,
            {
                "fake": FAKE_AGENT,
                "filler": {"command": sys.executable, "args": ["-c", FILLER, "{prompt}"]},
            },
        )
        once = tmp_path / "filled-once"
        write_tasks(
            root,
            "defaults: {agent: fake, backoff: 0.05s}\ntasks:\n  - {id: fill, agent: filler, "
            f"prompt: '{once}', max_retries: 0}}\n"
            + "".join(f"  - {{id: t{n}, prompt: 'sleep=0.1'}}\n" for n in range(4)),
        )
        assert orchestra(root, "load").returncode == 0
        before = {p.name: p.read_bytes() for p in (root / ".orchestra/tasks").glob("*.json")}

        full = orchestra(root, "run", "--parallel", "2", "--grace", "0.5", timeout=60)

        assert full.returncode != 0
        assert reported(full.stderr), full.stderr[-3000:]
        for path in (root / ".orchestra/tasks").glob("*.json"):
            json.loads(path.read_bytes())  # each record is its old or its new self, never torn
        assert set(before) == {p.name for p in (root / ".orchestra/tasks").glob("*.json")}

        (root / "filler").unlink()
        again = orchestra(root, "run", "--parallel", "2", "--grace", "0.5", timeout=60)
        assert again.returncode in (0, 1), again.stderr[-3000:]
        tasks = records(root)
        assert all(tasks[f"t{n}"]["status"] == "complete" for n in range(4))
        assert tasks["fill"]["status"] in ("complete", "failed")
        assert not list((root / ".orchestra/tasks").glob("*.pid"))
        assert "Traceback" not in full.stderr + again.stderr, full.stderr[-3000:]
