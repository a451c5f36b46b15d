"""GitHub faults, through the Action's entrypoint against the fake GitHub API.

Server errors (500/502/503, also with an HTML body), secondary rate limits (403 with and
without ``Retry-After``, 429), primary rate limits with a reset time, answers that time out
after the request landed, dropped connections, and a 404 when removing a label someone else
already removed. In every case the batch finishes; each issue ends with exactly one status
comment in its final state and the right labels; waits honour ``Retry-After`` and the rate
limit reset, and never exceed ``ORCHESTRA_GITHUB_MAX_WAIT``.
"""

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci.comments import marker
from tests.conftest import FAKE_AGENT, records, write_agents
from tests.doubles.fake_github import FakeGitHub, Fault, RecordedRequest
from tests.reliability.conftest import LABEL, REPO, action_env, run_action

OUTCOME = {1: "complete", 2: "complete", 3: "failed"}
LABELS = {1: {"orchestra:done"}, 2: {"orchestra:done"}, 3: {"orchestra:failed"}}


@pytest.fixture
def batch(fake_github: FakeGitHub, root: Path) -> FakeGitHub:
    """Three trusted issues (two succeed, one fails) and a stranger's comment on #1."""
    gh = fake_github
    repo = gh.add_repo(REPO)
    repo.collaborators["maintainer"] = "maintain"
    gh.add_issue(REPO, "One", "write=one.txt", user="maintainer", labels=[LABEL])
    gh.add_issue(REPO, "Two", "write=two.txt sleep=0.5", user="maintainer", labels=[LABEL])
    gh.add_issue(REPO, "Three", "exit=1", user="maintainer", labels=[LABEL])
    gh.add_comment(REPO, 1, "me too", user="someone")
    write_agents(root, {"fake": FAKE_AGENT})
    return gh


def assert_batch_correct(gh: FakeGitHub, root: Path, result: Any) -> None:
    assert result.returncode == 1, result.stderr[-3000:]  # issue 3's agent fails on purpose
    tasks = records(root)
    assert {int(k.split("-")[1]): v["status"] for k, v in tasks.items()} == OUTCOME
    repo = gh.repo(REPO)
    for number, status in OUTCOME.items():
        ours = [c for c in repo.comments_on(number) if marker(f"issue-{number}") in c.body]
        bodies = [c.body[:80] for c in repo.comments_on(number)]
        assert len(ours) == 1, (number, bodies)  # no duplicate, none lost
        assert ("done" if status == "complete" else "failed") in ours[0].body
        assert set(repo.issues[number].labels) == LABELS[number], number
    assert [c.body for c in repo.comments_on(1) if c.user == "someone"] == ["me too"]
    assert "Traceback" not in result.stderr


def retried_after(gh: FakeGitHub, fault_kind: str, method: str) -> list[float]:
    """For each faulted request, seconds until the same request was sent again."""
    gaps = []
    with gh.lock:
        requests: list[RecordedRequest] = list(gh.requests)
    for n, request in enumerate(requests):
        if request.fault != fault_kind or request.method != method:
            continue
        again = next(
            (r for r in requests[n + 1 :] if r.method == method and r.path == request.path), None
        )
        assert again is not None, f"{method} {request.path} was never retried"
        gaps.append(again.time - request.time)
    return gaps


SCENARIOS: dict[str, list[Fault]] = {
    "server-errors": [
        Fault.server_error(r"/issues$", 500, method="GET"),
        Fault.server_error(r"/issues/\d+/comments$", 502, method="POST"),
        Fault.server_error(r"/issues/comments/\d+$", 503, method="PATCH", times=2),
        Fault.server_error(
            r"/issues/\d+/labels$",
            502,
            method="POST",
            raw_body="<html><body>502 Bad Gateway</body></html>",
        ),
        Fault.server_error(r"/permission$", 503, times=1),
    ],
    "secondary-403": [
        Fault.secondary_rate_limit(r"/issues/\d+/comments$", retry_after=2, method="POST"),
        Fault.secondary_rate_limit(r"/issues/\d+/labels/", retry_after=1, method="DELETE"),
        Fault.secondary_rate_limit(r"/issues/\d+/events$", retry_after=None, method="GET"),
    ],
    "429": [
        Fault.too_many_requests(r"/issues/comments/\d+$", retry_after=1, method="PATCH", times=2),
        Fault.too_many_requests(r"/issues$", retry_after=1, method="GET"),
    ],
    "primary-reset": [
        Fault.primary_rate_limit(r"/permission$", reset_in=2),
        Fault.primary_rate_limit(r"/issues/\d+/labels$", reset_in=2, method="POST"),
    ],
    "timeouts": [
        # The comment lands, but the answer comes after the client gave up (2 s).
        Fault.timeout(r"/issues/\d+/comments$", 3, effect="before", method="POST"),
        Fault.timeout(r"/issues/comments/\d+$", 3, effect="before", method="PATCH"),
        Fault.drop(r"/issues$", method="GET"),
        Fault.drop(r"/issues/\d+/labels/", effect="before", method="DELETE"),
        Fault.drop(r"/issues/\d+/labels$", effect="never", method="POST"),
    ],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_batch_survives_github_faults(
    batch: FakeGitHub, root: Path, tmp_path: Path, scenario: str
) -> None:
    gh = batch
    faults = [Fault(**{**vars(f), "hits": 0, "seen": 0}) for f in SCENARIOS[scenario]]
    gh.inject(*faults)
    env = action_env(root, gh, tmp_path)
    env["ORCHESTRA_GITHUB_MAX_WAIT"] = "4"  # above every wait asked for here

    started = time.monotonic()
    result = run_action(env)
    took = time.monotonic() - started
    gh.wait_idle()

    assert [f.hits for f in faults] == [f.times for f in faults], [f.hits for f in faults]
    assert_batch_correct(gh, root, result)
    assert took < 120
    if scenario == "secondary-403":
        assert all(gap >= 2 - 0.05 for gap in retried_after(gh, "secondary_rate_limit", "POST"))
        assert all(gap >= 1 - 0.05 for gap in retried_after(gh, "secondary_rate_limit", "DELETE"))
    if scenario == "429":
        assert all(gap >= 1 - 0.05 for gap in retried_after(gh, "secondary_rate_limit", "PATCH"))
    if scenario == "primary-reset":
        # The reset is 2 s away (whole epoch seconds): the retry waits at least past it.
        for method in ("GET", "POST"):
            assert all(gap >= 1.0 for gap in retried_after(gh, "primary_rate_limit", method))
    (tmp_path / "numbers.json").write_text(
        json.dumps({"faults": sum(f.hits for f in faults), "seconds": round(took, 1)})
    )


@pytest.mark.parametrize(
    "fault",
    [
        Fault.secondary_rate_limit(r"/issues/\d+/comments$", retry_after=3600, method="POST"),
        Fault.primary_rate_limit(r"/issues/\d+/labels$", reset_in=3600, method="POST"),
    ],
    ids=["retry-after-3600", "reset-in-3600"],
)
def test_waits_never_exceed_the_configured_maximum(
    batch: FakeGitHub, root: Path, tmp_path: Path, fault: Fault
) -> None:
    gh = batch
    fault = Fault(**{**vars(fault), "hits": 0, "seen": 0})
    gh.inject(fault)
    env = action_env(root, gh, tmp_path)
    env["ORCHESTRA_GITHUB_MAX_WAIT"] = "2"

    started = time.monotonic()
    result = run_action(env)
    took = time.monotonic() - started

    assert fault.hits == 1
    assert_batch_correct(gh, root, result)
    assert took < 60, f"the batch waited {took:.0f} s for a limit capped at 2 s"
    for gap in retried_after(gh, fault.kind, fault.method or "GET"):
        assert gap < 30


def test_removing_a_label_someone_already_removed(
    batch: FakeGitHub, root: Path, tmp_path: Path
) -> None:
    """A maintainer takes the trigger label off issue 2 while its agent runs: removing it at
    the end answers 404 ``Label does not exist``, which must not stop the done label."""
    gh = batch
    repo = gh.repo(REPO)
    removed = threading.Event()

    def remove_when_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with gh.lock:
                running = any("running" in c.body for c in repo.comments_on(2))
            if running:
                gh.unlabel_issue(REPO, 2, LABEL, actor="maintainer")
                removed.set()
                return
            time.sleep(0.02)

    remover = threading.Thread(target=remove_when_running)
    remover.start()
    result = run_action(action_env(root, gh, tmp_path))
    remover.join(timeout=60)

    assert removed.is_set(), "the label was not removed during the run"
    deletes = gh.find_requests("DELETE", r"/issues/2/labels/")
    assert [d.status for d in deletes] == [404]
    assert_batch_correct(gh, root, result)
