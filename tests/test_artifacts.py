"""The artifact zip and its v4 upload, against the local artifact service.

Uploads run against the fake service with its in-process blob store and, when Azurite is
installed (``.ci/node``, see ``tests/doubles/test_fake_artifacts.py``), with real Azurite
behind it.
"""

import hashlib
import io
import json
import os
import random
import traceback
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from orchestra_ci import artifacts
from orchestra_ci.artifacts import (
    ArtifactError,
    RetrySettings,
    backend_ids,
    build_zip,
    publish,
    upload,
    validate_name,
)
from tests.doubles.fake_artifacts import (
    JOB_BACKEND_ID,
    RUN_BACKEND_ID,
    Azurite,
    FakeArtifactService,
    find_azurite,
    mint_runtime_token,
)

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = Path(os.environ.get("ORCHESTRA_NODE_DIR", REPO / ".ci" / "node"))
FAST = RetrySettings(attempts=3, wait=0.01, max_wait=0.02, timeout=10)

EXPECTED = [
    "logs/a.log",
    "logs/b.log",
    "patches/a.patch",
    "results.json",
    "tasks/a.done",
    "tasks/a.json",
    "tasks/b.error",
    "tasks/b.json",
    "tasks/c.json",
]


def make_run(orchestra: Path, log_bytes: int = 1000) -> Path:
    """An ``.orchestra/`` directory with run files and things that must stay out."""
    files = {
        "tasks/a.json": '{"taskId": "a"}',
        "tasks/a.done": "",
        "tasks/b.json": '{"taskId": "b"}',
        "tasks/b.error": "exit 1",
        "tasks/c.json": '{"taskId": "c"}',
        "tasks/c.pid": "4242",
        "tasks/.a.json.123.abcd1234.tmp": "partial",
        "tasks/.hidden.json": "{}",
        "tasks/notes.txt": "no",
        "logs/a.log": "log a\n",
        "logs/b.log": random.Random(log_bytes).randbytes(log_bytes),
        "logs/.b.log.tmp": "no",
        "logs/a.txt": "no",
        "patches/a.patch": "diff --git a/x b/x\n",
        "patches/a.diff": "no",
        "results.json": '{"schemaVersion": 1}',
        "agent-config.json": '{"agents": {}}',
        "tasks.yml": "tasks: []",
        "queue.lock": "",
        "runners/r1.lock": "",
        "worktrees/a/logs/x.log": "no",
        "artifacts/old.zip": "no",
    }
    for rel, content in files.items():
        path = orchestra / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    secret = orchestra.parent / "outside.log"
    secret.write_text("not part of the run")
    link = orchestra / "logs" / "link.log"
    if not link.is_symlink():
        link.symlink_to(secret)
    return orchestra


@pytest.fixture
def orchestra(tmp_path: Path) -> Path:
    return make_run(tmp_path / "project" / ".orchestra")


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    executable = find_azurite(NODE_DIR)
    if executable is None:
        pytest.skip(f"azurite-blob not installed under {NODE_DIR} (see test_fake_artifacts.py)")
    with Azurite(executable) as running:
        yield running


@pytest.fixture(params=["local", "azurite"])
def service(request: pytest.FixtureRequest) -> Iterator[FakeArtifactService]:
    store = request.getfixturevalue("azurite") if request.param == "azurite" else None
    with FakeArtifactService(store) as running:
        yield running


@pytest.fixture
def local_service() -> Iterator[FakeArtifactService]:
    with FakeArtifactService() as running:
        yield running


def upload_to(service: FakeArtifactService, path: Path, name: str = "run", **kwargs: Any) -> Any:
    return upload(
        path,
        name,
        runtime_token=service.runtime_token,
        results_url=service.url,
        retry=kwargs.pop("retry", FAST),
        **kwargs,
    )


# -- the zip -----------------------------------------------------------------------------


def test_zip_holds_exactly_the_run_files(orchestra: Path, tmp_path: Path) -> None:
    path = build_zip(orchestra, tmp_path / "out" / "run.zip")
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == EXPECTED
        for name in EXPECTED:
            assert archive.read(name) == (orchestra / name).read_bytes()
        assert archive.testzip() is None


def test_zip_is_deterministic(orchestra: Path, tmp_path: Path) -> None:
    first = build_zip(orchestra, tmp_path / "1.zip").read_bytes()
    second = build_zip(orchestra, tmp_path / "2.zip").read_bytes()
    assert first == second


def test_zip_of_an_empty_run_is_an_empty_archive(tmp_path: Path) -> None:
    (tmp_path / ".orchestra").mkdir()
    path = build_zip(tmp_path / ".orchestra", tmp_path / "empty.zip")
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == []


def test_zip_of_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a directory"):
        build_zip(tmp_path / "missing", tmp_path / "x.zip")


# -- names and tokens --------------------------------------------------------------------


@pytest.mark.parametrize("bad", ['a"b', "a:b", "a<b", "a>b", "a|b", "a*b", "a?b", "a\rb", "a\nb"])
def test_invalid_artifact_names_are_rejected(bad: str) -> None:
    with pytest.raises(ArtifactError, match="invalid artifact name"):
        validate_name(bad)


@pytest.mark.parametrize("bad", ["a\\b", "a/b", "../x"])
def test_names_with_slashes_are_rejected_before_any_file_is_written(
    bad: str, orchestra: Path
) -> None:
    with pytest.raises(ArtifactError, match="slash"):
        publish(orchestra, bad, {})
    assert not (orchestra / "artifacts" / "x.zip").exists()


def test_empty_name_is_rejected() -> None:
    with pytest.raises(ArtifactError, match="empty"):
        validate_name(" ")
    assert validate_name("orchestra-run 1 (shard 2)") == "orchestra-run 1 (shard 2)"


def test_backend_ids_come_from_the_results_scope() -> None:
    ids = backend_ids(mint_runtime_token("run-1", "job-2"))
    assert (ids.workflow_run_backend_id, ids.workflow_job_run_backend_id) == ("run-1", "job-2")


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        mint_runtime_token(scope="Actions.GenericRead:abc"),
        mint_runtime_token(scope="Actions.Results:only-one"),
    ],
)
def test_tokens_without_results_scope_are_rejected_without_echoing_them(token: str) -> None:
    with pytest.raises(ArtifactError, match=r"Actions\.Results") as caught:
        backend_ids(token)
    assert token not in str(caught.value)


# -- upload ------------------------------------------------------------------------------


def test_upload_and_finalize(service: FakeArtifactService, orchestra: Path, tmp_path: Path) -> None:
    make_run(orchestra, log_bytes=50_000)
    path = build_zip(orchestra, tmp_path / "run.zip")
    data = path.read_bytes()
    result = upload_to(service, path, "orchestra-run", chunk_size=8192)

    record = service.artifact("orchestra-run")
    assert record.finalized
    assert service.blob(record) == data
    assert record.size == len(data) == result.size
    assert record.digest == f"sha256:{hashlib.sha256(data).hexdigest()}" == result.digest
    assert result.artifact_id == record.id

    chunks = -(-len(data) // 8192)
    assert chunks > 1
    assert service.count("PutBlock") == chunks
    assert service.count("PutBlockList") == 1
    assert not any(call.had_authorization_header for call in service.blob_calls)
    create, finalize = service.calls
    assert create.request == {
        "workflow_run_backend_id": RUN_BACKEND_ID,
        "workflow_job_run_backend_id": JOB_BACKEND_ID,
        "name": "orchestra-run",
        "version": 4,
    }
    assert finalize.request["size"] == str(len(data))
    assert finalize.request["hash"] == result.digest
    with zipfile.ZipFile(io.BytesIO(service.blob(record) or b"")) as archive:
        assert archive.namelist() == EXPECTED


def test_camel_case_responses(
    service: FakeArtifactService, orchestra: Path, tmp_path: Path
) -> None:
    service.camel_case = True
    path = build_zip(orchestra, tmp_path / "run.zip")
    result = upload_to(service, path)
    assert "signedUploadUrl" in service.calls[0].response
    assert "artifactId" in service.calls[1].response
    assert result.artifact_id == service.artifact("run").id
    assert service.blob("run") == path.read_bytes()


@pytest.mark.parametrize(
    ("operation", "status"),
    [
        ("CreateArtifact", 503),
        ("PutBlock", 503),
        ("PutBlockList", 500),
        ("FinalizeArtifact", 429),
        ("PutBlock", 0),
        ("CreateArtifact", 0),
    ],
)
def test_retryable_failures_are_retried(
    service: FakeArtifactService, orchestra: Path, tmp_path: Path, operation: str, status: int
) -> None:
    path = build_zip(orchestra, tmp_path / "run.zip")
    service.fail(operation, status)
    result = upload_to(service, path)
    assert service.count(operation) == 2
    assert service.artifact("run").finalized
    assert service.blob("run") == path.read_bytes()
    assert result.size == len(path.read_bytes())


def test_gives_up_after_the_configured_attempts(
    local_service: FakeArtifactService, orchestra: Path, tmp_path: Path
) -> None:
    path = build_zip(orchestra, tmp_path / "run.zip")
    local_service.fail("PutBlock", 503, times=10)
    with pytest.raises(ArtifactError, match=r"Put Block 0 failed after 3 attempts.*503") as caught:
        upload_to(local_service, path)
    assert local_service.count("PutBlock") == 3
    assert "sig=" not in str(caught.value)
    assert not local_service.artifact("run").finalized


def test_unauthorized_is_an_error_without_the_token(
    local_service: FakeArtifactService,
    orchestra: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = build_zip(orchestra, tmp_path / "run.zip")
    token = mint_runtime_token(secret="not-the-service-secret")
    with pytest.raises(ArtifactError, match=r"CreateArtifact: HTTP 401 unauthenticated") as caught:
        upload(path, "run", runtime_token=token, results_url=local_service.url, retry=FAST)
    assert local_service.count("CreateArtifact") == 1  # not retried
    text = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
    output = capsys.readouterr()
    assert token not in text + output.out + output.err


def test_duplicate_name_is_an_error(
    local_service: FakeArtifactService, orchestra: Path, tmp_path: Path
) -> None:
    path = build_zip(orchestra, tmp_path / "run.zip")
    upload_to(local_service, path)
    with pytest.raises(ArtifactError, match="409 already_exists"):
        upload_to(local_service, path)
    assert local_service.count("CreateArtifact") == 2


def test_bad_results_url_is_an_error(orchestra: Path, tmp_path: Path) -> None:
    path = build_zip(orchestra, tmp_path / "run.zip")
    with pytest.raises(ArtifactError, match="ACTIONS_RESULTS_URL"):
        upload(path, "run", runtime_token=mint_runtime_token(), results_url="results.example")


def test_unreachable_service_is_retried_then_reported(orchestra: Path, tmp_path: Path) -> None:
    path = build_zip(orchestra, tmp_path / "run.zip")
    with FakeArtifactService() as stopped:
        url = stopped.url
    token = mint_runtime_token()
    with pytest.raises(ArtifactError, match="CreateArtifact failed after 3 attempts") as caught:
        upload(path, "run", runtime_token=token, results_url=url, retry=FAST)
    assert token not in "".join(traceback.format_exception(caught.value))


# -- responses the fake does not give: a scripted session ---------------------------------


class ScriptedSession(requests.Session):
    """Answers each request with the next scripted (status, JSON body, headers)."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.sent.append((str(method), str(url), dict(kwargs.get("headers") or {})))
        status, body = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode() if body is not None else b""
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        return response


def scripted_upload(tmp_path: Path, session: ScriptedSession, token: str | None = None) -> Any:
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return upload(
        path,
        "x",
        runtime_token=token or mint_runtime_token(),
        results_url="https://results.example/some/path",
        retry=FAST,
        session=session,
    )


def test_camel_case_and_numeric_ids(tmp_path: Path) -> None:
    session = ScriptedSession(
        (200, {"ok": True, "signedUploadUrl": "https://blob.example/c/b?sv=1&sig=s"}),
        (201, None),
        (201, None),
        (200, {"ok": True, "artifactId": 77}),
    )
    result = scripted_upload(tmp_path, session)
    assert result.artifact_id == 77
    methods_urls = [(m, u.split("?")[0]) for m, u, _ in session.sent]
    assert methods_urls == [
        ("POST", f"https://results.example/twirp/{artifacts.SERVICE}/CreateArtifact"),
        ("PUT", "https://blob.example/c/b"),
        ("PUT", "https://blob.example/c/b"),
        ("POST", f"https://results.example/twirp/{artifacts.SERVICE}/FinalizeArtifact"),
    ]
    assert "comp=block&blockid=" in session.sent[1][1]
    assert session.sent[2][1].endswith("&comp=blocklist")
    assert session.sent[2][2]["x-ms-blob-content-type"] == "application/zip"
    assert "Authorization" not in session.sent[1][2]


@pytest.mark.parametrize(
    "create",
    [
        {"ok": False, "signed_upload_url": "https://blob.example/x?sig=s"},
        {"signed_upload_url": "https://blob.example/x?sig=s"},  # ok omitted means false
        {"ok": True},
        [],
    ],
)
def test_not_ok_responses_are_errors(tmp_path: Path, create: Any) -> None:
    with pytest.raises(ArtifactError, match="CreateArtifact"):
        scripted_upload(tmp_path, ScriptedSession((200, create)))


def test_service_messages_are_scrubbed_of_the_token(tmp_path: Path) -> None:
    token = mint_runtime_token()
    session = ScriptedSession(
        (200, {"ok": True, "signed_upload_url": "https://blob.example/x?sv=1&sig=SECRETSIG"}),
        (201, None),
        (201, None),
        (
            400,
            {"code": "invalid_argument", "msg": f"bad token {token} for https://b/x?sig=SECRETSIG"},
        ),
    )
    with pytest.raises(
        ArtifactError, match="FinalizeArtifact: HTTP 400 invalid_argument"
    ) as caught:
        scripted_upload(tmp_path, session, token)
    assert token not in str(caught.value)
    assert "SECRETSIG" not in str(caught.value)


# -- publish -----------------------------------------------------------------------------


def test_publish_without_a_runtime_token_writes_the_zip(orchestra: Path) -> None:
    result = publish(orchestra, "orchestra-results", {"ACTIONS_RESULTS_URL": "https://r.example/"})
    target = orchestra / "artifacts" / "orchestra-results.zip"
    assert result.path == target and not result.uploaded and result.artifact_id is None
    data = target.read_bytes()
    assert result.size == len(data)
    assert result.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == EXPECTED
    assert sorted(p.name for p in (orchestra / "artifacts").iterdir()) == [
        "old.zip",
        "orchestra-results.zip",
    ]
    # a second run replaces it, and does not archive the previous zip
    publish(orchestra, "orchestra-results", {})
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == EXPECTED


def test_publish_with_a_runtime_token_uploads(
    local_service: FakeArtifactService, orchestra: Path
) -> None:
    result = publish(orchestra, "orchestra-results", local_service.env(), retry=FAST)
    record = local_service.artifact("orchestra-results")
    assert result.uploaded and result.artifact_id == record.id and result.path is None
    blob = local_service.blob(record) or b""
    assert result.size == len(blob) == record.size
    assert result.digest == record.digest
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert archive.namelist() == EXPECTED
    assert not (orchestra / "artifacts" / "orchestra-results.zip").exists()
