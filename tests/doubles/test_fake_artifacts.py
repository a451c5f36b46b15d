"""The local artifact service and blob stores behave like GitHub's and Azure's.

The conformance proof points the official npm client ``@actions/artifact`` (2.x) at the
fake and has it upload, look up and download an artifact, unchanged. It and real Azurite
come from npm; CI installs both with (about 25 s with a warm npm cache)::

    npm install --prefix .ci/node --no-save --no-package-lock --no-audit --no-fund \\
        @actions/artifact@2.3.2 azurite@3.37.0

``ORCHESTRA_NODE_DIR`` points at another install directory. Tests that need Node, the
client or Azurite skip, saying which, when they are missing.
"""

import base64
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from tests.doubles.fake_artifacts import (
    DEV_ACCOUNT,
    JOB_BACKEND_ID,
    RUN_BACKEND_ID,
    TWIRP_PREFIX,
    Azurite,
    FakeArtifactService,
    TokenError,
    blob_sas,
    find_azurite,
    mint_runtime_token,
    results_scope,
    verify_runtime_token,
)

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = Path(os.environ.get("ORCHESTRA_NODE_DIR", REPO / ".ci" / "node"))
INSTALL = (
    "npm install --prefix .ci/node --no-save --no-package-lock --no-audit --no-fund "
    "@actions/artifact@2.3.2 azurite@3.37.0"
)
IDS = {"workflow_run_backend_id": RUN_BACKEND_ID, "workflow_job_run_backend_id": JOB_BACKEND_ID}


@pytest.fixture(scope="module")
def azurite() -> Iterator[Azurite]:
    executable = find_azurite(NODE_DIR)
    if executable is None:
        pytest.skip(f"node or azurite-blob missing under {NODE_DIR}; install: {INSTALL}")
    with Azurite(executable) as running:
        yield running
    # close() really stopped it
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", running.port), timeout=1):
        pass


@pytest.fixture
def service() -> Iterator[FakeArtifactService]:
    with FakeArtifactService() as running:
        yield running


@pytest.fixture(params=["local", "azurite"])
def any_store(request: pytest.FixtureRequest) -> Iterator[FakeArtifactService]:
    """The service with each blob store, blob requests through its front."""
    store = request.getfixturevalue("azurite") if request.param == "azurite" else None
    with FakeArtifactService(store) as running:
        yield running


def rpc(
    service: FakeArtifactService,
    method: str,
    body: Any,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    sent = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token or service.runtime_token}",
        **(headers or {}),
    }
    return requests.post(
        service.origin + TWIRP_PREFIX + method, data=json.dumps(body), headers=sent, timeout=10
    )


def block_id(index: int) -> str:
    return base64.b64encode(f"block-{index:06d}".encode()).decode()


def put_blocks(url: str, chunks: list[bytes], content_type: str = "application/zip") -> None:
    for index, chunk in enumerate(chunks):
        reply = requests.put(
            f"{url}&comp=block&blockid={quote(block_id(index), safe='')}",
            data=chunk,
            timeout=10,
        )
        assert reply.status_code == 201, reply.text
    blocks = "".join(f"<Latest>{block_id(i)}</Latest>" for i in range(len(chunks)))
    reply = requests.put(
        f"{url}&comp=blocklist",
        data=f'<?xml version="1.0" encoding="utf-8"?><BlockList>{blocks}</BlockList>',
        headers={"x-ms-blob-content-type": content_type},
        timeout=10,
    )
    assert reply.status_code == 201, reply.text


def create(service: FakeArtifactService, name: str = "art") -> str:
    reply = rpc(service, "CreateArtifact", {**IDS, "name": name, "version": 4})
    assert reply.status_code == 200, reply.text
    url: str = reply.json()["signed_upload_url"]
    return url


def uploaded(service: FakeArtifactService, data: bytes, name: str = "art") -> str:
    url = create(service, name)
    put_blocks(url, [data[: len(data) // 2], data[len(data) // 2 :]])
    return url


def finalize(service: FakeArtifactService, data: bytes, name: str = "art") -> requests.Response:
    body = {**IDS, "name": name, "size": str(len(data))}
    body["hash"] = "sha256:" + hashlib.sha256(data).hexdigest()
    return rpc(service, "FinalizeArtifact", body)


def twirp_error(reply: requests.Response) -> tuple[int, str]:
    body = reply.json()
    assert set(body) >= {"code", "msg"}
    return reply.status_code, body["code"]


# -- runtime tokens ----------------------------------------------------------------------


def test_runtime_token_claims() -> None:
    token = mint_runtime_token("run", "job")
    claims = verify_runtime_token(token)
    assert results_scope(claims) == ("run", "job")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"typ": "JWT", "alg": "HS256"}


@pytest.mark.parametrize(
    "token",
    [
        mint_runtime_token(secret="other"),
        mint_runtime_token(lifetime=-120),
        "x.y",
        mint_runtime_token()[:-4] + "AAAA",
    ],
)
def test_bad_tokens_are_rejected(token: str) -> None:
    with pytest.raises(TokenError):
        verify_runtime_token(token)


# -- twirp -------------------------------------------------------------------------------


def test_create_upload_finalize_list_and_download(any_store: FakeArtifactService) -> None:
    service = any_store
    data = os.urandom(3000)
    uploaded(service, data)
    assert rpc(service, "ListArtifacts", IDS).json() == {"artifacts": []}  # not finalized yet
    reply = finalize(service, data)
    record = service.artifact("art")
    assert reply.json() == {"ok": True, "artifact_id": str(record.id)}
    assert service.blob(record) == data

    listed = rpc(service, "ListArtifacts", {**IDS, "name_filter": "art"}).json()["artifacts"]
    assert len(listed) == 1
    item = listed[0]
    assert item["database_id"] == str(record.id) and item["size"] == "3000"
    assert item["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert item["created_at"].endswith("Z")
    assert rpc(service, "ListArtifacts", {**IDS, "id_filter": str(record.id)}).json() == {
        "artifacts": listed
    }
    assert rpc(service, "ListArtifacts", {**IDS, "name_filter": "other"}).json() == {
        "artifacts": []
    }

    signed = rpc(service, "GetSignedArtifactURL", {**IDS, "name": "art"}).json()["signed_url"]
    download = requests.get(signed, timeout=10)
    assert download.status_code == 200 and download.content == data
    assert download.headers["Content-Type"] == "application/zip"
    ranged = requests.get(signed, headers={"x-ms-range": "bytes=10-19"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == data[10:20]


def test_camel_case_requests_and_responses(service: FakeArtifactService) -> None:
    service.camel_case = True
    camel_ids = {"workflowRunBackendId": RUN_BACKEND_ID, "workflowJobRunBackendId": JOB_BACKEND_ID}
    reply = rpc(service, "CreateArtifact", {**camel_ids, "name": "art", "version": 4})
    assert set(reply.json()) == {"ok", "signedUploadUrl"}
    put_blocks(reply.json()["signedUploadUrl"], [b"abc"])
    reply = rpc(service, "FinalizeArtifact", {**camel_ids, "name": "art", "size": 3})
    assert set(reply.json()) == {"ok", "artifactId"}
    listed = rpc(service, "ListArtifacts", camel_ids).json()["artifacts"]
    assert {"databaseId", "workflowRunBackendId", "createdAt"} <= set(listed[0])


def test_authentication(service: FakeArtifactService) -> None:
    body = {**IDS, "name": "art", "version": 4}
    no_auth = requests.post(
        service.origin + TWIRP_PREFIX + "CreateArtifact",
        json=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert twirp_error(no_auth) == (401, "unauthenticated")
    forged = mint_runtime_token(secret="guess")
    assert twirp_error(rpc(service, "CreateArtifact", body, forged)) == (401, "unauthenticated")
    no_scope = service.mint_token(scope="Actions.GenericRead:x")
    assert twirp_error(rpc(service, "CreateArtifact", body, no_scope)) == (
        403,
        "permission_denied",
    )
    other_job = service.mint_token(RUN_BACKEND_ID, "another-job")
    assert twirp_error(rpc(service, "CreateArtifact", body, other_job)) == (
        403,
        "permission_denied",
    )
    assert service.artifacts == []
    # only the last token was genuine (its scope just did not match the request)
    assert [call.authenticated for call in service.calls] == [False, False, False, True]


def test_routes_and_content_types(service: FakeArtifactService) -> None:
    assert twirp_error(rpc(service, "DeleteEverything", IDS)) == (404, "bad_route")
    wrong_type = rpc(service, "ListArtifacts", IDS, headers={"Content-Type": "text/plain"})
    assert twirp_error(wrong_type) == (404, "bad_route")
    get = requests.get(service.origin + TWIRP_PREFIX + "ListArtifacts", timeout=10)
    assert twirp_error(get) == (404, "bad_route")
    bad_json = requests.post(
        service.origin + TWIRP_PREFIX + "ListArtifacts",
        data="{",
        headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        timeout=10,
    )
    assert twirp_error(bad_json) == (400, "malformed")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "a/b", "version": 4}, (400, "invalid_argument")),
        ({"name": "a:b", "version": 4}, (400, "invalid_argument")),
        ({"name": "", "version": 4}, (400, "invalid_argument")),
        ({"name": "a", "version": 3}, (400, "invalid_argument")),
        ({"name": "a", "version": 4, "expires_at": "soon"}, (400, "invalid_argument")),
        ({"version": 4}, (400, "invalid_argument")),
    ],
)
def test_create_rejects_bad_requests(
    service: FakeArtifactService, body: dict[str, Any], expected: tuple[int, str]
) -> None:
    assert twirp_error(rpc(service, "CreateArtifact", {**IDS, **body})) == expected


def test_duplicate_names_are_rejected(service: FakeArtifactService) -> None:
    create(service, "art")
    reply = rpc(service, "CreateArtifact", {**IDS, "name": "art", "version": 4})
    assert twirp_error(reply) == (409, "already_exists")
    assert len(service.artifacts) == 1


def test_finalize_verifies_the_blob(service: FakeArtifactService) -> None:
    data = b"0123456789" * 10
    assert twirp_error(finalize(service, data)) == (404, "not_found")
    create(service)
    assert twirp_error(finalize(service, data)) == (412, "failed_precondition")  # no blob
    uploaded_url = create(service, "second")
    put_blocks(uploaded_url, [data])
    wrong_size = rpc(service, "FinalizeArtifact", {**IDS, "name": "second", "size": "99"})
    assert twirp_error(wrong_size) == (400, "invalid_argument")
    wrong_hash = {**IDS, "name": "second", "size": "100", "hash": "sha256:" + "0" * 64}
    assert twirp_error(rpc(service, "FinalizeArtifact", wrong_hash)) == (400, "invalid_argument")
    wrapped_hash = {**IDS, "name": "second", "size": "100", "hash": {"value": "sha256:x"}}
    assert twirp_error(rpc(service, "FinalizeArtifact", wrapped_hash)) == (400, "invalid_argument")
    not_a_number = {**IDS, "name": "second", "size": "ten"}
    assert twirp_error(rpc(service, "FinalizeArtifact", not_a_number)) == (400, "invalid_argument")
    assert finalize(service, data, "second").status_code == 200
    assert twirp_error(finalize(service, data, "second")) == (412, "failed_precondition")
    record = service.artifact("second")
    assert record.finalized and record.size == 100


def test_signed_url_only_for_finalized_artifacts(service: FakeArtifactService) -> None:
    create(service)
    reply = rpc(service, "GetSignedArtifactURL", {**IDS, "name": "art"})
    assert twirp_error(reply) == (404, "not_found")


def test_injected_faults(service: FakeArtifactService) -> None:
    service.fail("CreateArtifact", 503)
    reply = rpc(service, "CreateArtifact", {**IDS, "name": "art", "version": 4})
    assert twirp_error(reply) == (503, "unavailable")
    url = create(service)
    service.fail("PutBlock", 500, times=2)
    for _ in range(2):
        reply = requests.put(f"{url}&comp=block&blockid={block_id(0)}", data=b"x", timeout=10)
        assert reply.status_code == 500 and reply.headers["x-ms-error-code"] == "ServerBusy"
    service.fail("PutBlockList", 0)
    with pytest.raises(requests.ConnectionError):
        requests.put(f"{url}&comp=blocklist", data=b"<BlockList/>", timeout=10)
    assert [call.operation for call in service.blob_calls] == [
        "PutBlock",
        "PutBlock",
        "PutBlockList",
    ]
    with pytest.raises(ValueError, match="unknown operation"):
        service.fail("Nope")


# -- blob stores: the local one answers like Azurite --------------------------------------


def test_blob_sas_is_enforced(any_store: FakeArtifactService) -> None:
    service = any_store
    upload_url = create(service)
    put_blocks(upload_url, [b"hello"])
    base = upload_url.split("?")[0]
    reply = requests.get(upload_url, timeout=10)  # the upload SAS cannot read
    assert (reply.status_code, reply.headers["x-ms-error-code"]) == (
        403,
        "AuthorizationPermissionMismatch",
    )
    assert requests.get(base, timeout=10).status_code == 403  # no SAS at all
    tampered = upload_url.replace("sp=cw", "sp=rcw")
    assert requests.get(tampered, timeout=10).status_code == 403
    finalize(service, b"hello")
    signed = rpc(service, "GetSignedArtifactURL", {**IDS, "name": "art"}).json()["signed_url"]
    write = requests.put(f"{signed}&comp=block&blockid={block_id(0)}", data=b"x", timeout=10)
    assert (write.status_code, write.headers["x-ms-error-code"]) == (
        403,
        "AuthorizationPermissionMismatch",
    )
    record = service.artifact("art")
    expired = blob_sas(
        container=record.container,
        blob=record.blob,
        permissions="r",
        lifetime=timedelta(minutes=-1),
    )
    assert requests.get(f"{signed.split('?')[0]}?{expired}", timeout=10).status_code == 403
    assert requests.get(signed, timeout=10).content == b"hello"


def test_block_rules(any_store: FakeArtifactService) -> None:
    service = any_store
    url = create(service)
    bad_md5 = requests.put(
        f"{url}&comp=block&blockid={block_id(0)}",
        data=b"abc",
        headers={"Content-MD5": base64.b64encode(b"0" * 16).decode()},
        timeout=10,
    )
    assert (bad_md5.status_code, bad_md5.headers["x-ms-error-code"]) == (400, "Md5Mismatch")
    put_blocks(url, [b"abc"])
    unknown = requests.put(
        f"{url}&comp=blocklist",
        data=f"<BlockList><Latest>{block_id(0)}</Latest><Latest>{block_id(9)}</Latest></BlockList>",
        timeout=10,
    )
    assert (unknown.status_code, unknown.headers["x-ms-error-code"]) == (400, "InvalidBlockList")
    record = service.artifact("art")
    assert service.blob(record) == b"abc"  # the failed commit changed nothing
    put_blob = requests.put(url, data=b"whole", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert put_blob.status_code == 201
    assert service.blob(record) == b"whole"


def test_local_store_wants_a_content_length(service: FakeArtifactService) -> None:
    url = urlsplit(create(service))
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    connection.putrequest("PUT", f"{url.path}?{url.query}&comp=block&blockid={block_id(0)}")
    connection.endheaders()
    response = connection.getresponse()
    assert (response.status, response.getheader("x-ms-error-code")) == (
        411,
        "MissingContentLengthHeader",
    )
    connection.close()


def test_direct_urls_point_at_azurite(azurite: Azurite) -> None:
    with FakeArtifactService(azurite, direct_blob_urls=True) as service:
        url = create(service)
        assert url.startswith(f"{azurite.origin}/{DEV_ACCOUNT}/")
        put_blocks(url, [b"direct"])
        assert finalize(service, b"direct").status_code == 200
        assert service.blob("art") == b"direct"
        assert service.blob_calls == []


# -- the conformance proof: the official client, unchanged ---------------------------------

CLIENT_SCRIPT = """
const path = require('path')
const [nodeDir, name, root, downloadDir, ...files] = process.argv.slice(2)
const {DefaultArtifactClient} = require(
  path.join(nodeDir, 'node_modules', '@actions', 'artifact'))

async function main() {
  const client = new DefaultArtifactClient()
  const upload = await client.uploadArtifact(name, files, root)
  const {artifact} = await client.getArtifact(name)
  const download = await client.downloadArtifact(upload.id, {
    path: downloadDir, expectedHash: 'sha256:' + upload.digest})
  process.stdout.write('RESULT ' + JSON.stringify({upload, artifact, download}) + '\\n')
}
main().catch(error => {
  process.stderr.write('FAILED ' + ((error && error.stack) || error) + '\\n')
  process.exit(1)
})
"""


def official_client() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    package = NODE_DIR / "node_modules" / "@actions" / "artifact" / "package.json"
    if not package.is_file():
        pytest.skip(f"@actions/artifact is not installed under {NODE_DIR}; install: {INSTALL}")
    version = json.loads(package.read_text())["version"]
    if not version.startswith("2."):
        pytest.skip(f"@actions/artifact {version} installed; this test drives the 2.x client")
    return NODE_DIR


@pytest.mark.parametrize("store", ["azurite", "local"])
def test_official_client_uploads_and_finalizes_unchanged(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    node_dir = official_client()
    azurite = request.getfixturevalue("azurite") if store == "azurite" else None
    root = tmp_path / "files"
    (root / "logs").mkdir(parents=True)
    files = {
        "results.json": b'{"schemaVersion": 1}',
        "logs/a.log": os.urandom(40_000),
        "logs/b.log": b"line\n" * 2000,
    }
    for rel, content in files.items():
        (root / rel).write_bytes(content)
    script = tmp_path / "client.js"
    script.write_text(CLIENT_SCRIPT)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ACTIONS_", "GITHUB_", "RUNNER_"))
    }
    with FakeArtifactService(azurite, direct_blob_urls=azurite is not None) as service:
        env.update(service.env())
        env.update({"GITHUB_SERVER_URL": "https://github.com", "RUNNER_TEMP": str(tmp_path)})
        done = subprocess.run(
            ["node", str(script), str(node_dir), "orchestra-results", str(root)]
            + [str(tmp_path / "download")]
            + [str(root / rel) for rel in files],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(
            next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:]
        )
        record = service.artifact("orchestra-results")
        blob = service.blob(record)
        calls = service.calls

    assert blob is not None
    digest = hashlib.sha256(blob).hexdigest()
    # What the client made (its own size and digest of its zip stream) is what was stored.
    assert result["upload"] == {"size": len(blob), "digest": digest, "id": record.id}
    assert record.finalized and record.size == len(blob) and record.digest == f"sha256:{digest}"
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert sorted(archive.namelist()) == sorted(files)
        for rel, content in files.items():
            assert archive.read(rel) == content

    rpcs = [(call.rpc, call.status) for call in calls]
    assert rpcs[:2] == [("CreateArtifact", 200), ("FinalizeArtifact", 200)]
    assert calls[0].request == {**IDS, "name": "orchestra-results", "version": 4}
    assert calls[1].request == {
        **IDS,
        "name": "orchestra-results",
        "size": str(len(blob)),
        "hash": f"sha256:{digest}",
    }
    assert all(call.authenticated for call in calls)
    # It also reads our ListArtifacts and GetSignedArtifactURL answers, and downloads.
    assert ("GetSignedArtifactURL", 200) in rpcs
    assert result["artifact"]["id"] == record.id
    assert result["artifact"]["digest"] == f"sha256:{digest}"
    assert result["download"]["digestMismatch"] is False
    for rel, content in files.items():
        assert (tmp_path / "download" / rel).read_bytes() == content
