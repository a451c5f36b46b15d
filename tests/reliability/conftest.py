"""Helpers shared by the reliability and security suite (see docs/reliability.md)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci import process_table
from tests.conftest import alive, cli_env

ORCHESTRA = [sys.executable, "-m", "orchestra_ci"]


def orchestra(
    root: Path,
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m orchestra_ci --root ROOT ARGS...`` as a real subprocess."""
    return subprocess.run(
        [*ORCHESTRA, "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
        check=False,
    )


def processes_of(root: Path) -> list[int]:
    """Live processes started for tasks of the queue at ``root``: every agent gets
    ``ORCHESTRA_ROOT`` in its environment and whatever it starts inherits it (unless it
    scrubs its environment on purpose)."""
    table = process_table.SYSTEM
    where = str(root.resolve())
    return [
        pid
        for pid in table.pids()
        if table.has_variable(pid, "ORCHESTRA_ROOT", where) and alive(pid)
    ]


def kill_leftovers(pids: list[int]) -> None:
    """Clean up after a failed assertion so one bad run does not leak into the next tests."""
    for pid in pids:
        try:
            os.kill(pid, 9)
        except (ProcessLookupError, PermissionError):
            continue


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The pids among ``pids`` still alive (zombies do not count) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def events(record_file: Path) -> list[dict[str, Any]]:
    """The JSON lines the fake agent's ``record=FILE`` directive appended."""
    if not record_file.exists():
        return []
    return [json.loads(line) for line in record_file.read_text().splitlines() if line.strip()]


# The Action against the fake GitHub: shared with tests/test_action.py.
from tests.conftest import LABEL, REPO, action_env, parse_outputs, run_action  # noqa: E402, F401


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long variants (``@pytest.mark.slow``) run only when asked for: ``-m slow`` (or any
    marker expression naming it) or ``ORCHESTRA_SLOW=1``; a plain ``pytest`` skips them."""
    wanted = "slow" in (config.getoption("markexpr") or "") or os.environ.get("ORCHESTRA_SLOW")
    if wanted:
        return
    skip = pytest.mark.skip(reason="long variant: run with -m slow or ORCHESTRA_SLOW=1")
    for item in items:
        if "slow" in item.keywords and Path(__file__).parent in Path(str(item.path)).parents:
            item.add_marker(skip)
