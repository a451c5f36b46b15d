"""orchestra_ci.comments: the status comment's text in each state, and the reporter that
masks the run's secrets in what it sends."""

import re
from collections.abc import Iterable
from typing import cast

import pytest

from orchestra_ci.comments import (
    IssueReporter,
    Links,
    StatusComments,
    marker,
    skipped_body,
    status_comment_body,
)
from orchestra_ci.record import Attempt, Outcome, Status, TaskRecord, new_record
from orchestra_ci.redact import Redactor

SECRET = "s3cr3t-value"
RUN = "https://github.com/acme/app/actions/runs/42"
ARTIFACT = "https://github.com/acme/app/actions/runs/42/artifacts/7"
NO_LINKS = Links()


class Recorded(StatusComments):
    """Keeps the bodies it is asked to send instead of calling GitHub."""

    def __init__(self) -> None:
        super().__init__(repo=None, login=None)
        self.sent: list[tuple[int, str, str]] = []

    def upsert(self, number: int, task_id: str, body: str) -> None:
        self.sent.append((number, task_id, body))


def sent_through_reporter(body: str) -> str:
    comments = Recorded()
    reporter = IssueReporter(comments, Redactor([SECRET]))
    reporter.update(7, "issue-7", body)
    reporter.close()
    assert [(n, t) for n, t, _ in comments.sent] == [(7, "issue-7")]
    return comments.sent[0][2]


def at(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"2024-05-01T10:{minutes:02d}:{secs:02d}.000+00:00"


def attempt(
    number: int, agent: str, start: int, end: int | None = None, outcome: Outcome | None = None
) -> Attempt:
    a: Attempt = {"number": number, "agent": agent, "startedAt": at(start)}
    if end is not None:
        a["endedAt"] = at(end)
    if outcome is not None:
        a["outcome"] = outcome
    return a


def record(status: Status, attempts: Iterable[Attempt] = (), **fields: object) -> TaskRecord:
    rec = new_record("issue-7", "fake", "fix it", source="issue")
    rec["issueNumber"] = 7
    rec["status"] = status
    rec["attempts"] = list(attempts)
    rec.update(cast(TaskRecord, fields))
    return rec


def visible(body: str) -> str:
    """What a reader sees: the body without HTML comments."""
    return re.sub(r"<!--.*?-->", "", body, flags=re.S)


def states() -> dict[str, str]:
    return {
        "queued": status_comment_body(record("pending"), NO_LINKS),
        "running": status_comment_body(record("running", [attempt(1, "fake", 0)]), NO_LINKS),
        "retry": status_comment_body(
            record(
                "pending",
                [attempt(1, "fake", 0, 10, "failed")],
                retryCount=1,
                errorMessage="exit code 1",
            ),
            NO_LINKS,
        ),
        "done": status_comment_body(
            record("complete", [attempt(1, "fake", 0, 10, "success")]), NO_LINKS
        ),
        "failed": status_comment_body(
            record("failed", [attempt(1, "fake", 0, 10, "failed")], errorMessage="boom"),
            NO_LINKS,
            "line\n",
        ),
        "cancelled": status_comment_body(record("cancelled"), NO_LINKS),
        "skipped": skipped_body("issue-7", "nobody trusted applied the label"),
    }


# --- the marker -----------------------------------------------------------------------


def test_marker_is_an_html_comment_naming_the_task() -> None:
    tag = marker("issue-7")
    assert re.fullmatch(r"<!--[^>]*issue-7[^>]*-->", tag)
    assert visible(tag) == ""


def test_markers_of_different_tasks_do_not_contain_each_other() -> None:
    assert marker("issue-1") not in marker("issue-12")
    assert marker("issue-12") not in marker("issue-1")


@pytest.mark.parametrize("state", list(states()))
def test_every_state_starts_with_the_hidden_marker(state: str) -> None:
    body = states()[state]
    assert body.startswith(marker("issue-7") + "\n")
    assert body.count(marker("issue-7")) == 1
    assert "orchestra-ci:status" not in visible(body)
    assert "issue-7" not in visible(body)


def test_each_state_reads_differently() -> None:
    texts = {state: visible(body) for state, body in states().items()}
    assert len(set(texts.values())) == len(texts)


# --- the states -----------------------------------------------------------------------


def test_queued() -> None:
    text = visible(status_comment_body(record("pending"), NO_LINKS))
    assert "queued" in text
    assert "retry" not in text


def test_running_names_the_attempt_and_its_agent() -> None:
    rec = record("running", [attempt(1, "fake", 0, 30, "failed"), attempt(2, "claude", 31)])
    text = visible(status_comment_body(rec, NO_LINKS))
    assert "running" in text
    assert "Attempt 2" in text
    assert "**claude**" in text


def test_retry_k_of_n_with_the_last_error() -> None:
    rec = record(
        "pending",
        [attempt(1, "fake", 0, 5, "failed"), attempt(2, "codex", 6, 9, "failed")],
        retryCount=2,
        maxRetries=3,
        errorMessage="exit code 3",
    )
    text = visible(status_comment_body(rec, NO_LINKS))
    assert "retry 2 of 3" in text
    assert "**codex**" in text
    assert "exit code 3" in text
    assert "queued" not in text


def test_retry_error_is_redacted() -> None:
    rec = record(
        "pending",
        [attempt(1, "fake", 0, 5, "failed")],
        retryCount=1,
        errorMessage=f"auth failed with token {SECRET}",
    )
    body = sent_through_reporter(status_comment_body(rec, NO_LINKS))
    assert SECRET not in body
    assert "auth failed with token ***" in body


def test_done_gives_duration_attempts_and_the_pull_request() -> None:
    rec = record(
        "complete",
        [attempt(1, "fake", 0, 30, "failed"), attempt(2, "claude", 40, 135, "success")],
        prUrl="https://github.com/acme/app/pull/9",
        patch=".orchestra/patches/issue-7.patch",
    )
    text = visible(status_comment_body(rec, NO_LINKS))
    assert "done" in text
    assert "**claude**" in text
    assert "2m05s" in text  # 30 s + 95 s of attempts, not the 135 s wall time
    assert "(2 attempts)" in text
    assert "https://github.com/acme/app/pull/9" in text
    assert "issue-7.patch" not in text  # the pull request is preferred


def test_done_with_one_attempt_and_only_a_patch() -> None:
    rec = record(
        "complete",
        [attempt(1, "fake", 0, 12, "success")],
        patch=".orchestra/patches/issue-7.patch",
    )
    text = visible(status_comment_body(rec, NO_LINKS))
    assert "12s" in text
    assert "(1 attempt)" in text
    assert "`.orchestra/patches/issue-7.patch`" in text
    assert "Pull request" not in text


def test_done_without_pull_request_or_patch_mentions_neither() -> None:
    text = visible(
        status_comment_body(record("complete", [attempt(1, "fake", 0, 1, "success")]), NO_LINKS)
    )
    assert "Pull request" not in text and "Patch" not in text


def test_failed_shows_the_error_and_the_redacted_log_tail() -> None:
    log = "".join(f"log-line-{i:03d}\n" for i in range(100)) + f"export TOKEN={SECRET}\n"
    rec = record(
        "failed",
        [attempt(1, "fake", 0, 10, "failed")],
        errorMessage=f"agent exited 1 ({SECRET})",
    )
    assert SECRET in status_comment_body(rec, NO_LINKS, log)  # masked on the way out
    body = sent_through_reporter(status_comment_body(rec, NO_LINKS, log))
    assert SECRET not in body
    assert "agent exited 1 (***)" in body
    details = re.search(r"<details>(.*)</details>", body, re.S)
    assert details is not None
    inside = details[1]
    assert "<summary>" in inside
    assert "export TOKEN=***" in inside
    assert "log-line-099" in inside and "log-line-061" in inside
    assert "log-line-060" not in body  # only the last 40 lines
    assert "failed" in visible(body).split("\n")[1]


def test_failed_log_tail_cannot_close_its_fence() -> None:
    log = "ok\n```\n</details>\n## injected heading\n````\n"
    body = status_comment_body(record("failed", errorMessage="boom"), NO_LINKS, log)
    inside = body.split("<details>", 1)[1].rsplit("</details>", 1)[0]
    opener = re.search(r"^(`{3,})text$", inside, re.M)
    assert opener is not None
    bar = opener[1]
    assert len(bar) > 4
    content = inside[opener.end() + 1 :].rsplit("\n" + bar, 1)[0]
    assert content == log.rstrip("\n")


def test_failed_without_a_log_tail_has_no_details() -> None:
    body = status_comment_body(record("failed", errorMessage="boom"), NO_LINKS, "  \n")
    assert "<details>" not in body
    assert "boom" in body


def test_failed_without_an_error_message_still_says_failed() -> None:
    text = visible(status_comment_body(record("failed"), NO_LINKS))
    assert "failed" in text


def test_cancelled() -> None:
    assert "cancelled" in visible(status_comment_body(record("cancelled"), NO_LINKS))


def test_skipped_body_gives_the_reason() -> None:
    body = skipped_body("issue-3", "the label was applied by @mallory")
    assert body.startswith(marker("issue-3") + "\n")
    assert "not run" in body
    assert "the label was applied by @mallory" in visible(body)


# --- links ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["pending", "running", "complete", "failed", "cancelled"])
def test_footer_links_when_given(status: Status) -> None:
    body = status_comment_body(record(status), Links(run_url=RUN, artifact_url=ARTIFACT))
    last = body.rstrip().split("\n")[-1]
    assert f"[workflow run]({RUN})" in last
    assert f"[logs and patches]({ARTIFACT})" in last


def test_footer_with_only_the_run_link() -> None:
    body = status_comment_body(record("pending"), Links(run_url=RUN))
    assert body.rstrip().endswith(f"[workflow run]({RUN})")
    assert "logs and patches" not in body


def test_no_footer_without_links() -> None:
    body = status_comment_body(record("pending"), NO_LINKS)
    assert "workflow run" not in body and "logs and patches" not in body


def test_a_task_waiting_for_quota_says_so_and_is_not_called_failed() -> None:
    body = visible(
        status_comment_body(
            record(
                "pending",
                [attempt(1, "codex", 0, 10, "quota_exhausted")],
                errorMessage="quota exhausted until 14:05 UTC: You've hit your usage limit",
            ),
            NO_LINKS,
        )
    )
    assert "waiting for quota" in body
    assert "**codex** has no quota left: quota exhausted until 14:05 UTC" in body
    assert "❌" not in body and "retry" not in body


def test_a_stalled_attempt_reads_as_stopped() -> None:
    body = status_comment_body(
        record(
            "pending",
            [attempt(1, "fake", 0, 10, "stalled")],
            retryCount=1,
            errorMessage="stalled: no output and no file change for 600s",
        ),
        NO_LINKS,
    )
    assert "The last attempt with **fake** was stopped: stalled: no output" in body
