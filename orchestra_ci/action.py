"""The container Action's entrypoint: ``python -m orchestra_ci.action``.

Inputs arrive as ``INPUT_<NAME>`` variables and map onto the same settings the CLI uses.
The workspace is the queue root. The container runs as root on a workspace owned by the
runner's user: git is told the workspace is safe, and what the run created is handed back
to the workspace owner at the end.
"""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestra_ci import workflow
from orchestra_ci.errors import OrchestraError, UsageError, one_line
from orchestra_ci.redact import Redactor, secret_values


class ActionInputs(BaseSettings):
    """The inputs of action.yml, as the runner passes them. The defaults are action.yml's
    (a test keeps them equal), so that a local replay with only some ``INPUT_*`` variables
    set runs as the Action would; an empty string means not given."""

    model_config = SettingsConfigDict(env_prefix="INPUT_", extra="ignore")

    mode: str = "run"
    shards: str = ""
    shard: str = ""
    merge_dirs: str = ""
    durations_file: str = ""
    tasks_file: str = ""
    issue_label: str = ""
    agent_config: str = ""
    default_agent: str = "claude"
    parallel: str = "4"
    time_budget: str = ""
    grace: str = "30s"
    timeout: str = "30m"
    max_retries: str = "3"
    github_token: str = ""  # action.yml: ${{ github.token }}
    artifact_name: str = "orchestra-results"
    create_prs: str = "false"
    fail_on_pending: str = "false"
    setup_command: str = ""
    done_label: str = "orchestra:done"
    failed_label: str = "orchestra:failed"
    trusted_users: str = ""
    trusted_bots: str = ""
    log_format: str = "json"
    state: str = "artifact"
    retry: str = ""
    credential_proxy: str = "true"
    require_changes: str = ""
    base: str = "head"

    def settings_overrides(self) -> dict[str, Any]:
        """Non-empty inputs, named as Settings fields."""
        skip = {"setup_command", "mode", "shards", "merge_dirs"}
        return {k: v for k, v in self.model_dump().items() if v.strip() and k not in skip}


def _count(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"input {name!r} must be a whole number, not {text!r}") from None
    if value < 1:
        raise UsageError(f"input {name!r} must be at least 1")
    return value


def git_safe_directory(env: MutableMapping[str, str], root: Path) -> None:
    """Tell git (this process's and its children's, through ``GIT_CONFIG_*``) that the
    workspace is safe: in the container it belongs to another user. Nothing is written to
    any git config file, so a local replay leaves the user's ``~/.gitconfig`` alone."""
    count = int(env.get("GIT_CONFIG_COUNT") or 0)
    entries = {
        (env.get(f"GIT_CONFIG_KEY_{i}"), env.get(f"GIT_CONFIG_VALUE_{i}")) for i in range(count)
    }
    if ("safe.directory", str(root)) in entries:
        return
    env[f"GIT_CONFIG_KEY_{count}"] = "safe.directory"
    env[f"GIT_CONFIG_VALUE_{count}"] = str(root)
    env["GIT_CONFIG_COUNT"] = str(count + 1)


def _setup(command: str, root: Path) -> None:
    if not command.strip():
        return
    print(workflow.command("group", "setup_command"), flush=True)
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", command], cwd=root, check=False)
    print("::endgroup::", flush=True)
    if result.returncode != 0:
        raise OrchestraError(f"setup_command failed with exit code {result.returncode}")


_GEMINI_SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    # One retry inside the CLI (its default, 10 attempts, is 235 s on a persistent 429):
    # orchestra-ci backs off and cools the agent down for every task at once.
    "general": {"maxAttempts": 2},
}
OPENCODE_PLUGIN_VERSION = "1.18.33"  # the Dockerfile's OPENCODE_VERSION
_OPENCODE_PLUGIN = {"@opencode-ai/plugin": OPENCODE_PLUGIN_VERSION}


def agent_home_files() -> dict[str, str]:
    """The files the agent CLIs need under ``HOME`` to run unattended with no traffic but
    their provider's, by path.

    - Gemini CLI: API-key auth (given a base URL, such as the credential proxy's, it picks
      an auth type headless mode rejects), no usage statistics, its own retries bounded.
    - OpenCode: no self-update, no sharing, no snapshot store of the worktree under HOME;
      and its plugin dependency as installed, so that it does not npm-install it on every
      start (it skips that when ``node_modules/`` exists and ``package-lock.json`` lists
      every dependency of ``package.json``).
    """
    opencode = ".config/opencode"
    return {
        ".gemini/settings.json": json.dumps(_GEMINI_SETTINGS),
        f"{opencode}/opencode.json": json.dumps(
            {"autoupdate": False, "share": "disabled", "snapshot": False}
        ),
        f"{opencode}/package.json": json.dumps({"dependencies": _OPENCODE_PLUGIN}),
        f"{opencode}/package-lock.json": json.dumps(
            {
                "lockfileVersion": 3,
                "requires": True,
                "packages": {"": {"dependencies": _OPENCODE_PLUGIN}},
            }
        ),
    }


def prepare_agent_homes(env: MutableMapping[str, str]) -> None:
    """What the agent CLIs need to run unattended in the container: a writable home with
    their config directories and settings (``agent_home_files``; a file already there is
    the user's and is kept), a scratch ``TMPDIR``, and Aider's model-price
    cache (else it downloads it)."""
    home = Path(env.get("HOME") or "/github/home")
    for sub in (".claude", ".codex", ".gemini", ".config/opencode/node_modules", ".aider/caches"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    for name, text in agent_home_files().items():
        path = home / name
        if not path.exists():
            path.write_text(text)
    # Gemini CLI leaves a gemini-client-error-*.json report in TMPDIR for every failed API
    # call: a scratch directory of the run's, never the workspace or a worktree.
    env["TMPDIR"] = tempfile.mkdtemp(prefix="orchestra-agents-")
    env.setdefault("CLAUDE_CONFIG_DIR", str(home / ".claude"))
    env.setdefault("CODEX_HOME", str(home / ".codex"))
    try:
        from importlib import resources

        bundled = resources.files("litellm").joinpath("model_prices_and_context_window_backup.json")
        cache = home / ".aider/caches/model_prices_and_context_window.json"
        if bundled.is_file() and not cache.exists():
            cache.write_bytes(bundled.read_bytes())
    except (ImportError, OSError):
        pass  # Aider is not installed in this image


def hand_back(root: Path) -> int:
    """Give files the run created (owned by root) to the workspace owner; count them."""
    owner = root.stat()
    if os.geteuid() != 0 or owner.st_uid == 0:
        return 0
    changed = 0
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(directory, name)
            try:
                if os.lstat(path).st_uid == 0:
                    os.lchown(path, owner.st_uid, owner.st_gid)
                    changed += 1
            except OSError:
                continue
    return changed


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    inputs = ActionInputs()
    secrets = [v for v in [inputs.github_token, *secret_values(env)] if v]
    for line in workflow.mask_commands(secrets):
        print(line)
    redactor = Redactor(secrets)
    root = Path(env.get("GITHUB_WORKSPACE") or Path.cwd()).resolve()
    try:
        from orchestra_ci import batch, log
        from orchestra_ci.console import Console
        from orchestra_ci.settings import load_settings, split_list

        overrides = inputs.settings_overrides()
        settings = load_settings(root, named=lambda field: f"input {field!r}", **overrides)
        console = Console()
        log.configure(console, settings.log_format, redactor)
        mode = inputs.mode.strip() or "run"
        if mode == "plan":
            shards = _count(inputs.shards, "shards")
            batch.plan(root, settings, shards, env)
            return 0
        if mode == "merge":
            dirs = [root / d for d in split_list(inputs.merge_dirs or ".")]
            expected = _count(inputs.shards, "shards") if inputs.shards.strip() else None
            return batch.merge_run(root, settings, dirs, expected, redactor=redactor, env=env)
        if mode != "run":
            raise UsageError(f"input 'mode' must be run, plan or merge, not {mode!r}")
        git_safe_directory(os.environ, root)
        prepare_agent_homes(os.environ)  # agents inherit this process's environment
        _setup(inputs.setup_command, root)
        # The artifact zip is always made: uploaded in Actions, kept in .orchestra/ elsewhere.
        return batch.run_batch(
            root, settings, redactor=redactor, env=env, make_artifact=True, console=console
        )
    except OrchestraError as exc:
        message = redactor(str(exc))
        print(workflow.command("error", message, title="orchestra-ci"))
        print(f"orchestra-ci: error: {one_line(message)}", file=sys.stderr)
        return exc.exit_code
    finally:
        hand_back(root)


if __name__ == "__main__":
    from orchestra_ci.leave import leave

    leave(main())
