"""The Gemini CLI and OpenCode presets as they are (argv, env, result format, patterns),
run by the engine against stand-ins of the CLIs placed on PATH under their real names
(``tests/doubles/fake_cli.py``, which behaves as AGENT-CLIS.md records for Gemini CLI
0.61.0 and OpenCode 1.18.33) and the provider stand-in. No credential proxy: the runner's
keys and base URLs point at the stand-in."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci.record import new_record
from orchestra_ci.store import Store
from tests.conftest import alive, records, write_agents
from tests.doubles.fake_provider import Canned, FakeProvider
from tests.test_engine import run_in_process
from tests.test_engine_credentials import fake_cli, seen_by

GEMINI_PATH = "/v1beta/models/gemini-fake:streamGenerateContent"
PER_MINUTE = (
    "You exceeded your current quota, please check your plan and billing details. "
    "Please retry in 2.0s.\nSuggested retry after 2s."
)


@pytest.fixture
def api() -> Iterator[FakeProvider]:
    with FakeProvider() as running:
        yield running
    assert not running.errors, running.errors[0]


@pytest.fixture
def dumps(
    api: FakeProvider, git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The runner's environment: the CLIs' stand-ins first on PATH, the provider's keys and
    addresses, and a PWD that is not the agents' directory (the runner's own)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for kind in ("gemini", "opencode", "claude", "codex"):
        fake_cli(bin_dir, kind, name=kind)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dump_dir = tmp_path / "dumps"
    dump_dir.mkdir()
    values = {
        "PATH": f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}",
        "PWD": str(elsewhere),
        "GEMINI_API_KEY": api.gemini_key,
        "GOOGLE_GEMINI_BASE_URL": api.url,
        "OPENAI_API_KEY": api.openai_key,
        "OPENAI_BASE_URL": f"{api.url}/v1",
        "FAKE_CLI_DUMP": str(dump_dir),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    (git_repo / ".orchestra").mkdir()
    return dump_dir


def run(
    root: Path, agent: str, agents: dict[str, Any] | None = None, timeout: float | None = None
) -> dict[str, Any]:
    """Run one task with the preset (changed by ``agents``, if given); its record."""
    write_agents(root, agents or {})
    Store(root).ensure().create(new_record("t", agent, "say hello", max_retries=0, timeout=timeout))
    run_in_process(root, isolation="worktree")
    return records(root)["t"]


def test_gemini_preset_completes_a_task_trusted_in_one_process_with_a_json_result(
    git_repo: Path, api: FakeProvider, dumps: Path
) -> None:
    record = run(git_repo, "gemini")
    assert record["status"] == "complete"
    assert f"+{api.reply}" in (git_repo / record["patch"]).read_text()
    seen = seen_by(dumps, "t")
    assert seen["argv"][:1] + seen["argv"][3:] == ["gemini", "--yolo", "--skip-trust", "-o", "json"]
    assert seen["env"]["GEMINI_CLI_NO_RELAUNCH"] == "true"
    log = (git_repo / ".orchestra/logs/t.log").read_text()
    assert '"response": "Hello from the fake provider"' in log


@pytest.mark.parametrize(
    ("status", "body", "exit_code", "outcome"),
    [
        (429, {"error": {"code": 429, "message": PER_MINUTE}}, 173, "rate_limited"),
        (
            429,
            {"error": {"code": 429, "message": "Quota exceeded", "quotaId": "RequestsPerDay"}},
            173,
            "quota_exhausted",
        ),
        (
            401,
            {"error": {"code": 401, "message": "Request had invalid credentials."}},
            145,
            "fatal",
        ),
        (500, {"error": {"code": 500, "message": "Internal error"}}, 244, "failed"),
    ],
)
def test_gemini_preset_reads_api_errors_from_its_json_error_and_exit_code(
    git_repo: Path,
    api: FakeProvider,
    dumps: Path,
    status: int,
    body: dict[str, Any],
    exit_code: int,
    outcome: str,
) -> None:
    api.canned[GEMINI_PATH] = Canned(status, body=json.dumps(body).encode())
    record = run(git_repo, "gemini")
    attempt = record["attempts"][0]
    # A spent quota is no failure of the task: it stays pending for a later run.
    status_after = "pending" if outcome == "quota_exhausted" else "failed"
    assert (record["status"], attempt["exitCode"], attempt["outcome"]) == (
        status_after,
        exit_code,
        outcome,
    )


def test_gemini_bad_key_is_fatal(
    git_repo: Path, api: FakeProvider, dumps: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-not-the-key")
    record = run(git_repo, "gemini")
    attempt = record["attempts"][0]
    assert (attempt["exitCode"], attempt["outcome"]) == (400 % 256, "fatal")
    assert "API key not valid" in record["errorMessage"]


def test_gemini_relaunched_child_dies_with_its_process_group(
    git_repo: Path, dumps: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without GEMINI_CLI_NO_RELAUNCH the started process is a parent that ignores SIGTERM
    # while its child does the work: at the timeout the whole group is signalled.
    monkeypatch.setenv("FAKE_CLI_HANG", "1")
    record = run(git_repo, "gemini", {"gemini": {"env": {}}}, timeout=1)
    assert record["attempts"][0]["outcome"] == "timeout"
    worker = int((dumps / "t.1.worker").read_text())
    assert worker != record["attempts"][0]["pid"]  # it did relaunch itself
    assert not alive(worker)


def test_opencode_preset_completes_a_task_in_its_worktree_by_pwd(
    git_repo: Path, api: FakeProvider, dumps: Path, tmp_path: Path
) -> None:
    record = run(git_repo, "opencode")
    assert record["status"] == "complete"
    # OpenCode writes where $PWD points: the worktree, not where the run was started.
    assert f"+{api.reply}" in (git_repo / record["patch"]).read_text()
    assert not (tmp_path / "elsewhere" / "reply.txt").exists()
    seen = seen_by(dumps, "t")
    assert seen["argv"][:3] == ["opencode", "run", "--title=t"]
    env = seen["env"]
    assert (env["OPENCODE_DISABLE_MODELS_FETCH"], env["OPENCODE_DISABLE_AUTOUPDATE"]) == ("1", "1")


def test_opencode_permission_auto_rejected_fails_the_attempt_although_it_exited_0(
    git_repo: Path, dumps: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLI_ASK", "external_directory")
    record = run(git_repo, "opencode")
    attempt = record["attempts"][0]
    assert (record["status"], attempt["exitCode"], attempt["outcome"]) == ("failed", 0, "failed")
    assert "auto-rejected: external_directory" in record["errorMessage"]


@pytest.mark.parametrize(
    ("status", "message", "outcome"),
    [
        (429, "Rate limit reached for gpt-fake in organization org-x.", "rate_limited"),
        (429, "You exceeded your current quota, please check your plan.", "quota_exhausted"),
        (401, "Incorrect API key provided: sk-***.", "fatal"),
    ],
)
def test_opencode_api_errors_map_to_outcomes(
    git_repo: Path, api: FakeProvider, dumps: Path, status: int, message: str, outcome: str
) -> None:
    body = json.dumps({"error": {"message": message}}).encode()
    api.canned["/v1/chat/completions"] = Canned(status, body=body)
    record = run(git_repo, "opencode")
    attempt = record["attempts"][0]
    assert (attempt["exitCode"], attempt["outcome"]) == (1, outcome)


@pytest.mark.parametrize(
    ("agent", "message", "status", "outcome"),
    [
        ("claude", "API Error: Request rejected (429) · slow down", "429", "rate_limited"),
        ("claude", "Invalid API key · Fix external API key", "401", "fatal"),
        ("claude", "API Error: 500 Internal server error", "500", "failed"),
        ("codex", "exceeded retry limit, last status: 429 Too Many Requests", "", "rate_limited"),
        ("codex", "stream disconnected before completion", "", "failed"),
    ],
)
def test_an_agent_exiting_0_with_a_reported_error_fails_with_its_message(
    git_repo: Path,
    dumps: Path,
    monkeypatch: pytest.MonkeyPatch,
    agent: str,
    message: str,
    status: str,
    outcome: str,
) -> None:
    monkeypatch.setenv("FAKE_CLI_FAIL", message)
    monkeypatch.setenv("FAKE_CLI_STATUS", status)
    record = run(git_repo, agent)
    assert record["status"] != "complete"
    attempt = record["attempts"][-1]
    assert attempt["outcome"] == outcome
    assert message in record["errorMessage"]
