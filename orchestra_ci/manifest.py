"""``.orchestra/run.json``: what an exact re-run of a batch needs, kept in its artifact.

The base commit, the effective settings (no token), the tasks file and agent config as
they were loaded, the agent CLIs' versions, and where the queue was carried on from. A
local ``pull`` of the artifact shows it, and warns when the checkout is not at the base.
"""

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orchestra_ci import __version__, atomic
from orchestra_ci.agents import AgentSpec
from orchestra_ci.redact import Redactor
from orchestra_ci.settings import Settings
from orchestra_ci.store import MANIFEST_FILE
from orchestra_ci.worktrees import git_value

# The CLIs whose `--version` is quick and side-effect free; other commands are not run.
_VERSIONED = {"claude", "codex", "gemini", "opencode", "aider"}
_VERSION_TIMEOUT = 10.0
_TEXT_CAP = 256 * 1024


def base_commit(root: Path) -> str | None:
    return git_value(root, "rev-parse", "--verify", "-q", "HEAD^{commit}")


def current_branch(root: Path) -> str | None:
    return git_value(root, "symbolic-ref", "--quiet", "--short", "HEAD")


def _version(command: str) -> str | None:
    """First line of ``command --version`` for a known agent CLI; None when unknown."""
    if os.path.basename(command) not in _VERSIONED or shutil.which(command) is None:
        return None
    try:
        proc = subprocess.run(
            [command, "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=_VERSION_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0][:200] if proc.returncode == 0 and lines else None


def agent_versions(agents: Mapping[str, AgentSpec], used: Iterable[str]) -> dict[str, Any]:
    """Command and version of each agent in ``used`` (the versions asked for in parallel)."""
    names = sorted({n for n in used if n in agents})
    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(lambda n: _version(agents[n].command), names))
    return {
        name: {"command": agents[name].command, "version": version}
        for name, version in zip(names, versions, strict=True)
    }


def _file(path: Path | None, root: Path, redactor: Redactor) -> dict[str, str] | None:
    if path is None or not path.is_file():
        return None
    try:
        text = path.read_bytes()[:_TEXT_CAP].decode(errors="replace")
    except OSError:
        return None
    try:
        shown = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        shown = str(path)
    return {"path": shown, "text": redactor(text)}


def build(
    *,
    root: Path,
    settings: Settings,
    env: Mapping[str, str],
    tasks_file: Path | None,
    agent_config: Path | None,
    agents: Mapping[str, Any],
    redactor: Redactor,
    restored_from: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest (``agents``: as :func:`agent_versions` gives them)."""
    effective = settings.model_dump(mode="json", exclude={"github_token"})
    return {
        "orchestraVersion": __version__,
        "runId": env.get("GITHUB_RUN_ID"),
        "workflow": env.get("GITHUB_WORKFLOW"),
        "branch": env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME"),
        "baseCommit": base_commit(root),
        "settings": json.loads(redactor(json.dumps(effective))),
        "tasksFile": _file(tasks_file, root, redactor),
        "agentConfig": _file(agent_config, root, redactor),
        "agents": dict(agents),
        "restoredFrom": dict(restored_from) if restored_from else None,
    }


def write(orchestra_dir: Path, manifest: Mapping[str, Any]) -> Path:
    path = orchestra_dir / MANIFEST_FILE
    atomic.write_json(path, manifest)
    return path


def read(orchestra_dir: Path) -> dict[str, Any] | None:
    """The manifest of the queue in ``orchestra_dir``; None when there is none or it is not
    readable (an artifact from an older version)."""
    try:
        data = json.loads((orchestra_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
