"""Helpers shared by the reliability and security suite (see docs/reliability.md)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci.testing.fake_github import FakeGitHub
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
    needle = f"ORCHESTRA_ROOT={root.resolve()}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ and alive(int(entry)):
            found.append(int(entry))
    return found


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


# -- the Action against the fake GitHub ---------------------------------------------------

REPO = "octo/widgets"
LABEL = "agent"


def action_env(root: Path, gh: FakeGitHub, tmp: Path, **inputs: str) -> dict[str, str]:
    """A runner-like environment for ``python -m orchestra_ci.action``."""
    event = tmp / "event.json"
    event.write_text(json.dumps({"action": "labeled", "label": {"name": LABEL}}))
    (tmp / "home").mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp / "home"),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(root),
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": gh.url,
        "GITHUB_SERVER_URL": "https://github.example",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_EVENT_NAME": "issues",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_OUTPUT": str(tmp / "output.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
        "ORCHESTRA_GITHUB_MIN_INTERVAL": "0",
        "ORCHESTRA_GITHUB_WRITE_INTERVAL": "0",
        "ORCHESTRA_GITHUB_TIMEOUT": "2",
        "ORCHESTRA_BACKOFF": "0.05",
        "INPUT_GITHUB_TOKEN": gh.token,
        "INPUT_ISSUE_LABEL": LABEL,
        "INPUT_DEFAULT_AGENT": "fake",
        "INPUT_PARALLEL": "2",
        "INPUT_MAX_RETRIES": "0",
        "INPUT_GRACE": "1s",
    }
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    return env


def run_action(env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra_ci.action"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def parse_outputs(text: str) -> dict[str, str]:
    """The heredoc format the runner reads from ``$GITHUB_OUTPUT``."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        name, _, delimiter = line.partition("<<")
        value = []
        for inner in lines:
            if inner == delimiter:
                break
            value.append(inner)
        out[name] = "\n".join(value)
    return out


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
