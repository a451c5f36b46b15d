"""The issue source: open issues carrying the trigger label become ``issue-<n>`` tasks."""

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import github
import structlog

from orchestra_ci.ghclient import call
from orchestra_ci.sanitize import issue_prompt
from orchestra_ci.task_spec import TaskSpec
from orchestra_ci.trust import Requester, TrustDecision, assess

log = structlog.get_logger("orchestra_ci")


@dataclass(frozen=True)
class IssueTaskOptions:
    label: str
    agent: str
    max_retries: int = 3
    timeout: float | None = None
    allow_users: Collection[str] = ()
    allow_bots: Collection[str] = ()
    only: int | None = None  # an `issues: labeled` event names one issue


@dataclass
class IssueScan:
    specs: list[TaskSpec] = field(default_factory=list)
    skipped: dict[int, TrustDecision] = field(default_factory=dict)


def event_issue(event_name: str | None, event_path: str | None, label: str) -> int | None:
    """The issue an ``issues: labeled`` event is about, when it added our label."""
    if event_name != "issues" or not event_path:
        return None
    import json
    from pathlib import Path

    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(event, dict) or event.get("action") != "labeled":
        return None
    if (event.get("label") or {}).get("name") != label:
        return None
    number = (event.get("issue") or {}).get("number")
    return number if isinstance(number, int) else None


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


def _labeled(issue: Any, label: str) -> tuple[str | None, str | None]:
    """Login of whoever applied ``label`` most recently, and when."""
    who = when = None
    for event in call(lambda: list(issue.get_events())):
        if event.event == "labeled" and event.label is not None and event.label.name == label:
            who = event.actor.login if event.actor is not None else None
            when = event.created_at.isoformat() if event.created_at is not None else None
    return who, when


def scan(repo: Any, options: IssueTaskOptions) -> IssueScan:
    """Read every open issue (not pull request) with the label and decide trust."""
    result = IssueScan()
    roles = _Roles(repo)
    if options.only is not None:
        one = call(lambda: repo.get_issue(options.only))
        labelled = one.state == "open" and any(lbl.name == options.label for lbl in one.labels)
        issues = [one] if labelled else []
    else:
        issues = call(lambda: list(repo.get_issues(state="open", labels=[options.label])))
    for issue in sorted(issues, key=lambda i: i.number):
        if issue.pull_request is not None:
            continue
        author = Requester(issue.user.login, roles(issue.user.login))
        labeler_login, labeled_at = _labeled(issue, options.label)
        labeler = Requester(labeler_login, roles(labeler_login)) if labeler_login else None
        decision = assess(author, labeler, options.allow_users, options.allow_bots)
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
                labeled_at=labeled_at,
            )
        )
    return result
