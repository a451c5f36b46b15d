"""Opt-in pull requests: push each completed task's branch and open (or update) a draft PR.

A task that depends on exactly one other gets a stacked PR: its base is the dependency's
branch, so it shows only the task's own change (GitHub retargets it to the dependency's
base once the dependency's PR is merged and its branch deleted).
"""

import base64
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import github

from orchestra_ci.errors import OrchestraError
from orchestra_ci.ghclient import call
from orchestra_ci.record import TaskRecord

NO_PERMISSION = (
    "the token may not create pull requests: give the workflow `contents: write` and "
    "`pull-requests: write` permissions, and allow GitHub Actions to create pull requests "
    "in the repository's Actions settings"
)


class PullRequestError(OrchestraError):
    pass


def _git_env(token: str | None) -> dict[str, str]:
    """Credentials for an https remote, as config in the environment (never in argv)."""
    env = dict(os.environ)
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraheader",
                "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
                "GIT_TERMINAL_PROMPT": "0",
            }
        )
    return env


def push(repo_top: Path, branch: str, remote: str, token: str | None) -> None:
    result = subprocess.run(
        [
            "git",
            "-C",
            str(repo_top),
            "push",
            "--force",
            "--quiet",
            remote,
            f"refs/heads/{branch}:refs/heads/{branch}",
        ],
        capture_output=True,
        text=True,
        env=_git_env(token),
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        detail = " ".join(result.stderr.split())
        raise PullRequestError(f"git push of {branch} failed: {detail}")


def opens_pr(record: TaskRecord) -> bool:
    """A completed task whose branch has a change gets a pull request."""
    return (
        record["status"] == "complete" and bool(record.get("branch")) and bool(record.get("patch"))
    )


def stacked_base(record: TaskRecord, records: Mapping[str, TaskRecord], default: str) -> str:
    """The branch the task's PR targets: with one dependency, that dependency's branch
    if it gets a PR (past dependencies that changed nothing, to the nearest that did);
    otherwise ``default``. With several dependencies the PR targets ``default`` and also
    shows their changes, which no single base holds."""
    current, seen = record, {record["taskId"]}
    while len(deps := current.get("dependsOn") or []) == 1 and deps[0] not in seen:
        seen.add(deps[0])
        dependency = records.get(deps[0])
        if dependency is None:
            break
        if opens_pr(dependency):
            return str(dependency["branch"])
        current = dependency
    return default


def title_for(record: TaskRecord) -> str:
    if record.get("issueNumber") is not None:
        return f"orchestra-ci: resolve #{record['issueNumber']}"
    first = next((line.strip() for line in record["prompt"].splitlines() if line.strip()), "")
    first = first if len(first) <= 60 else first[:59] + "…"
    return f"orchestra-ci: {record['taskId']}: {first}"


def pull_request_body(record: TaskRecord) -> str:
    attempts = record.get("attempts") or []
    agents = ", ".join(dict.fromkeys(a["agent"] for a in attempts)) or record["agent"]
    files = record.get("changedFiles") or []
    lines = [
        f"Task `{record['taskId']}`, done by **{agents}** in {len(attempts)} attempt(s).",
        "",
        "Changed files:",
        *[f"- `{f}`" for f in files[:100]],
    ]
    if len(files) > 100:
        lines.append(f"- … and {len(files) - 100} more")
    deps = record.get("dependsOn") or []
    if deps:
        names = ", ".join(f"`{d}`" for d in deps)
        lines += ["", f"Builds on the results of {names}: merge those first."]
    if record.get("issueNumber") is not None:
        lines += ["", f"Resolves #{record['issueNumber']}"]
    lines += ["", "_Opened by orchestra-ci as a draft: review before merging._"]
    return "\n".join(lines)


def open_or_update(repo: Any, record: TaskRecord, base: str) -> str:
    """The URL of the task's open PR, created as a draft or updated in place."""
    branch = record.get("branch")
    if not branch:
        raise PullRequestError(f"task {record['taskId']} has no branch")
    owner = repo.owner.login
    title, body = title_for(record), pull_request_body(record)
    try:
        existing = call(lambda: list(repo.get_pulls(state="open", head=f"{owner}:{branch}")))
        if existing:
            pr = existing[0]
            call(lambda: pr.edit(title=title, body=body, base=base))
            return str(pr.html_url)

        def create() -> Any:
            # A POST that timed out may have opened it: look again before each try.
            again = list(repo.get_pulls(state="open", head=f"{owner}:{branch}"))
            if again:
                return again[0]
            return repo.create_pull(base=base, head=branch, title=title, body=body, draft=True)

        return str(call(create).html_url)
    except github.GithubException as exc:
        if exc.status == 403:
            raise PullRequestError(NO_PERMISSION) from None
        message = exc.data.get("message") if isinstance(exc.data, dict) else str(exc.data)
        raise PullRequestError(f"pull request for {branch}: {exc.status} {message}") from None
