"""Shared fixtures: a queue directory, a fake agent configured in it, and a CLI runner."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestra_ci import process_table
from orchestra_ci.process_table import Features, ProcessTable
from orchestra_ci.store import Store
from tests.doubles.fake_github import FakeGitHub

FAKE_AGENT_SCRIPT = str(Path(__file__).parent / "doubles" / "fake_agent.py")
FAKE_AGENT = {"command": sys.executable, "args": [FAKE_AGENT_SCRIPT, "{prompt}"]}

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project directory with an agent config defining ``fake`` (and ``fake2``)."""
    project = tmp_path / "project"
    (project / ".orchestra").mkdir(parents=True)
    write_agents(project, {"fake": FAKE_AGENT, "fake2": FAKE_AGENT})
    return project


@pytest.fixture
def store(root: Path) -> Store:
    return Store(root).ensure()


def write_agents(root: Path, agents: dict[str, Any]) -> Path:
    path = root / ".orchestra" / "agent-config.json"
    path.write_text(json.dumps({"agents": agents}))
    return path


def write_tasks(root: Path, text: str, name: str = "tasks.yml") -> Path:
    path = root / ".orchestra" / name
    path.write_text(text)
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
    env.update({"CI": "true", "ORCHESTRA_DEMO_DELAY": "0.05", "ORCHESTRA_BACKOFF": "0.05"})
    env.update(extra)
    return env


@pytest.fixture
def cli(root: Path) -> CliRunner:
    """Run ``python -m orchestra_ci --root ROOT ARGS...`` as a real subprocess."""

    def run(
        *args: str, timeout: float = 60, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestra_ci", "--root", str(root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or cli_env(),
            input=input,
            check=False,
        )

    return run


def records(root: Path) -> dict[str, dict[str, Any]]:
    return {r["taskId"]: dict(r) for r in Store(root).all()}


def alive(pid: int) -> bool:
    """True if ``pid`` is a live process (zombies waiting to be reaped do not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def without_linux_extras(monkeypatch: pytest.MonkeyPatch) -> ProcessTable:
    """The process code as it runs on macOS: no /proc, no pidfds, no child subreaper."""
    table = ProcessTable(Features(proc=False, pidfd=False, subreaper=False))
    monkeypatch.setattr(process_table, "SYSTEM", table)
    return table


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``linux_only`` tests check what only Linux has (/proc, prctl); elsewhere they skip."""
    if sys.platform.startswith("linux"):
        return
    skip = pytest.mark.skip(reason="linux_only: needs /proc or prctl")
    for item in items:
        if "linux_only" in item.keywords:
            item.add_marker(skip)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A running fake GitHub REST API; fails the test if the fake itself hit an internal error."""
    with FakeGitHub() as fake:
        yield fake
    assert not fake.errors, fake.errors[0]


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository (branch ``main``) with one commit, isolated from the user's git
    config: README.md, src/app.py and old.txt."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("# demo\n\nfirst line\nsecond line\nthird line\n")
    (repo / "src" / "app.py").write_text("def main() -> int:\n    return 0\n")
    (repo / "old.txt").write_text("to be deleted\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "base"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    return repo


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


@pytest.fixture
def tokyo() -> Iterator[None]:
    """Local time nine hours ahead of UTC, as on a developer's laptop in Japan."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
