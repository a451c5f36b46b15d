"""One status comment per issue, found by a hidden marker and edited in place.

Updates go through a background thread that keeps only the newest body per issue, so a
slow or rate-limited GitHub never holds up the agents, and a burst of state changes costs
one request per issue.
"""

import queue
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from orchestra_ci.durations import format_duration
from orchestra_ci.record import TaskRecord, timestamp
from orchestra_ci.redact import Redactor
from orchestra_ci.sanitize import fence

if TYPE_CHECKING:
    import github

log = structlog.get_logger("orchestra_ci")

_TAIL_LINES = 40


def marker(task_id: str) -> str:
    return f"<!-- orchestra-ci:status {task_id} -->"


@dataclass(frozen=True)
class Links:
    run_url: str | None = None
    artifact_url: str | None = None


def _footer(links: Links) -> str:
    parts = []
    if links.run_url:
        parts.append(f"[workflow run]({links.run_url})")
    if links.artifact_url:
        parts.append(f"[logs and patches]({links.artifact_url})")
    return ("\n\n" + " · ".join(parts)) if parts else ""


def _tail(text: str) -> str:
    lines = text.splitlines()[-_TAIL_LINES:]
    summary = f"<summary>Last {len(lines)} log lines</summary>"
    return f"<details>{summary}\n\n{fence(chr(10).join(lines))}\n</details>"


def status_comment_body(record: TaskRecord, links: Links, log_tail: str = "") -> str:
    """The comment text for a task's current state (pure; :class:`IssueReporter` masks the
    run's secrets in it before it is sent)."""
    task_id = record["taskId"]
    status = record["status"]
    attempts = record.get("attempts") or []
    agent = attempts[-1]["agent"] if attempts else record["agent"]
    head = f"{marker(task_id)}\n### orchestra-ci · "
    outcome = attempts[-1].get("outcome") if attempts else None
    if status == "running":
        text = f"⏳ running\n\nAttempt {len(attempts)} with agent **{agent}**."
    elif status == "pending" and outcome == "quota_exhausted":
        error = record.get("errorMessage") or "quota exhausted"
        text = (
            f"⏸️ waiting for quota\n\nAgent **{agent}** has no quota left: {error}. "
            "The task stays queued, not failed, and runs once the quota resets."
        )
    elif status == "pending" and record.get("retryCount"):
        error = record.get("errorMessage") or ""
        ended = "was stopped" if outcome in ("stalled", "timeout") else "failed"
        text = (
            f"🔁 retry {record['retryCount']} of {record.get('maxRetries', 0)}\n\n"
            f"The last attempt with **{agent}** {ended}: {error}"
        )
    elif status == "pending":
        text = "🕐 queued\n\nThe task is waiting for a free agent."
    elif status == "complete":
        took = sum(
            (timestamp(a.get("endedAt")) or 0) - (timestamp(a["startedAt"]) or 0)
            for a in attempts
            if a.get("endedAt")
        )
        text = (
            f"✅ done\n\nFinished with agent **{agent}** in {format_duration(took)} "
            f"({len(attempts)} attempt{'s' if len(attempts) != 1 else ''})."
        )
        if record.get("prUrl"):
            text += f"\n\nPull request: {record['prUrl']}"
        elif record.get("patch"):
            text += f"\n\nPatch: `{record['patch']}` in the run's artifact."
    elif status == "failed":
        error = record.get("errorMessage") or "failed"
        text = f"❌ failed\n\n{error}"
        if log_tail.strip():
            text += "\n\n" + _tail(log_tail)
    else:
        text = f"🚫 {status}"
    return head + text + _footer(links)


def skipped_body(task_id: str, reason: str) -> str:
    return (
        f"{marker(task_id)}\n### orchestra-ci · ⛔ not run\n\n"
        f"No agent was started for this issue: {reason}."
    )


class StatusComments:
    """Finds and edits our comment on an issue; creates it at most once."""

    def __init__(self, repo: Any, login: str | None) -> None:
        self.repo = repo
        self.login = login
        self._ids: dict[int, int] = {}

    def _find(self, issue: Any, task_id: str) -> Any | None:
        tag = marker(task_id)
        for comment in issue.get_comments():
            mine = self.login is None or comment.user.login == self.login
            if mine and tag in (comment.body or ""):
                return comment
        return None

    def upsert(self, number: int, task_id: str, body: str) -> None:
        from orchestra_ci.ghclient import call

        issue = call(lambda: self.repo.get_issue(number))
        if number in self._ids:
            comment_id = self._ids[number]
            call(lambda: issue.get_comment(comment_id).edit(body))
            return

        def find_or_create() -> Any:
            # Looked up again on every try: a POST that timed out may have landed.
            found = self._find(issue, task_id)
            if found is not None:
                if found.body != body:
                    found.edit(body)
                return found
            return issue.create_comment(body)

        comment = call(find_or_create)
        self._ids[number] = comment.id


class IssueReporter:
    """Sends the newest status of each issue from a background thread, with the run's
    secrets masked in every body."""

    def __init__(self, comments: StatusComments, redactor: Redactor) -> None:
        self.comments = comments
        self.redactor = redactor
        self._latest: dict[int, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._wake: queue.Queue[None] = queue.Queue()
        self._closed = False
        self.failures = 0
        self._thread = threading.Thread(target=self._work, name="issue-comments", daemon=True)
        self._thread.start()

    def update(self, number: int, task_id: str, body: str) -> None:
        with self._lock:
            self._latest[number] = (task_id, self.redactor(body))
        self._wake.put(None)

    def _work(self) -> None:
        while True:
            self._wake.get()
            while True:
                with self._lock:
                    if not self._latest:
                        break
                    number = next(iter(self._latest))
                    task_id, body = self._latest.pop(number)
                self._send(number, task_id, body)
            if self._closed:
                return

    def _send(self, number: int, task_id: str, body: str) -> None:
        try:
            self.comments.upsert(number, task_id, body)
        except Exception as exc:  # a GitHub problem never aborts the batch
            self.failures += 1
            log.warning("issue comment failed", issue=number, error=str(exc))

    def close(self, timeout: float = 120.0) -> None:
        self._closed = True
        self._wake.put(None)
        self._thread.join(timeout)


def identity(gh: "github.Github", fallback: str | None) -> str | None:
    """Our login, to recognise our own comments; GITHUB_TOKEN cannot read /user."""
    import github

    from orchestra_ci.ghclient import call

    try:
        return str(call(lambda: gh.get_user().login, attempts=2))
    except github.GithubException:
        return fallback


def move_labels(repo: Any, number: int, remove: str, add: str | None) -> None:
    """The result label goes on before the trigger label comes off: a run killed in
    between leaves the issue marked either way, never with neither."""
    import github

    from orchestra_ci.ghclient import call

    issue = call(lambda: repo.get_issue(number))
    if add:
        call(lambda: issue.add_to_labels(add))
    try:
        call(lambda: issue.remove_from_labels(remove))
    except github.GithubException as exc:
        if exc.status != 404:  # 404 "Label does not exist": already gone
            raise
