"""Parts of the Action's entrypoint that need no GitHub: ownership and agent homes."""

import json
import os
from pathlib import Path

import pytest
import yaml

from orchestra_ci.action import (
    OPENCODE_PLUGIN_VERSION,
    ActionInputs,
    hand_back,
    prepare_agent_homes,
)
from orchestra_ci.settings import load_settings


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, as container actions run")
def test_files_the_run_created_go_back_to_the_workspace_owner(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    (workspace / ".orchestra/tasks").mkdir(parents=True)
    (workspace / ".orchestra/tasks/a.json").write_text("{}")
    (workspace / "changed.txt").write_text("x")
    os.symlink("changed.txt", workspace / "link")
    owned = workspace / "theirs.txt"
    owned.write_text("y")
    os.chown(workspace, 1001, 1001)
    os.chown(owned, 1002, 1002)

    changed = hand_back(workspace)

    assert changed == 5  # .orchestra, tasks, a.json, changed.txt, the link itself
    for path in (
        workspace / ".orchestra",
        workspace / ".orchestra/tasks/a.json",
        workspace / "changed.txt",
    ):
        assert (path.stat().st_uid, path.stat().st_gid) == (1001, 1001)
    assert os.lstat(workspace / "link").st_uid == 1001
    assert owned.stat().st_uid == 1002  # someone else's file is left alone


def test_nothing_changes_when_the_workspace_belongs_to_root(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    if os.geteuid() == 0:
        os.chown(tmp_path, 0, 0)
    assert hand_back(tmp_path) == 0


def test_agent_homes_are_prepared(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home")}
    prepare_agent_homes(env)
    for sub in (".claude", ".codex", ".gemini", ".config/opencode", ".aider/caches"):
        assert (tmp_path / "home" / sub).is_dir()
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "home/.claude")
    assert env["CODEX_HOME"] == str(tmp_path / "home/.codex")
    gemini = json.loads((tmp_path / "home/.gemini/settings.json").read_text())
    assert gemini["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert gemini["privacy"]["usageStatisticsEnabled"] is False
    assert gemini["general"]["maxAttempts"] == 2  # its own retries bounded
    # Gemini CLI's error reports go to a scratch TMPDIR, outside the workspace.
    tmpdir = Path(env["TMPDIR"])
    assert tmpdir.is_dir() and not tmpdir.is_relative_to(tmp_path)
    tmpdir.rmdir()


def test_opencode_home_is_seeded_so_it_installs_no_plugin_and_stays_quiet(
    tmp_path: Path,
) -> None:
    env = {"HOME": str(tmp_path / "home")}
    prepare_agent_homes(env)
    Path(env["TMPDIR"]).rmdir()
    config = tmp_path / "home/.config/opencode"
    # OpenCode 1.18.33 skips its npm install when node_modules/ exists and package-lock.json
    # lists (in packages[""]) every dependency of package.json and the plugin.
    assert (config / "node_modules").is_dir()
    wanted = set(json.loads((config / "package.json").read_text())["dependencies"])
    locked = json.loads((config / "package-lock.json").read_text())["packages"][""]
    assert wanted == {"@opencode-ai/plugin"} <= set(locked["dependencies"])
    settings = json.loads((config / "opencode.json").read_text())
    assert settings == {"autoupdate": False, "share": "disabled", "snapshot": False}


def test_the_seeded_opencode_plugin_is_the_version_the_image_installs() -> None:
    dockerfile = (Path(__file__).parent.parent / "Dockerfile").read_text()
    assert f"ARG OPENCODE_VERSION={OPENCODE_PLUGIN_VERSION}\n" in dockerfile


def test_gemini_settings_of_the_users_own_are_kept(tmp_path: Path) -> None:
    settings = tmp_path / "home/.gemini/settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text('{"model": {"name": "mine"}}')
    env = {"HOME": str(tmp_path / "home")}
    prepare_agent_homes(env)
    Path(env["TMPDIR"]).rmdir()
    assert settings.read_text() == '{"model": {"name": "mine"}}'


def test_inputs_map_onto_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPUT_PARALLEL", "6")
    monkeypatch.setenv("INPUT_TIME_BUDGET", "2h")
    monkeypatch.setenv("INPUT_SETUP_COMMAND", "make deps")
    monkeypatch.setenv("INPUT_ISSUE_LABEL", "")
    overrides = ActionInputs().settings_overrides()
    assert overrides["parallel"] == "6" and overrides["time_budget"] == "2h"
    assert "setup_command" not in overrides and "issue_label" not in overrides


def test_inputs_default_as_action_yml_says() -> None:
    # A local replay that sets only some INPUT_* variables runs as the Action would.
    import yaml

    declared = yaml.safe_load((Path(__file__).parent.parent / "action.yml").read_text())["inputs"]
    defaults = {name: field.default for name, field in ActionInputs.model_fields.items()}
    expected = {name: str(spec.get("default", "")) for name, spec in declared.items()}
    expected["github_token"] = ""  # ${{ github.token }}: only the runner can fill it in
    assert defaults == expected


def test_an_input_left_out_takes_action_yml_s_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INPUT_"):
            monkeypatch.delenv(name)
    overrides = ActionInputs().settings_overrides()
    assert overrides["grace"] == "30s" and overrides["state"] == "artifact"
    assert "issue_label" not in overrides


def test_the_workspace_is_made_safe_for_git_without_touching_any_git_config(
    git_repo: Path, tmp_path: Path
) -> None:
    import subprocess

    from orchestra_ci.action import git_safe_directory

    if os.geteuid() != 0:
        pytest.skip("needs root to give the repository to another user")
    for path in [git_repo, *git_repo.rglob("*")]:
        os.lchown(path, 1001, 1001)  # as the runner's checkout looks from the container
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    status = ["git", "-C", str(git_repo), "status", "--short"]
    refused = subprocess.run(status, env=env, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "dubious ownership" in refused.stderr
    git_safe_directory(env, git_repo)
    git_safe_directory(env, git_repo)  # a second call adds nothing
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert subprocess.run(status, env=env, capture_output=True, check=False).returncode == 0
    assert not (tmp_path / "home").exists()  # no ~/.gitconfig written


@pytest.mark.parametrize(("given", "on"), [("true", True), ("false", False)])
def test_the_credential_proxy_input_maps_onto_its_setting(
    given: str, on: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INPUT_CREDENTIAL_PROXY", given)
    settings = load_settings(tmp_path, **ActionInputs().settings_overrides())
    assert settings.credential_proxy is on


def test_the_action_turns_the_credential_proxy_on_by_default() -> None:
    action = yaml.safe_load((Path(__file__).parents[1] / "action.yml").read_text())
    assert action["inputs"]["credential_proxy"]["default"] == "true"
