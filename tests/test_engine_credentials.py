"""What an agent can reach: the engine builds each agent's environment, and with the
credential proxy routes the presets through it, against the provider stand-in.

The agents here dump their environment (``tests/doubles/fake_cli.py`` plays the preset CLIs,
finding their endpoint as the real ones do); the runner's environment holds the provider
keys, the Action's inputs and the runner's tokens, as in a workflow.
"""

import json
import os
import socket
import stat
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci.agent_env import NEVER_PASSED
from orchestra_ci.credential_proxy import KEY_VARIABLES, proxy_config
from orchestra_ci.proxy_server import CredentialProxy
from orchestra_ci.record import new_record
from orchestra_ci.store import Store
from tests.conftest import records, wait_for, write_agents
from tests.doubles.fake_provider import FakeProvider
from tests.test_engine import run_in_process

FAKE_CLI = Path(__file__).parent / "doubles" / "fake_cli.py"
PRESETS = ["claude", "codex", "gemini", "opencode", "aider"]
HEADER_SECRET = "c2VjcmV0LWhlYWRlci12YWx1ZQ=="
DUMP_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


@pytest.fixture
def api() -> Iterator[FakeProvider]:
    with FakeProvider(gate_timeout=60) as running:
        yield running
    assert not running.errors, running.errors[0]


@pytest.fixture
def runner(api: FakeProvider, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The runner's environment, as a workflow step gives it (also set in os.environ): the
    provider keys and base URLs of the stand-in, the Action's inputs, the runner's tokens,
    a git extraheader passed as configuration, and a variable of the user's."""
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    values = {
        "ANTHROPIC_API_KEY": api.anthropic_key,
        "ANTHROPIC_BASE_URL": api.url,
        "OPENAI_API_KEY": api.openai_key,
        "OPENAI_BASE_URL": f"{api.url}/v1",
        "GEMINI_API_KEY": api.gemini_key,
        "GOOGLE_GEMINI_BASE_URL": api.url,
        "INPUT_GITHUB_TOKEN": "ghs_input0123456789abcdef",
        "INPUT_PARALLEL": "2",
        "GITHUB_TOKEN": "ghs_github0123456789abcdef",
        "GH_TOKEN": "gho_gh0123456789abcdef",
        "ACTIONS_RUNTIME_TOKEN": "eyJruntime.0123456789.abcdef",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "idtoken0123456789abcdef",
        "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions.example/oidc",
        "ACTIONS_RESULTS_URL": "https://results.actions.example/",
        "ACTIONS_CACHE_URL": "https://cache.actions.example/",
        "GIT_ASKPASS": "/usr/local/bin/askpass-prints-the-token",
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "http.https://github.com/.extraheader",
        "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {HEADER_SECRET}",
        "GIT_CONFIG_KEY_1": "core.quotePath",
        "GIT_CONFIG_VALUE_1": "false",
        "USER_SETTING": "kept",
        "FAKE_CLI_DUMP": str(dumps),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def secret_values(runner: dict[str, str]) -> dict[str, str]:
    """The values no agent may hold while the proxy is on."""
    names = [*KEY_VARIABLES, *NEVER_PASSED, "INPUT_GITHUB_TOKEN"]
    found = {name: runner[name] for name in names if name in runner}
    return {**found, "extraheader": HEADER_SECRET}


def leaks(env: dict[str, str], secrets: dict[str, str]) -> set[str]:
    return {name for name, value in secrets.items() if any(value in v for v in env.values())}


def fake_cli(tmp: Path, kind: str, name: str | None = None) -> str:
    """A program ``name`` (``fake-<kind>`` by default) in ``tmp`` that plays ``kind``."""
    path = tmp / (name or f"fake-{kind}")
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CLI}" {kind} "$@"\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def seen_by(dumps: Path, task: str, attempt: int = 1) -> dict[str, Any]:
    seen: dict[str, Any] = json.loads((dumps / f"{task}.{attempt}.json").read_text())
    return seen


def release_on_first_event(marker: Path, gate: threading.Event) -> threading.Thread:
    """Opens the stand-in's stream gate once the agent has the first event: the rest of the
    stream is sent only then, so the run completes only if the proxy passed that event on
    before the stream ended."""

    def wait() -> None:
        try:
            wait_for(marker.exists, "the first event to reach the agent", timeout=60)
        finally:
            gate.set()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def refused(base_url: str) -> bool:
    request = urllib.request.Request(f"{base_url}/v1/messages", data=b"{}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as error:
        return error.code == 403
    return False


def logged_env(root: Path, task: str) -> dict[str, str]:
    """The environment an agent printed as JSON (the inline dumper), from its log."""
    lines = (root / ".orchestra" / "logs" / f"{task}.log").read_text().splitlines()
    env: dict[str, str] = json.loads(next(line for line in lines if line.startswith("{")))
    return env


def queue(root: Path, agents: dict[str, Any], task: str, agent: str) -> None:
    (root / ".orchestra").mkdir(exist_ok=True)
    write_agents(root, agents)
    Store(root).ensure().create(new_record(task, agent, "say hello", max_retries=0))


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_completes_a_task_through_the_proxy_and_holds_no_credential(
    preset: str, git_repo: Path, api: FakeProvider, runner: dict[str, str], tmp_path: Path
) -> None:
    dumps = Path(runner["FAKE_CLI_DUMP"])
    queue(git_repo, {preset: {"command": fake_cli(tmp_path, preset)}}, "t", preset)
    api.stream_gate = threading.Event()
    releaser = release_on_first_event(dumps / "t.1.first-event", api.stream_gate)
    with CredentialProxy(proxy_config(os.environ).credentials) as proxy:
        outcome = run_in_process(git_repo, proxy=proxy, isolation="worktree")
        seen = seen_by(dumps, "t")
        revoked = refused(seen["env"]["ANTHROPIC_BASE_URL"])
        proxy_url = proxy.url
    releaser.join()

    assert outcome.exit_code == 0
    record = records(git_repo)["t"]
    assert record["status"] == "complete"
    patch = (git_repo / record["patch"]).read_text()
    assert f"+{api.reply}" in patch  # the streamed reply, as the agent assembled it
    env = seen["env"]
    assert not {n for n in env if n in NEVER_PASSED or n.startswith("INPUT_")}
    assert leaks(env, secret_values(runner)) == set()
    assert env["USER_SETTING"] == "kept" and env["PATH"] == os.environ["PATH"]
    assert env["GIT_CONFIG_COUNT"] == "1" and env["GIT_CONFIG_KEY_0"] == "core.quotePath"
    worktree = str(git_repo / ".orchestra" / "worktrees" / "t")
    assert env["PWD"] == seen["cwd"] == worktree
    assert env["ANTHROPIC_BASE_URL"].startswith(proxy_url)  # not the provider's own address
    assert revoked  # the route ended with the attempt
    attempt = record["attempts"][0]
    assert attempt["requests"] == 1
    if preset != "aider":  # its Chat Completions stream asks for no usage
        assert (attempt["inputTokens"], attempt["outputTokens"]) == (
            api.input_tokens,
            api.output_tokens,
        )
    else:
        assert "inputTokens" not in attempt


def test_without_the_proxy_an_agent_gets_the_users_keys_but_none_of_the_runners_tokens(
    git_repo: Path, api: FakeProvider, runner: dict[str, str], tmp_path: Path
) -> None:
    dumps = Path(runner["FAKE_CLI_DUMP"])
    queue(git_repo, {"claude": {"command": fake_cli(tmp_path, "claude")}}, "t", "claude")
    outcome = run_in_process(git_repo, isolation="worktree")
    assert outcome.exit_code == 0
    env = seen_by(dumps, "t")["env"]
    assert env["ANTHROPIC_API_KEY"] == api.anthropic_key
    assert env["ANTHROPIC_BASE_URL"] == api.url
    assert not {n for n in env if n in NEVER_PASSED or n.startswith("INPUT_")}
    assert HEADER_SECRET not in json.dumps(env)
    assert "requests" not in records(git_repo)["t"]["attempts"][0]


def test_an_agent_that_names_no_provider_gets_no_key_and_no_route(
    root: Path, runner: dict[str, str], tmp_path: Path
) -> None:
    agent = {"command": sys.executable, "args": ["-c", DUMP_ENV, "{prompt}"]}
    queue(root, {"custom": agent}, "t", "custom")
    with CredentialProxy(proxy_config(os.environ).credentials) as proxy:
        run_in_process(root, proxy=proxy)
    env = logged_env(root, "t")
    assert not (set(env) & proxy.withheld)
    assert leaks(env, secret_values(runner)) == set()
    assert env["USER_SETTING"] == "kept" and env["PWD"] == str(root)
    assert records(root)["t"]["status"] == "complete"


def test_an_agent_is_given_a_withheld_variable_only_by_naming_it(
    root: Path, runner: dict[str, str]
) -> None:
    agent = {
        "command": sys.executable,
        "args": ["-c", DUMP_ENV, "{prompt}"],
        "env": {"GH_TOKEN": "{env:GH_TOKEN}", "NOT_SET": "{env:NO_SUCH_VARIABLE_XYZ}"},
    }
    queue(root, {"custom": agent}, "t", "custom")
    run_in_process(root)
    env = logged_env(root, "t")
    assert env["GH_TOKEN"] == runner["GH_TOKEN"] and env["NOT_SET"] == ""
    assert "GITHUB_TOKEN" not in env and "INPUT_GITHUB_TOKEN" not in env


def test_the_verification_command_gets_the_agents_environment(
    git_repo: Path, runner: dict[str, str], tmp_path: Path
) -> None:
    dumps = Path(runner["FAKE_CLI_DUMP"])
    queue(git_repo, {"claude": {"command": fake_cli(tmp_path, "claude")}}, "t", "claude")
    verify = f'{sys.executable} -c "{DUMP_ENV}" > "$FAKE_CLI_DUMP/verify.json"'
    with CredentialProxy(proxy_config(os.environ).credentials) as proxy:
        outcome = run_in_process(git_repo, proxy=proxy, isolation="worktree", verify=verify)
    assert outcome.exit_code == 0
    agent = seen_by(dumps, "t")["env"]
    verifier = json.loads((dumps / "verify.json").read_text())
    assert verifier["ANTHROPIC_BASE_URL"] == agent["ANTHROPIC_BASE_URL"]
    assert verifier["PWD"] == agent["PWD"] and verifier["ORCHESTRA_TASK_ID"] == "t"
    assert not {n for n in verifier if n in NEVER_PASSED or n.startswith("INPUT_")}
    assert leaks(verifier, secret_values(runner)) == set()


def test_an_upstream_the_proxy_cannot_reach_ends_the_attempt_with_the_proxys_error(
    root: Path, runner: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nothing listens on once this closes
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    queue(root, {"claude": {"command": fake_cli(tmp_path, "claude")}}, "t", "claude")
    with CredentialProxy(proxy_config(os.environ).credentials) as proxy:
        outcome = run_in_process(root, proxy=proxy)
    assert outcome.exit_code == 1
    attempt = records(root)["t"]["attempts"][0]
    assert attempt["outcome"] == "rate_limited"
    assert "credential proxy: cannot connect to the anthropic upstream" in attempt["error"]
    assert attempt["requests"] == 0  # the upstream never answered
