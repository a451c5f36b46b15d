"""The issue source: open issues carrying the trigger label become ``issue-<n>`` tasks."""

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import github
import structlog

from orchestra_ci.ghclient import call
from orchestra_ci.sanitize import issue_prompt
from orchestra_ci.tasksfile import TaskSpec
from orchestra_ci.trust import Requester, TrustDecision, decide

log = structlog.get_logger("orchestra_ci")


@dataclass(frozen=True)
class IssueTaskOptions:
    label: str
    agent: str
    max_retries: int = 3
    timeout: float | None = None
    allow_users: Collection[str] = ()
    allow_bots: Collection[str] = ()


@dataclass
class IssueScan:
    specs: list[TaskSpec] = field(default_factory=list)
    skipped: dict[int, TrustDecision] = field(default_factory=dict)


def issue_task_id(number: int) -> str:
    return f"issue-{number}"


class _Roles:
    """Permission lookups, one request per login."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo
        self.cache: dict[str, str | None] = {}

    def __call__(self, login: str) -> str | None:
        if login not in self.cache:
            try:
                self.cache[login] = call(lambda: self.repo.get_collaborator_role_name(login))
            except github.GithubException as exc:
                if exc.status not in (403, 404):
                    raise
                self.cache[login] = None  # not a collaborator (or a bot the API won't rate)
        return self.cache[login]


def _labeler(issue: Any, label: str) -> str | None:
    """Login of whoever applied ``label`` most recently."""
    who = None
    for event in call(lambda: list(issue.get_events())):
        if event.event == "labeled" and event.label is not None and event.label.name == label:
            who = event.actor.login if event.actor is not None else None
    return who


def scan(repo: Any, options: IssueTaskOptions) -> IssueScan:
    """Read every open issue (not pull request) with the label and decide trust."""
    result = IssueScan()
    roles = _Roles(repo)
    issues = call(lambda: list(repo.get_issues(state="open", labels=[options.label])))
    for issue in sorted(issues, key=lambda i: i.number):
        if issue.pull_request is not None:
            continue
        author = Requester(issue.user.login, roles(issue.user.login))
        labeler_login = _labeler(issue, options.label)
        labeler = Requester(labeler_login, roles(labeler_login)) if labeler_login else None
        decision = decide(author, labeler, options.allow_users, options.allow_bots)
        if not decision.trusted:
            result.skipped[issue.number] = decision
            log.warning("issue skipped: untrusted", issue=issue.number, reason=decision.reason)
            continue
        result.specs.append(
            TaskSpec(
                id=issue_task_id(issue.number),
                agent=options.agent,
                prompt=issue_prompt(issue.number, issue.title, issue.body or ""),
                timeout=options.timeout,
                max_retries=options.max_retries,
                backoff=None,
                backoff_max=None,
                depends_on=[],
                priority=0,
                source="issue",
                issue_number=issue.number,
            )
        )
    return result
