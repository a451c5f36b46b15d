"""orchestra_ci.manifest: agent versions for the run's manifest."""

import os
from pathlib import Path

import pytest

from orchestra_ci.agents import AgentSpec
from orchestra_ci.manifest import agent_versions


def test_known_cli_versions_are_asked_and_other_commands_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text("#!/bin/sh\necho '2.1.197 (Claude Code)'\n")
    ran = tmp_path / "ran"
    tool = bin_dir / "my-tool"
    tool.write_text(f"#!/bin/sh\ntouch {ran}\n")
    for script in (claude, tool):
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    agents = {
        "claude": AgentSpec(command="claude"),
        "mine": AgentSpec(command="my-tool"),
        "codex": AgentSpec(command="codex-not-installed-here"),
    }
    versions = agent_versions(agents, ["claude", "mine", "unknown"])
    assert versions == {
        "claude": {"command": "claude", "version": "2.1.197 (Claude Code)"},
        "mine": {"command": "my-tool", "version": None},
    }
    assert not ran.exists()
