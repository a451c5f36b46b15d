"""The queue carried over between workflow runs: an earlier run's artifact, restored.

Deciding is pure: :func:`lookup_from_env` (what to look for), :func:`choose` (which
artifact: the newest unexpired one with the exact name, from an earlier run of the same
workflow on the same branch) and :func:`check_members` (whether a zip holds only run files,
safely). Acting: :func:`restore_previous` (a batch, before its sources load),
:func:`pull_run` and :func:`pull_artifact` (a given run's state, for ``pull``), all through
:func:`unpack`.

The zip is fetched from ``archive_download_url`` with the token and without following
redirects; GitHub answers 302 with a signed blob URL, which is fetched without the token
(the signature is the credential; the token must not reach the blob host).

Unpacking extracts into a staging directory inside ``.orchestra/`` and only then moves each
file into place with ``os.replace``, task records last: a crash leaves every file either
as it was or complete from the artifact, and a bad zip leaves the queue untouched.

Every way of not restoring raises :class:`StateUnavailable` with a one-line reason (no
token, no signed URL, no traceback): the caller makes it a notice and starts a fresh queue.
"""

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urljoin, urlsplit

import github
import requests
from github.Artifact import Artifact
from github.Repository import Repository
from requests.auth import AuthBase

from orchestra_ci import __version__, atomic
from orchestra_ci.errors import OrchestraError, UsageError, one_line
from orchestra_ci.ghclient import call
from orchestra_ci.record import TASK_ID_PATTERN
from orchestra_ci.store import MANIFEST_FILE, RESULTS_FILE, Store

T = TypeVar("T")

Kind = Literal[
    "none", "forbidden", "expired", "missing", "corrupt", "unsafe", "network", "rate_limit", "io"
]

_ID = f"(?!\\.){TASK_ID_PATTERN.pattern}"  # a task id that cannot pass for a temp file
_RUN_FILE = re.compile(
    f"tasks/(?P<task>{_ID})\\.(?P<kind>json|done|error)|logs/{_ID}\\.log|patches/{_ID}\\.patch"
    f"|{re.escape(RESULTS_FILE)}|{re.escape(MANIFEST_FILE)}"
)
_DIRECTORIES = frozenset({"tasks/", "logs/", "patches/"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_STAGING = ".restore-"
_CHUNK = 1 << 16
_PROBLEMS_SHOWN = 3


class StateUnavailable(OrchestraError):
    """The earlier state cannot be restored; ``str()`` is the one-line reason and ``kind``
    says why: ``none`` (no such artifact, e.g. the first run), ``forbidden`` (no
    ``actions: read``, or the token was refused), ``expired``, ``missing`` (deleted, or no
    such run), ``corrupt``, ``unsafe`` (the zip holds what a queue does not), ``network``
    (unreachable, or GitHub kept failing), ``rate_limit`` or ``io`` (the queue directory
    could not be written)."""

    def __init__(self, reason: str, kind: Kind) -> None:
        super().__init__(one_line(reason))
        self.kind: Kind = kind


@dataclass(frozen=True)
class Limits:
    """Caps on what a restore downloads and unpacks, and its patience with the network."""

    max_download: int = 1 << 30  # bytes of zip
    max_unpacked: int = 4 << 30  # bytes of files in total
    max_members: int = 100_000
    timeout: float = 60.0  # seconds to connect, and between bytes of an answer
    attempts: int = 4  # per request, for timeouts, dropped connections, 5xx and 429
    retry_wait: float = 1.0  # seconds before the second attempt, doubling after


@dataclass(frozen=True)
class Lookup:
    """What to restore: the artifact ``name`` from an earlier run of the current run's
    workflow on ``branch`` (``None``: any branch). ``run_id`` is the current run: never
    restored from, and where the workflow comes from (``None``: any workflow)."""

    name: str
    branch: str | None = None
    run_id: int | None = None


@dataclass(frozen=True)
class Candidate:
    """An artifact as GitHub lists it."""

    artifact_id: int
    name: str
    run_id: int | None
    branch: str | None
    head_sha: str | None
    expired: bool
    created_at: datetime
    size: int
    download_url: str


@dataclass(frozen=True)
class Unpacked:
    files: int  # files put in place
    skipped: tuple[str, ...]  # "path: reason" for each file left out


@dataclass(frozen=True)
class Restored:
    """Where the restored queue came from, for ``restoredFrom`` and the summary."""

    run_id: int | None  # None only for an artifact GitHub no longer ties to a run
    artifact_id: int
    artifact_name: str
    created_at: datetime
    age_seconds: float
    files: int
    skipped: tuple[str, ...]
    head_sha: str | None = None  # the commit the earlier run was for


# -- deciding ----------------------------------------------------------------------------


def lookup_from_env(name: str, env: Mapping[str, str]) -> Lookup:
    """The lookup for a workflow run: its branch is ``GITHUB_HEAD_REF`` (set for pull
    requests) or else ``GITHUB_REF_NAME``; ``GITHUB_RUN_ID`` is the current run."""
    branch = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME") or None
    run_id = env.get("GITHUB_RUN_ID", "")
    return Lookup(name, branch, int(run_id) if run_id.isdigit() else None)


def _newest_first(candidates: Iterable[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.created_at, c.artifact_id), reverse=True)


def _same_name_and_branch(candidate: Candidate, lookup: Lookup) -> bool:
    return (
        candidate.name == lookup.name
        and candidate.run_id is not None
        and candidate.run_id != lookup.run_id
        and (lookup.branch is None or candidate.branch == lookup.branch)
    )


def choose(
    candidates: Iterable[Candidate],
    lookup: Lookup,
    workflow_id: int | None,
    workflow_of: Callable[[int], int | None],
) -> Candidate | None:
    """The newest unexpired artifact called ``lookup.name`` from another run than
    ``lookup.run_id``, on ``lookup.branch``, whose run belongs to ``workflow_id`` (``None``:
    any). An artifact does not say its workflow: ``workflow_of(run_id)`` is asked, newest
    candidate first, only until one matches (``None``: the run is gone)."""
    for candidate in _newest_first(candidates):
        if candidate.expired or not _same_name_and_branch(candidate, lookup):
            continue
        assert candidate.run_id is not None  # checked by _same_name_and_branch
        if workflow_id is None or workflow_of(candidate.run_id) == workflow_id:
            return candidate
    return None


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:77] + "...")


def _member_problem(info: zipfile.ZipInfo, seen: set[str]) -> str | None:
    name = info.filename
    if name in seen:
        return f"{_shown(name)} appears twice"
    seen.add(name)
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return f"{_shown(name)} is an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return f"{_shown(name)} has '..' in its path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"{_shown(name)} is a symbolic link"
    if info.flag_bits & 0x1:
        return f"{_shown(name)} is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"{_shown(name)} uses an unsupported compression method"
    if name in _DIRECTORIES or _RUN_FILE.fullmatch(name):
        return None
    return f"{_shown(name)} is not a run file"


def check_members(members: Sequence[zipfile.ZipInfo], limits: Limits) -> list[str]:
    """What makes a zip unfit to unpack into ``.orchestra/``, as one phrase per problem
    (none: it may be unpacked). Only run files (task records and sentinels, logs, patches,
    ``results.json``, ``run.json``) and their directories; no absolute paths, ``..``,
    symbolic links, duplicates, encryption or exotic compression; at most
    ``limits.max_members`` members and ``limits.max_unpacked`` bytes once unpacked (the
    sizes the zip declares, which extraction holds it to)."""
    problems: list[str] = []
    if len(members) > limits.max_members:
        problems.append(f"it has {len(members)} members, more than {limits.max_members}")
    total = sum(info.file_size for info in members)
    if total > limits.max_unpacked:
        problems.append(f"it unpacks to {total} bytes, more than {limits.max_unpacked}")
    seen: set[str] = set()
    problems.extend(p for info in members if (p := _member_problem(info, seen)) is not None)
    return problems


def parse_run_ref(text: str) -> tuple[str | None, int]:
    """``(repository, run id)`` from a run id (``123``, repository ``None``) or a run URL
    (``https://github.com/OWNER/NAME/actions/runs/123``, with or without ``/attempts/2``,
    ``/job/456`` and the like)."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        return None, int(value)
    parts = urlsplit(value)
    found = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/actions/runs/(?P<id>\d+)(?:/.*)?", parts.path)
    if parts.scheme not in ("http", "https") or found is None:
        raise UsageError(f"not a run id or a run URL: {one_line(text)!r}")
    return found["repo"], int(found["id"])


# -- talking to GitHub -------------------------------------------------------------------


class _Busy(requests.RequestException):
    """A 5xx or 429 answer to a download request: worth another attempt (ghclient.call
    retries request exceptions). Its text is ours: no URL, no token."""


def _network_reason(exc: requests.RequestException) -> str:
    if isinstance(exc, _Busy):
        return str(exc)
    # requests' own messages quote the URL, and a signed URL's query is a credential
    kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
    return f"{kind} ({type(exc).__name__})"


def _rate_limited(status: int, headers: Mapping[str, str], message: str) -> bool:
    return status == 429 or (
        status == 403
        and (headers.get("x-ratelimit-remaining") == "0" or "rate limit" in message.lower())
    )


def _http_failure(
    what: str, status: int, message: str, headers: Mapping[str, str]
) -> StateUnavailable:
    """The reason for a GitHub API answer that ends the attempt to restore."""
    detail = f"{status} {message}".strip()
    if _rate_limited(status, headers, message):
        return StateUnavailable(f"{what}: the GitHub API rate limit is exhausted", "rate_limit")
    if status == 401:
        return StateUnavailable(f"{what}: GitHub refused the token ({detail})", "forbidden")
    if status == 403:
        return StateUnavailable(
            f"{what}: the token may not read the repository's Actions artifacts ({detail}); "
            "give the workflow `permissions: actions: read`",
            "forbidden",
        )
    if status == 404:
        return StateUnavailable(f"{what}: not found ({detail})", "missing")
    if status == 410:
        return StateUnavailable(f"{what}: the artifact has expired ({detail})", "expired")
    return StateUnavailable(f"{what}: GitHub answered {detail}", "network")


def _api(what: str, fn: Callable[[], T], limits: Limits) -> T:
    """``fn`` (PyGithub calls) with transient failures retried; anything else that goes
    wrong becomes :class:`StateUnavailable` naming ``what``."""
    try:
        return call(fn, attempts=max(1, limits.attempts), wait=limits.retry_wait)
    except github.GithubException as exc:
        data = exc.data if isinstance(exc.data, dict) else {}
        message = str(data.get("message") or "")
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        failure = _http_failure(what, exc.status, message, headers)
    except requests.RequestException as exc:
        failure = StateUnavailable(f"{what}: {_network_reason(exc)}", "network")
    raise failure


def _candidate(artifact: Artifact) -> Candidate:
    run = artifact.workflow_run
    return Candidate(
        artifact_id=artifact.id,
        name=artifact.name,
        run_id=run.id if run is not None else None,
        branch=run.head_branch if run is not None else None,
        head_sha=run.head_sha if run is not None else None,
        expired=artifact.expired,
        created_at=artifact.created_at,
        size=artifact.size_in_bytes,
        download_url=artifact.archive_download_url,
    )


def _workflow_of(repo: Repository, run_id: int, limits: Limits) -> int | None:
    def fetch() -> int | None:
        try:
            return repo.get_workflow_run(run_id).workflow_id
        except github.UnknownObjectException:
            return None

    return _api(f"reading run {run_id}", fetch, limits)


# -- downloading -------------------------------------------------------------------------


class _NoAuth(AuthBase):
    """Sends no credentials at all (not even from ``~/.netrc``) to the blob host."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


def _save(response: requests.Response, dest: Path, limits: Limits) -> None:
    too_big = StateUnavailable(
        f"the artifact is larger than the {limits.max_download}-byte limit", "unsafe"
    )
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limits.max_download:
        raise too_big
    size = 0
    with dest.open("wb") as out:
        for chunk in response.iter_content(_CHUNK):
            size += len(chunk)
            if size > limits.max_download:
                raise too_big
            out.write(chunk)


def _blob(http: requests.Session, url: str, dest: Path, limits: Limits) -> None:
    if urlsplit(url).scheme not in ("http", "https"):
        raise StateUnavailable("GitHub redirected the download to a non-HTTP URL", "network")
    with http.get(
        url, auth=_NoAuth(), allow_redirects=False, stream=True, timeout=limits.timeout
    ) as response:
        status = response.status_code
        if status == 200:
            _save(response, dest, limits)
            return
        detail = f"{status} {response.headers.get('x-ms-error-code', '')}".rstrip()
        if status == 429 or status >= 500:
            raise _Busy(f"the artifact storage answered {detail}")
        raise StateUnavailable(
            f"the artifact storage refused the download ({detail})",
            "missing" if status == 404 else "network",
        )


def download(url: str, token: str, dest: Path, limits: Limits) -> None:
    """Fetch an artifact's zip from its ``archive_download_url`` into ``dest``: the API
    request with the token and no redirects followed, then the blob URL it redirects to
    without the token. The pair is retried together (a signed URL lasts a minute)."""
    what = "downloading the artifact"

    def once(http: requests.Session) -> None:
        with http.get(
            url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            allow_redirects=False,
            stream=True,
            timeout=limits.timeout,
        ) as response:
            status = response.status_code
            if status in _REDIRECTS and response.headers.get("Location"):
                location = urljoin(url, response.headers["Location"])
            elif status == 200:  # a server that serves the zip itself
                _save(response, dest, limits)
                return
            elif status >= 500:
                raise _Busy(f"GitHub answered {status}")
            else:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                message = str(body.get("message") or "") if isinstance(body, dict) else ""
                headers = {k.lower(): v for k, v in response.headers.items()}
                raise _http_failure(what, status, message, headers)
        _blob(http, location, dest, limits)

    with requests.Session() as http:
        http.headers["User-Agent"] = f"orchestra-ci/{__version__}"
        try:
            call(lambda: once(http), attempts=max(1, limits.attempts), wait=limits.retry_wait)
        except requests.RequestException as exc:
            failure = StateUnavailable(f"{what}: {_network_reason(exc)}", "network")
        else:
            return
    raise failure


# -- unpacking ---------------------------------------------------------------------------


@contextlib.contextmanager
def _staging(store: Store) -> Iterator[Path]:
    """A scratch directory inside ``.orchestra/`` (so files move into place by rename),
    removed afterwards; those left by restores that died are removed first."""
    store.dir.mkdir(parents=True, exist_ok=True)
    for stale in store.dir.glob(f"{_STAGING}*"):
        pid = stale.name.removeprefix(_STAGING).partition("-")[0]
        if pid.isdigit() and not atomic.pid_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{os.getpid()}-", dir=store.dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _extract(archive: zipfile.ZipFile, into: Path, limits: Limits) -> list[str]:
    """Every file member written under ``into`` (names already checked); their names."""
    names: list[str] = []
    total = 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        target = into / info.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as source, target.open("xb") as out:
            while chunk := source.read(_CHUNK):
                total += len(chunk)
                if total > limits.max_unpacked:  # zipfile holds members to their sizes
                    raise StateUnavailable("the artifact unpacks to more than allowed", "unsafe")
                out.write(chunk)
        names.append(info.filename)
    return names


def _record_problem(path: Path, task_id: str) -> str | None:
    try:
        record = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return "not valid JSON"
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("taskId") != task_id:
        return f"its taskId is not {task_id!r}"
    return None


def _screen(staged: Path, names: list[str]) -> tuple[list[str], list[str], set[str]]:
    """The staged files to keep, "name: reason" for the others, and the restored task ids.
    A task record must parse as an object naming its own task; a sentinel needs a record."""
    tasks: set[str] = set()
    skipped: list[str] = []
    for name in names:
        found = _RUN_FILE.fullmatch(name)
        if found is None or found["kind"] != "json":
            continue
        problem = _record_problem(staged / name, found["task"])
        if problem is None:
            tasks.add(found["task"])
        else:
            skipped.append(f"{name}: {problem}")
    kept: list[str] = []
    for name in names:
        found = _RUN_FILE.fullmatch(name)
        task = found["task"] if found is not None else None
        if task is None or task in tasks:
            kept.append(name)
        elif found is not None and found["kind"] != "json":
            skipped.append(f"{name}: no task record for {task!r} in the artifact")
    return kept, skipped, tasks


def _move_order(name: str) -> tuple[int, str]:
    """Task records last: once a record is in place, so is everything that goes with it."""
    return (1 if name.startswith("tasks/") and name.endswith(".json") else 0, name)


def _task_files(store: Store, task_id: str) -> list[Path]:
    return [
        store.sentinel(task_id, "done"),
        store.sentinel(task_id, "error"),
        store.log_path(task_id),
        store.patches_dir / f"{task_id}.patch",
    ]


def _put_in_place(
    store: Store, staged: Path, kept: list[str], tasks: set[str], clear: bool
) -> None:
    """Under the queue lock: every kept file renamed over its target; a restored task's
    other files (a ``.done`` its artifact version lacks...) removed; with ``clear``, the
    tasks and reports the artifact does not have removed too."""
    incoming = set(kept)
    with store.locked():
        if clear:
            for task_id in set(store.ids()) - tasks:
                store.delete(task_id)
            for name in (RESULTS_FILE, MANIFEST_FILE):
                if name not in incoming:
                    (store.dir / name).unlink(missing_ok=True)
        for task_id in tasks:
            for path in _task_files(store, task_id):
                if path.relative_to(store.dir).as_posix() not in incoming:
                    path.unlink(missing_ok=True)
        parents: set[Path] = set()
        for name in sorted(kept, key=_move_order):
            target = store.dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / name, target)
            parents.add(target.parent)
        for parent in parents:
            atomic.fsync_dir(parent)


def unpack(
    zip_path: Path, store: Store, *, limits: Limits | None = None, clear: bool = False
) -> Unpacked:
    """Check the zip at ``zip_path`` and put its run files into the queue of ``store``.
    Nothing changes unless every member is fit (:func:`check_members`) and extracts
    cleanly; task records that do not parse, and sentinels without a record, are left out
    (see ``skipped``). Files the artifact does not have stay, unless ``clear``: then the
    queue becomes the artifact's."""
    limits = limits or Limits()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            problems = check_members(archive.infolist(), limits)
            if problems:
                more = len(problems) - _PROBLEMS_SHOWN
                shown = "; ".join(problems[:_PROBLEMS_SHOWN]) + (
                    f"; {more} more" if more > 0 else ""
                )
                raise StateUnavailable(f"the artifact is not a queue to restore: {shown}", "unsafe")
            with _staging(store) as staged:
                names = _extract(archive, staged, limits)
                kept, skipped, tasks = _screen(staged, names)
                os.sync()  # the new files' data on disk before any rename can make it visible
                _put_in_place(store, staged, kept, tasks, clear)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        failure = StateUnavailable(f"the artifact's zip is corrupt ({exc})", "corrupt")
    except OSError as exc:
        failure = StateUnavailable(
            f"cannot unpack the artifact into {store.dir}: {exc.strerror or exc}", "io"
        )
    else:
        return Unpacked(len(kept), tuple(skipped))
    raise failure


# -- restoring ---------------------------------------------------------------------------


def _fetch(
    candidate: Candidate,
    store: Store,
    token: str,
    limits: Limits,
    *,
    clear: bool,
    now: datetime | None,
) -> Restored:
    if candidate.expired:
        raise StateUnavailable(
            f"artifact {candidate.artifact_id} ({candidate.name!r}) has expired", "expired"
        )
    if candidate.size > limits.max_download:
        raise StateUnavailable(
            f"artifact {candidate.artifact_id} has {candidate.size} bytes, more than the "
            f"{limits.max_download}-byte limit",
            "unsafe",
        )
    try:
        with _staging(store) as scratch:
            zip_path = scratch / "artifact.zip"
            download(candidate.download_url, token, zip_path, limits)
            unpacked = unpack(zip_path, store, limits=limits, clear=clear)
    except OSError as exc:
        raise StateUnavailable(
            f"cannot write to {store.dir}: {exc.strerror or exc}", "io"
        ) from None
    moment = now or datetime.now(UTC)
    return Restored(
        run_id=candidate.run_id,
        artifact_id=candidate.artifact_id,
        artifact_name=candidate.name,
        created_at=candidate.created_at,
        age_seconds=max(0.0, (moment - candidate.created_at).total_seconds()),
        files=unpacked.files,
        skipped=unpacked.skipped,
        head_sha=candidate.head_sha,
    )


def _scrubbed(token: str, fn: Callable[[], Restored]) -> Restored:
    """``fn``, with the token masked in any reason it gives (it is never put there; this
    keeps it so)."""
    try:
        return fn()
    except StateUnavailable as exc:
        if not token or token not in str(exc):
            raise
        failure = StateUnavailable(str(exc).replace(token, "***"), exc.kind)
    raise failure


def restore_previous(
    repo: Repository,
    store: Store,
    lookup: Lookup,
    *,
    token: str,
    limits: Limits | None = None,
    now: datetime | None = None,
) -> Restored:
    """Restore the queue left by the previous run (see :func:`choose`) into ``store``.
    Raises :class:`StateUnavailable` when there is none or it cannot be had."""
    limits = limits or Limits()

    def restore() -> Restored:
        workflow_id = None
        if lookup.run_id is not None:
            run_id = lookup.run_id
            workflow_id = _api(
                f"reading the current run {run_id}",
                lambda: repo.get_workflow_run(run_id).workflow_id,
                limits,
            )
        listed = _api(
            f"listing the artifacts named {lookup.name!r}",
            lambda: [_candidate(a) for a in repo.get_artifacts(name=lookup.name)],
            limits,
        )
        chosen = choose(listed, lookup, workflow_id, lambda r: _workflow_of(repo, r, limits))
        if chosen is None:
            where = f" on {lookup.branch!r}" if lookup.branch else ""
            expired = sum(c.expired and _same_name_and_branch(c, lookup) for c in listed)
            note = f" ({expired} expired)" if expired else ""
            raise StateUnavailable(
                f"no earlier run of this workflow{where} left an artifact named "
                f"{lookup.name!r}{note}",
                "none",
            )
        return _fetch(chosen, store, token, limits, clear=False, now=now)

    return _scrubbed(token, restore)


def pull_run(
    repo: Repository,
    store: Store,
    run_id: int,
    name: str,
    *,
    token: str,
    clear: bool = False,
    limits: Limits | None = None,
    now: datetime | None = None,
) -> Restored:
    """Restore the artifact ``name`` of run ``run_id`` (its newest, if a re-run made more
    than one); when the run has none by that name, the reason lists the names it has."""
    limits = limits or Limits()

    def pull() -> Restored:
        listed = _api(
            f"listing the artifacts of run {run_id}",
            lambda: [_candidate(a) for a in repo.get_workflow_run(run_id).get_artifacts()],
            limits,
        )
        matching = _newest_first(c for c in listed if c.name == name)
        if not matching:
            names = ", ".join(sorted({repr(c.name) for c in listed})) or "none"
            raise StateUnavailable(
                f"run {run_id} has no artifact named {name!r} (it has: {names})", "none"
            )
        return _fetch(matching[0], store, token, limits, clear=clear, now=now)

    return _scrubbed(token, pull)


def pull_artifact(
    repo: Repository,
    store: Store,
    artifact_id: int,
    *,
    token: str,
    clear: bool = False,
    limits: Limits | None = None,
    now: datetime | None = None,
) -> Restored:
    """Restore the artifact with id ``artifact_id``, whatever its name."""
    limits = limits or Limits()

    def pull() -> Restored:
        candidate = _api(
            f"reading artifact {artifact_id}",
            lambda: _candidate(repo.get_artifact(artifact_id)),
            limits,
        )
        return _fetch(candidate, store, token, limits, clear=clear, now=now)

    return _scrubbed(token, pull)
