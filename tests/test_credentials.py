"""A run's safeguards: the proxy started from the settings, git's token held back, and the
runner's memory unreadable to its agents."""

import ctypes
import os
import subprocess
from pathlib import Path

import pytest

from orchestra_ci import credentials
from orchestra_ci.credential_proxy import ProxyConfigError
from orchestra_ci.credentials import hide_memory, kept_from_agents
from orchestra_ci.settings import Settings

KEY = "http.https://github.com/.extraheader"
_PR_SET_DUMPABLE = 4


@pytest.fixture(autouse=True)
def memory_left_readable(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """The test process stays dumpable: the real call is tested in a child of its own."""
    calls: list[bool] = []
    monkeypatch.setattr(credentials, "hide_memory", lambda: calls.append(True) or True)
    return calls


def test_with_the_proxy_off_there_is_none(tmp_path: Path, memory_left_readable: list[bool]) -> None:
    with kept_from_agents(tmp_path, Settings(), {"ANTHROPIC_API_KEY": "sk-ant-x"}) as proxy:
        assert proxy is None
    assert memory_left_readable == [True]


def test_with_the_proxy_on_it_holds_the_keys_for_the_run(tmp_path: Path) -> None:
    environ = {"ANTHROPIC_API_KEY": "sk-ant-x", "GEMINI_API_KEY": "AIza-x"}
    with kept_from_agents(tmp_path, Settings(credential_proxy=True), environ) as proxy:
        assert proxy is not None
        assert proxy.providers == {"anthropic", "gemini"}
        assert proxy.url.startswith("http://127.0.0.1:")
    with pytest.raises(RuntimeError):
        proxy.url  # noqa: B018  (stopped with the run)


def test_with_the_proxy_on_and_no_key_there_is_none(tmp_path: Path) -> None:
    with kept_from_agents(tmp_path, Settings(credential_proxy=True), {"PATH": "/bin"}) as proxy:
        assert proxy is None


def test_a_key_the_proxy_cannot_use_stops_the_run_before_anything_is_held(
    git_repo: Path,
) -> None:
    subprocess.run(["git", "-C", str(git_repo), "config", KEY, "AUTH: x"], check=True)
    environ = {"OPENAI_COMPATIBLE_API_KEY": "k"}  # without its base URL
    with (
        pytest.raises(ProxyConfigError),
        kept_from_agents(git_repo, Settings(credential_proxy=True), environ),
    ):
        pass
    assert "extraheader" in (git_repo / ".git/config").read_text()


def test_the_git_token_is_held_back_for_the_run_whether_the_proxy_is_on_or_not(
    git_repo: Path,
) -> None:
    config = git_repo / ".git/config"
    subprocess.run(["git", "-C", str(git_repo), "config", KEY, "AUTH: x"], check=True)
    with kept_from_agents(git_repo, Settings(), {}):
        assert "extraheader" not in config.read_text()
    assert "extraheader" in config.read_text()


def _environ_readable_by_a_child(hide: bool) -> bool:
    """In a forked child (as nobody, when this runs as root: no capability left, as for an
    agent in a container): can a process it starts read its /proc/PID/environ?"""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
                # Changing user made it non-dumpable: dumpable again, as the runner starts.
                ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
            if hide and not hide_memory():
                os._exit(98)
            code = subprocess.run(
                ["cat", f"/proc/{os.getpid()}/environ"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            ).returncode
        finally:
            os._exit(code)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert code in (0, 1), f"the probe failed with {code}"
    return code == 0


@pytest.mark.linux_only
def test_the_runners_environment_is_unreadable_to_what_it_starts() -> None:
    assert _environ_readable_by_a_child(hide=False)  # the probe can see a readable one
    assert not _environ_readable_by_a_child(hide=True)
