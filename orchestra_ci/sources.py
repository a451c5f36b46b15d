"""Where a batch's tasks come from: the tasks file and the labelled issues, with the agent
config they run on.

Kept apart from :mod:`orchestra_ci.batch` so that ``load`` does not import the run's world
(structlog, asyncio, the engine) to read a file and write records.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestra_ci.agents import AgentSpec, load_agents
from orchestra_ci.errors import UsageError
from orchestra_ci.presets import DEFAULT_CONFIG_FILE
from orchestra_ci.settings import Settings, split_list

if TYPE_CHECKING:
    from orchestra_ci.task_spec import TaskSpec


@dataclass
class Sources:
    specs: "list[TaskSpec]" = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # issue number -> reason
    # Each source read whole -> every id it has (before sharding): queued tasks it no
    # longer has are retired.
    complete: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class GitHubContext:
    """PyGithub handles for the repository, built only when issues are involved."""

    gh: Any
    repo: Any


def resolve(root: Path, path: Path | None) -> Path | None:
    if path is None:
        return None
    return path if path.is_absolute() else root / path


def agent_config_for(root: Path, settings: Settings) -> Path | None:
    config = resolve(root, settings.agent_config)
    if config is None and (root / DEFAULT_CONFIG_FILE).is_file():
        config = root / DEFAULT_CONFIG_FILE
    return config


def tasks_file_for(root: Path, settings: Settings) -> Path | None:
    tasks_file = resolve(root, settings.tasks_file)
    default = root / ".orchestra/tasks.yml"
    if tasks_file is None and default.exists():
        if not default.is_file():
            raise UsageError(f"{default}: not a file (the tasks file is read from there)")
        tasks_file = default
    return tasks_file


def agents_for(root: Path, settings: Settings) -> dict[str, AgentSpec]:
    return load_agents(agent_config_for(root, settings))


def connect_github(settings: Settings) -> GitHubContext:
    from orchestra_ci.ghclient import GitHubConfig, call, connect

    repository = settings.repository
    token = settings.token
    if not repository or not token.strip():
        raise UsageError(
            "issues and pull requests need the repository (GITHUB_REPOSITORY or --repo "
            "OWNER/NAME) and a token (GITHUB_TOKEN or --github-token)"
        )
    gh = connect(
        GitHubConfig(
            token=token,
            repository=repository,
            api_url=settings.api_url,
            max_wait=settings.github_max_wait,
            timeout=settings.github_timeout,
            min_interval=settings.github_min_interval,
            write_interval=settings.github_write_interval,
        )
    )
    import github

    try:
        repo = call(lambda: gh.get_repo(repository))
    except github.GithubException as exc:
        message = exc.data.get("message") if isinstance(exc.data, dict) else exc.status
        raise UsageError(f"cannot open repository {repository!r}: {message}") from None
    return GitHubContext(gh, repo)


def load_sources(
    root: Path,
    settings: Settings,
    github_ctx: GitHubContext | None,
    env: Mapping[str, str] | None = None,
) -> Sources:
    sources = Sources()
    tasks_file = tasks_file_for(root, settings)
    if tasks_file is not None:
        from orchestra_ci.tasksfile import load_tasks_file, source_name

        from_file = load_tasks_file(tasks_file, root, settings.default_agent, settings.max_retries)
        sources.specs += from_file
        sources.complete[source_name(tasks_file, root)] = {s.id for s in from_file}
    if settings.issue_label and github_ctx is not None:
        from orchestra_ci.issues import IssueTaskOptions, event_issue, scan

        env = os.environ if env is None else env
        only = event_issue(
            env.get("GITHUB_EVENT_NAME"), env.get("GITHUB_EVENT_PATH"), settings.issue_label
        )
        found = scan(
            github_ctx.repo,
            IssueTaskOptions(
                label=settings.issue_label,
                agent=settings.issue_agent or settings.default_agent,
                max_retries=settings.max_retries,
                allow_users=split_list(settings.trusted_users),
                allow_bots=split_list(settings.trusted_bots),
                only=only,
            ),
        )
        taken = {s.id for s in sources.specs}
        sources.specs += [s for s in found.specs if s.id not in taken]
        if only is None:  # every labelled issue was read, not just the event's
            sources.complete["issue"] = {s.id for s in found.specs}
        sources.skipped = {n: d.reason for n, d in found.skipped.items()}
    return sources
