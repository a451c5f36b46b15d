"""The fake GitHub API, driven by the real PyGithub client over HTTP."""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import github
import pytest
import requests
from github.GithubRetry import GithubRetry

from tests.doubles.fake_github import FakeGitHub, Fault, Repo

REPO = "octo/widgets"

_clients: list[github.Github] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client(fake: FakeGitHub, token: str | None = None, **options: Any) -> github.Github:
    """PyGithub as a batch would use it, minus the politeness pauses that slow tests down
    (closed after the test)."""
    settings: dict[str, Any] = {
        "base_url": fake.url,
        "retry": None,
        "timeout": 5,
        "seconds_between_requests": None,
        "seconds_between_writes": None,
    }
    settings.update(options)
    gh = github.Github(auth=github.Auth.Token(token or fake.token), **settings)
    _clients.append(gh)
    return gh


def fast_retry(**options: Any) -> GithubRetry:
    settings: dict[str, Any] = {"total": 3, "backoff_factor": 0.01, "secondary_rate_wait": 0.1}
    settings.update(options)
    return GithubRetry(**settings)


def raw_get(fake: FakeGitHub, path: str, token: str | None = None) -> tuple[int, Any, Any]:
    """Status, headers and JSON body of a plain GET, without any client library logic.
    ``token=""`` sends no credentials at all."""
    token = fake.token if token is None else token
    request = urllib.request.Request(
        path if path.startswith("http") else fake.url + path,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.load(err)


@pytest.fixture
def repo(fake_github: FakeGitHub) -> Repo:
    return fake_github.add_repo(REPO)


# ----------------------------------------------------------------------------- issues


def test_labelled_issues_are_listed_across_pages_by_following_link_headers(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    wanted = {fake_github.add_issue(repo, f"task {i}", labels=["agent"]).number for i in range(70)}
    fake_github.add_issue(repo, "no label")
    fake_github.add_issue(repo, "closed", labels=["agent"], state="closed")
    fake_github.add_issue(repo, "other label", labels=["bug"])

    gh = client(fake_github, per_page=25)
    found = list(gh.get_repo(REPO).get_issues(state="open", labels=["agent"]))

    assert {i.number for i in found} == wanted
    pages = fake_github.find_requests("GET", r"/issues$")
    assert [p.param("page") for p in pages] == [None, "2", "3"]
    # Later pages are reached through GitHub's /repositories/{id}/... link form.
    assert pages[1].path == f"/repositories/{repo.id}/issues"
    assert pages[1].route == f"/repos/{REPO}/issues"
    assert all(p.param("labels") == "agent" and p.param("per_page") == "25" for p in pages)


def test_label_filter_needs_every_label_and_ignores_case(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    both = fake_github.add_issue(repo, "both", labels=["agent", "Urgent"])
    fake_github.add_issue(repo, "one", labels=["agent"])

    found = client(fake_github).get_repo(REPO).get_issues(labels=["AGENT", "urgent"])

    assert [i.number for i in found] == [both.number]


def test_link_header_has_prev_next_last_first_as_on_github(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    for i in range(7):
        fake_github.add_issue(repo, f"issue {i}")
    base = f"/repos/{REPO}/issues?per_page=2"

    status, first_headers, first = raw_get(fake_github, base)
    _, middle_headers, _ = raw_get(fake_github, base + "&page=2")
    _, last_headers, last = raw_get(fake_github, base + "&page=4")
    _, _, everything = raw_get(fake_github, f"/repos/{REPO}/issues?per_page=500")

    def rels(headers: Any) -> dict[str, str]:
        out = {}
        for part in headers["Link"].split(", "):
            url, rel = part.split("; ")
            out[rel.removeprefix('rel="').removesuffix('"')] = url.strip("<>")
        return out

    assert status == 200 and len(first) == 2 and len(last) == 1
    assert list(rels(first_headers)) == ["next", "last"]
    assert list(rels(middle_headers)) == ["prev", "next", "last", "first"]
    assert list(rels(last_headers)) == ["prev", "first"]
    middle = rels(middle_headers)
    assert middle["next"].startswith(f"{fake_github.url}/repositories/{repo.id}/issues?")
    assert "per_page=2" in middle["next"] and middle["next"].endswith("page=3")
    assert middle["last"].endswith("page=4") and middle["first"].endswith("page=1")
    assert len(everything) == 7  # per_page above 100 is capped, not an error
    assert "Link" not in raw_get(fake_github, f"/repos/{REPO}/issues")[1]


def test_issues_list_is_newest_first_by_default_and_sortable(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    numbers = [fake_github.add_issue(repo, f"i{n}").number for n in range(3)]
    r = client(fake_github).get_repo(REPO)

    assert [i.number for i in r.get_issues()] == numbers[::-1]
    assert [i.number for i in r.get_issues(sort="created", direction="asc")] == numbers


def test_pull_requests_appear_in_the_issues_list_with_a_pull_request_key(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    issue = fake_github.add_issue(repo, "a bug", labels=["agent"])
    pull = fake_github.add_pull(repo, "a fix", "fix-branch", labels=["agent"])

    found = {i.number: i for i in client(fake_github).get_repo(REPO).get_issues(labels=["agent"])}

    assert set(found) == {issue.number, pull.number}
    assert found[issue.number].pull_request is None
    marker = found[pull.number].pull_request
    assert marker is not None
    assert marker.url == f"{fake_github.url}/repos/{REPO}/pulls/{pull.number}"


def test_issue_fields_and_lazy_user_completion(fake_github: FakeGitHub, repo: Repo) -> None:
    fake_github.add_user("alice", name="Alice Liddell")
    repo.collaborators["alice"] = "write"
    made = fake_github.add_issue(repo, "Title", "Body <!-- hidden -->", user="alice")

    issue = client(fake_github).get_repo(REPO).get_issue(made.number)

    assert (issue.title, issue.body, issue.state) == ("Title", "Body <!-- hidden -->", "open")
    assert issue.user.login == "alice"
    assert issue.user.name == "Alice Liddell"  # fetched from /users/alice on demand
    assert issue.raw_data["author_association"] == "COLLABORATOR"
    assert fake_github.find_requests("GET", r"^/users/alice$")


def test_events_show_who_applied_a_label(fake_github: FakeGitHub, repo: Repo) -> None:
    issue = fake_github.add_issue(repo, "work", user="mallory")
    fake_github.label_issue(repo, issue.number, "agent", actor="maintainer")
    fake_github.unlabel_issue(repo, issue.number, "agent", actor="mallory")
    fake_github.label_issue(repo, issue.number, "agent", actor="mallory")

    events = list(client(fake_github).get_repo(REPO).get_issue(issue.number).get_events())

    assert [(e.event, e.actor.login, e.label.name) for e in events] == [
        ("labeled", "maintainer", "agent"),
        ("unlabeled", "mallory", "agent"),
        ("labeled", "mallory", "agent"),
    ]


def test_labels_added_through_the_api_are_created_and_recorded_as_events(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    made = fake_github.add_issue(repo, "work", labels=["agent"])
    issue = client(fake_github).get_repo(REPO).get_issue(made.number)

    issue.add_to_labels("agent:done")
    issue.remove_from_labels("agent")

    assert made.labels == ["agent:done"]
    assert repo.label("agent:done") is not None  # GitHub creates unknown labels on the fly
    assert [(e.event, e.actor, e.label) for e in repo.events_on(made.number)][-2:] == [
        ("labeled", "github-actions[bot]", "agent:done"),
        ("unlabeled", "github-actions[bot]", "agent"),
    ]
    post = fake_github.find_requests("POST", r"/labels$")[0]
    assert post.body == ["agent:done"]  # PyGithub sends a bare list; {"labels": [...]} works too


def test_removing_an_absent_label_is_a_404_with_githubs_message(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    made = fake_github.add_issue(repo, "work")
    issue = client(fake_github).get_repo(REPO).get_issue(made.number)

    with pytest.raises(github.GithubException) as caught:
        issue.remove_from_labels("agent")

    assert caught.value.status == 404
    assert caught.value.data["message"] == "Label does not exist"
    # PyGithub only maps messages containing "not found" to UnknownObjectException, so code
    # that wants to ignore this case has to check the status, as on the real API.
    assert not isinstance(caught.value, github.UnknownObjectException)


def test_unknown_objects_and_routes_are_404_not_found(fake_github: FakeGitHub, repo: Repo) -> None:
    gh = client(fake_github)

    with pytest.raises(github.UnknownObjectException):
        gh.get_repo("octo/missing")
    with pytest.raises(github.UnknownObjectException):
        gh.get_repo(REPO).get_issue(99).title  # noqa: B018 - the attribute read fetches it
    status, _, body = raw_get(fake_github, f"/repos/{REPO}/no-such-endpoint")
    assert status == 404
    assert body["message"] == "Not Found" and body["documentation_url"].startswith("https://")


# ----------------------------------------------------------------------------- comments


def test_comment_create_edit_list_delete_round_trip(fake_github: FakeGitHub, repo: Repo) -> None:
    made = fake_github.add_issue(repo, "work")
    fake_github.add_comment(repo, made.number, "first!", user="alice")
    issue = client(fake_github).get_repo(REPO).get_issue(made.number)

    created = issue.create_comment("<!-- orchestra:issue-1 --> queued")
    issue.get_comment(created.id).edit("<!-- orchestra:issue-1 --> running")
    listed = list(issue.get_comments())

    assert [(c.user.login, c.body) for c in listed] == [
        ("alice", "first!"),
        ("github-actions[bot]", "<!-- orchestra:issue-1 --> running"),
    ]
    assert listed[1].id == created.id
    assert [c.body for c in repo.comments_on(made.number)][-1].endswith("running")
    assert raw_get(fake_github, f"/repos/{REPO}/issues/{made.number}")[2]["comments"] == 2
    assert [c.id for c in client(fake_github).get_repo(REPO).get_issues_comments()] == [
        c.id for c in listed
    ]

    listed[0].delete()
    assert [c.id for c in repo.comments_on(made.number)] == [created.id]


def test_invalid_bodies_are_rejected_with_422_or_400(fake_github: FakeGitHub, repo: Repo) -> None:
    made = fake_github.add_issue(repo, "work")
    gh = client(fake_github)
    r = gh.get_repo(REPO)
    r.create_label("agent", "00ff00")

    with pytest.raises(github.GithubException) as duplicate:
        r.create_label("AGENT", "00ff00")
    assert duplicate.value.status == 422
    assert duplicate.value.data["errors"][0]["code"] == "already_exists"

    request = urllib.request.Request(
        f"{fake_github.url}/repos/{REPO}/issues/{made.number}/comments",
        data=b'{"not_body": 1}',
        headers={"Authorization": f"token {fake_github.token}"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(request, timeout=5)
    missing.value.close()
    assert missing.value.code == 422

    request.data = b"{not json"
    with pytest.raises(urllib.error.HTTPError) as broken:
        urllib.request.urlopen(request, timeout=5)
    assert broken.value.code == 400
    with broken.value:
        assert json.load(broken.value)["message"] == "Problems parsing JSON"
    assert repo.comments_on(made.number) == []


# ----------------------------------------------------------------------------- people


def test_collaborator_permission_has_legacy_permission_and_role_name(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    for login, role in [("ada", "admin"), ("max", "maintain"), ("wes", "write"), ("tri", "triage")]:
        fake_github.add_user(login)
        repo.collaborators[login] = role
    fake_github.add_user("stranger")
    r = client(fake_github).get_repo(REPO)

    def both(login: str) -> tuple[str, str]:
        return r.get_collaborator_permission(login), r.get_collaborator_role_name(login)

    assert both("ada") == ("admin", "admin")
    assert both("max") == ("write", "maintain")
    assert both("wes") == ("write", "write")
    assert both("tri") == ("read", "triage")
    assert both("octo") == ("admin", "admin")  # the owner
    assert both("stranger") == ("read", "read")  # anyone can read a public repository
    with pytest.raises(github.UnknownObjectException):
        r.get_collaborator_permission("ghost")
    _, _, body = raw_get(fake_github, f"/repos/{REPO}/collaborators/max/permission")
    assert body["user"]["login"] == "max"
    assert body["user"]["permissions"] == {
        "admin": False,
        "maintain": True,
        "push": True,
        "triage": True,
        "pull": True,
    }


def test_private_repository_gives_strangers_no_permission(fake_github: FakeGitHub) -> None:
    fake_github.add_repo("octo/secret", private=True)
    fake_github.add_user("stranger")

    r = client(fake_github).get_repo("octo/secret")

    assert r.private is True
    assert r.get_collaborator_permission("stranger") == "none"


def test_authenticated_user_for_a_person_and_for_the_workflow_bot(fake_github: FakeGitHub) -> None:
    fake_github.add_token("ghp_person", "alice")

    assert client(fake_github, token="ghp_person").get_user().login == "alice"
    with pytest.raises(github.GithubException) as caught:
        client(fake_github).get_user().login  # noqa: B018 - the attribute read fetches it
    assert caught.value.status == 403
    assert caught.value.data["message"] == "Resource not accessible by integration"


def test_wrong_token_gets_401_bad_credentials(fake_github: FakeGitHub, repo: Repo) -> None:
    with pytest.raises(github.BadCredentialsException):
        client(fake_github, token="ghp_wrong").get_repo(REPO)

    status, _, body = raw_get(fake_github, f"/repos/{REPO}", token="")
    assert status == 401 and body["message"] == "Requires authentication"


# ----------------------------------------------------------------------------- pull requests


def test_pull_request_create_find_by_head_and_close(fake_github: FakeGitHub, repo: Repo) -> None:
    repo.refs["refs/heads/orchestra/issue-1"] = "a" * 40
    r = client(fake_github).get_repo(REPO)

    pr = r.create_pull(base="main", head="orchestra/issue-1", title="Fix", body="b", draft=True)
    with pytest.raises(github.GithubException) as duplicate:
        r.create_pull(base="main", head="orchestra/issue-1", title="Again")
    found = list(r.get_pulls(state="open", head="octo:orchestra/issue-1"))
    other = fake_github.add_pull(repo, "unrelated", "other-branch")
    unfiltered = list(r.get_pulls(state="open", head="orchestra/issue-1"))  # no OWNER: prefix
    found[0].edit(state="closed")

    assert (pr.number, pr.draft, pr.head.ref, pr.head.sha, pr.base.ref) == (
        1,
        True,
        "orchestra/issue-1",
        "a" * 40,
        "main",
    )
    assert duplicate.value.status == 422
    assert "already exists" in duplicate.value.data["errors"][0]["message"]
    assert [p.number for p in found] == [pr.number]
    assert {p.number for p in unfiltered} == {pr.number, other.number}  # filter ignored
    assert repo.issues[pr.number].state == "closed"
    assert repo.issues[pr.number].pull_request is True
    assert list(r.get_pulls(state="open")) != [] and r.get_pull(pr.number).state == "closed"


def test_pull_request_needs_existing_branches(fake_github: FakeGitHub, repo: Repo) -> None:
    r = client(fake_github).get_repo(REPO)

    with pytest.raises(github.GithubException) as caught:
        r.create_pull(base="main", head="never-pushed", title="x")
    assert caught.value.status == 422
    assert caught.value.data["errors"][0]["field"] == "head"

    repo.create_missing_refs = True
    assert r.create_pull(base="main", head="never-pushed", title="x").number == 1


def test_git_refs_create_get_update_delete(fake_github: FakeGitHub, repo: Repo) -> None:
    r = client(fake_github).get_repo(REPO)

    r.create_git_ref("refs/heads/feature", "b" * 40)
    ref = r.get_git_ref("heads/feature")
    ref.edit("c" * 40)

    assert ref.object.sha == "c" * 40
    assert repo.refs["refs/heads/feature"] == "c" * 40
    assert {x.ref for x in r.get_git_refs()} == {"refs/heads/main", "refs/heads/feature"}
    ref.delete()
    assert "refs/heads/feature" not in repo.refs


# ----------------------------------------------------------------------------- rate limits


def test_rate_limit_headers_are_visible_to_pygithub(fake_github: FakeGitHub, repo: Repo) -> None:
    gh = client(fake_github)

    gh.get_repo(REPO)
    first = gh.rate_limiting
    gh.get_repo(REPO)
    second = gh.rate_limiting

    assert first == (4999, 5000)
    assert second == (4998, 5000)
    assert gh.rate_limiting_resettime == fake_github.state.rate.reset
    overview = gh.get_rate_limit()  # does not count against the limit, as on GitHub
    assert overview.resources.core.remaining == 4998
    assert fake_github.state.rate.used == 2


def test_exhausted_rate_limit_answers_403_until_reset(fake_github: FakeGitHub, repo: Repo) -> None:
    fake_github.state.rate.used = fake_github.state.rate.limit - 1
    gh = client(fake_github)
    gh.get_repo(REPO)

    with pytest.raises(github.RateLimitExceededException) as caught:
        gh.get_repo(REPO)
    assert caught.value.status == 403
    assert (caught.value.headers or {})["x-ratelimit-remaining"] == "0"

    fake_github.state.rate.reset = int(time.time()) - 1  # the window has passed
    assert gh.get_repo(REPO).full_name == REPO


# ----------------------------------------------------------------------------- faults


def test_retry_recovers_from_injected_502s(fake_github: FakeGitHub, repo: Repo) -> None:
    made = fake_github.add_issue(repo, "work")
    fault = fake_github.inject(Fault.server_error(rf"/issues/{made.number}$", 502, times=2))
    gh = client(fake_github, retry=fast_retry())

    assert gh.get_repo(REPO).get_issue(made.number).title == "work"
    assert fault.hits == 2
    statuses = [r.status for r in fake_github.find_requests("GET", rf"/issues/{made.number}$")]
    assert statuses == [502, 502, 200]


def test_server_errors_without_retry_reach_the_caller(fake_github: FakeGitHub, repo: Repo) -> None:
    fake_github.inject(Fault.server_error(r"^/repos/octo/widgets$", 503, skip=1))
    gh = client(fake_github)

    gh.get_repo(REPO)  # skipped: the first match passes
    with pytest.raises(github.GithubException) as caught:
        gh.get_repo(REPO)
    assert caught.value.status == 503
    assert caught.value.data["message"] == "Service Unavailable"
    assert gh.get_repo(REPO).name == "widgets"  # times=1: only once


def test_retry_waits_out_a_secondary_rate_limit_with_retry_after(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    made = fake_github.add_issue(repo, "work")
    fake_github.inject(
        Fault.secondary_rate_limit(r"/comments$", retry_after=1, method="POST"),
    )
    issue = client(fake_github, retry=fast_retry()).get_repo(REPO).get_issue(made.number)

    started = time.monotonic()
    issue.create_comment("hello")
    waited = time.monotonic() - started

    assert [c.body for c in repo.comments_on(made.number)] == ["hello"]
    assert 0.9 <= waited < 10
    limited, accepted = fake_github.find_requests("POST", r"/comments$")
    assert limited.status == 403 and limited.fault == "secondary_rate_limit"
    assert accepted.status == 201


def test_secondary_limit_message_and_headers_are_githubs(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    fake_github.inject(Fault.secondary_rate_limit(r"/issues$", retry_after=None))
    fake_github.inject(Fault.too_many_requests(r"/labels$", retry_after=7))

    status, headers, body = raw_get(fake_github, f"/repos/{REPO}/issues")
    status_429, headers_429, _ = raw_get(fake_github, f"/repos/{REPO}/labels")

    assert status == 403 and "Retry-After" not in headers
    assert body["message"].startswith("You have exceeded a secondary rate limit")
    with pytest.raises(github.RateLimitExceededException):
        raise github.Requester.Requester.createException(status, dict(headers), body)
    assert status_429 == 429 and headers_429["Retry-After"] == "7"


def test_primary_rate_limit_fault_reports_a_near_reset(fake_github: FakeGitHub, repo: Repo) -> None:
    fake_github.inject(Fault.primary_rate_limit(r"^/repos/octo/widgets$", reset_in=2))

    with pytest.raises(github.RateLimitExceededException) as caught:
        client(fake_github).get_repo(REPO)

    headers = caught.value.headers or {}
    assert headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(headers["x-ratelimit-reset"]) - time.time() <= 3
    assert caught.value.data["message"].startswith("API rate limit exceeded for user ID")


def test_a_post_that_times_out_after_landing_is_duplicated_by_a_blind_retry(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    """The trap status comments must avoid: the first POST lands, its answer never arrives
    in time, and retrying the POST as is creates a second comment."""
    made = fake_github.add_issue(repo, "work")
    fake_github.inject(Fault.timeout(r"/comments$", 3, method="POST", effect="before"))
    gh = client(fake_github, timeout=1, retry=fast_retry(total=1))

    gh.get_repo(REPO).get_issue(made.number).create_comment("status")

    assert [c.body for c in repo.comments_on(made.number)] == ["status", "status"]
    first, second = fake_github.find_requests("POST", r"/comments$")
    assert first.fault == "delay" and second.status == 201


def test_a_timed_out_request_can_land_after_the_client_gave_up(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    made = fake_github.add_issue(repo, "work")
    fake_github.inject(Fault.timeout(r"/comments$", 1.5, effect="after"))
    issue = client(fake_github, timeout=1).get_repo(REPO).get_issue(made.number)

    with pytest.raises(requests.exceptions.Timeout):
        issue.create_comment("late")
    assert repo.comments_on(made.number) == []  # not yet

    fake_github.wait_idle()
    assert [c.body for c in repo.comments_on(made.number)] == ["late"]


def test_dropped_connection_with_and_without_the_side_effect(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    made = fake_github.add_issue(repo, "work")
    fake_github.inject(
        Fault.drop(r"/comments$", method="POST", effect="never"),
        Fault.drop(r"/comments$", method="POST", effect="before"),
    )
    issue = client(fake_github).get_repo(REPO).get_issue(made.number)

    for _ in range(2):
        with pytest.raises(requests.exceptions.ConnectionError):
            issue.create_comment("maybe")

    assert [c.body for c in repo.comments_on(made.number)] == ["maybe"]
    assert [r.status for r in fake_github.find_requests("POST", r"/comments$")] == [0, 0]
    assert issue.create_comment("works").body == "works"  # faults used up


# ----------------------------------------------------------------------------- artifacts

ARTIFACT_FIELDS = {
    "id",
    "node_id",
    "name",
    "size_in_bytes",
    "url",
    "archive_download_url",
    "expired",
    "created_at",
    "updated_at",
    "expires_at",
    "digest",
    "workflow_run",
}


def test_artifacts_are_listed_newest_first_by_name_across_pages(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    made = [
        fake_github.add_artifact(repo, "orchestra", b"zip", created_at=start + timedelta(hours=i))
        for i in range(45)
    ]
    fake_github.add_artifact(repo, "orchestra-shard-1-of-2", b"zip")

    listed = client(fake_github).get_repo(REPO).get_artifacts(name="orchestra")
    status, headers, body = raw_get(
        fake_github, f"/repos/{REPO}/actions/artifacts?name=orchestra&per_page=10&page=2"
    )

    assert [a.id for a in listed] == [a.id for a in reversed(made)]
    assert listed.totalCount == 45
    assert status == 200 and body["total_count"] == 45
    assert [a["id"] for a in body["artifacts"]] == [a.id for a in reversed(made)][10:20]
    assert 'rel="next"' in headers["Link"] and "name=orchestra" in headers["Link"]
    assert len(fake_github.find_requests("GET", r"/actions/artifacts$")) == 3  # 2 for PyGithub


def test_an_artifact_has_the_rest_fields_and_its_run(fake_github: FakeGitHub, repo: Repo) -> None:
    run = fake_github.add_run(repo, workflow_id=77, branch="nightly")
    made = fake_github.add_artifact(repo, "orchestra", b"PK zip bytes", run=run.id)
    fake_github.add_artifact(repo, "other", b"zip")

    status, _, body = raw_get(fake_github, f"/repos/{REPO}/actions/artifacts/{made.id}")
    gh_repo = client(fake_github).get_repo(REPO)
    got = gh_repo.get_artifact(made.id)
    workflow_run = gh_repo.get_workflow_run(run.id)

    assert status == 200 and set(body) == ARTIFACT_FIELDS
    assert body["workflow_run"] == {
        "id": run.id,
        "repository_id": repo.id,
        "head_repository_id": repo.id,
        "head_branch": "nightly",
        "head_sha": run.head_sha,
    }
    assert got.size_in_bytes == len(b"PK zip bytes") and got.digest.startswith("sha256:")
    assert (
        got.archive_download_url
        == f"{fake_github.url}/repos/{REPO}/actions/artifacts/{made.id}/zip"
    )
    assert (workflow_run.workflow_id, workflow_run.head_branch) == (77, "nightly")
    assert workflow_run.created_at == run.created_at
    assert [a.id for a in workflow_run.get_artifacts()] == [made.id]


def test_zip_redirects_to_a_blob_url_that_needs_no_token(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    made = fake_github.add_artifact(repo, "orchestra", b"the zip")
    api = f"{fake_github.url}/repos/{REPO}/actions/artifacts/{made.id}/zip"
    auth = {"Authorization": f"Bearer {fake_github.token}"}

    with requests.Session() as http:
        redirect = http.get(api, headers=auth, allow_redirects=False, timeout=5)
        location = redirect.headers["Location"]
        plain = http.get(location, timeout=5)
        forwarded = http.get(location, headers=auth, timeout=5)
        forged = http.get(location.replace("sig=", "sig=0"), timeout=5)
        unknown = http.get(f"{fake_github.url}/_blobs/nope?sig=x", timeout=5)
        no_token = http.get(api, allow_redirects=False, timeout=5)

    assert redirect.status_code == 302 and "sig=" in location
    assert plain.status_code == 200 and plain.content == b"the zip"
    assert plain.headers["Content-Type"] == "application/zip"
    assert forwarded.status_code == 200  # served, but the record shows the leak
    assert [r.header("Authorization") for r in fake_github.blob_requests()[:2]] == [
        None,
        "Bearer <redacted>",
    ]
    assert forged.status_code == 403 and forged.headers["x-ms-error-code"] == "AuthenticationFailed"
    assert unknown.status_code == 404 and unknown.headers["x-ms-error-code"] == "BlobNotFound"
    assert no_token.status_code == 401  # the API itself still needs the token


def test_expired_unknown_and_forbidden_artifacts(fake_github: FakeGitHub, repo: Repo) -> None:
    expired = fake_github.add_artifact(repo, "orchestra", b"zip", expired=True)
    run_id = fake_github.repo(repo).artifacts[expired.id].run_id
    limited = "ghs_limited"
    fake_github.add_token(limited, "limited[bot]", type="Bot")
    fake_github.deny_actions(limited)
    base = f"/repos/{REPO}/actions"

    gone, _, gone_body = raw_get(fake_github, f"{base}/artifacts/{expired.id}/zip")
    listed, _, listed_body = raw_get(fake_github, f"{base}/artifacts")
    missing = [raw_get(fake_github, f"{base}/{path}")[0] for path in ("artifacts/1/zip", "runs/1")]
    denied = [
        raw_get(fake_github, f"{base}/{path}", token=limited)
        for path in (
            "artifacts",
            f"artifacts/{expired.id}",
            f"artifacts/{expired.id}/zip",
            f"runs/{run_id}",
            f"runs/{run_id}/artifacts",
        )
    ]

    assert gone == 410 and gone_body["message"] == "Artifact has expired"
    assert listed == 200 and listed_body["artifacts"][0]["expired"] is True
    assert missing == [404, 404]
    assert {(status, body["message"]) for status, _, body in denied} == {
        (403, "Resource not accessible by integration")
    }


# ----------------------------------------------------------------------------- request log


def test_request_log_records_bodies_query_and_redacts_the_token(
    fake_github: FakeGitHub, repo: Repo
) -> None:
    made = fake_github.add_issue(repo, "work")
    issue = client(fake_github).get_repo(REPO).get_issue(made.number)
    issue.create_comment("body text")
    list(issue.get_comments())

    post = fake_github.find_requests("POST", r"/comments$")[0]
    listing = fake_github.find_requests("GET", r"/comments$")[0]

    assert post.body == {"body": "body text"}
    assert json.loads(post.raw_body) == {"body": "body text"}
    assert post.status == 201 and post.route == f"/repos/{REPO}/issues/{made.number}/comments"
    assert listing.method == "GET" and listing.body is None
    assert post.headers["Authorization"] == "token <redacted>"
    assert fake_github.token not in repr(fake_github.requests)
    assert fake_github.token not in repr(fake_github.state)


def test_env_points_a_client_at_the_fake(fake_github: FakeGitHub) -> None:
    env = fake_github.env(REPO)

    assert env["GITHUB_API_URL"] == fake_github.url
    assert env["GITHUB_REPOSITORY"] == REPO
    assert env["GITHUB_TOKEN"] == fake_github.token


def test_a_stopped_fake_answers_nobody() -> None:
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        gh = client(fake)
        gh.get_repo(REPO)  # leaves a kept-alive connection in the client's pool
    with pytest.raises(requests.exceptions.ConnectionError):
        gh.get_repo(REPO)
