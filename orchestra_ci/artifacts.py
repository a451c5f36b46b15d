"""The run's files as one workflow artifact: a zip uploaded with the v4 artifact protocol.

The protocol, as the runner's ``@actions/artifact`` client speaks it:

1. ``CreateArtifact``: a twirp JSON call to the results service (the origin of
   ``ACTIONS_RESULTS_URL``) with the bearer ``ACTIONS_RUNTIME_TOKEN``; the workflow run
   and job "backend ids" come from the token's ``scp`` claim
   (``Actions.Results:<run>:<job>``). It answers with a signed blob URL.
2. The zip goes to that URL as Azure Blob *Put Block* chunks and one *Put Block List*.
3. ``FinalizeArtifact`` with the byte count and the ``sha256:`` digest; it answers with
   the artifact id.

Twirp calls and blob requests that fail with 5xx, 429, a dropped connection or a
timeout are retried with tenacity. Neither the runtime token nor the blob URL's
signature appears in an error, a log line or a message.

Without a runtime token (a local run, or a step that did not get one), :func:`publish`
writes the same zip to ``.orchestra/artifacts/<name>.zip``.
"""

import base64
import hashlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import escape

import requests
import structlog
import tenacity

from orchestra_ci import __version__
from orchestra_ci.errors import OrchestraError
from orchestra_ci.store import MANIFEST_FILE, RESULTS_FILE

log = structlog.get_logger("orchestra_ci")

T = TypeVar("T")

SERVICE = "github.actions.results.api.v1.ArtifactService"
ARTIFACT_VERSION = 4
CHUNK_SIZE = 8 * 1024 * 1024
BLOB_API_VERSION = "2021-08-06"
ZIP_CONTENT_TYPE = "application/zip"
ARTIFACTS_DIR = "artifacts"

#: What goes into the zip, relative to ``.orchestra/``.
INCLUDE = (
    MANIFEST_FILE,
    "tasks/*.json",
    "tasks/*.done",
    "tasks/*.error",
    "logs/*.log",
    "patches/*.patch",
)

_INVALID_NAME_CHARACTERS = {
    '"': "double quote",
    ":": "colon",
    "<": "less than",
    ">": "greater than",
    "|": "vertical bar",
    "*": "asterisk",
    "?": "question mark",
    "\r": "carriage return",
    "\n": "line feed",
    "\\": "backslash",
    "/": "forward slash",
}
_RETRYABLE_STATUS = frozenset({429}) | frozenset(range(500, 600))


class ArtifactError(OrchestraError):
    """The artifact could not be built, uploaded or finalized."""


class _Transient(ArtifactError):
    """A failure worth another attempt (5xx, 429, connection error, timeout)."""


@dataclass(frozen=True)
class RetrySettings:
    """Attempts per request and the exponential wait between them (seconds)."""

    attempts: int = 5
    wait: float = 1.0
    max_wait: float = 30.0
    timeout: float = 60.0


@dataclass(frozen=True)
class UploadResult:
    artifact_id: int
    size: int
    #: ``sha256:<hex>`` of the uploaded bytes, as GitHub shows an artifact's digest.
    digest: str


@dataclass(frozen=True)
class PublishResult:
    name: str
    size: int
    digest: str
    #: Set when the zip was uploaded as a workflow artifact.
    artifact_id: int | None = None
    #: Set when the zip was written under ``.orchestra/artifacts/`` instead.
    path: Path | None = None

    @property
    def uploaded(self) -> bool:
        return self.artifact_id is not None


@dataclass(frozen=True)
class BackendIds:
    workflow_run_backend_id: str
    workflow_job_run_backend_id: str


# -- the zip -----------------------------------------------------------------------------


def validate_name(name: str) -> str:
    """``name`` if GitHub accepts it as an artifact name; :class:`ArtifactError` if not."""
    if not name or not name.strip():
        raise ArtifactError("the artifact name is empty")
    for char, label in _INVALID_NAME_CHARACTERS.items():
        if char in name:
            raise ArtifactError(
                f"invalid artifact name {name!r}: it contains a {label} ({char!r}); artifact "
                'names may not contain " : < > | * ? \\ / or carriage returns and line feeds'
            )
    return name


def run_files(orchestra_dir: Path) -> list[tuple[str, Path]]:
    """``(archive path, file)`` for every run file to archive, in archive-path order."""
    found: dict[str, Path] = {}
    candidates = [orchestra_dir / RESULTS_FILE]
    for pattern in INCLUDE:
        candidates.extend(orchestra_dir.glob(pattern))
    for path in candidates:
        if path.name.startswith(".") or path.is_symlink() or not path.is_file():
            continue
        found[path.relative_to(orchestra_dir).as_posix()] = path
    return sorted(found.items())


def build_zip(orchestra_dir: Path, dest: Path) -> Path:
    """Write the run files under ``orchestra_dir`` (``.orchestra/``) to the zip ``dest``.

    Task records and sentinels (not ``.pid`` files), logs, patches and ``results.json``;
    archive paths are relative to ``orchestra_dir``, sorted. Returns ``dest``.
    """
    if not orchestra_dir.is_dir():
        raise ArtifactError(f"{orchestra_dir} is not a directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(
            dest, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6, strict_timestamps=False
        ) as archive:
            for arcname, path in run_files(orchestra_dir):
                try:
                    archive.write(path, arcname)
                except FileNotFoundError:  # removed while we were archiving
                    continue
    except OSError as exc:
        raise ArtifactError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return dest


# -- the runtime token -------------------------------------------------------------------


def backend_ids(runtime_token: str) -> BackendIds:
    """The workflow run and job backend ids in the ``Actions.Results`` scope of the token."""
    invalid = ArtifactError(
        "the ACTIONS_RUNTIME_TOKEN is not a JWT with an Actions.Results:<run>:<job> scope"
    )
    parts = runtime_token.split(".")
    if len(parts) != 3:
        raise invalid
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        claims = None  # raised below, so no decoding error (holding token text) is chained
    scp = claims.get("scp") if isinstance(claims, dict) else None
    if not isinstance(scp, str):
        raise invalid
    for scope in scp.split(" "):
        fields = scope.split(":")
        if fields[0] != "Actions.Results":
            continue
        if len(fields) != 3 or not fields[1] or not fields[2]:
            raise invalid
        return BackendIds(fields[1], fields[2])
    raise invalid


# -- the upload --------------------------------------------------------------------------


def _service_origin(results_url: str) -> str:
    # Like the official client, only the origin of ACTIONS_RESULTS_URL is used.
    parts = urlsplit(results_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ArtifactError("ACTIONS_RESULTS_URL is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc}"


def _pick(body: Mapping[str, Any], snake: str) -> Any:
    """A response field under its proto name or its JSON (lowerCamelCase) name."""
    if snake in body:
        return body[snake]
    head, *rest = snake.split("_")
    return body.get(head + "".join(word.title() for word in rest))


_QUERY = re.compile(r"\?[^\s'\"]*")


class _Uploader:
    def __init__(
        self,
        runtime_token: str,
        results_url: str,
        retry: RetrySettings,
        session: requests.Session,
    ) -> None:
        self._token = runtime_token
        self._origin = _service_origin(results_url)
        self._retry = retry
        self._session = session

    # Everything that reaches a message goes through here: no token, no URL query.
    def _clean(self, text: str) -> str:
        text = _QUERY.sub("?[redacted]", text)
        return text.replace(self._token, "***") if self._token else text

    def _describe(self, exc: requests.RequestException) -> str:
        kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
        return self._clean(f"{kind} ({type(exc).__name__})")

    def _send(self, what: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One HTTP request; a transport failure becomes :class:`_Transient`, raised outside
        the ``except`` block so the original (whose text holds the URL) is not chained."""
        try:
            return self._session.request(method, url, timeout=self._retry.timeout, **kwargs)
        except requests.RequestException as exc:
            failure = f"{what}: {self._describe(exc)}"
        raise _Transient(failure)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            log.warning(
                "artifact request failed, retrying",
                request=what,
                attempt=state.attempt_number,
                error=str(error),
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(max(1, self._retry.attempts)),
            wait=tenacity.wait_exponential(multiplier=self._retry.wait, max=self._retry.max_wait),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(call)
        except _Transient as exc:
            failure = f"{what} failed after {self._retry.attempts} attempts: {exc}"
        raise ArtifactError(failure)

    # -- twirp

    def twirp(self, method: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        return self._retrying(method, lambda: self._twirp_once(method, payload))

    def _twirp_once(self, method: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        response = self._send(
            method,
            "POST",
            f"{self._origin}/twirp/{SERVICE}/{method}",
            data=json.dumps(payload),
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Authorization": f"Bearer {self._token}",
            },
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 300:
            detail = f"HTTP {response.status_code}"
            if isinstance(body, dict) and (body.get("code") or body.get("msg")):
                detail += f" {body.get('code', '')}: {body.get('msg', '')}".rstrip(": ")
            message = self._clean(f"{method}: {detail}")
            if response.status_code in _RETRYABLE_STATUS:
                raise _Transient(message)
            raise ArtifactError(message)
        if not isinstance(body, dict):
            raise ArtifactError(f"{method}: the response is not a JSON object")
        if _pick(body, "ok") is not True:
            raise ArtifactError(f"{method}: the artifact service answered ok=false")
        return body

    # -- blob

    def _blob_put(
        self, what: str, url: str, params: str, data: bytes, headers: Mapping[str, str]
    ) -> None:
        def once() -> None:
            response = self._send(
                what,
                "PUT",
                f"{url}&{params}" if "?" in url else f"{url}?{params}",
                data=data,
                headers={"x-ms-version": BLOB_API_VERSION, **headers},
            )
            if response.status_code < 300:
                return
            code = response.headers.get("x-ms-error-code", "")
            message = self._clean(f"{what}: HTTP {response.status_code} {code}".rstrip())
            if response.status_code in _RETRYABLE_STATUS:
                raise _Transient(message)
            raise ArtifactError(message)

        self._retrying(what, once)

    def upload_blob(self, url: str, zip_path: Path, chunk_size: int) -> tuple[int, str]:
        """Put Block per chunk, then Put Block List; returns (size, sha256 hex)."""
        digest = hashlib.sha256()
        size = 0
        block_ids: list[str] = []
        for index, chunk in enumerate(_chunks(zip_path, chunk_size)):
            block_id = base64.b64encode(f"orchestra-block-{index:08d}".encode()).decode()
            md5 = base64.b64encode(hashlib.md5(chunk, usedforsecurity=False).digest()).decode()
            self._blob_put(
                f"Put Block {index}",
                url,
                f"comp=block&blockid={quote(block_id, safe='')}",
                chunk,
                {"Content-Type": "application/octet-stream", "Content-MD5": md5},
            )
            block_ids.append(block_id)
            digest.update(chunk)
            size += len(chunk)
        block_list = "".join(f"<Latest>{escape(block_id)}</Latest>" for block_id in block_ids)
        self._blob_put(
            "Put Block List",
            url,
            "comp=blocklist",
            f'<?xml version="1.0" encoding="utf-8"?><BlockList>{block_list}</BlockList>'.encode(),
            {"Content-Type": "application/xml", "x-ms-blob-content-type": ZIP_CONTENT_TYPE},
        )
        return size, digest.hexdigest()


def _chunks(path: Path, size: int) -> Iterator[bytes]:
    with path.open("rb") as stream:
        while chunk := stream.read(size):
            yield chunk


def upload(
    zip_path: Path,
    name: str,
    *,
    runtime_token: str,
    results_url: str,
    chunk_size: int = CHUNK_SIZE,
    retry: RetrySettings | None = None,
    session: requests.Session | None = None,
) -> UploadResult:
    """Upload ``zip_path`` as the workflow artifact ``name`` (protocol v4)."""
    validate_name(name)
    if not runtime_token:
        raise ArtifactError("ACTIONS_RUNTIME_TOKEN is empty")
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    ids = backend_ids(runtime_token)
    own_session = session is None
    http = requests.Session() if session is None else session
    if own_session:
        http.headers["User-Agent"] = f"orchestra-ci/{__version__}"
    uploader = _Uploader(runtime_token, results_url, retry or RetrySettings(), http)
    scope = {
        "workflow_run_backend_id": ids.workflow_run_backend_id,
        "workflow_job_run_backend_id": ids.workflow_job_run_backend_id,
        "name": name,
    }
    try:
        created = uploader.twirp("CreateArtifact", {**scope, "version": ARTIFACT_VERSION})
        url = _pick(created, "signed_upload_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ArtifactError("CreateArtifact: the response has no signed upload URL")
        try:
            size, sha256 = uploader.upload_blob(url, zip_path, chunk_size)
        except OSError as exc:
            raise ArtifactError(f"cannot read {zip_path}: {exc.strerror or exc}") from None
        finalized = uploader.twirp(
            "FinalizeArtifact", {**scope, "size": str(size), "hash": f"sha256:{sha256}"}
        )
    finally:
        if own_session:
            http.close()
    raw_id = _pick(finalized, "artifact_id")
    try:
        artifact_id = int(raw_id)
    except (TypeError, ValueError):
        raise ArtifactError("FinalizeArtifact: the response has no artifact id") from None
    log.info("artifact uploaded", artifact=name, artifact_id=artifact_id, size=size)
    return UploadResult(artifact_id=artifact_id, size=size, digest=f"sha256:{sha256}")


# -- publish -----------------------------------------------------------------------------


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in _chunks(path, CHUNK_SIZE):
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def publish(
    orchestra_dir: Path,
    name: str,
    env: Mapping[str, str],
    *,
    retry: RetrySettings | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> PublishResult:
    """Zip the run files; upload them as the artifact ``name`` when ``env`` has
    ``ACTIONS_RUNTIME_TOKEN`` and ``ACTIONS_RESULTS_URL``, else keep the zip at
    ``<orchestra_dir>/artifacts/<name>.zip``."""
    validate_name(name)
    token = env.get("ACTIONS_RUNTIME_TOKEN", "")
    results_url = env.get("ACTIONS_RESULTS_URL", "")
    if token and results_url:
        with tempfile.TemporaryDirectory(prefix="orchestra-artifact-") as scratch:
            path = build_zip(orchestra_dir, Path(scratch) / f"{name}.zip")
            result = upload(
                path,
                name,
                runtime_token=token,
                results_url=results_url,
                retry=retry,
                chunk_size=chunk_size,
            )
        return PublishResult(name, result.size, result.digest, artifact_id=result.artifact_id)
    if token or results_url:
        log.warning(
            "artifact not uploaded: ACTIONS_RUNTIME_TOKEN and ACTIONS_RESULTS_URL are both needed",
            artifact=name,
        )
    target = orchestra_dir / ARTIFACTS_DIR / f"{name}.zip"
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        build_zip(orchestra_dir, partial)
        os.replace(partial, target)
    except OSError as exc:
        raise ArtifactError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    log.info("artifact written", artifact=name, path=str(target))
    return PublishResult(name, target.stat().st_size, _digest(target), path=target)
