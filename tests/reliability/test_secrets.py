"""Secrets: with a token and secret-looking variables set, nothing the run writes holds them,
even when an agent prints them on purpose; and no agent holds the run's own credentials.

One Action run (against the fake GitHub) is shared by the tests of this module: four issue
tasks whose agent prints every secret value to stdout and stderr; one of them fails (so its
log tail goes to ``.error``, the comment and an annotation), one prints a secret across the
64 KiB boundary where the runner reads output in chunks, one prints a multi-line private key
and then enough output that the log tails cut through it. Scanned afterwards: every file
under the workspace (records, sentinels, logs, results.json, patches, artifact zip and its
members), ``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``, every request body sent to the API,
and stdout/stderr except the ``::add-mask::`` lines. Every agent also dumps its whole
environment (outside the workspace): none holds the Action's inputs, the runner's tokens
(``ACTIONS_RUNTIME_TOKEN`` and the others, set as the runner sets them, the artifact service
included) or a git extraheader; and, with the credential proxy on (the Action's default),
no provider key.
"""

import io
import json
import secrets
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestra_ci.agent_env import NEVER_PASSED
from orchestra_ci.credential_proxy import KEY_VARIABLES
from tests.conftest import write_agents
from tests.doubles.fake_artifacts import FakeArtifactService
from tests.doubles.fake_github import FakeGitHub
from tests.reliability.conftest import LABEL, REPO, action_env, run_action

LEAKY = """
import json, os, sys
prompt = sys.argv[-1]
dump = os.path.join(os.environ["ENV_DUMPS"], os.environ["ORCHESTRA_TASK_ID"] + ".json")
with open(dump, "w") as f:
    json.dump(dict(os.environ), f)
names = ["INPUT_GITHUB_TOKEN", "ANTHROPIC_API_KEY", "NPM_TOKEN", "DB_SECRET", "DEPLOY_KEY"]
if "BOUNDARY" in prompt:  # the token straddles the runner's 64 KiB read size
    sys.stdout.buffer.write(b"x" * (65536 - 10) + os.environb[b"BOUNDARY_TOKEN"] + b"\\n")
    sys.exit(0)
if "UMLAUT" in prompt:  # a non-ASCII secret whose 2-byte "ä" straddles the 64 KiB read size
    sys.stdout.buffer.write(b"x" * (65536 - 2) + os.environb[b"UMLAUT_SECRET"] + b"\\n")
    sys.exit(0)
if "SENTINEL" in prompt:  # the old protocol: the agent writes its own .error, a secret inside
    import json, pathlib
    tasks = pathlib.Path(os.environ["ORCHESTRA_ROOT"], ".orchestra", "tasks")
    secret = os.environ["SENTINEL_SECRET"]
    error = {"error": "login failed: " + secret, "details": secret, "timestamp": ""}
    (tasks / (os.environ["ORCHESTRA_TASK_ID"] + ".error")).write_text(json.dumps(error))
    sys.exit(1)
if "PEM" in prompt:  # a multi-line key, then output that pushes its start out of the tails
    print(os.environ["SSH_PRIVATE_KEY"], flush=True)
    print("y" * 3637, flush=True)  # .error keeps the last 4000 bytes: from inside the key
    sys.exit(1)
for name in names:  # those it has
    print(f"debug: {name}={os.environ.get(name, '')}!", flush=True)
    print(f"{os.environ.get(name, '')}", file=sys.stderr, flush=True)
sys.exit(1 if "FAIL" in prompt else 0)
"""

SINGLE_LINE = ["NPM_TOKEN", "DB_SECRET", "DEPLOY_KEY"]
# Each checked by its own test below, so that one leak does not hide another.
OWN_TESTS = {"BOUNDARY_TOKEN", "UMLAUT_SECRET", "SENTINEL_SECRET"}
# The run's own credentials, as the runner sets them: no agent may hold one.
RUNNER_CREDENTIALS = {
    "GITHUB_TOKEN": f"ghs_{secrets.token_hex(16)}",
    "GH_TOKEN": f"gho_{secrets.token_hex(16)}",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": f"oidc-{secrets.token_hex(16)}",
}
HEADER = f"AUTHORIZATION: basic {secrets.token_hex(16)}"
Leaked = tuple[dict[str, bytes], dict[str, str], int, dict[str, dict[str, str]]]


def pem() -> str:
    body = [secrets.token_urlsafe(48)[:64] for _ in range(6)]
    return "\n".join(
        ["-----BEGIN OPENSSH PRIVATE KEY-----", *body, "-----END OPENSSH PRIVATE KEY-----"]
    )


def scan(blobs: dict[str, bytes], values: dict[str, str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for where, data in blobs.items():
        for name, value in values.items():
            if value.encode() in data:
                found.setdefault(where, set()).add(name)
    return found


@pytest.fixture(scope="module")
def leaked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Leaked]:
    tmp = tmp_path_factory.mktemp("secrets")
    root = tmp / "workspace"
    (root / ".orchestra").mkdir(parents=True)
    dumps = tmp / "agent-environments"
    dumps.mkdir()
    write_agents(root, {"leaky": {"command": sys.executable, "args": ["-c", LEAKY, "{prompt}"]}})
    with FakeGitHub() as gh, FakeArtifactService() as artifacts:
        repo = gh.add_repo(REPO)
        repo.collaborators["maintainer"] = "maintain"
        for title, body in [
            ("prints", "print everything"),
            ("prints and fails", "print everything then FAIL"),
            ("boundary", "BOUNDARY"),
            ("key", "PEM"),
            ("umlaut", "UMLAUT"),
            ("own error file", "SENTINEL"),
        ]:
            gh.add_issue(REPO, title, body, user="maintainer", labels=[LABEL])
        env = action_env(root, gh, tmp, default_agent="leaky", credential_proxy="true")
        key = pem()
        values = {
            "INPUT_GITHUB_TOKEN": gh.token,
            "ANTHROPIC_API_KEY": f"sk-ant-{secrets.token_hex(16)}",
            "NPM_TOKEN": f"npm_{secrets.token_hex(16)}",
            "DB_SECRET": f"db-{secrets.token_hex(12)}",
            "DEPLOY_KEY": f"dk-{secrets.token_hex(12)}",
            "BOUNDARY_TOKEN": f"bt-{secrets.token_hex(12)}",
            "UMLAUT_SECRET": f"pässwörd-{secrets.token_hex(8)}",
            "SENTINEL_SECRET": f"ss-{secrets.token_hex(12)}",
            "ACTIONS_RUNTIME_TOKEN": artifacts.runtime_token,
            **RUNNER_CREDENTIALS,
        }
        env.update({k: v for k, v in values.items() if k != "INPUT_GITHUB_TOKEN"})
        env.update(artifacts.env())
        env.update(
            {
                "SSH_PRIVATE_KEY": key,
                "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.actions.example/oidc",
                "ACTIONS_CACHE_URL": "https://cache.actions.example/",
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.https://github.com/.extraheader",
                "GIT_CONFIG_VALUE_0": HEADER,
                "ENV_DUMPS": str(dumps),
            }
        )
        result = run_action(env)
        uploaded = artifacts.blob(artifacts.artifact("orchestra-results"))
        gh.wait_idle()
        bodies = [r.raw_body for r in gh.requests if r.raw_body]
        assert not gh.errors, gh.errors[0]

    blobs: dict[str, bytes] = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        name = str(path.relative_to(root))
        blobs[name] = data
        if path.suffix == ".zip":
            add_members(blobs, name, data)
    assert uploaded is not None
    blobs["uploaded artifact"] = uploaded
    add_members(blobs, "uploaded artifact", uploaded)
    blobs["$GITHUB_OUTPUT"] = Path(env["GITHUB_OUTPUT"]).read_bytes()
    blobs["$GITHUB_STEP_SUMMARY"] = Path(env["GITHUB_STEP_SUMMARY"]).read_bytes()
    blobs["API request bodies"] = b"\n".join(bodies)
    stdout = [line for line in result.stdout.splitlines() if not line.startswith("::add-mask::")]
    blobs["stdout"] = "\n".join(stdout).encode()
    blobs["stderr"] = result.stderr.encode()
    # Every line of the key is secret on its own: the Action masks it line by line too.
    key_lines = {f"SSH_PRIVATE_KEY line {n}": line for n, line in enumerate(key.splitlines()[1:-1])}
    environments = {p.stem: json.loads(p.read_text()) for p in dumps.glob("*.json")}
    yield blobs, {**values, **key_lines}, result.returncode, environments


def add_members(blobs: dict[str, bytes], name: str, data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.namelist():
            blobs[f"{name}!{member}"] = archive.read(member)


def is_log(where: str) -> bool:
    return where.startswith(".orchestra/logs/") or "!logs/" in where


def test_every_agent_dumped_its_environment(leaked: Leaked) -> None:
    """Guard against a vacuous pass of the two tests below."""
    _, _, _, environments = leaked
    assert sorted(environments) == [f"issue-{n}" for n in range(1, 7)]


def test_no_agent_holds_the_actions_inputs_or_the_runners_credentials(leaked: Leaked) -> None:
    _, values, _, environments = leaked
    secret = {**RUNNER_CREDENTIALS, "extraheader": HEADER}
    secret.update({k: values[k] for k in ("INPUT_GITHUB_TOKEN", "ACTIONS_RUNTIME_TOKEN")})
    for task, env in environments.items():
        forbidden = {n for n in env if n in NEVER_PASSED or n.startswith("INPUT_")}
        assert forbidden == set(), task
        assert scan({task: json.dumps(env).encode()}, secret) == {}
        assert env["NPM_TOKEN"] == values["NPM_TOKEN"]  # the user's own secrets still reach it


def test_no_agent_holds_a_provider_key_with_the_credential_proxy_on(leaked: Leaked) -> None:
    _, values, _, environments = leaked
    for task, env in environments.items():
        assert set(env) & KEY_VARIABLES == set(), task
        assert scan({task: json.dumps(env).encode()}, {"key": values["ANTHROPIC_API_KEY"]}) == {}


def test_the_run_itself_worked(leaked: Leaked) -> None:
    blobs, _, returncode, _ = leaked
    assert returncode == 1  # the failing issue
    assert ".orchestra/results.json" in blobs and ".orchestra/tasks/issue-2.error" in blobs
    assert "uploaded artifact!results.json" in blobs
    assert b"orchestra-ci:status issue-2" in blobs["API request bodies"]
    assert b"::add-mask::" not in blobs["stdout"]


def test_no_secret_in_records_report_summary_outputs_comments_or_streams(
    leaked: Leaked,
) -> None:
    blobs, values, _, _ = leaked
    singles = {k: v for k, v in values.items() if "line" not in k and k not in OWN_TESTS}
    surfaces = {k: v for k, v in blobs.items() if not is_log(k)}
    assert scan(surfaces, singles) == {}


def test_no_secret_in_the_logs_or_the_artifact(
    leaked: Leaked,
) -> None:
    blobs, values, _, _ = leaked
    singles = {k: v for k, v in values.items() if "line" not in k and k not in OWN_TESTS}
    assert scan({k: v for k, v in blobs.items() if is_log(k)}, singles) == {}


def test_no_secret_split_across_output_reads(
    leaked: Leaked,
) -> None:
    blobs, values, _, _ = leaked
    found = scan(blobs, {"BOUNDARY_TOKEN": values["BOUNDARY_TOKEN"]})
    assert found == {}


def test_no_line_of_a_multiline_secret_survives_a_cut_tail(
    leaked: Leaked,
) -> None:
    blobs, values, _, _ = leaked
    lines = {k: v for k, v in values.items() if "line" in k}
    surfaces = {k: v for k, v in blobs.items() if not is_log(k)}
    assert scan(surfaces, lines) == {}


def test_secret_values_were_really_printed(
    leaked: Leaked,
) -> None:
    """Guard against a vacuous pass: the agents did print every secret (in their logs)."""
    blobs, values, _, _ = leaked
    logs = b"".join(v for k, v in blobs.items() if k.startswith(".orchestra/logs/"))
    for name in SINGLE_LINE:
        assert values[name].encode() in logs or b"***" in logs, name
    json.loads(blobs[".orchestra/results.json"])


def test_no_non_ascii_secret_split_inside_a_character(
    leaked: Leaked,
) -> None:
    blobs, values, _, _ = leaked
    assert scan(blobs, {"UMLAUT_SECRET": values["UMLAUT_SECRET"]}) == {}


def test_no_secret_in_an_error_file_the_agent_wrote(
    leaked: Leaked,
) -> None:
    blobs, values, _, _ = leaked
    assert scan(blobs, {"SENTINEL_SECRET": values["SENTINEL_SECRET"]}) == {}
