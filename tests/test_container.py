"""The action as a runner runs it: the image built from this checkout, started by nektos/act
(a runner implementation) or by ``docker run``, against the stand-in GitHub API and model
providers on 127.0.0.1 (the containers share the host's network).

Run them with ``python -m pytest -m container`` (deselected by default: a cold build takes
minutes). Without a Docker engine, act or the base images they skip, saying which is
missing. See the README, "Development".
"""

import json
import os
import re
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci.comments import marker
from orchestra_ci.presets import PRESETS
from tests.container_image import REPO, Unavailable, act_binary, docker, ensure_image, run_action
from tests.doubles.fake_github import FakeGitHub
from tests.doubles.fake_provider import FakeProvider

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

# The workspace's owner: the runner's user on GitHub (1001) while the action runs as root.
# Tests running as root hand the workspace to 1001; elsewhere (a GitHub runner) it is ours.
OWNER = (1001, 1001) if os.geteuid() == 0 else (os.getuid(), os.getgid())
ACTION = "org/orchestra-ci@v1"
ACT_TAG = "act-org-orchestra-ci-v1-dockeraction:latest"  # the name act gives that image
REPOSITORY = "octo/widgets"
EXTRA_SECRET = "sk-extra-container-secret-0123456789"  # passed as a plain env value
DEMO = REPO / "examples" / "demo"


@pytest.fixture(scope="module")
def image() -> str:
    try:
        return ensure_image()
    except Unavailable as why:
        pytest.skip(str(why))


@pytest.fixture(scope="module")
def act(image: str) -> str:
    found = act_binary()
    if found is None:
        pytest.skip("nektos/act is not installed (PATH or $ACT)")
    docker("tag", image, ACT_TAG)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workspace(tmp_path: Path, workflow: str, *, extra_tasks: str = "") -> Path:
    """A repository like a checkout: the demo batch, a workflow, an origin on GitHub, owned
    by the runner's user."""
    ws = tmp_path / "ws"
    (ws / ".github" / "workflows").mkdir(parents=True)
    (ws / ".github" / "workflows" / "test.yml").write_text(workflow)
    (ws / ".orchestra").mkdir()
    tasks = (DEMO / ".orchestra" / "tasks.yml").read_text() + extra_tasks
    (ws / ".orchestra" / "tasks.yml").write_text(tasks)
    (ws / "prompts").mkdir()
    for prompt in (DEMO / "prompts").iterdir():
        (ws / "prompts" / prompt.name).write_text(prompt.read_text())
    git = ["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (
        ["init", "-q", "-b", "main"],
        ["remote", "add", "origin", f"https://github.com/{REPOSITORY}.git"],
        ["add", "-A"],
        ["commit", "-q", "-m", "base"],
    ):
        subprocess.run([*git, *args], check=True, capture_output=True)
    chown(ws)
    return ws


def chown(path: Path) -> None:
    if os.geteuid() == 0:
        for item in [path, *path.rglob("*")]:
            os.lchown(item, *OWNER)


def not_owned(ws: Path, skip: set[str]) -> list[str]:
    return [
        str(p.relative_to(ws))
        for p in [ws, *ws.rglob("*")]
        if p.relative_to(ws).parts[:1] not in [(s,) for s in skip]
        and (p.lstat().st_uid, p.lstat().st_gid) != OWNER
    ]


@dataclass
class ActRun:
    returncode: int
    text: str
    entries: list[dict[str, Any]]
    artifacts: Path

    def of(self, step: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if (e.get("stepID") or e.get("stepid")) == [step]]

    def output(self, step: str) -> list[str]:
        """What the step's container printed (not act's own lines nor workflow commands)."""
        return [e["msg"].rstrip("\n") for e in self.of(step) if e.get("raw_output")]

    def status(self, step: str) -> int:
        found = [
            int(m[1]) for e in self.of(step) if (m := re.match(r"Return status: (-?\d+)", e["msg"]))
        ]
        assert len(found) == 1, (step, found, self.tail())
        return found[0]

    def seconds(self, step: str) -> float:
        (ns,) = [e["executionTime"] for e in self.of(step) if "stepResult" in e]
        return float(ns) / 1e9

    def window(self, step: str) -> float:
        """Seconds from act starting the step's container to the step's result."""
        (started,) = [e["time"] for e in self.of(step) if "docker run image=" in e["msg"]]
        (ended,) = [e["time"] for e in self.of(step) if "stepResult" in e]
        span = datetime.fromisoformat(ended) - datetime.fromisoformat(started)
        return span.total_seconds()

    def summary(self, step: str) -> str:
        return "\n".join(e["msg"] for e in self.of(step) if "Summary - " in e["msg"])

    def tail(self) -> str:
        return "\n".join(str(e.get("msg", "")).rstrip() for e in self.entries[-60:])


def run_act(
    ws: Path,
    act: str,
    tmp: Path,
    *,
    env: dict[str, str],
    secrets: dict[str, str],
    platform: str,
) -> ActRun:
    """act on ``ws``'s workflow as the lab README describes: the prebuilt image, the job in
    a local image on the host network, every server on loopback."""
    home = tmp / "act-home"
    home.mkdir(exist_ok=True)
    (home / ".actrc").write_text(f"-P ubuntu-latest={platform}\n")
    artifacts = tmp / "artifacts"
    command = [
        act,
        "push",
        "--json",
        "-v",
        "-b",
        "-W",
        str(ws / ".github" / "workflows" / "test.yml"),
        "-P",
        f"ubuntu-latest={platform}",
        "--network",
        "host",
        "--rebuild=false",
        "--pull=false",
        "--local-repository",
        f"{ACTION}={REPO}",
        "--container-daemon-socket",
        "-",
        "--no-cache-server",
        "--rm",  # act keeps a failed job's container for debugging, unless told
        "--artifact-server-path",
        str(artifacts),
        "--artifact-server-addr",
        "127.0.0.1",
        "--artifact-server-port",
        str(free_port()),
        *(arg for k, v in env.items() for arg in ("--env", f"{k}={v}")),
        *(arg for k, v in secrets.items() for arg in ("--secret", f"{k}={v}")),
    ]
    run_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        **{k: v for k, v in os.environ.items() if k.startswith("DOCKER_")},
    }
    try:
        result = subprocess.run(
            command,
            cwd=ws,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:  # act names the job's container after the workflow and the job
        left = docker("ps", "-aq", "--filter", "name=act-container-test-", check=False)
        if left.stdout.split():
            docker("rm", "-f", *left.stdout.split(), check=False)
    text = result.stdout + result.stderr
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "msg" in entry:
            entries.append(entry)
    return ActRun(result.returncode, text, entries, artifacts)


def error_lines(lines: list[str]) -> list[str]:
    """Lines that are neither structured log records nor blank."""
    out = []
    for line in lines:
        try:
            if isinstance(json.loads(line), dict):
                continue
        except ValueError:
            pass
        if line.strip():
            out.append(line)
    return out


def files_text(
    root: Path, skip: tuple[str, ...] = (".git", ".github")
) -> Iterator[tuple[str, str]]:
    for path in root.rglob("*"):
        if path.is_file() and not set(path.relative_to(root).parts) & set(skip):
            data = path.read_bytes()
            yield str(path), data.decode("utf-8", "replace")
            if path.suffix == ".zip":
                with zipfile.ZipFile(path) as z:
                    for name in z.namelist():
                        yield f"{path}:{name}", z.read(name).decode("utf-8", "replace")


# -- the batch under act ------------------------------------------------------------------

WORKFLOW_HEAD = """\
name: container test
on: push
jobs:
  batch:
    runs-on: ubuntu-latest
    steps:
      - id: batch
"""

BATCH_WORKFLOW = (
    WORKFLOW_HEAD
    + """\
        continue-on-error: true
        uses: org/orchestra-ci@v1
        env:
          EXTRA_API_KEY: "%(secret)s"
        with:
          issue_label: agent
          default_agent: demo
          parallel: "2"
          max_retries: "0"
      - id: later
        if: always()
        env:
          RESULTS: ${{ steps.batch.outputs.results }}
          TOTAL: ${{ steps.batch.outputs.total }}
          COMPLETE: ${{ steps.batch.outputs.complete }}
          FAILED: ${{ steps.batch.outputs.failed }}
          PENDING: ${{ steps.batch.outputs.pending }}
          ARTIFACT: ${{ steps.batch.outputs.artifact-id }}
        run: |
          mkdir -p later
          cp "$RESULTS" later/results.json
          printf '%%s\\n' "results=$RESULTS" "total=$TOTAL" "complete=$COMPLETE" \\
            "failed=$FAILED" "pending=$PENDING" "artifact=$ARTIFACT" > later/outputs.txt
      - id: empty-token
        continue-on-error: true
        uses: org/orchestra-ci@v1
        with:
          issue_label: agent
          github_token: ""
          default_agent: demo
      - if: always()
        run: >
          echo "batch=${{ steps.batch.outcome }} empty-token=${{ steps.empty-token.outcome }}"
          > later/outcomes.txt
"""
)

LEAKY_AGENT = {
    "agents": {
        "leaky": {
            "command": "sh",
            "args": [
                "-c",
                'echo "key=$EXTRA_API_KEY input=$INPUT_GITHUB_TOKEN token=$GITHUB_TOKEN"; exit 3',
                "{prompt}",
            ],
        }
    }
}


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        repo = gh.add_repo(REPOSITORY)
        repo.collaborators["maintainer"] = "maintain"
        gh.add_issue(
            REPOSITORY, "Tidy the docs", "Please tidy", user="maintainer", labels=["agent"]
        )
        yield gh
    assert not gh.errors, gh.errors[0]


def test_batch_under_act(act: str, image: str, github: FakeGitHub, tmp_path: Path) -> None:
    """Outputs a later step can use (results relative to the workspace: defect 1), the job
    summary, the artifact on act's server, one comment per issue, the workspace handed back
    to its owner, no secret anywhere; then an empty token with issue_label: one line, exit 2
    (defect 2)."""
    ws = workspace(
        tmp_path,
        BATCH_WORKFLOW % {"secret": EXTRA_SECRET},
        extra_tasks="  - {id: leaky, agent: leaky, prompt: print the keys}\n",
    )
    (ws / ".orchestra" / "agent-config.json").write_text(json.dumps(LEAKY_AGENT))
    chown(ws)
    run = run_act(
        ws,
        act,
        tmp_path,
        env={"GITHUB_API_URL": github.url, "ORCHESTRA_GITHUB_MIN_INTERVAL": "0"},
        secrets={"GITHUB_TOKEN": github.token},
        platform=image,
    )
    assert run.returncode == 0, run.tail()
    assert run.status("batch") == 1, run.tail()  # the leaky task failed for good

    # outputs, read by a later step on the job's side
    outputs = dict(
        line.split("=", 1) for line in (ws / "later" / "outputs.txt").read_text().splitlines()
    )
    assert outputs["results"] == ".orchestra/results.json"
    assert (outputs["total"], outputs["complete"], outputs["failed"], outputs["pending"]) == (
        "7",
        "6",
        "1",
        "0",
    )
    assert outputs["artifact"].isdigit()
    copied = json.loads((ws / "later" / "results.json").read_text())
    assert copied == json.loads((ws / ".orchestra" / "results.json").read_text())
    assert {t["id"] for t in copied["tasks"]} >= {"issue-1", "leaky", "lint"}

    # the job summary
    summary = run.summary("batch")
    assert "## orchestra-ci" in summary and "issue-1" in summary and "leaky" in summary

    # the artifact, uploaded to act's artifact server
    (zipped,) = run.artifacts.rglob("*.zip")
    assert zipped.parent.name == "orchestra-results"
    names = zipfile.ZipFile(zipped).namelist()
    assert {"results.json", "tasks/issue-1.json", "logs/leaky.log"} <= set(names)

    # the issue: one status comment, labels moved
    repo = github.state.repo(REPOSITORY)
    assert repo is not None
    ours = [c for c in repo.comments_on(1) if marker("issue-1") in c.body]
    assert len(ours) == 1 and "done" in ours[0].body
    assert set(repo.issues[1].labels) == {"orchestra:done"}

    # the workspace is the runner's user's again (later/ was written by a `run:` step)
    assert not_owned(ws, skip={"later"}) == []

    # the agent printed the secrets; none of them is anywhere
    leaky_log = (ws / ".orchestra" / "logs" / "leaky.log").read_text()
    assert "key=" in leaky_log
    # act's own debug lines print the step's env as the workflow wrote it: not ours to mask
    shown = "\n".join(e["msg"] for e in run.entries if e.get("level") != "debug")
    places = [("act output", shown), *files_text(ws), *files_text(run.artifacts)]
    places += [(f"comment {c.id}", c.body) for c in repo.comments_on(1)]
    for secret in (EXTRA_SECRET, github.token):
        leaks = [where for where, text in places if secret in text]
        assert leaks == [], (secret[:6], leaks)

    # defect 2: issue_label with an empty token is a usage error in one line. A container
    # that exits this soon can lose its last output on the way through Docker's attach
    # stream (seen once here under load: one blank line came through): what does arrive
    # must be that line; that it is printed is checked on the host (test_action.py).
    assert run.status("empty-token") == 2
    lines = run.output("empty-token")
    assert len(error_lines(lines)) <= 1, lines
    assert all(line.startswith("orchestra-ci: error: ") for line in error_lines(lines)), lines
    assert "Traceback" not in "\n".join(e["msg"] for e in run.of("empty-token"))
    outcomes = (ws / "later" / "outcomes.txt").read_text().split()
    assert outcomes == ["batch=failure", "empty-token=failure"]


UNREACHABLE_WORKFLOW = (
    WORKFLOW_HEAD
    + """\
        uses: org/orchestra-ci@v1
        env:
          ORCHESTRA_GITHUB_MAX_WAIT: 5s
        with:
          issue_label: agent
          github_token: ghs_set_but_github_is_not_there
          default_agent: demo
"""
)


def test_unreachable_github_under_act(act: str, image: str, tmp_path: Path) -> None:
    """Defect 3: GitHub unreachable (nothing listens on the port) with
    ORCHESTRA_GITHUB_MAX_WAIT=5s ends within that wait, in one line, without a traceback."""
    ws = workspace(tmp_path, UNREACHABLE_WORKFLOW)
    closed = free_port()  # bound then released: nothing listens there
    run = run_act(
        ws,
        act,
        tmp_path,
        env={"GITHUB_API_URL": f"http://127.0.0.1:{closed}"},
        secrets={},
        platform=image,
    )
    assert run.returncode != 0
    assert run.status("batch") in (1, 2), run.tail()
    lines = run.output("batch")
    errors = error_lines(lines)
    assert len(errors) == 1, lines
    assert errors[0].startswith("orchestra-ci: error: ") and "GitHub" in errors[0]
    assert "Traceback" not in run.text
    # Bounded by the wait, not by the retries (the defect: 265 s). From the container's
    # start to the step's end (act's clock, whole seconds): 6-9 s measured here, the rest of
    # the bound is room for a loaded machine, not for the product.
    assert run.window("batch") <= 5 + 25, run.tail()
    # the step as a whole, the container's creation included (this engine copies images)
    assert run.seconds("batch") < 60, run.seconds("batch")


# -- the image without act ----------------------------------------------------------------


def test_unwritable_github_output_is_a_warning(image: str, tmp_path: Path) -> None:
    """Defect 4: GITHUB_OUTPUT naming a file in a missing folder: a warning, and the
    run's result stands (exit 0, results.json written, the workspace handed back)."""
    ws = workspace(tmp_path, "")
    commands = tmp_path / "file_commands"
    commands.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "HOME": "/github/home",
        "GITHUB_OUTPUT": "/github/file_commands/missing/output.txt",
        "GITHUB_STEP_SUMMARY": "/github/file_commands/summary.md",
        "INPUT_DEFAULT_AGENT": "demo",
        "INPUT_STATE": "none",
        "INPUT_PARALLEL": "2",
    }
    mounts = {commands: "/github/file_commands", home: "/github/home"}
    result = run_action(image, ws, env, mounts=mounts)
    both = result.stdout + result.stderr
    assert result.returncode == 0, both[-3000:]
    assert "Traceback" not in both
    warnings = [line for line in result.stdout.splitlines() if line.startswith("::warning")]
    assert any("GITHUB_OUTPUT" in w or "output" in w.lower() for w in warnings), both[-3000:]
    report = json.loads((ws / ".orchestra" / "results.json").read_text())
    assert sum(1 for t in report["tasks"] if t["status"] == "complete") == 5
    assert (commands / "summary.md").read_text().startswith("## orchestra-ci")
    assert not (commands / "missing").exists()
    assert not_owned(ws, skip=set()) == []


# -- every preset's CLI in the image ------------------------------------------------------

AGENT_CLIS = sorted(name for name in PRESETS if name != "demo")
VERSION_ARGS = {
    "claude": "CLAUDE_CODE_VERSION",
    "codex": "CODEX_VERSION",
    "gemini": "GEMINI_CLI_VERSION",
    "opencode": "OPENCODE_VERSION",
    "aider": "AIDER_VERSION",
}


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, name
    return match[1]


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(reply="Hello from the fake provider") as api:
        yield api


@pytest.fixture(scope="module")
def box(image: str) -> Iterator[str]:
    """One container of the image, as a runner starts it (root, HOME=/github/home, the
    image's environment), that the preset tests run their commands in."""
    name = f"orchestra-ci-test-{os.getpid()}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        "HOME=/github/home",
        "-e",
        "CI=true",
        "--entrypoint",
        "sleep",
        image,
        "infinity",
        timeout=300,
    )
    try:
        docker("exec", name, "mkdir", "-p", "/github/home")
        yield name
    finally:
        docker("rm", "-f", name, check=False)


def in_box(
    box: str, script: str, env: dict[str, str] | None = None, timeout: float = 180
) -> "subprocess.CompletedProcess[str]":
    flags = [arg for k, v in (env or {}).items() for arg in ("-e", f"{k}={v}")]
    return docker("exec", *flags, box, "bash", "-c", script, timeout=timeout, check=False)


def installed(box: str, cli: str) -> bool:
    return in_box(box, f"command -v {cli}").returncode == 0


@pytest.mark.parametrize("cli", AGENT_CLIS)
def test_preset_cli_starts_as_root(box: str, cli: str) -> None:
    if not installed(box, cli):
        assert cli == "aider", f"{cli} is missing from the image"
        pytest.skip("aider is in the image only when built with INSTALL_AIDER=true")
    got = in_box(box, f"id -u; {cli} --version")
    assert got.returncode == 0, got.stdout + got.stderr
    uid, version = got.stdout.split("\n", 1)
    assert uid == "0"
    assert dockerfile_arg(VERSION_ARGS[cli]) in version


def provider_setup(cli: str, api: FakeProvider) -> tuple[dict[str, str], dict[str, str]]:
    """The environment and the config files that point ``cli`` at the stand-in provider."""
    if cli == "claude":
        return {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": api.anthropic_key}, {}
    if cli == "codex":
        config = (
            'model = "gpt-fake"\nmodel_provider = "fake"\n'
            f'[model_providers.fake]\nname = "fake"\nbase_url = "{api.url}/v1"\n'
            'env_key = "OPENAI_API_KEY"\nwire_api = "responses"\n'
        )
        return {"OPENAI_API_KEY": api.openai_key}, {"/github/home/.codex/config.toml": config}
    if cli == "gemini":
        # A base URL makes Gemini CLI 0.61 pick its "gateway" auth, which headless mode then
        # rejects; the API key auth named in its settings uses the same base URL. A fixed
        # model skips its router, whose classifier wants JSON answers.
        settings = json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}})
        env = {
            "GEMINI_API_KEY": api.gemini_key,
            "GOOGLE_GEMINI_BASE_URL": api.url,
            "GEMINI_MODEL": "gemini-2.5-flash",
        }
        return env, {"/github/home/.gemini/settings.json": settings}
    if cli == "opencode":
        opencode: dict[str, object] = {
            "provider": {"anthropic": {"options": {"baseURL": f"{api.url}/v1"}}},
            "model": "anthropic/claude-sonnet-4-5",
            "autoupdate": False,
            "share": "disabled",
        }
        env = {
            "ANTHROPIC_API_KEY": api.anthropic_key,
            "OPENCODE_CONFIG_CONTENT": json.dumps(opencode),
            "OPENCODE_DISABLE_MODELS_FETCH": "true",
        }
        return env, {}
    raise AssertionError(f"no stand-in provider for {cli}")


@pytest.mark.parametrize("cli", AGENT_CLIS)
def test_preset_headless_against_a_stand_in_model(
    box: str, provider: FakeProvider, cli: str
) -> None:
    """The preset's own command line, run by orchestra-ci in the container as root, talks to
    the stand-in provider and completes its task."""
    if not installed(box, cli):
        pytest.skip(f"{cli} is not in the image")
    if cli == "aider":
        pytest.skip("no stand-in wiring for aider")
    env, files = provider_setup(cli, provider)
    for path, text in files.items():
        write = subprocess.run(
            [
                "docker",
                "exec",
                "-i",
                box,
                "bash",
                "-c",
                f'mkdir -p "$(dirname {path})" && cat > {path}',
            ],
            input=text,
            text=True,
            capture_output=True,
            check=False,
        )
        assert write.returncode == 0, write.stderr
    before = len(provider.requests)
    root = f"/work/{cli}"
    got = in_box(
        box,
        f"mkdir -p {root} && cd {root} "
        f"&& orchestra-ci --root {root} start {cli} 'Say hello' --id hello --max-retries 0 "
        f"&& orchestra-ci --root {root} run --parallel 1 --time-budget 3m; rc=$?; "
        f"cat {root}/.orchestra/logs/hello.log; exit $rc",
        env={**env, "ORCHESTRA_LOG_FORMAT": "json"},
        timeout=240,
    )
    assert got.returncode == 0, (got.stdout + got.stderr)[-4000:]
    assert "Hello from the fake provider" in got.stdout, got.stdout[-4000:]
    assert len(provider.requests) > before
    if cli == "gemini":  # --yolo holds: the image tells it to trust the workspace
        assert "Approval mode overridden" not in got.stdout, got.stdout[-2000:]
    assert not provider.errors, provider.errors
