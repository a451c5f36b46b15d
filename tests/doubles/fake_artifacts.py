"""A local GitHub Actions artifact service (protocol v4) with a blob store, for tests.

:class:`FakeArtifactService` serves, on 127.0.0.1, the twirp JSON API of the runner's
results service that ``@actions/artifact`` speaks (``CreateArtifact``,
``FinalizeArtifact``, ``ListArtifacts``, ``GetSignedArtifactURL`` of
``github.actions.results.api.v1.ArtifactService``) and hands out SAS-signed blob URLs.

It checks what the real service checks: a bearer runtime token (an HS256 JWT minted by
:func:`mint_runtime_token`, whose ``scp`` claim holds ``Actions.Results:<run>:<job>``),
backend ids that match that scope, valid and unique artifact names, and, on finalize, a
size and ``sha256:`` hash equal to the blob that was really uploaded.

The blobs live in one of two stores:

- :class:`Azurite`: the real Azure Storage emulator from npm (``azurite-blob``), with
  service SAS tokens signed for the well-known development account ``devstoreaccount1``;
- :class:`LocalBlobStore`: an in-process subset of the Blob REST API (Put Block, Put Block
  List, Put Blob, Get Blob) that requires and verifies the same SAS signatures.

Blob requests normally go through the service's own port, which lets tests inject
faults (:meth:`FakeArtifactService.fail`) and see which blob operations were made, then
reach the store (forwarded verbatim to Azurite). With ``direct_blob_urls=True`` and
Azurite, the signed URLs point at Azurite itself.
"""

import base64
import contextlib
import hashlib
import hmac
import http.client
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from orchestra_ci.background_http import BackgroundServer, TrackedHandler, TrackingServer

SERVICE = "github.actions.results.api.v1.ArtifactService"
TWIRP_PREFIX = f"/twirp/{SERVICE}/"

#: The Azure Storage emulator's published development account (not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SAS_VERSION = "2021-08-06"

RUN_BACKEND_ID = "ce7f54c7-61c7-4aae-887f-30da475f5f1a"
JOB_BACKEND_ID = "ca395085-040a-526b-2ce8-bdc85f692774"
TOKEN_SECRET = "orchestra-fake-actions-token-secret"
TOKEN_ISSUER = "vstoken.actions.githubusercontent.com"

_INVALID_NAME_CHARS = '":<>|*?\r\n\\/'
_TWIRP_STATUS = {
    "invalid_argument": 400,
    "malformed": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "bad_route": 404,
    "not_found": 404,
    "already_exists": 409,
    "failed_precondition": 412,
    "resource_exhausted": 429,
    "internal": 500,
    "unimplemented": 501,
    "unavailable": 503,
}
_TWIRP_CODE = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "already_exists",
    412: "failed_precondition",
    429: "resource_exhausted",
    501: "unimplemented",
    503: "unavailable",
    504: "deadline_exceeded",
}
RPCS = ("CreateArtifact", "FinalizeArtifact", "ListArtifacts", "GetSignedArtifactURL")
BLOB_OPERATIONS = ("PutBlock", "PutBlockList", "PutBlob", "GetBlob", "GetBlobProperties")


# -- runtime tokens ----------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_runtime_token(
    run_backend_id: str = RUN_BACKEND_ID,
    job_backend_id: str = JOB_BACKEND_ID,
    *,
    secret: str = TOKEN_SECRET,
    lifetime: float = 6 * 3600,
    scope: str | None = None,
) -> str:
    """An ``ACTIONS_RUNTIME_TOKEN`` look-alike: an HS256 JWT with the runner's claims.

    ``scope`` replaces the whole ``scp`` claim (to test tokens without a results scope).
    """
    now = int(time.time())
    scp = (
        scope
        if scope is not None
        else f"Actions.GenericRead:{run_backend_id} "
        f"Actions.Results:{run_backend_id}:{job_backend_id}"
    )
    header = {"typ": "JWT", "alg": "HS256"}
    claims = {
        "scp": scp,
        "iss": TOKEN_ISSUER,
        "aud": f"{TOKEN_ISSUER}|orchestra-fake",
        "iat": now - 30,
        "nbf": now - 30,
        "exp": now + int(lifetime),
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


class TokenError(ValueError):
    """The bearer token is missing, malformed, wrongly signed or expired."""


def verify_runtime_token(token: str, secret: str = TOKEN_SECRET) -> dict[str, Any]:
    """The claims of a token minted with ``secret``; :class:`TokenError` otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a JWT")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("malformed JWT") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        raise TokenError("unsupported JWT")
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise TokenError("bad signature")
    now = time.time()
    if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
        raise TokenError("expired")
    if isinstance(claims.get("nbf"), int) and claims["nbf"] > now + 60:
        raise TokenError("not yet valid")
    return claims


def results_scope(claims: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(run_backend_id, job_backend_id)`` from the ``Actions.Results`` scope, if any."""
    scp = claims.get("scp")
    if not isinstance(scp, str):
        return None
    for scope in scp.split(" "):
        parts = scope.split(":")
        if parts[0] == "Actions.Results" and len(parts) == 3:
            return parts[1], parts[2]
    return None


# -- shared access signatures ------------------------------------------------------------


def _sas_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_sas_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hmac_b64(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def blob_sas_signature(
    query: Mapping[str, str], *, account: str, key: str, container: str, blob: str
) -> str:
    """The ``sig`` of a blob service SAS (versions 2018-11-09 and later)."""
    resource = query.get("sr", "")
    canonical = f"/blob/{account}/{container}"
    if resource in ("b", "bs"):
        canonical += f"/{blob}"
    version = query.get("sv", "")
    fields = [
        query.get("sp", ""),
        query.get("st", ""),
        query.get("se", ""),
        canonical,
        query.get("si", ""),
        query.get("sip", ""),
        query.get("spr", ""),
        version,
        resource,
        query.get("sst", ""),
    ]
    if version >= "2020-12-06":
        fields.append(query.get("ses", ""))
    fields += [query.get(name, "") for name in ("rscc", "rscd", "rsce", "rscl", "rsct")]
    return _hmac_b64(key, "\n".join(fields))


def blob_sas(
    *,
    container: str,
    blob: str,
    permissions: str,
    lifetime: timedelta = timedelta(hours=6),
    account: str = DEV_ACCOUNT,
    key: str = DEV_ACCOUNT_KEY,
    protocol: str = "https,http",
) -> str:
    """A blob service SAS query string (``sv=...&sig=...``) for one blob."""
    now = datetime.now(UTC)
    query = {
        "sv": SAS_VERSION,
        "spr": protocol,
        "st": _sas_time(now - timedelta(minutes=5)),
        "se": _sas_time(now + lifetime),
        "sr": "b",
        "sp": permissions,
    }
    query["sig"] = blob_sas_signature(
        query, account=account, key=key, container=container, blob=blob
    )
    return urlencode(query, quote_via=quote)


def account_sas(
    *,
    permissions: str = "rwdlac",
    lifetime: timedelta = timedelta(hours=1),
    account: str = DEV_ACCOUNT,
    key: str = DEV_ACCOUNT_KEY,
) -> str:
    """An account SAS query string for the blob service (used to create containers)."""
    query = {
        "sv": SAS_VERSION,
        "ss": "b",
        "srt": "sco",
        "sp": permissions,
        "se": _sas_time(datetime.now(UTC) + lifetime),
        "spr": "https,http",
    }
    text = "\n".join(
        # account, permissions, services, resource types, start, expiry, IP, protocol,
        # version, encryption scope, and a final newline
        [
            account,
            query["sp"],
            query["ss"],
            query["srt"],
            "",
            query["se"],
            "",
            query["spr"],
            query["sv"],
            "",
            "",
        ]
    )
    query["sig"] = _hmac_b64(key, text)
    return urlencode(query, quote_via=quote)


# -- blob stores -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def blob_error(status: int, code: str, message: str) -> Reply:
    """An error answer shaped like Azure Storage's (XML body, ``x-ms-error-code``)."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}\n"
        f"RequestId:{uuid.uuid4()}\nTime:{_sas_time(datetime.now(UTC))}</Message></Error>"
    ).encode()
    return Reply(
        status,
        {"Content-Type": "application/xml", "x-ms-error-code": code},
        body,
    )


def blob_operation(method: str, query: Mapping[str, str]) -> str:
    """The Blob REST operation a request is, by method and ``comp``."""
    comp = query.get("comp", "")
    if method == "PUT":
        return {"block": "PutBlock", "blocklist": "PutBlockList", "": "PutBlob"}.get(
            comp, f"PUT?comp={comp}"
        )
    if method == "GET" and not comp:
        return "GetBlob"
    if method == "HEAD" and not comp:
        return "GetBlobProperties"
    return f"{method}?comp={comp}" if comp else method


_PERMISSION = {
    "PutBlock": "w",
    "PutBlockList": "w",
    "PutBlob": "cw",
    "GetBlob": "r",
    "GetBlobProperties": "r",
}


def _split_blob_path(path: str) -> tuple[str, str, str]:
    account, _, rest = unquote(path).lstrip("/").partition("/")
    container, _, blob = rest.partition("/")
    return account, container, blob


@dataclass
class _Blob:
    data: bytes = b""
    committed: bool = False
    committed_blocks: list[tuple[str, bytes]] = field(default_factory=list)
    uncommitted: dict[str, bytes] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    etag: str = ""
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    def touch(self) -> None:
        self.etag = f'"0x{uuid.uuid4().hex[:15].upper()}"'
        self.modified = datetime.now(UTC)


class LocalBlobStore:
    """An in-process Azure Blob store subset: block blobs behind service SAS tokens.

    Put Block, Put Block List (``Latest``/``Committed``/``Uncommitted``), Put Blob, Get
    Blob (with ``Range``/``x-ms-range``) and Get Blob Properties, with the errors Azure
    gives for a missing or bad signature, a permission the SAS lacks, an expired SAS, a
    missing ``Content-Length``, a bad block id, an unknown block or a ``Content-MD5``
    mismatch.
    """

    def __init__(self, account: str = DEV_ACCOUNT, key: str = DEV_ACCOUNT_KEY) -> None:
        self.account = account
        self.key = key
        self._lock = threading.Lock()
        self._containers: dict[str, dict[str, _Blob]] = {}

    def create_container(self, name: str) -> None:
        with self._lock:
            self._containers.setdefault(name, {})

    def read(self, container: str, blob: str) -> bytes | None:
        with self._lock:
            item = self._containers.get(container, {}).get(blob)
            return item.data if item is not None and item.committed else None

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Reply:
        split = urlsplit(target)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        account, container, blob_name = _split_blob_path(split.path)
        operation = blob_operation(method, query)
        if account != self.account:
            return blob_error(
                400,
                "InvalidUri",
                "The requested URI does not represent any resource on the server.",
            )
        denied = self._authorize(query, container, blob_name, operation)
        if denied is not None:
            return denied
        if operation not in _PERMISSION or not blob_name:
            return blob_error(
                501, "NotImplemented", f"{operation} is not implemented by this fake."
            )
        with self._lock:
            blobs = self._containers.get(container)
            if blobs is None:
                return blob_error(
                    404, "ContainerNotFound", "The specified container does not exist."
                )
            reply = self._operate(operation, blobs, blob_name, query, headers, body)
        reply.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        reply.headers.setdefault("x-ms-version", headers.get("x-ms-version") or query.get("sv", ""))
        if "x-ms-client-request-id" in headers:
            reply.headers["x-ms-client-request-id"] = headers["x-ms-client-request-id"]
        reply.headers["Date"] = _http_date(datetime.now(UTC))
        return reply

    def _authorize(
        self, query: Mapping[str, str], container: str, blob: str, operation: str
    ) -> Reply | None:
        if "sig" not in query:
            return blob_error(
                403,
                "AuthorizationFailure",
                "This request is not authorized to perform this operation.",
            )
        failed = blob_error(
            403,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization "
            "header is formed correctly including the signature.",
        )
        if (
            any(not query.get(name) for name in ("sv", "sr", "sp", "se"))
            or query["sv"] < "2018-11-09"
        ):
            return failed
        expected = blob_sas_signature(
            query, account=self.account, key=self.key, container=container, blob=blob
        )
        if not hmac.compare_digest(expected.encode(), query["sig"].encode()):
            return failed
        now = datetime.now(UTC)
        expiry = _parse_sas_time(query["se"])
        start = _parse_sas_time(query["st"]) if query.get("st") else None
        if (
            expiry is None
            or expiry < now
            or (start is not None and start > now + timedelta(minutes=5))
        ):
            return failed
        if query["sr"] not in ("b", "c"):
            return failed
        if "http" not in query.get("spr", "https,http").split(","):
            return blob_error(
                403,
                "AuthorizationProtocolMismatch",
                "This request is not authorized to perform this operation using this protocol.",
            )
        needed = _PERMISSION.get(operation, "")
        if needed and not any(letter in query["sp"] for letter in needed):
            return blob_error(
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )
        return None

    def _operate(
        self,
        operation: str,
        blobs: dict[str, _Blob],
        name: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> Reply:
        if operation in ("GetBlob", "GetBlobProperties"):
            return self._get(blobs.get(name), headers, with_body=operation == "GetBlob")
        if body is None:
            return blob_error(
                411, "MissingContentLengthHeader", "Content-Length HTTP header is missing."
            )
        md5 = headers.get("content-md5")
        actual_md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        if md5 is not None and md5 != actual_md5:
            return blob_error(
                400,
                "Md5Mismatch",
                "The MD5 value specified in the request did not match with the MD5 value "
                "calculated by the server.",
            )
        if operation == "PutBlock":
            return self._put_block(blobs, name, query.get("blockid"), body, actual_md5)
        if operation == "PutBlockList":
            return self._put_block_list(blobs, name, headers, body)
        blob_type = headers.get("x-ms-blob-type")
        if blob_type is None:
            return blob_error(
                400,
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified.",
            )
        if blob_type != "BlockBlob":
            return blob_error(
                400, "InvalidHeaderValue", "Only block blobs are supported by this fake."
            )
        item = _Blob(data=body, committed=True, committed_blocks=[])
        item.content_type = (
            headers.get("x-ms-blob-content-type")
            or headers.get("content-type")
            or item.content_type
        )
        item.touch()
        blobs[name] = item
        return Reply(
            201,
            {
                "ETag": item.etag,
                "Last-Modified": _http_date(item.modified),
                "Content-MD5": actual_md5,
            },
        )

    @staticmethod
    def _put_block(
        blobs: dict[str, _Blob], name: str, block_id: str | None, body: bytes, md5: str
    ) -> Reply:
        if not block_id:
            return blob_error(
                400,
                "MissingRequiredQueryParameter",
                "A query parameter that's mandatory for this request is not specified.",
            )
        try:
            raw = base64.b64decode(block_id, validate=True)
        except ValueError:
            raw = b""
        if not raw or len(raw) > 64:
            return blob_error(
                400,
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid.",
            )
        item = blobs.setdefault(name, _Blob())
        lengths = {len(key) for key in item.uncommitted} | {
            len(key) for key, _ in item.committed_blocks
        }
        if lengths and lengths != {len(block_id)}:
            return blob_error(
                400, "InvalidBlobOrBlock", "The specified blob or block content is invalid."
            )
        item.uncommitted[block_id] = body
        return Reply(201, {"Content-MD5": md5, "x-ms-request-server-encrypted": "true"})

    @staticmethod
    def _put_block_list(
        blobs: dict[str, _Blob], name: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        item = blobs.setdefault(name, _Blob())
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return blob_error(
                400, "InvalidXmlDocument", "XML specified is not syntactically valid."
            )
        if root.tag != "BlockList":
            return blob_error(
                400, "InvalidXmlDocument", "XML specified is not syntactically valid."
            )
        committed = dict(item.committed_blocks)
        chosen: list[tuple[str, bytes]] = []
        for element in root:
            block_id = (element.text or "").strip()
            sources: list[dict[str, bytes]] = {
                "Latest": [item.uncommitted, committed],
                "Uncommitted": [item.uncommitted],
                "Committed": [committed],
            }.get(element.tag, [])
            data = next((source[block_id] for source in sources if block_id in source), None)
            if data is None:
                return blob_error(400, "InvalidBlockList", "The specified block list is invalid.")
            chosen.append((block_id, data))
        item.committed_blocks = chosen
        item.uncommitted = {}
        item.data = b"".join(data for _, data in chosen)
        item.committed = True
        item.content_type = headers.get("x-ms-blob-content-type") or "application/octet-stream"
        item.touch()
        return Reply(
            201,
            {
                "ETag": item.etag,
                "Last-Modified": _http_date(item.modified),
                "x-ms-request-server-encrypted": "true",
            },
        )

    @staticmethod
    def _get(item: _Blob | None, headers: Mapping[str, str], *, with_body: bool) -> Reply:
        if item is None or not item.committed:
            return blob_error(404, "BlobNotFound", "The specified blob does not exist.")
        data = item.data
        status = 200
        reply_headers = {
            "Content-Type": item.content_type,
            "ETag": item.etag,
            "Last-Modified": _http_date(item.modified),
            "Accept-Ranges": "bytes",
            "x-ms-blob-type": "BlockBlob",
        }
        wanted = headers.get("x-ms-range") or headers.get("range")
        if wanted:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted.strip())
            if match is None or int(match[1]) >= len(data):
                return blob_error(
                    416,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                )
            first = int(match[1])
            last = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
            reply_headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            data = data[first : last + 1]
            status = 206
        reply_headers["Content-Length"] = str(len(data))
        return Reply(status, reply_headers, data if with_body else b"")


def find_azurite(node_dir: Path | None = None) -> Path | None:
    """The ``azurite-blob`` executable: ``$ORCHESTRA_AZURITE_BLOB``, then
    ``<node_dir>/node_modules/.bin/azurite-blob``, then ``PATH``; ``None`` without Node."""
    if shutil.which("node") is None:
        return None
    explicit = os.environ.get("ORCHESTRA_AZURITE_BLOB")
    candidates = [Path(explicit)] if explicit else []
    if node_dir is not None:
        candidates.append(node_dir / "node_modules" / ".bin" / "azurite-blob")
    on_path = shutil.which("azurite-blob")
    if on_path:
        candidates.append(Path(on_path))
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "host",
    "content-length",
    "te",
    "upgrade",
}


class Azurite:
    """The real Azure Blob emulator (``azurite-blob --inMemoryPersistence``) on a free port.

    Context manager; ``start()`` waits until it accepts connections (about a second).
    """

    def __init__(
        self,
        executable: Path,
        *,
        startup_timeout: float = 20.0,
        memory_limit_mb: int = 256,
    ) -> None:
        self.executable = executable.resolve()
        self.startup_timeout = startup_timeout
        self.memory_limit_mb = memory_limit_mb
        self.account = DEV_ACCOUNT
        self.key = DEV_ACCOUNT_KEY
        self.host = "127.0.0.1"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        last_error = ""
        for _ in range(3):
            self.port = _free_port()
            log_path = Path(self._workdir.name) / f"azurite-{self.port}.log"
            with log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    [
                        str(self.executable),
                        "--inMemoryPersistence",
                        "--extentMemoryLimit",
                        str(self.memory_limit_mb),
                        "--blobHost",
                        self.host,
                        "--blobPort",
                        str(self.port),
                        "--silent",
                        "--disableTelemetry",
                        "--skipApiVersionCheck",
                    ],
                    cwd=self._workdir.name,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return self
            last_error = log_path.read_text(errors="replace")[-2000:]
            self._stop_process()
        self.close()
        raise RuntimeError(f"azurite-blob did not start: {last_error}")

    def _wait_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return True
            time.sleep(0.05)
        return False

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def close(self) -> None:
        self._stop_process()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        """Send one request to Azurite as it is (``target`` is path and query)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            sent = {k: v for k, v in (headers or {}).items() if k.lower() not in _HOP_BY_HOP}
            if body is not None or method in ("PUT", "POST"):
                sent["Content-Length"] = str(len(body or b""))
            connection.request(method, target, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
            reply_headers = {
                k: v
                for k, v in response.getheaders()
                if k.lower() == "content-length" or k.lower() not in _HOP_BY_HOP
            }
            return Reply(response.status, reply_headers, data)
        finally:
            connection.close()

    def create_container(self, name: str) -> None:
        reply = self.request(
            "PUT",
            f"/{self.account}/{name}?restype=container&"
            + account_sas(account=self.account, key=self.key),
            body=b"",
        )
        if reply.status not in (201, 409):
            raise RuntimeError(
                f"azurite: cannot create container {name}: {reply.status} {reply.body[:300]!r}"
            )

    def read(self, container: str, blob: str) -> bytes | None:
        sas = blob_sas(
            container=container, blob=blob, permissions="r", account=self.account, key=self.key
        )
        reply = self.request("GET", f"/{self.account}/{container}/{quote(blob)}?{sas}")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise RuntimeError(f"azurite: cannot read {container}/{blob}: {reply.status}")
        return reply.body

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Reply:
        return self.request(method, target, headers, body)


# -- the artifact service ----------------------------------------------------------------


@dataclass
class ArtifactRecord:
    """One artifact as the fake service holds it."""

    id: int
    name: str
    run_backend_id: str
    job_backend_id: str
    container: str
    blob: str
    version: int
    created_at: datetime
    expires_at: str | None = None
    mime_type: str | None = None
    finalized: bool = False
    size: int | None = None
    digest: str | None = None


@dataclass(frozen=True)
class TwirpCall:
    """One twirp request the service answered (the bearer token itself is not kept)."""

    rpc: str
    request: Any
    status: int
    response: Any
    authenticated: bool


@dataclass(frozen=True)
class BlobCall:
    """One blob request, as the blob front saw it (``path`` has no query string)."""

    operation: str
    path: str
    status: int
    had_authorization_header: bool
    size: int


class _TwirpError(Exception):
    def __init__(self, code: str, msg: str, status: int | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status if status is not None else _TWIRP_STATUS.get(code, 500)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _camelize(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel(k): _camelize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camelize(v) for v in value]
    return value


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Request:
    """A twirp request body, read the way protobuf JSON allows (snake_case or camelCase)."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body

    def get(self, name: str) -> Any:
        return self.body[name] if name in self.body else self.body.get(_camel(name))

    def _field(self, name: str, required: bool) -> Any:
        value = self.get(name)
        if value is None and required:
            raise _TwirpError("invalid_argument", f"{name} is required")
        return value

    def string(self, name: str, *, required: bool = True) -> str | None:
        value = self._field(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise _TwirpError("invalid_argument", f"{name} must be a string")
        return value

    def int64(self, name: str, *, required: bool = True) -> int | None:
        value = self._field(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _TwirpError("invalid_argument", f"{name} must be an int64 (number or string)")
        try:
            return int(value)
        except ValueError:
            raise _TwirpError("invalid_argument", f"{name} is not a valid int64") from None


class _Server(TrackingServer):
    def __init__(self, service: "FakeArtifactService") -> None:
        self.service = service
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(TrackedHandler):
    """Headers and body go out in two writes: TrackedHandler's no-Nagle setting matters."""

    server: _Server

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return None

    def _dispatch(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.service._serve(self.command, self.path, headers, body)
        if reply is None:  # an injected dropped connection
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            if name.lower() not in _HOP_BY_HOP | {"date", "server"}:  # send_response sent them
                self.send_header(name, value)
        self.send_header(
            "Content-Length",
            next(
                (v for k, v in reply.headers.items() if k.lower() == "content-length"),
                str(len(reply.body)),
            ),
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _dispatch


@dataclass
class _Fault:
    status: int
    times: int


class FakeArtifactService(BackgroundServer):
    """The results service's artifact API on ``127.0.0.1``; a context manager.

    ``env()`` gives ``ACTIONS_RUNTIME_TOKEN`` and ``ACTIONS_RESULTS_URL`` for a client.
    Responses use snake_case field names like the real service (``camel_case=True`` for
    the protobuf JSON default), int64 values as strings.
    """

    thread_name = "fake-artifacts"

    def __init__(
        self,
        azurite: Azurite | None = None,
        *,
        direct_blob_urls: bool = False,
        camel_case: bool = False,
        run_backend_id: str = RUN_BACKEND_ID,
        job_backend_id: str = JOB_BACKEND_ID,
        token_secret: str = TOKEN_SECRET,
    ) -> None:
        if direct_blob_urls and azurite is None:
            raise ValueError(
                "direct_blob_urls needs Azurite (the local store is served by the fake)"
            )
        self.blob_store: Azurite | LocalBlobStore = (
            azurite if azurite is not None else LocalBlobStore()
        )
        self.direct_blob_urls = direct_blob_urls
        self.camel_case = camel_case
        self.run_backend_id = run_backend_id
        self.job_backend_id = job_backend_id
        self.token_secret = token_secret
        self.container = f"actions-results-{uuid.uuid4().hex[:12]}"
        self.runtime_token = mint_runtime_token(run_backend_id, job_backend_id, secret=token_secret)
        self._lock = threading.Lock()
        self._ids = itertools.count(4_200_001)
        self._artifacts: list[ArtifactRecord] = []
        self._calls: list[TwirpCall] = []
        self._blob_calls: list[BlobCall] = []
        self._faults: dict[str, list[_Fault]] = {}
        super().__init__()

    # -- lifecycle

    def make_server(self) -> TrackingServer:
        self.blob_store.create_container(self.container)
        return _Server(self)

    def close(self) -> None:
        """The same as :meth:`stop`."""
        self.stop()

    # -- what tests use

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``, no trailing slash."""
        return super().url

    @property
    def url(self) -> str:
        """The ``ACTIONS_RESULTS_URL`` (with the trailing slash the runner gives)."""
        return self.origin + "/"

    def env(self) -> dict[str, str]:
        return {"ACTIONS_RUNTIME_TOKEN": self.runtime_token, "ACTIONS_RESULTS_URL": self.url}

    def mint_token(
        self, run_backend_id: str | None = None, job_backend_id: str | None = None, **kwargs: Any
    ) -> str:
        return mint_runtime_token(
            run_backend_id or self.run_backend_id,
            job_backend_id or self.job_backend_id,
            secret=self.token_secret,
            **kwargs,
        )

    @property
    def artifacts(self) -> list[ArtifactRecord]:
        with self._lock:
            return [replace(a) for a in self._artifacts]

    def artifact(self, name: str) -> ArtifactRecord:
        found = [a for a in self.artifacts if a.name == name]
        if not found:
            raise KeyError(name)
        return found[0]

    def blob(self, artifact: ArtifactRecord | str) -> bytes | None:
        """The committed bytes of an artifact's blob (``None`` before Put Block List)."""
        record = self.artifact(artifact) if isinstance(artifact, str) else artifact
        return self.blob_store.read(record.container, record.blob)

    @property
    def calls(self) -> list[TwirpCall]:
        with self._lock:
            return list(self._calls)

    @property
    def blob_calls(self) -> list[BlobCall]:
        with self._lock:
            return list(self._blob_calls)

    def count(self, operation: str) -> int:
        """How many requests reached ``operation`` (an RPC or a blob operation name)."""
        if operation in RPCS:
            return sum(call.rpc == operation for call in self.calls)
        return sum(call.operation == operation for call in self.blob_calls)

    def fail(self, operation: str, status: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` requests to ``operation`` with ``status`` (0 drops the
        connection without an answer). Blob faults need the blob front (not direct URLs)."""
        if operation not in RPCS and operation not in BLOB_OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        with self._lock:
            self._faults.setdefault(operation, []).append(_Fault(status, times))

    def signed_url(self, record: ArtifactRecord, permissions: str) -> str:
        store = self.blob_store
        base = store.origin if self.direct_blob_urls and isinstance(store, Azurite) else self.origin
        sas = blob_sas(
            container=record.container,
            blob=record.blob,
            permissions=permissions,
            account=store.account,
            key=store.key,
        )
        return f"{base}/{store.account}/{record.container}/{quote(record.blob)}?{sas}"

    # -- serving

    def _take_fault(self, operation: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(operation)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def _serve(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Reply | None:
        path = urlsplit(target).path
        if path.startswith("/twirp/"):
            return self._serve_twirp(method, path, headers, body or b"")
        query = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
        operation = blob_operation(method, query)
        fault = self._take_fault(operation)
        if fault is not None and fault.status == 0:
            reply = None
        elif fault is not None:
            reply = blob_error(
                fault.status,
                "ServerBusy",
                "The server is currently unable to receive requests. Please retry your request.",
            )
        else:
            reply = self.blob_store.handle(method, target, headers, body)
        call = BlobCall(
            operation=operation,
            path=path,
            status=reply.status if reply is not None else 0,
            had_authorization_header="authorization" in headers,
            size=len(body or b""),
        )
        with self._lock:
            self._blob_calls.append(call)
        return reply

    def _serve_twirp(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | None:
        rpc = path[len(TWIRP_PREFIX) :] if path.startswith(TWIRP_PREFIX) else ""
        request: Any = None
        authenticated = False
        status = 200
        response: Any
        try:
            if rpc not in RPCS:
                raise _TwirpError("bad_route", f"no handler for path {path!r}")
            if method != "POST":
                raise _TwirpError(
                    "bad_route", f"unsupported method {method} (only POST is allowed)"
                )
            content_type = headers.get("content-type", "")
            if content_type.split(";")[0].strip().lower() != "application/json":
                raise _TwirpError("bad_route", f"unexpected Content-Type: {content_type!r}")
            fault = self._take_fault(rpc)
            if fault is not None and fault.status == 0:
                with self._lock:
                    self._calls.append(TwirpCall(rpc, None, 0, None, False))
                return None
            if fault is not None:
                code = _TWIRP_CODE.get(fault.status, "internal")
                raise _TwirpError(code, "injected failure", fault.status)
            try:
                request = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise _TwirpError("malformed", "the request body is not valid JSON") from None
            if not isinstance(request, dict):
                raise _TwirpError("malformed", "the request body is not a JSON object")
            scope = self._authenticate(headers)
            authenticated = True
            response = self._rpc(rpc, _Request(request), scope)
        except _TwirpError as exc:
            status = exc.status
            response = {"code": exc.code, "msg": exc.msg}
        if status == 200 and self.camel_case:
            response = _camelize(response)
        with self._lock:
            self._calls.append(TwirpCall(rpc or path, request, status, response, authenticated))
        return Reply(status, {"Content-Type": "application/json"}, json.dumps(response).encode())

    def _authenticate(self, headers: Mapping[str, str]) -> tuple[str, str]:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _TwirpError("unauthenticated", "missing bearer token")
        try:
            claims = verify_runtime_token(token.strip(), self.token_secret)
        except TokenError as exc:
            raise _TwirpError("unauthenticated", f"invalid runtime token: {exc}") from None
        scope = results_scope(claims)
        if scope is None:
            raise _TwirpError("permission_denied", "the token has no Actions.Results scope")
        return scope

    def _rpc(self, rpc: str, request: _Request, scope: tuple[str, str]) -> dict[str, Any]:
        run_id = request.string("workflow_run_backend_id")
        job_id = request.string("workflow_job_run_backend_id")
        if (run_id, job_id) != scope:
            raise _TwirpError("permission_denied", "backend ids do not match the token's scope")
        assert run_id is not None and job_id is not None
        handler: Callable[[_Request, str, str], dict[str, Any]] = {
            "CreateArtifact": self._create,
            "FinalizeArtifact": self._finalize,
            "ListArtifacts": self._list,
            "GetSignedArtifactURL": self._signed_url,
        }[rpc]
        with self._lock:
            return handler(request, run_id, job_id)

    def _find(self, run_id: str, name: str) -> ArtifactRecord | None:
        return next(
            (a for a in self._artifacts if a.run_backend_id == run_id and a.name == name), None
        )

    def _create(self, request: _Request, run_id: str, job_id: str) -> dict[str, Any]:
        name = request.string("name") or ""
        if not name or any(char in name for char in _INVALID_NAME_CHARS):
            raise _TwirpError("invalid_argument", f"invalid artifact name: {name!r}")
        version = request.int64("version", required=False) or 0
        if version < 4:
            raise _TwirpError("invalid_argument", f"unsupported artifact version {version}")
        expires_at = request.string("expires_at", required=False)
        if expires_at is not None and _parse_sas_time(expires_at) is None:
            raise _TwirpError("invalid_argument", "expires_at is not an RFC 3339 timestamp")
        mime_type = request.string("mime_type", required=False)
        if self._find(run_id, name) is not None:
            raise _TwirpError(
                "already_exists", "an artifact with this name already exists on the workflow run"
            )
        record = ArtifactRecord(
            id=next(self._ids),
            name=name,
            run_backend_id=run_id,
            job_backend_id=job_id,
            container=self.container,
            blob=f"{run_id}/{job_id}/artifacts/{uuid.uuid4().hex}.zip",
            version=version,
            created_at=datetime.now(UTC),
            expires_at=expires_at,
            mime_type=mime_type,
        )
        self._artifacts.append(record)
        return {"ok": True, "signed_upload_url": self.signed_url(record, "cw")}

    def _finalize(self, request: _Request, run_id: str, job_id: str) -> dict[str, Any]:
        name = request.string("name") or ""
        record = self._find(run_id, name)
        if record is None or record.job_backend_id != job_id:
            raise _TwirpError("not_found", f"artifact {name!r} was not created by this job")
        if record.finalized:
            raise _TwirpError("failed_precondition", f"artifact {name!r} is already finalized")
        size = request.int64("size")
        digest = request.string("hash", required=False)
        data = self.blob_store.read(record.container, record.blob)
        if data is None:
            raise _TwirpError("failed_precondition", f"no blob was uploaded for artifact {name!r}")
        if size != len(data):
            raise _TwirpError(
                "invalid_argument",
                f"size {size} does not match the uploaded blob ({len(data)} bytes)",
            )
        if digest is not None and digest != "sha256:" + hashlib.sha256(data).hexdigest():
            raise _TwirpError("invalid_argument", "hash does not match the uploaded blob")
        record.finalized = True
        record.size = size
        record.digest = digest
        return {"ok": True, "artifact_id": str(record.id)}

    def _list(self, request: _Request, run_id: str, job_id: str) -> dict[str, Any]:
        name_filter = request.string("name_filter", required=False)
        id_filter = request.int64("id_filter", required=False)
        found = [
            a
            for a in self._artifacts
            if a.run_backend_id == run_id
            and a.finalized
            and (name_filter is None or a.name == name_filter)
            and (id_filter is None or a.id == id_filter)
        ]
        artifacts = []
        for a in found:
            item: dict[str, Any] = {
                "workflow_run_backend_id": a.run_backend_id,
                "workflow_job_run_backend_id": a.job_backend_id,
                "database_id": str(a.id),
                "name": a.name,
                "size": str(a.size or 0),
                "created_at": _timestamp(a.created_at),
            }
            if a.digest is not None:
                item["digest"] = a.digest
            artifacts.append(item)
        return {"artifacts": artifacts}

    def _signed_url(self, request: _Request, run_id: str, job_id: str) -> dict[str, Any]:
        name = request.string("name") or ""
        record = self._find(run_id, name)
        if record is None or not record.finalized:
            raise _TwirpError("not_found", f"artifact {name!r} not found")
        return {"signed_url": self.signed_url(record, "r")}
