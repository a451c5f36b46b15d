"""A local fake of the GitHub REST API, served over real HTTP, for PyGithub and other clients.

Start it as a context manager and point a client at :attr:`FakeGitHub.url` (PyGithub's
``base_url``, or ``GITHUB_API_URL`` for the CLI and the Action)::

    with FakeGitHub() as gh:
        repo = gh.add_repo("octo/widgets")
        gh.add_user("alice")
        repo.collaborators["alice"] = "write"
        issue = gh.add_issue(repo, "Fix the build", user="alice", labels=["agent"])
        gh.inject(Fault.server_error(r"/issues/\\d+/comments$", status=502))
        client = github.Github(auth=github.Auth.Token(gh.token), base_url=gh.url)
        ...
        assert [c.body for c in repo.comments_on(issue.number)] == [...]
        assert gh.find_requests("POST", r"/comments$")[0].body == {"body": ...}

Everything the server knows lives in plain dataclasses (:class:`GitHubState`, :class:`Repo`,
:class:`Issue`, ...) that tests may build and inspect directly; hold :attr:`FakeGitHub.lock`
when changing them while a client is talking to the server.

What it imitates, because client code depends on it:

- Response shapes, with ``url`` fields pointing back at the fake so PyGithub's lazy
  completion works, for: ``GET /user``, ``GET /users/{login}``, ``GET /rate_limit``; under
  ``/repos/{owner}/{repo}`` (or ``/repositories/{id}``): the repository itself, issues (list
  with ``state``/``labels``/``sort``/``direction``/``creator``/``since``, get, create, edit),
  issue events, issue comments (list, create, get, edit, delete, and repository-wide list),
  issue labels (list, add, replace, clear, remove one), repository labels (list, create, get,
  delete), ``collaborators/{user}/permission``, pulls (list with ``state``/``head``/``base``,
  create, get, edit), git refs (list, matching, get, create, update, delete), workflow runs
  (get) and artifacts (list for the repository or a run, with ``name``, newest first, under
  ``{"total_count", "artifacts"}``; get; ``/zip`` answering 302 to a signed blob URL on this
  server, 410 ``Gone`` once expired). Blob URLs need no token, like Azure's signed URLs;
  :meth:`FakeGitHub.blob_requests` shows whether a client sent one there anyway. Set runs
  and artifacts up with :meth:`FakeGitHub.add_run` and :meth:`FakeGitHub.add_artifact`.
- Pagination: ``per_page`` (default 30, at most 100) and ``page``, with a ``Link`` header of
  absolute ``prev``/``next``/``last``/``first`` URLs in GitHub's ``/repositories/{id}/...``
  form, omitted when everything fits on one page.
- Issues and pull requests share one number space; ``GET .../issues`` lists pull requests too,
  marked by a ``pull_request`` key. ``GET .../pulls?head=BRANCH`` without ``OWNER:`` silently
  ignores the filter, like GitHub.
- Errors: 401 ``Bad credentials``, 403 ``Resource not accessible by integration`` from the
  Actions endpoints for a token without ``actions: read`` (:meth:`FakeGitHub.deny_actions`),
  404 ``Not Found`` (and ``Label does not exist`` when removing a label an issue does not
  carry), 422 ``Validation Failed`` with an ``errors`` list, 400 ``Problems parsing JSON``. A
  ``GITHUB_TOKEN``-like bot token gets 403 ``Resource not accessible by integration`` from
  ``GET /user``.
- Rate limits: ``X-RateLimit-*`` headers on every response, counted per request against
  :attr:`GitHubState.rate`; when it runs out, 403 ``API rate limit exceeded`` until the reset.
- Faults scripted per request (:class:`Fault`): 5xx, secondary rate limits (403 or 429, with or
  without ``Retry-After``), primary rate limits, slow answers and dropped connections, each of
  which may or may not carry out the request's side effect first.

Every request is kept in :attr:`FakeGitHub.requests` (:class:`RecordedRequest`) with the
``Authorization`` header redacted; the fake never prints anything.

Not imitated: anonymous access (every request needs a known token, except blob URLs),
per-token scopes and permissions other than ``actions: read``, permission checks on writes
(any known token may comment, label or open pull requests), organisations and teams, forks,
ETag/conditional requests, GraphQL, and anything not listed above (answered with 404). Note
for PyGithub users: the real ``Label does not exist`` message makes PyGithub raise a plain
``GithubException`` with status 404, not ``UnknownObjectException``; and its default pauses
between requests (0.25 s, 1 s between writes) are worth turning off in tests
(``seconds_between_requests=None``, ``seconds_between_writes=None``).
"""

import base64
import contextlib
import hashlib
import itertools
import json
import re
import secrets
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any, Literal, cast

from orchestra_ci.background_http import BackgroundServer, TrackedHandler, TrackingServer

__all__ = [
    "ROLES",
    "Artifact",
    "Comment",
    "FakeGitHub",
    "Fault",
    "GitHubState",
    "Issue",
    "IssueEvent",
    "Label",
    "PullRequest",
    "RateLimit",
    "RecordedRequest",
    "Repo",
    "User",
    "WorkflowRun",
]

ROLES = ("admin", "maintain", "write", "triage", "read", "none")
"""Repository roles, strongest first, as ``role_name`` reports them."""

# The collaborator-permission endpoint's legacy ``permission`` field folds maintain into
# write and triage into read; only ``role_name`` tells them apart.
_LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}

_DOCS = "https://docs.github.com/rest"
_RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
_SECONDARY_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_ARTIFACTS_DOCS = "https://docs.github.com/rest/actions/artifacts"
_BLOB_PATH = "/_blobs/"

_ids = itertools.count(1001)


def _next_id() -> int:
    return next(_ids)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fake_sha(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode(), usedforsecurity=False).hexdigest()


# --------------------------------------------------------------------------- state


@dataclass
class User:
    """An account. ``type`` is ``User``, ``Bot`` or ``Organization``."""

    login: str
    type: str = "User"
    name: str | None = None
    site_admin: bool = False
    id: int = field(default_factory=_next_id)


@dataclass
class Label:
    name: str
    color: str = "ededed"
    description: str | None = None
    default: bool = False
    id: int = field(default_factory=_next_id)


@dataclass
class Issue:
    """An issue, or the issue half of a pull request (``pull_request=True``).

    Title, body, state and labels of a pull request live here; the branch details live in
    :class:`PullRequest` under the same number, as on GitHub.
    """

    number: int
    title: str
    body: str | None = None
    user: str = "octocat"
    state: str = "open"
    state_reason: str | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    pull_request: bool = False
    locked: bool = False
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime | None = None
    closed_at: datetime | None = None
    id: int = field(default_factory=_next_id)

    def __post_init__(self) -> None:
        if self.updated_at is None:
            self.updated_at = self.created_at


@dataclass
class IssueEvent:
    """An entry of ``GET .../issues/{n}/events``: ``labeled``, ``unlabeled``, ``closed``..."""

    issue_number: int
    event: str
    actor: str
    label: str | None = None
    created_at: datetime = field(default_factory=_now)
    id: int = field(default_factory=_next_id)


@dataclass
class Comment:
    issue_number: int
    body: str
    user: str
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime | None = None
    id: int = field(default_factory=_next_id)

    def __post_init__(self) -> None:
        if self.updated_at is None:
            self.updated_at = self.created_at


@dataclass
class PullRequest:
    """The pull-request half of issue ``number``: branches and merge state."""

    number: int
    head: str
    base: str
    head_owner: str = ""
    draft: bool = False
    maintainer_can_modify: bool = True
    merged_at: datetime | None = None
    id: int = field(default_factory=_next_id)


@dataclass
class WorkflowRun:
    """A workflow run: ``GET .../actions/runs/{id}`` and the owner of artifacts."""

    workflow_id: int
    head_branch: str = "main"
    head_sha: str = ""
    event: str = "push"
    name: str = "orchestra"
    path: str = ".github/workflows/orchestra.yml"
    run_number: int = 1
    created_at: datetime = field(default_factory=_now)
    id: int = field(default_factory=_next_id)

    def __post_init__(self) -> None:
        if not self.head_sha:
            self.head_sha = _fake_sha("run", self.id)


@dataclass
class Artifact:
    """A workflow artifact: the zip ``data`` uploaded by run ``run_id``. An ``expired``
    artifact is still listed and described, but its zip answers 410 Gone."""

    name: str
    data: bytes
    run_id: int
    created_at: datetime = field(default_factory=_now)
    expired: bool = False
    expires_at: datetime | None = None
    id: int = field(default_factory=_next_id)

    def __post_init__(self) -> None:
        if self.expires_at is None:
            self.expires_at = self.created_at + timedelta(days=90)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


@dataclass
class Repo:
    """A repository and everything in it.

    ``collaborators`` maps a login to one of :data:`ROLES`. The owner counts as ``admin``;
    anyone else who exists gets ``read`` on a public repository and ``none`` on a private one.
    ``refs`` maps full ref names (``refs/heads/main``) to commit SHAs; the default branch is
    created with the repository. Opening a pull request needs both branches to exist unless
    ``create_missing_refs`` is set (handy when the branch was pushed somewhere the fake cannot
    see, such as a local bare repository).
    """

    owner: str
    name: str
    default_branch: str = "main"
    private: bool = False
    description: str | None = None
    labels: dict[str, Label] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    comments: dict[int, Comment] = field(default_factory=dict)
    events: list[IssueEvent] = field(default_factory=list)
    collaborators: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    runs: dict[int, WorkflowRun] = field(default_factory=dict)
    artifacts: dict[int, Artifact] = field(default_factory=dict)
    create_missing_refs: bool = False
    created_at: datetime = field(default_factory=_now)
    id: int = field(default_factory=_next_id)

    def __post_init__(self) -> None:
        self.refs.setdefault(
            f"refs/heads/{self.default_branch}", _fake_sha(self.owner, self.name, "init")
        )

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def next_number(self) -> int:
        return max(self.issues, default=0) + 1

    def label(self, name: str) -> Label | None:
        """The repository label called ``name`` (GitHub compares names case-insensitively)."""
        for label in self.labels.values():
            if label.name.lower() == name.lower():
                return label
        return None

    def comments_on(self, number: int) -> list[Comment]:
        return sorted(
            (c for c in self.comments.values() if c.issue_number == number), key=lambda c: c.id
        )

    def events_on(self, number: int) -> list[IssueEvent]:
        return [e for e in self.events if e.issue_number == number]

    def role_of(self, login: str) -> str | None:
        """Explicit or implied role, or ``None`` for an explicit stranger on a private repo."""
        for who, role in self.collaborators.items():
            if who.lower() == login.lower():
                return role
        if login.lower() == self.owner.lower():
            return "admin"
        return None


@dataclass
class RateLimit:
    """The primary ``core`` rate limit; ``reset`` is in epoch seconds."""

    limit: int = 5000
    used: int = 0
    reset: int = field(default_factory=lambda: int(time.time()) + 3600)

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def roll(self) -> None:
        """Start a new window once the reset time has passed, as GitHub does."""
        now = int(time.time())
        if now >= self.reset:
            self.used = 0
            self.reset = now + 3600


@dataclass
class GitHubState:
    users: dict[str, User] = field(default_factory=dict)
    repos: dict[str, Repo] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict, repr=False)
    rate: RateLimit = field(default_factory=RateLimit)
    #: Tokens without the ``actions: read`` permission.
    no_actions: set[str] = field(default_factory=set, repr=False)
    #: Blob keys handed out by ``.../artifacts/{id}/zip``: key -> (signature, repo, artifact id).
    blobs: dict[str, tuple[str, str, int]] = field(default_factory=dict, repr=False)

    def user(self, login: str) -> User | None:
        return self.users.get(login.lower())

    def repo(self, full_name: str) -> Repo | None:
        return self.repos.get(full_name.lower())

    def repo_by_id(self, repo_id: int) -> Repo | None:
        return next((r for r in self.repos.values() if r.id == repo_id), None)


# --------------------------------------------------------------------------- faults and log

FaultKind = Literal["error", "secondary_rate_limit", "primary_rate_limit", "delay", "drop"]
Effect = Literal["before", "after", "never"]


@dataclass
class Fault:
    """A scripted misbehaviour for requests whose method and path match.

    ``path`` is a regular expression searched in the request path (without the query) and
    also in its canonical ``/repos/{owner}/{name}/...`` form, so faults apply to pages reached
    through ``/repositories/{id}/...`` links as well. ``query``, if set, is searched in the raw
    query string. The first ``skip`` matching requests pass untouched; the next ``times``
    (``None``: all) get the fault. ``hits`` counts how often it fired.

    ``effect`` says whether the request's own side effect happens for ``delay`` and ``drop``:
    ``"before"`` the wait (the write lands, then the answer is late or never comes),
    ``"after"`` the wait (it lands while the client may already have given up), or
    ``"never"``. Build faults with the class methods rather than by hand.
    """

    kind: FaultKind
    path: str = ""
    method: str | None = None
    query: str | None = None
    times: int | None = 1
    skip: int = 0
    status: int = 500
    message: str | None = None
    raw_body: str | None = None
    retry_after: int | None = None
    reset_in: int = 1
    seconds: float = 0.0
    effect: Effect = "never"
    hits: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        re.compile(self.path)
        if self.kind == "delay" and self.effect == "never":
            raise ValueError("a delayed answer needs the request carried out: effect before/after")

    @classmethod
    def server_error(
        cls,
        path: str,
        status: int = 502,
        *,
        method: str | None = None,
        times: int | None = 1,
        skip: int = 0,
        message: str | None = None,
        raw_body: str | None = None,
    ) -> "Fault":
        """Answer ``status`` (500, 502, 503...) with a JSON message, or ``raw_body`` as is
        (GitHub's edge sometimes sends an HTML page instead)."""
        return cls(
            "error",
            path,
            method,
            times=times,
            skip=skip,
            status=status,
            message=message,
            raw_body=raw_body,
        )

    @classmethod
    def secondary_rate_limit(
        cls,
        path: str,
        *,
        retry_after: int | None = 60,
        status: int = 403,
        method: str | None = None,
        times: int | None = 1,
        skip: int = 0,
    ) -> "Fault":
        """403 (or 429) with GitHub's secondary-limit message and, if given, ``Retry-After``."""
        return cls(
            "secondary_rate_limit",
            path,
            method,
            times=times,
            skip=skip,
            status=status,
            retry_after=retry_after,
        )

    @classmethod
    def too_many_requests(
        cls,
        path: str,
        *,
        retry_after: int | None = 1,
        method: str | None = None,
        times: int | None = 1,
        skip: int = 0,
    ) -> "Fault":
        """429 with the secondary-limit message and ``Retry-After``."""
        return cls.secondary_rate_limit(
            path, retry_after=retry_after, status=429, method=method, times=times, skip=skip
        )

    @classmethod
    def primary_rate_limit(
        cls,
        path: str,
        *,
        reset_in: int = 1,
        status: int = 403,
        method: str | None = None,
        times: int | None = 1,
        skip: int = 0,
    ) -> "Fault":
        """403 ``API rate limit exceeded`` with ``X-RateLimit-Remaining: 0`` and a reset
        ``reset_in`` seconds away. To exhaust the real counter instead, set
        ``fake.state.rate.used = fake.state.rate.limit``."""
        return cls(
            "primary_rate_limit",
            path,
            method,
            times=times,
            skip=skip,
            status=status,
            reset_in=reset_in,
        )

    @classmethod
    def timeout(
        cls,
        path: str,
        seconds: float,
        *,
        effect: Effect = "before",
        method: str | None = None,
        times: int | None = 1,
        skip: int = 0,
    ) -> "Fault":
        """Answer only after ``seconds`` (make it longer than the client's timeout). With
        ``effect="before"`` the request is carried out at once, which models a POST that
        reached GitHub although the client saw a timeout."""
        return cls("delay", path, method, times=times, skip=skip, seconds=seconds, effect=effect)

    @classmethod
    def drop(
        cls,
        path: str,
        *,
        effect: Effect = "never",
        after: float = 0.0,
        method: str | None = None,
        times: int | None = 1,
        skip: int = 0,
    ) -> "Fault":
        """Close the connection without an answer, ``after`` seconds in."""
        return cls("drop", path, method, times=times, skip=skip, seconds=after, effect=effect)

    def matches(self, method: str, paths: Sequence[str], query: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        if not any(re.search(self.path, p) for p in paths):
            return False
        return self.query is None or re.search(self.query, query) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass
class RecordedRequest:
    """One request as the fake received it. ``status`` is ``None`` while it is being served
    and ``0`` when no answer was sent (dropped connection); ``fault`` names the fault applied.
    """

    method: str
    path: str
    route: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    status: int | None = None
    fault: str | None = None
    time: float = field(default_factory=time.time)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name (credentials show as ``<scheme> <redacted>``)."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


# --------------------------------------------------------------------------- HTTP plumbing


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        doc: str = _DOCS,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.doc = doc

    def reply(self) -> _Reply:
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body["documentation_url"] = self.doc
        body["status"] = str(self.status)
        return _Reply(self.status, body)


def _not_found() -> _ApiError:
    return _ApiError(404, "Not Found")


def _invalid(resource: str, field_name: str, code: str = "invalid") -> _ApiError:
    return _ApiError(
        422,
        "Validation Failed",
        errors=[{"resource": resource, "field": field_name, "code": code}],
    )


def _custom_invalid(resource: str, message: str) -> _ApiError:
    return _ApiError(
        422,
        "Validation Failed",
        errors=[{"resource": resource, "code": "custom", "message": message}],
    )


@dataclass
class _Call:
    """A request on its way through the router."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    login: str
    groups: dict[str, str] = field(default_factory=dict)
    repo: Repo | None = None
    link_path: str = ""
    token: str = ""

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    @property
    def the_repo(self) -> Repo:
        assert self.repo is not None
        return self.repo

    def number(self) -> int:
        return int(self.groups["number"])

    def obj(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise _ApiError(422, "Invalid request.\n\nThe request body must be a JSON object.")
        return self.body

    def text(self, key: str, *, required: bool = False) -> str | None:
        body = self.obj()
        if key not in body or body[key] is None:
            if required:
                raise _ApiError(422, f'Invalid request.\n\n"{key}" wasn\'t supplied.')
            return None
        value = body[key]
        if not isinstance(value, str):
            raise _ApiError(
                422, f"Invalid request.\n\nFor 'properties/{key}', {value!r} is not a string."
            )
        return value

    def flag(self, key: str) -> bool | None:
        value = self.obj().get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise _ApiError(
                422, f"Invalid request.\n\nFor 'properties/{key}', {value!r} is not a boolean."
            )
        return value


Handler = Callable[[_Call], _Reply]


class _Server(TrackingServer):
    def __init__(self, fake: "FakeGitHub") -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up are part of the game; anything else is the fake's own bug."""
        if not isinstance(_current_exception(), ConnectionError | TimeoutError):
            self.fake.errors.append(traceback.format_exc())


def _current_exception() -> BaseException | None:
    return sys.exc_info()[1]


class _RequestHandler(TrackedHandler):
    server_version = "GitHub.com"
    timeout = 60  # idle keep-alive connections are closed after this
    # One segment per answer (headers and body buffered, flushed together; Nagle's delay is
    # off in TrackedHandler): otherwise every keep-alive request waits ~40 ms for an ACK.
    wbufsize = 64 * 1024

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        fake = cast(_Server, self.server).fake
        fake._serve(self, self.command, self.path, dict(self.headers.items()), raw)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def send(self, reply: _Reply) -> bool:
        """Write ``reply``; False when the client is no longer there to read it."""
        if reply.raw is not None:
            data = reply.raw
        elif reply.body is not None:
            data = json.dumps(reply.body).encode()
        else:
            data = b""
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.status != 204:
                if reply.raw is None and reply.body is not None:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data and reply.status != 204:
                self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            return False
        return True

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------- the fake


class FakeGitHub(BackgroundServer):
    """The fake API server. ``with FakeGitHub() as gh:`` starts it on a free loopback port;
    :attr:`url` (e.g. ``http://127.0.0.1:40123``, no trailing slash) is the API's base URL.

    ``token`` (a fresh random ``ghs_...`` string by default) authenticates as ``login``
    (``github-actions[bot]``, a ``Bot``, like ``GITHUB_TOKEN`` in a workflow); add more with
    :meth:`add_token`. ``html_url`` is the web root used in ``html_url`` fields.
    """

    thread_name = "fake-github"

    def __init__(
        self,
        *,
        token: str | None = None,
        login: str = "github-actions[bot]",
        html_url: str = "https://github.com",
        state: GitHubState | None = None,
    ) -> None:
        self.state = state or GitHubState()
        self.token = token or f"ghs_{secrets.token_hex(18)}"
        self.login = login
        self.html_url = html_url.rstrip("/")
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        self._idle = threading.Condition(self.lock)
        self._in_flight = 0
        self._stopping = threading.Event()
        self._request_ids = itertools.count(1)
        self.add_token(self.token, login)
        self._top_routes, self._repo_routes = self._routes()
        super().__init__()

    # ------------------------------------------------------------------ lifecycle

    def make_server(self) -> TrackingServer:
        self._stopping.clear()  # a restarted fake lets faults sleep again
        return _Server(self)

    def stop(self) -> None:
        """Stop serving; requests still sleeping in a fault wake up and give up."""
        self._stopping.set()
        super().stop()

    def env(self, repository: str | None = None) -> dict[str, str]:
        """Environment variables that point the CLI or the Action at this fake."""
        values = {
            "GITHUB_API_URL": self.url,
            "GITHUB_SERVER_URL": self.html_url,
            "GITHUB_TOKEN": self.token,
        }
        if repository is not None:
            values["GITHUB_REPOSITORY"] = repository
        return values

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being served (e.g. a delayed one landing late)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fake GitHub still serving requests")
                self._idle.wait(left)

    # ------------------------------------------------------------------ setting up state

    def add_token(self, token: str, login: str, *, type: str | None = None) -> User:
        """Let ``token`` authenticate as ``login`` (created if needed)."""
        with self.lock:
            self.state.tokens[token] = login
            return self.add_user(login, type=type)

    def add_user(self, login: str, *, type: str | None = None, name: str | None = None) -> User:
        """The user ``login``, created if new. Logins ending in ``[bot]`` are bots."""
        with self.lock:
            user = self.state.user(login)
            if user is None:
                kind = type or ("Bot" if login.endswith("[bot]") else "User")
                user = User(login, kind, name)
                self.state.users[login.lower()] = user
            return user

    def add_repo(
        self,
        full_name: str,
        *,
        default_branch: str = "main",
        private: bool = False,
        owner_type: str = "User",
    ) -> Repo:
        with self.lock:
            owner, _, name = full_name.partition("/")
            if not owner or not name or "/" in name:
                raise ValueError(f"not OWNER/NAME: {full_name!r}")
            self.add_user(owner, type=owner_type)
            repo = Repo(owner, name, default_branch=default_branch, private=private)
            self.state.repos[full_name.lower()] = repo
            return repo

    def repo(self, repo: "Repo | str") -> Repo:
        if isinstance(repo, Repo):
            return repo
        found = self.state.repo(repo)
        if found is None:
            raise KeyError(repo)
        return found

    def add_label(
        self,
        repo: "Repo | str",
        name: str,
        color: str = "ededed",
        description: str | None = None,
    ) -> Label:
        with self.lock:
            r = self.repo(repo)
            label = r.label(name)
            if label is None:
                label = Label(name, color, description)
                r.labels[name.lower()] = label
            return label

    def add_issue(
        self,
        repo: "Repo | str",
        title: str,
        body: str | None = None,
        *,
        user: str = "octocat",
        labels: Sequence[str] = (),
        labeled_by: str | None = None,
        state: str = "open",
        created_at: datetime | None = None,
    ) -> Issue:
        """Open an issue as ``user`` and apply ``labels``, recording ``labeled`` events by
        ``labeled_by`` (default: the author)."""
        with self.lock:
            r = self.repo(repo)
            self.add_user(user)
            moment = created_at or _now()
            issue = Issue(r.next_number(), title, body, user, created_at=moment)
            r.issues[issue.number] = issue
            for name in labels:
                self.label_issue(r, issue.number, name, actor=labeled_by or user, at=moment)
            if state == "closed":
                self._set_state(r, issue, "closed", labeled_by or user)
            return issue

    def add_pull(
        self,
        repo: "Repo | str",
        title: str,
        head: str,
        *,
        base: str | None = None,
        body: str | None = None,
        user: str = "octocat",
        labels: Sequence[str] = (),
        draft: bool = False,
    ) -> Issue:
        """Open a pull request from branch ``head`` (refs created as needed); returns its
        issue half (the branch half is ``repo.pulls[number]``)."""
        with self.lock:
            r = self.repo(repo)
            base = base or r.default_branch
            for branch in (head, base):
                r.refs.setdefault(f"refs/heads/{branch}", _fake_sha(r.full_name, branch))
            issue = self.add_issue(r, title, body, user=user, labels=labels)
            issue.pull_request = True
            r.pulls[issue.number] = PullRequest(
                issue.number, head, base, head_owner=r.owner, draft=draft
            )
            return issue

    def label_issue(
        self,
        repo: "Repo | str",
        number: int,
        name: str,
        *,
        actor: str,
        at: datetime | None = None,
    ) -> None:
        """Apply a label as ``actor`` (the label is created in the repo if missing)."""
        with self.lock:
            r = self.repo(repo)
            self.add_user(actor)
            self._apply_labels(r, r.issues[number], [name], actor, at)

    def unlabel_issue(self, repo: "Repo | str", number: int, name: str, *, actor: str) -> None:
        """Remove a label as ``actor``; ``KeyError`` if the issue does not carry it."""
        with self.lock:
            r = self.repo(repo)
            try:
                self._remove_label(r, r.issues[number], name, actor)
            except _ApiError as err:
                raise KeyError(name) from err

    def add_comment(
        self,
        repo: "Repo | str",
        number: int,
        body: str,
        *,
        user: str = "octocat",
        created_at: datetime | None = None,
    ) -> Comment:
        with self.lock:
            r = self.repo(repo)
            self.add_user(user)
            if number not in r.issues:
                raise KeyError(number)
            comment = Comment(number, body, user, created_at=created_at or _now())
            r.comments[comment.id] = comment
            return comment

    # ------------------------------------------------------------------ Actions runs and artifacts

    def add_run(
        self,
        repo: "Repo | str",
        *,
        workflow_id: int = 1,
        branch: str | None = None,
        head_sha: str = "",
        event: str = "push",
        created_at: datetime | None = None,
        run_id: int | None = None,
    ) -> WorkflowRun:
        """A workflow run of ``workflow_id`` on ``branch`` (default: the default branch)."""
        with self.lock:
            r = self.repo(repo)
            run = WorkflowRun(
                workflow_id,
                branch or r.default_branch,
                head_sha,
                event,
                created_at=created_at or _now(),
                run_number=len(r.runs) + 1,
            )
            if run_id is not None:
                run.id = run_id
            r.runs[run.id] = run
            return run

    def add_artifact(
        self,
        repo: "Repo | str",
        name: str,
        data: bytes,
        *,
        run: "WorkflowRun | int | None" = None,
        workflow_id: int = 1,
        branch: str | None = None,
        created_at: datetime | None = None,
        expired: bool = False,
    ) -> Artifact:
        """Upload the zip ``data`` as the artifact ``name`` of ``run``: a run, the id of one
        (created if the fake does not know it), or ``None`` for a new run. A new run is of
        ``workflow_id`` on ``branch`` and starts when the artifact is made."""
        with self.lock:
            r = self.repo(repo)
            moment = created_at or _now()
            if isinstance(run, WorkflowRun):
                owner = run
            elif run in r.runs:
                owner = r.runs[run]
            else:
                owner = self.add_run(
                    r, workflow_id=workflow_id, branch=branch, created_at=moment, run_id=run
                )
            artifact = Artifact(name, data, owner.id, created_at=moment, expired=expired)
            r.artifacts[artifact.id] = artifact
            return artifact

    def deny_actions(self, token: str | None = None) -> None:
        """Take ``actions: read`` from ``token`` (default :attr:`token`): every
        ``.../actions/...`` endpoint then answers 403, as for a ``GITHUB_TOKEN`` whose
        ``permissions:`` leave ``actions`` out."""
        with self.lock:
            self.state.no_actions.add(token or self.token)

    def blob_requests(self) -> list[RecordedRequest]:
        """Requests to the blob URLs that ``.../artifacts/{id}/zip`` redirects to; their
        ``header("Authorization")`` says whether a client forwarded its token there."""
        return self.find_requests("GET", "^" + re.escape(_BLOB_PATH))

    # ------------------------------------------------------------------ faults and the log

    def inject(self, *faults: Fault) -> Fault:
        """Add faults (tried in order, first match wins); returns the last one for
        convenience, e.g. ``fault = gh.inject(Fault.server_error(...))`` then ``fault.hits``."""
        if not faults:
            raise ValueError("inject() needs a fault")
        with self.lock:
            self.faults.extend(faults)
        return faults[-1]

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def find_requests(
        self, method: str | None = None, path: str | None = None
    ) -> list[RecordedRequest]:
        """Recorded requests by method and a regex searched in the path or its canonical
        ``/repos/{owner}/{name}/...`` form."""
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method.upper())
                and (path is None or re.search(path, r.path) or re.search(path, r.route))
            ]

    # ------------------------------------------------------------------ serving

    def _serve(
        self,
        handler: _RequestHandler,
        method: str,
        target: str,
        headers: dict[str, str],
        raw: bytes,
    ) -> None:
        parsed = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        record = RecordedRequest(
            method=method,
            path=parsed.path,
            route=self._canonical(parsed.path),
            query=query,
            headers=_redacted(headers),
            body=body,
            raw_body=raw,
        )
        with self._idle:
            self.requests.append(record)
            self._in_flight += 1
        try:
            self._answer(handler, record, parsed.query, bad_json)
        except Exception:
            self.errors.append(traceback.format_exc())
            record.status = 500
            handler.send(_Reply(500, {"message": "fake GitHub internal error"}))
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _answer(
        self, handler: _RequestHandler, record: RecordedRequest, raw_query: str, bad_json: bool
    ) -> None:
        request_id = self._request_id()
        authorization = handler.headers.get("Authorization")
        # Blob downloads are signed URLs that need no token, like Azure's (see _get_blob).
        blob = record.path.startswith(_BLOB_PATH)
        login = self._authenticate(authorization)
        if login is None and not blob:
            reply = _ApiError(401, _auth_message(authorization)).reply()
            self._finish(handler, record, reply, request_id)
            return
        login = login or ""
        with self.lock:
            fault = self._take_fault(record, raw_query)
            self.state.rate.roll()
            counted = record.path != "/rate_limit" and not blob
            exhausted = counted and self.state.rate.remaining <= 0
            if counted and not exhausted:
                self.state.rate.used += 1
        record.fault = fault.kind if fault is not None else None

        def carry_out() -> _Reply:
            if bad_json:
                return _ApiError(400, "Problems parsing JSON").reply()
            call = _Call(
                record.method,
                record.path,
                record.query,
                record.body,
                login,
                token=_credential(authorization),
            )
            with self.lock:
                try:
                    if blob:
                        return self._get_blob(call)
                    return self._dispatch(call)
                except _ApiError as err:
                    return err.reply()

        if exhausted and fault is None:
            reply = self._primary_limit_reply(login, request_id, self.state.rate.reset)
            self._finish(handler, record, reply, request_id)
        elif fault is None:
            self._finish(handler, record, carry_out(), request_id)
        elif fault.kind in ("delay", "drop"):
            late = carry_out() if fault.effect == "before" else None
            # When the fake is shutting down, the wait ends early and nothing more happens.
            interrupted = fault.seconds > 0 and self._stopping.wait(fault.seconds)
            if fault.effect == "after" and not interrupted:
                late = carry_out()
            if fault.kind == "delay" and late is not None and not interrupted:
                self._finish(handler, record, late, request_id)
            else:
                record.status = 0
                handler.drop()
        else:
            self._finish(
                handler,
                record,
                self._fault_reply(fault, record.method, login, request_id),
                request_id,
            )

    def _finish(
        self,
        handler: _RequestHandler,
        record: RecordedRequest,
        reply: _Reply,
        request_id: str,
    ) -> None:
        with self.lock:
            rate = self.state.rate
            headers = {
                "X-GitHub-Request-Id": request_id,
                "X-GitHub-Media-Type": "github.v3; format=json",
                "X-GitHub-Api-Version-Selected": "2022-11-28",
                "X-RateLimit-Limit": str(rate.limit),
                "X-RateLimit-Remaining": str(rate.remaining),
                "X-RateLimit-Reset": str(rate.reset),
                "X-RateLimit-Used": str(rate.used),
                "X-RateLimit-Resource": "core",
            }
        headers.update(reply.headers)
        reply.headers = headers
        record.status = reply.status  # before sending: the client may look right after
        if not handler.send(reply):
            record.status = 0

    def _take_fault(self, record: RecordedRequest, raw_query: str) -> Fault | None:
        paths = (record.path, record.route)
        for fault in self.faults:
            if fault.exhausted or not fault.matches(record.method, paths, raw_query):
                continue
            fault.seen += 1
            if fault.seen <= fault.skip:
                continue
            fault.hits += 1
            return fault
        return None

    def _fault_reply(self, fault: Fault, method: str, login: str, request_id: str) -> _Reply:
        if fault.kind == "error":
            if fault.raw_body is not None:
                return _Reply(
                    fault.status,
                    raw=fault.raw_body.encode(),
                    headers={"Content-Type": "text/html; charset=utf-8"},
                )
            message = fault.message or HTTPStatus(fault.status).phrase
            return _ApiError(fault.status, message).reply()
        if fault.kind == "primary_rate_limit":
            reset = int(time.time()) + fault.reset_in
            reply = self._primary_limit_reply(login, request_id, reset, status=fault.status)
            return reply
        # secondary rate limit
        if method in _WRITE_METHODS:
            text = (
                "You have exceeded a secondary rate limit and have been temporarily blocked "
                "from content creation. Please retry your request again later."
            )
        else:
            text = (
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again."
            )
        text += (
            " If you reach out to GitHub Support for help, please include the request ID "
            f"{request_id}."
        )
        reply = _ApiError(fault.status, text, doc=_SECONDARY_DOCS).reply()
        if fault.retry_after is not None:
            reply.headers["Retry-After"] = str(fault.retry_after)
        return reply

    def _primary_limit_reply(
        self, login: str, request_id: str, reset: int, status: int = 403
    ) -> _Reply:
        with self.lock:
            user = self.add_user(login)
            limit = self.state.rate.limit
        text = (
            f"API rate limit exceeded for user ID {user.id}. If you reach out to GitHub Support "
            f"for help, please include the request ID {request_id} and timestamp "
            f"{_iso(_now())}."
        )
        reply = _ApiError(status, text, doc=_RATE_DOCS).reply()
        reply.headers.update(
            {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
                "X-RateLimit-Used": str(limit),
            }
        )
        return reply

    def _request_id(self) -> str:
        n = next(self._request_ids)
        return f"FA{n:02X}:{n * 7 % 0xFFFF:04X}:{n * 31:05X}:{n * 131:05X}:{int(time.time()):08X}"

    def _authenticate(self, authorization: str | None) -> str | None:
        credential = _credential(authorization)
        if not credential:
            return None
        with self.lock:
            return self.state.tokens.get(credential)

    def _canonical(self, path: str) -> str:
        m = re.fullmatch(r"/repositories/(\d+)(/.*)?", path)
        if m is None:
            return path
        with self.lock:
            repo = self.state.repo_by_id(int(m.group(1)))
        if repo is None:
            return path
        return f"/repos/{repo.owner}/{repo.name}{m.group(2) or ''}"

    # ------------------------------------------------------------------ routing

    def _routes(
        self,
    ) -> tuple[
        list[tuple[str, re.Pattern[str], Handler]], list[tuple[str, re.Pattern[str], Handler]]
    ]:
        """The endpoints. Top-level paths first, then paths under a repository."""
        top: list[tuple[str, str, Handler]] = [
            ("GET", r"/user", self._get_authenticated_user),
            ("GET", r"/users/(?P<login>[^/]+)", self._get_user),
            ("GET", r"/rate_limit", self._get_rate_limit),
        ]
        n = r"(?P<number>\d+)"
        repo: list[tuple[str, str, Handler]] = [
            ("GET", r"", self._get_repo),
            ("GET", r"/issues", self._list_issues),
            ("POST", r"/issues", self._create_issue),
            ("GET", r"/issues/comments", self._list_repo_comments),
            ("GET", r"/issues/comments/(?P<id>\d+)", self._get_comment),
            ("PATCH", r"/issues/comments/(?P<id>\d+)", self._edit_comment),
            ("DELETE", r"/issues/comments/(?P<id>\d+)", self._delete_comment),
            ("GET", rf"/issues/{n}", self._get_issue),
            ("PATCH", rf"/issues/{n}", self._edit_issue),
            ("GET", rf"/issues/{n}/events", self._list_events),
            ("GET", rf"/issues/{n}/comments", self._list_comments),
            ("POST", rf"/issues/{n}/comments", self._create_comment),
            ("GET", rf"/issues/{n}/labels", self._list_issue_labels),
            ("POST", rf"/issues/{n}/labels", self._add_issue_labels),
            ("PUT", rf"/issues/{n}/labels", self._set_issue_labels),
            ("DELETE", rf"/issues/{n}/labels", self._clear_issue_labels),
            ("DELETE", rf"/issues/{n}/labels/(?P<name>.+)", self._remove_issue_label),
            ("GET", r"/labels", self._list_labels),
            ("POST", r"/labels", self._create_label),
            ("GET", r"/labels/(?P<name>.+)", self._get_label),
            ("DELETE", r"/labels/(?P<name>.+)", self._delete_label),
            ("GET", r"/collaborators/(?P<login>[^/]+)/permission", self._get_permission),
            ("GET", r"/pulls", self._list_pulls),
            ("POST", r"/pulls", self._create_pull),
            ("GET", rf"/pulls/{n}", self._get_pull),
            ("PATCH", rf"/pulls/{n}", self._edit_pull),
            ("GET", r"/git/refs", self._list_refs),
            ("POST", r"/git/refs", self._create_ref),
            ("GET", r"/git/ref/(?P<ref>.+)", self._get_ref),
            ("GET", r"/git/refs/(?P<ref>.+)", self._get_ref),
            ("GET", r"/git/matching-refs/(?P<ref>.*)", self._list_matching_refs),
            ("PATCH", r"/git/refs/(?P<ref>.+)", self._update_ref),
            ("DELETE", r"/git/refs/(?P<ref>.+)", self._delete_ref),
            ("GET", r"/actions/artifacts", self._list_artifacts),
            ("GET", r"/actions/artifacts/(?P<id>\d+)", self._get_artifact),
            ("GET", r"/actions/artifacts/(?P<id>\d+)/zip", self._download_artifact),
            ("GET", r"/actions/runs/(?P<run>\d+)", self._get_run),
            ("GET", r"/actions/runs/(?P<run>\d+)/artifacts", self._list_run_artifacts),
        ]

        def compiled(
            table: list[tuple[str, str, Handler]],
        ) -> list[tuple[str, re.Pattern[str], Handler]]:
            return [(m, re.compile(p), h) for m, p, h in table]

        return compiled(top), compiled(repo)

    def _dispatch(self, call: _Call) -> _Reply:
        path = call.path.rstrip("/") or "/"
        m = re.fullmatch(r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)(?P<rest>/.*)?", path)
        repo: Repo | None = None
        rest = ""
        if m is not None:
            full = f"{_unquote(m['owner'])}/{_unquote(m['name'])}"
            repo = self.state.repo(full)
            rest = m["rest"] or ""
        else:
            m = re.fullmatch(r"/repositories/(?P<id>\d+)(?P<rest>/.*)?", path)
            if m is not None:
                repo = self.state.repo_by_id(int(m["id"]))
                rest = m["rest"] or ""
        if m is not None:
            if repo is None:
                raise _not_found()
            call.repo = repo
            call.link_path = f"/repositories/{repo.id}{rest}"
            table, target = self._repo_routes, rest
        else:
            call.link_path = path
            table, target = self._top_routes, path
        for method, pattern, handler in table:
            found = pattern.fullmatch(target)
            if found is not None and method == call.method:
                call.groups = {k: _unquote(v) for k, v in found.groupdict().items()}
                return handler(call)
        raise _not_found()

    def _paginate(self, call: _Call, items: Sequence[Any]) -> _Reply:
        per_page = _int_param(call.param("per_page"), 30)
        per_page = 30 if per_page < 1 else min(per_page, 100)
        page = max(1, _int_param(call.param("page"), 1))
        last = max(1, -(-len(items) // per_page))
        chunk = list(items[(page - 1) * per_page : page * per_page])
        reply = _Reply(200, chunk)
        if last > 1 or page > 1:
            kept = [(k, v) for k, values in call.query.items() if k != "page" for v in values]

            def link(to: int, rel: str) -> str:
                query = urllib.parse.urlencode([*kept, ("page", str(to))])
                return f'<{self.url}{call.link_path}?{query}>; rel="{rel}"'

            links = []
            if page > 1:
                links.append(link(page - 1, "prev"))
            if page < last:
                links.append(link(page + 1, "next"))
                links.append(link(last, "last"))
            if page > 1:
                links.append(link(1, "first"))
            reply.headers["Link"] = ", ".join(links)
        return reply

    # ------------------------------------------------------------------ JSON shapes

    def _user_json(self, login: str) -> dict[str, Any]:
        user = self.add_user(login)
        api = f"{self.url}/users/{urllib.parse.quote(user.login, safe='')}"
        html = (
            f"{self.html_url}/apps/{user.login.removesuffix('[bot]')}"
            if user.type == "Bot"
            else f"{self.html_url}/{user.login}"
        )
        return {
            "login": user.login,
            "id": user.id,
            "node_id": f"U_kgDO{user.id:08d}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": html,
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": user.type,
            "user_view_type": "public",
            "site_admin": user.site_admin,
        }

    def _full_user_json(self, login: str) -> dict[str, Any]:
        user = self.add_user(login)
        data = self._user_json(login)
        data.update(
            {
                "name": user.name,
                "company": None,
                "blog": "",
                "location": None,
                "email": None,
                "hireable": None,
                "bio": None,
                "twitter_username": None,
                "public_repos": sum(
                    1
                    for r in self.state.repos.values()
                    if r.owner.lower() == login.lower() and not r.private
                ),
                "public_gists": 0,
                "followers": 0,
                "following": 0,
                "created_at": "2020-01-01T00:00:00Z",
                "updated_at": "2020-01-01T00:00:00Z",
            }
        )
        return data

    def _repo_api(self, repo: Repo) -> str:
        return f"{self.url}/repos/{repo.owner}/{repo.name}"

    def _repo_json(self, repo: Repo, login: str | None = None) -> dict[str, Any]:
        api = self._repo_api(repo)
        html = f"{self.html_url}/{repo.full_name}"
        data: dict[str, Any] = {
            "id": repo.id,
            "node_id": f"R_kgDO{repo.id:08d}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self._user_json(repo.owner),
            "html_url": html,
            "description": repo.description,
            "fork": False,
            "url": api,
            "issues_url": f"{api}/issues{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "labels_url": f"{api}/labels{{/name}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "clone_url": f"{html}.git",
            "git_url": f"{html.replace('https://', 'git://')}.git",
            "ssh_url": f"git@{urllib.parse.urlsplit(self.html_url).netloc}:{repo.full_name}.git",
            "created_at": _iso(repo.created_at),
            "updated_at": _iso(repo.created_at),
            "pushed_at": _iso(repo.created_at),
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
            "archived": False,
            "disabled": False,
            "has_issues": True,
            "open_issues_count": sum(1 for i in repo.issues.values() if i.state == "open"),
        }
        if login is not None:
            role = self._role(repo, login)
            data["permissions"] = _permission_flags(role)
        return data

    def _label_json(self, repo: Repo, name: str) -> dict[str, Any]:
        label = repo.label(name) or Label(name)
        return {
            "id": label.id,
            "node_id": f"LA_kwDO{label.id:08d}",
            "url": f"{self._repo_api(repo)}/labels/{urllib.parse.quote(label.name, safe='')}",
            "name": label.name,
            "color": label.color,
            "default": label.default,
            "description": label.description,
        }

    def _association(self, repo: Repo, login: str) -> str:
        if login.lower() == repo.owner.lower():
            return "OWNER"
        role = repo.role_of(login)
        return "COLLABORATOR" if role not in (None, "none") else "NONE"

    def _issue_json(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        api = f"{self._repo_api(repo)}/issues/{issue.number}"
        kind = "pull" if issue.pull_request else "issues"
        html = f"{self.html_url}/{repo.full_name}/{kind}/{issue.number}"
        data: dict[str, Any] = {
            "url": api,
            "repository_url": self._repo_api(repo),
            "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments",
            "events_url": f"{api}/events",
            "html_url": html,
            "id": issue.id,
            "node_id": f"I_kwDO{issue.id:08d}",
            "number": issue.number,
            "title": issue.title,
            "user": self._user_json(issue.user),
            "labels": [self._label_json(repo, name) for name in issue.labels],
            "state": issue.state,
            "locked": issue.locked,
            "assignee": self._user_json(issue.assignees[0]) if issue.assignees else None,
            "assignees": [self._user_json(a) for a in issue.assignees],
            "milestone": None,
            "comments": len(repo.comments_on(issue.number)),
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.updated_at),
            "closed_at": _iso(issue.closed_at),
            "author_association": self._association(repo, issue.user),
            "active_lock_reason": None,
            "body": issue.body,
            "closed_by": None,
            "timeline_url": f"{api}/timeline",
            "performed_via_github_app": None,
            "state_reason": issue.state_reason,
        }
        if issue.pull_request:
            pull = repo.pulls.get(issue.number)
            pulls_api = f"{self._repo_api(repo)}/pulls/{issue.number}"
            data["draft"] = pull.draft if pull else False
            data["pull_request"] = {
                "url": pulls_api,
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": _iso(pull.merged_at) if pull else None,
            }
        return data

    def _comment_json(self, repo: Repo, comment: Comment) -> dict[str, Any]:
        issue = repo.issues.get(comment.issue_number)
        kind = "pull" if issue is not None and issue.pull_request else "issues"
        return {
            "url": f"{self._repo_api(repo)}/issues/comments/{comment.id}",
            "html_url": (
                f"{self.html_url}/{repo.full_name}/{kind}/{comment.issue_number}"
                f"#issuecomment-{comment.id}"
            ),
            "issue_url": f"{self._repo_api(repo)}/issues/{comment.issue_number}",
            "id": comment.id,
            "node_id": f"IC_kwDO{comment.id:08d}",
            "user": self._user_json(comment.user),
            "created_at": _iso(comment.created_at),
            "updated_at": _iso(comment.updated_at),
            "author_association": self._association(repo, comment.user),
            "body": comment.body,
            "performed_via_github_app": None,
        }

    def _event_json(self, repo: Repo, event: IssueEvent) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": event.id,
            "node_id": f"LE_lADO{event.id:08d}",
            "url": f"{self._repo_api(repo)}/issues/events/{event.id}",
            "actor": self._user_json(event.actor),
            "event": event.event,
            "commit_id": None,
            "commit_url": None,
            "created_at": _iso(event.created_at),
            "performed_via_github_app": None,
        }
        if event.label is not None:
            label = repo.label(event.label)
            data["label"] = {"name": event.label, "color": label.color if label else "ededed"}
        return data

    def _ref_json(self, repo: Repo, ref: str) -> dict[str, Any]:
        sha = repo.refs[ref]
        return {
            "ref": ref,
            "node_id": f"REF_kwDO{int(sha[:8], 16):08d}",
            "url": f"{self._repo_api(repo)}/git/{ref}",
            "object": {
                "sha": sha,
                "type": "commit",
                "url": f"{self._repo_api(repo)}/git/commits/{sha}",
            },
        }

    def _pull_json(self, repo: Repo, pull: PullRequest) -> dict[str, Any]:
        issue = repo.issues[pull.number]
        api = f"{self._repo_api(repo)}/pulls/{pull.number}"
        html = f"{self.html_url}/{repo.full_name}/pull/{pull.number}"

        def part(branch: str, owner: str) -> dict[str, Any]:
            return {
                "label": f"{owner}:{branch}",
                "ref": branch,
                "sha": repo.refs.get(f"refs/heads/{branch}", "0" * 40),
                "user": self._user_json(owner),
                "repo": self._repo_json(repo),
            }

        return {
            "url": api,
            "id": pull.id,
            "node_id": f"PR_kwDO{pull.id:08d}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{self._repo_api(repo)}/issues/{pull.number}",
            "commits_url": f"{api}/commits",
            "review_comments_url": f"{api}/comments",
            "comments_url": f"{self._repo_api(repo)}/issues/{pull.number}/comments",
            "number": pull.number,
            "state": issue.state,
            "locked": issue.locked,
            "title": issue.title,
            "user": self._user_json(issue.user),
            "body": issue.body,
            "labels": [self._label_json(repo, name) for name in issue.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.updated_at),
            "closed_at": _iso(issue.closed_at),
            "merged_at": _iso(pull.merged_at),
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": part(pull.head, pull.head_owner or repo.owner),
            "base": part(pull.base, repo.owner),
            "author_association": self._association(repo, issue.user),
            "auto_merge": None,
            "draft": pull.draft,
            "merged": pull.merged_at is not None,
            "mergeable": None,
            "mergeable_state": "unknown",
            "maintainer_can_modify": pull.maintainer_can_modify,
            "comments": len(repo.comments_on(pull.number)),
            "_links": {
                "self": {"href": api},
                "html": {"href": html},
                "issue": {"href": f"{self._repo_api(repo)}/issues/{pull.number}"},
            },
        }

    # ------------------------------------------------------------------ shared behaviour

    def _role(self, repo: Repo, login: str) -> str:
        role = repo.role_of(login)
        if role is not None:
            return role
        return "none" if repo.private else "read"

    def _touch(self, issue: Issue) -> None:
        issue.updated_at = _now()

    def _apply_labels(
        self,
        repo: Repo,
        issue: Issue,
        names: Sequence[str],
        actor: str,
        at: datetime | None = None,
    ) -> None:
        for name in names:
            label = repo.label(name)
            if label is None:  # GitHub creates labels that do not exist yet
                label = Label(name)
                repo.labels[name.lower()] = label
            if any(existing.lower() == name.lower() for existing in issue.labels):
                continue
            issue.labels.append(label.name)
            repo.events.append(
                IssueEvent(issue.number, "labeled", actor, label.name, created_at=at or _now())
            )
            issue.updated_at = at or _now()

    def _remove_label(self, repo: Repo, issue: Issue, name: str, actor: str) -> None:
        for existing in issue.labels:
            if existing.lower() == name.lower():
                issue.labels.remove(existing)
                repo.events.append(IssueEvent(issue.number, "unlabeled", actor, existing))
                self._touch(issue)
                return
        raise _ApiError(
            404,
            "Label does not exist",
            doc="https://docs.github.com/rest/issues/labels#remove-a-label-from-an-issue",
        )

    def _set_state(self, repo: Repo, issue: Issue, state: str, actor: str) -> None:
        if state == issue.state:
            return
        issue.state = state
        if state == "closed":
            issue.closed_at = _now()
            issue.state_reason = issue.state_reason or "completed"
        else:
            issue.closed_at = None
            issue.state_reason = "reopened"
        repo.events.append(
            IssueEvent(issue.number, "closed" if state == "closed" else "reopened", actor)
        )
        self._touch(issue)

    def _issue(self, call: _Call) -> Issue:
        issue = call.the_repo.issues.get(call.number())
        if issue is None:
            raise _not_found()
        return issue

    def _label_names(self, body: Any) -> list[str]:
        """Labels as GitHub accepts them: a list, or ``{"labels": [...]}``, of names or
        ``{"name": ...}`` objects."""
        items = body.get("labels") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise _invalid("Label", "labels")
        names = []
        for item in items:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str) or not name.strip():
                raise _invalid("Label", "name")
            names.append(name)
        return names

    # ------------------------------------------------------------------ top-level endpoints

    def _get_authenticated_user(self, call: _Call) -> _Reply:
        user = self.add_user(call.login)
        if user.type == "Bot":  # installation tokens such as GITHUB_TOKEN
            raise _ApiError(
                403,
                "Resource not accessible by integration",
                doc="https://docs.github.com/rest/users/users#get-the-authenticated-user",
            )
        return _Reply(200, self._full_user_json(call.login))

    def _get_user(self, call: _Call) -> _Reply:
        user = self.state.user(call.groups["login"])
        if user is None:
            raise _not_found()
        return _Reply(200, self._full_user_json(user.login))

    def _get_rate_limit(self, call: _Call) -> _Reply:
        rate = self.state.rate
        core = {"limit": rate.limit, "used": rate.used, "remaining": rate.remaining}
        core["reset"] = rate.reset

        def fresh(limit: int) -> dict[str, int]:
            return {"limit": limit, "used": 0, "remaining": limit, "reset": rate.reset}

        return _Reply(
            200,
            {
                "resources": {
                    "core": core,
                    "search": fresh(30),
                    "graphql": fresh(5000),
                    "integration_manifest": fresh(5000),
                    "code_search": fresh(10),
                },
                "rate": dict(core),
            },
        )

    # ------------------------------------------------------------------ repository endpoints

    def _get_repo(self, call: _Call) -> _Reply:
        return _Reply(200, self._repo_json(call.the_repo, call.login))

    def _list_issues(self, call: _Call) -> _Reply:
        repo = call.the_repo
        state = call.param("state", "open")
        if state not in ("open", "closed", "all"):
            raise _invalid("Issue", "state")
        sort = call.param("sort", "created")
        if sort not in ("created", "updated", "comments"):
            raise _invalid("Issue", "sort")
        direction = call.param("direction", "desc")
        if direction not in ("asc", "desc"):
            raise _invalid("Issue", "direction")
        wanted = [w.strip().lower() for w in (call.param("labels") or "").split(",") if w.strip()]
        creator = call.param("creator")
        since = _parse_time(call.param("since"))
        issues = []
        for issue in repo.issues.values():
            if state != "all" and issue.state != state:
                continue
            have = {name.lower() for name in issue.labels}
            if any(w not in have for w in wanted):
                continue
            if creator and issue.user.lower() != creator.lower():
                continue
            if since and issue.updated_at and issue.updated_at < since:
                continue
            issues.append(issue)

        def key(issue: Issue) -> tuple[Any, int]:
            if sort == "updated":
                return (issue.updated_at, issue.number)
            if sort == "comments":
                return (len(repo.comments_on(issue.number)), issue.number)
            return (issue.created_at, issue.number)

        issues.sort(key=key, reverse=direction == "desc")
        return self._paginate(call, [self._issue_json(repo, i) for i in issues])

    def _create_issue(self, call: _Call) -> _Reply:
        repo = call.the_repo
        title = call.text("title", required=True)
        assert title is not None
        body = call.text("body")
        labels = self._label_names(call.obj()["labels"]) if "labels" in call.obj() else []
        issue = Issue(repo.next_number(), title, body, call.login)
        repo.issues[issue.number] = issue
        self._apply_labels(repo, issue, labels, call.login)
        return _Reply(201, self._issue_json(repo, issue))

    def _get_issue(self, call: _Call) -> _Reply:
        return _Reply(200, self._issue_json(call.the_repo, self._issue(call)))

    def _edit_issue(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        body = call.obj()
        title = call.text("title")
        if title is not None:
            issue.title = title
        if "body" in body:
            issue.body = call.text("body")
        if "labels" in body:
            self._replace_labels(repo, issue, self._label_names(body["labels"]), call.login)
        reason = call.text("state_reason")
        if reason is not None:
            issue.state_reason = reason
        state = call.text("state")
        if state is not None:
            if state not in ("open", "closed"):
                raise _invalid("Issue", "state")
            self._set_state(repo, issue, state, call.login)
        self._touch(issue)
        return _Reply(200, self._issue_json(repo, issue))

    def _list_events(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        events = [self._event_json(repo, e) for e in repo.events_on(issue.number)]
        return self._paginate(call, events)

    def _list_comments(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        since = _parse_time(call.param("since"))
        comments = [
            self._comment_json(repo, c)
            for c in repo.comments_on(issue.number)
            if since is None or (c.updated_at is not None and c.updated_at >= since)
        ]
        return self._paginate(call, comments)

    def _list_repo_comments(self, call: _Call) -> _Reply:
        repo = call.the_repo
        since = _parse_time(call.param("since"))
        comments = sorted(repo.comments.values(), key=lambda c: c.id)
        if call.param("sort") == "updated":
            comments.sort(key=lambda c: (c.updated_at, c.id))
        if call.param("direction") == "desc":
            comments.reverse()
        return self._paginate(
            call,
            [
                self._comment_json(repo, c)
                for c in comments
                if since is None or (c.updated_at is not None and c.updated_at >= since)
            ],
        )

    def _create_comment(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        text = call.text("body", required=True)
        assert text is not None
        comment = Comment(issue.number, text, call.login)
        repo.comments[comment.id] = comment
        self._touch(issue)
        return _Reply(201, self._comment_json(repo, comment))

    def _comment(self, call: _Call) -> Comment:
        comment = call.the_repo.comments.get(int(call.groups["id"]))
        if comment is None:
            raise _not_found()
        return comment

    def _get_comment(self, call: _Call) -> _Reply:
        return _Reply(200, self._comment_json(call.the_repo, self._comment(call)))

    def _edit_comment(self, call: _Call) -> _Reply:
        comment = self._comment(call)
        text = call.text("body", required=True)
        assert text is not None
        comment.body = text
        comment.updated_at = _now()
        return _Reply(200, self._comment_json(call.the_repo, comment))

    def _delete_comment(self, call: _Call) -> _Reply:
        comment = self._comment(call)
        del call.the_repo.comments[comment.id]
        return _Reply(204)

    def _list_issue_labels(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        return self._paginate(call, [self._label_json(repo, n) for n in issue.labels])

    def _add_issue_labels(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        self._apply_labels(repo, issue, self._label_names(call.body), call.login)
        return _Reply(200, [self._label_json(repo, n) for n in issue.labels])

    def _replace_labels(self, repo: Repo, issue: Issue, names: list[str], actor: str) -> None:
        keep = {n.lower() for n in names}
        for existing in list(issue.labels):
            if existing.lower() not in keep:
                self._remove_label(repo, issue, existing, actor)
        self._apply_labels(repo, issue, names, actor)

    def _set_issue_labels(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        names = [] if call.body is None else self._label_names(call.body)
        self._replace_labels(repo, issue, names, call.login)
        return _Reply(200, [self._label_json(repo, n) for n in issue.labels])

    def _clear_issue_labels(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        self._replace_labels(repo, issue, [], call.login)
        return _Reply(204)

    def _remove_issue_label(self, call: _Call) -> _Reply:
        repo, issue = call.the_repo, self._issue(call)
        self._remove_label(repo, issue, call.groups["name"], call.login)
        return _Reply(200, [self._label_json(repo, n) for n in issue.labels])

    def _list_labels(self, call: _Call) -> _Reply:
        repo = call.the_repo
        return self._paginate(
            call, [self._label_json(repo, lb.name) for lb in repo.labels.values()]
        )

    def _create_label(self, call: _Call) -> _Reply:
        repo = call.the_repo
        name = call.text("name", required=True)
        assert name is not None
        color = (call.text("color") or "ededed").removeprefix("#")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", color):
            raise _invalid("Label", "color")
        if repo.label(name) is not None:
            raise _invalid("Label", "name", "already_exists")
        label = Label(name, color.lower(), call.text("description"))
        repo.labels[name.lower()] = label
        return _Reply(201, self._label_json(repo, name))

    def _get_label(self, call: _Call) -> _Reply:
        repo = call.the_repo
        if repo.label(call.groups["name"]) is None:
            raise _not_found()
        return _Reply(200, self._label_json(repo, call.groups["name"]))

    def _delete_label(self, call: _Call) -> _Reply:
        repo = call.the_repo
        label = repo.label(call.groups["name"])
        if label is None:
            raise _not_found()
        del repo.labels[label.name.lower()]
        for issue in repo.issues.values():
            issue.labels = [n for n in issue.labels if n.lower() != label.name.lower()]
        return _Reply(204)

    def _get_permission(self, call: _Call) -> _Reply:
        repo = call.the_repo
        login = call.groups["login"]
        user = self.state.user(login)
        if user is None and repo.role_of(login) is None:
            raise _not_found()
        role = self._role(repo, login)
        data = self._user_json(user.login if user else login)
        data["permissions"] = _permission_flags(role)
        data["role_name"] = role
        return _Reply(
            200,
            {"permission": _LEGACY_PERMISSION.get(role, "read"), "role_name": role, "user": data},
        )

    def _list_pulls(self, call: _Call) -> _Reply:
        repo = call.the_repo
        state = call.param("state", "open")
        if state not in ("open", "closed", "all"):
            raise _invalid("PullRequest", "state")
        head = call.param("head")
        head_owner, head_branch = None, None
        if head and ":" in head:  # without OWNER: GitHub ignores the filter entirely
            head_owner, _, head_branch = head.partition(":")
        base = call.param("base")
        direction = call.param("direction", "desc")
        pulls = []
        for pull in repo.pulls.values():
            issue = repo.issues[pull.number]
            if state != "all" and issue.state != state:
                continue
            if head_owner is not None and (
                (pull.head_owner or repo.owner).lower() != head_owner.lower()
                or pull.head != head_branch
            ):
                continue
            if base and pull.base != base:
                continue
            pulls.append(pull)
        sort = call.param("sort", "created")
        if sort == "updated":
            pulls.sort(key=lambda p: (repo.issues[p.number].updated_at, p.number))
        else:
            pulls.sort(key=lambda p: (repo.issues[p.number].created_at, p.number))
        if direction != "asc":
            pulls.reverse()
        return self._paginate(call, [self._pull_json(repo, p) for p in pulls])

    def _branch_exists(self, repo: Repo, branch: str) -> bool:
        ref = f"refs/heads/{branch}"
        if ref not in repo.refs and repo.create_missing_refs:
            repo.refs[ref] = _fake_sha(repo.full_name, branch)
        return ref in repo.refs

    def _create_pull(self, call: _Call) -> _Reply:
        repo = call.the_repo
        head = call.text("head")
        base = call.text("base")
        if not head:
            raise _invalid("PullRequest", "head", "missing_field")
        if not base:
            raise _invalid("PullRequest", "base", "missing_field")
        title = call.text("title")
        if title is None and call.obj().get("issue") is None:
            raise _invalid("PullRequest", "title", "missing_field")
        owner, _, branch = head.rpartition(":")
        owner = owner or repo.owner
        if owner.lower() != repo.owner.lower() or not self._branch_exists(repo, branch):
            raise _invalid("PullRequest", "head")
        if not self._branch_exists(repo, base):
            raise _invalid("PullRequest", "base")
        if branch == base:
            raise _custom_invalid("PullRequest", f"No commits between {base} and {branch}")
        for pull in repo.pulls.values():
            if (
                pull.head == branch
                and pull.base == base
                and repo.issues[pull.number].state == "open"
            ):
                raise _custom_invalid(
                    "PullRequest", f"A pull request already exists for {repo.owner}:{branch}."
                )
        issue = Issue(repo.next_number(), title or "", call.text("body"), call.login)
        issue.pull_request = True
        repo.issues[issue.number] = issue
        pull = PullRequest(
            issue.number,
            branch,
            base,
            head_owner=repo.owner,
            draft=bool(call.flag("draft")),
            maintainer_can_modify=call.flag("maintainer_can_modify") is not False,
        )
        repo.pulls[issue.number] = pull
        return _Reply(201, self._pull_json(repo, pull))

    def _pull(self, call: _Call) -> PullRequest:
        pull = call.the_repo.pulls.get(call.number())
        if pull is None:
            raise _not_found()
        return pull

    def _get_pull(self, call: _Call) -> _Reply:
        return _Reply(200, self._pull_json(call.the_repo, self._pull(call)))

    def _edit_pull(self, call: _Call) -> _Reply:
        repo, pull = call.the_repo, self._pull(call)
        issue = repo.issues[pull.number]
        title = call.text("title")
        if title is not None:
            issue.title = title
        if "body" in call.obj():
            issue.body = call.text("body")
        base = call.text("base")
        if base is not None:
            if not self._branch_exists(repo, base):
                raise _invalid("PullRequest", "base")
            pull.base = base
        flag = call.flag("maintainer_can_modify")
        if flag is not None:
            pull.maintainer_can_modify = flag
        state = call.text("state")
        if state is not None:
            if state not in ("open", "closed"):
                raise _invalid("PullRequest", "state")
            self._set_state(repo, issue, state, call.login)
        self._touch(issue)
        return _Reply(200, self._pull_json(repo, pull))

    def _list_refs(self, call: _Call) -> _Reply:
        repo = call.the_repo
        return self._paginate(call, [self._ref_json(repo, r) for r in sorted(repo.refs)])

    def _list_matching_refs(self, call: _Call) -> _Reply:
        repo = call.the_repo
        prefix = "refs/" + call.groups["ref"]
        refs = [self._ref_json(repo, r) for r in sorted(repo.refs) if r.startswith(prefix)]
        return self._paginate(call, refs)

    def _get_ref(self, call: _Call) -> _Reply:
        repo = call.the_repo
        ref = "refs/" + call.groups["ref"].removeprefix("refs/")
        if ref not in repo.refs:
            raise _not_found()
        return _Reply(200, self._ref_json(repo, ref))

    def _create_ref(self, call: _Call) -> _Reply:
        repo = call.the_repo
        ref = call.text("ref", required=True)
        sha = call.text("sha", required=True)
        assert ref is not None and sha is not None
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise _ApiError(422, "Reference name must start with 'refs/' and have two slashes.")
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise _ApiError(422, "Object does not exist")
        if ref in repo.refs:
            raise _ApiError(422, "Reference already exists")
        repo.refs[ref] = sha
        return _Reply(201, self._ref_json(repo, ref))

    def _update_ref(self, call: _Call) -> _Reply:
        repo = call.the_repo
        ref = "refs/" + call.groups["ref"].removeprefix("refs/")
        sha = call.text("sha", required=True)
        assert sha is not None
        if ref not in repo.refs:
            raise _ApiError(422, "Reference does not exist")
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise _ApiError(422, "Object does not exist")
        repo.refs[ref] = sha
        return _Reply(200, self._ref_json(repo, ref))

    def _delete_ref(self, call: _Call) -> _Reply:
        repo = call.the_repo
        ref = "refs/" + call.groups["ref"].removeprefix("refs/")
        if ref not in repo.refs:
            raise _ApiError(422, "Reference does not exist")
        del repo.refs[ref]
        return _Reply(204)

    # ------------------------------------------------------------------ Actions endpoints

    def _actions_allowed(self, call: _Call, doc: str) -> None:
        if call.token in self.state.no_actions:
            raise _ApiError(403, "Resource not accessible by integration", doc=doc)

    def _run(self, call: _Call) -> WorkflowRun:
        run = call.the_repo.runs.get(int(call.groups["run"]))
        if run is None:
            raise _not_found()
        return run

    def _artifact(self, call: _Call) -> Artifact:
        artifact = call.the_repo.artifacts.get(int(call.groups["id"]))
        if artifact is None:
            raise _not_found()
        return artifact

    def _artifact_list(self, call: _Call, artifacts: Iterable[Artifact]) -> _Reply:
        """Newest first, optionally only those called ``name``, paginated under
        ``{"total_count", "artifacts"}`` as GitHub wraps them."""
        name = call.param("name")
        chosen = sorted(
            (a for a in artifacts if name is None or a.name == name),
            key=lambda a: (a.created_at, a.id),
            reverse=True,
        )
        reply = self._paginate(call, [self._artifact_json(call.the_repo, a) for a in chosen])
        reply.body = {"total_count": len(chosen), "artifacts": reply.body}
        return reply

    def _list_artifacts(self, call: _Call) -> _Reply:
        self._actions_allowed(call, f"{_ARTIFACTS_DOCS}#list-artifacts-for-a-repository")
        return self._artifact_list(call, call.the_repo.artifacts.values())

    def _list_run_artifacts(self, call: _Call) -> _Reply:
        self._actions_allowed(call, f"{_ARTIFACTS_DOCS}#list-workflow-run-artifacts")
        run = self._run(call)
        return self._artifact_list(
            call, (a for a in call.the_repo.artifacts.values() if a.run_id == run.id)
        )

    def _get_artifact(self, call: _Call) -> _Reply:
        self._actions_allowed(call, f"{_ARTIFACTS_DOCS}#get-an-artifact")
        return _Reply(200, self._artifact_json(call.the_repo, self._artifact(call)))

    def _download_artifact(self, call: _Call) -> _Reply:
        """302 to a fresh signed blob URL on this server, which needs no token."""
        doc = f"{_ARTIFACTS_DOCS}#download-an-artifact"
        self._actions_allowed(call, doc)
        artifact = self._artifact(call)
        if artifact.expired:
            raise _ApiError(410, "Artifact has expired", doc=doc)
        key, signature = secrets.token_urlsafe(16), secrets.token_hex(16)
        self.state.blobs[key] = (signature, call.the_repo.full_name, artifact.id)
        location = f"{self.url}{_BLOB_PATH}{key}?sv=2025-01-05&sp=r&sr=b&sig={signature}"
        return _Reply(302, headers={"Location": location})

    def _get_blob(self, call: _Call) -> _Reply:
        """The zip behind a signed URL, answered the way Azure Blob Storage would."""
        key = call.path.removeprefix(_BLOB_PATH)
        signature, repo_name, artifact_id = self.state.blobs.get(key, ("", "", 0))
        repo = self.state.repo(repo_name)
        artifact = repo.artifacts.get(artifact_id) if repo is not None else None
        if artifact is None:
            return _blob_error(404, "BlobNotFound", "The specified blob does not exist.")
        if call.param("sig") != signature:
            return _blob_error(
                403, "AuthenticationFailed", "Server failed to authenticate the request."
            )
        return _Reply(
            200,
            raw=artifact.data,
            headers={
                "Content-Type": "application/zip",
                "Content-MD5": base64.b64encode(
                    hashlib.md5(artifact.data, usedforsecurity=False).digest()
                ).decode(),
                "x-ms-blob-type": "BlockBlob",
                "x-ms-version": "2025-01-05",
            },
        )

    def _get_run(self, call: _Call) -> _Reply:
        self._actions_allowed(
            call, "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run"
        )
        return _Reply(200, self._run_json(call.the_repo, self._run(call)))

    def _artifact_json(self, repo: Repo, artifact: Artifact) -> dict[str, Any]:
        api = f"{self._repo_api(repo)}/actions/artifacts/{artifact.id}"
        run = repo.runs.get(artifact.run_id)
        return {
            "id": artifact.id,
            "node_id": f"MDg6QXJ0aWZhY3Q{artifact.id:08d}",
            "name": artifact.name,
            "size_in_bytes": len(artifact.data),
            "url": api,
            "archive_download_url": f"{api}/zip",
            "expired": artifact.expired,
            "created_at": _iso(artifact.created_at),
            "updated_at": _iso(artifact.created_at),
            "expires_at": _iso(artifact.expires_at),
            "digest": artifact.digest,
            "workflow_run": None
            if run is None
            else {
                "id": run.id,
                "repository_id": repo.id,
                "head_repository_id": repo.id,
                "head_branch": run.head_branch,
                "head_sha": run.head_sha,
            },
        }

    def _run_json(self, repo: Repo, run: WorkflowRun) -> dict[str, Any]:
        api = f"{self._repo_api(repo)}/actions/runs/{run.id}"
        return {
            "id": run.id,
            "name": run.name,
            "node_id": f"WFR_kwLO{run.id:08d}",
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "path": run.path,
            "display_title": run.name,
            "run_number": run.run_number,
            "run_attempt": 1,
            "event": run.event,
            "status": "completed",
            "conclusion": "success",
            "workflow_id": run.workflow_id,
            "url": api,
            "html_url": f"{self.html_url}/{repo.full_name}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.created_at),
            "run_started_at": _iso(run.created_at),
            "jobs_url": f"{api}/jobs",
            "logs_url": f"{api}/logs",
            "artifacts_url": f"{api}/artifacts",
            "cancel_url": f"{api}/cancel",
            "rerun_url": f"{api}/rerun",
            "workflow_url": f"{self._repo_api(repo)}/actions/workflows/{run.workflow_id}",
            "repository": self._repo_json(repo),
            "head_repository": self._repo_json(repo),
        }


# --------------------------------------------------------------------------- helpers


def _blob_error(status: int, code: str, message: str) -> _Reply:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    )
    return _Reply(
        status,
        raw=body.encode(),
        headers={"Content-Type": "application/xml", "x-ms-error-code": code},
    )


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    """Headers to keep: credentials replaced, so the log can be shown or saved safely."""
    out = {}
    for name, value in headers.items():
        if name.lower() in ("authorization", "cookie", "proxy-authorization"):
            scheme = value.strip().partition(" ")[0]
            value = f"{scheme} <redacted>" if scheme else "<redacted>"
        out[name] = value
    return out


def _credential(authorization: str | None) -> str:
    """The token of a ``token ...`` or ``Bearer ...`` Authorization header; "" otherwise."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    return credential.strip() if scheme.lower() in ("token", "bearer") else ""


def _auth_message(authorization: str | None) -> str:
    return "Bad credentials" if authorization else "Requires authentication"


def _unquote(text: str) -> str:
    return urllib.parse.unquote(text)


def _int_param(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _invalid("Issue", "since") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _permission_flags(role: str) -> dict[str, bool]:
    rank = ROLES.index(role) if role in ROLES else ROLES.index("read")
    return {
        "admin": rank <= ROLES.index("admin"),
        "maintain": rank <= ROLES.index("maintain"),
        "push": rank <= ROLES.index("write"),
        "triage": rank <= ROLES.index("triage"),
        "pull": rank <= ROLES.index("read"),
    }
