"""Hostile input, fuzzed with hypothesis: tasks files, agent configs, CLI arguments, prompts
and issue bodies.

Bad input never produces a traceback: the CLI exits 2 with one line on stderr and queues
nothing; valid input is accepted (exit 0). Prompts reach the agent byte for byte as one argv
element; NUL bytes are refused with a message; issue text loses its HTML comments and
invisible characters before it reaches a prompt.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestra_ci.sanitize import issue_prompt
from tests.conftest import FAKE_AGENT, cli_env, records, write_agents

FUZZ = settings(
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def hostile_env() -> dict[str, str]:
    """The CLI's environment without anything that could reach a real GitHub."""
    return {k: v for k, v in cli_env().items() if not k.startswith(("GITHUB_", "INPUT_"))}


def call(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra_ci", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=hostile_env(),
        cwd=root if root.is_dir() else root.parent,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_clean_outcome(result: subprocess.CompletedProcess[str], what: object) -> None:
    """Exit 0 (accepted) or 2 (refused with one line on stderr), and never a traceback."""
    context = (what, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, context
    assert "internal error" not in result.stderr, context
    assert result.returncode in (0, 2), context
    if result.returncode == 2:
        lines = [line for line in result.stderr.split("\n") if line.strip()]
        assert len(lines) == 1, context
        assert lines[0].startswith("orchestra-ci") and "error" in lines[0], context


@pytest.fixture
def fresh() -> Iterator[Any]:
    """A factory of fresh project roots (hypothesis runs many examples per test)."""
    made: list[Path] = []

    def make() -> Path:
        project = Path(tempfile.mkdtemp(prefix="hostile-"))
        (project / ".orchestra").mkdir()
        write_agents(project, {"fake": FAKE_AGENT, "fake2": FAKE_AGENT})
        made.append(project)
        return project

    yield make
    for project in made:
        shutil.rmtree(project, ignore_errors=True)


# -- structures ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["fake", "fake2", "ghost", "10s", "1h30m", "0.5s", "-1", "soon", "", " ", "0", "1e400"]
    )
    | st.sampled_from(["../x", "/etc/passwd", "{prompt}", "a b", "t1", "t 1", ".", "..", "é"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
TASK_FIELDS = [
    "id",
    "prompt",
    "prompt_file",
    "agent",
    "timeout",
    "max_retries",
    "backoff",
    "backoff_max",
    "depends_on",
    "priority",
    "verify",
    "unknown",
]
task_entries = st.dictionaries(
    st.sampled_from(TASK_FIELDS), values, max_size=7
) | st.fixed_dictionaries(
    {"id": st.sampled_from(["t1", "t2", "t3"]), "prompt": scalars},
    optional={"depends_on": st.lists(st.sampled_from(["t1", "t2", "t3", "x"]), max_size=3)},
)
tasks_documents = (
    st.fixed_dictionaries(
        {"tasks": st.lists(task_entries | values, max_size=4) | values},
        optional={
            "defaults": st.dictionaries(
                st.sampled_from(["agent", "timeout", "max_retries", "backoff", "priority", "x"]),
                values,
                max_size=4,
            )
            | values
        },
    )
    | values
)


def render(document: Any, form: str) -> str:
    """JSON with raw UTF-8; YAML with escapes (PyYAML's own emitter folds a raw NEL, U+0085,
    into a space when it writes unicode as is, which would be a test artefact)."""
    if form == "json":
        return json.dumps(document, ensure_ascii=False)
    return yaml.safe_dump(document, allow_unicode=False)


NASTY_TASK_FILES = [
    pytest.param("tasks.yml", "tasks: " + "[" * 5000 + "]" * 5000, id="deep-yaml"),
    pytest.param("tasks.json", '{"tasks": ' + "[" * 5000 + "]" * 5000 + "}", id="deep-json"),
    pytest.param(
        "tasks.yml",
        "a: &a ['x','x','x','x','x','x','x','x','x']\n"
        + "".join(
            f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "tasks: *i\n",
        id="billion-laughs",
    ),
    pytest.param("tasks.yml", 'tasks:\n  - {id: t1, prompt: "x\\0y"}\n', id="nul-escape"),
    pytest.param(
        "tasks.yml",
        "tasks:\n  - {id: t1, prompt: x, timeout: 99999999999999999999999999999999999d}\n",
        id="huge-duration",
    ),
    pytest.param(
        "tasks.yml",
        "tasks:\n  - {id: t1, prompt: x, max_retries: 1" + "0" * 5000 + "}\n",
        id="huge-int",
    ),
    pytest.param(
        "tasks.json",
        '{"tasks": [{"id": "t1", "prompt": "x", "priority": 1' + "0" * 5000 + "}]}",
        id="huge-json-int",
    ),
    pytest.param("tasks.yml", "\ufefftasks: []\n", id="bom"),
    pytest.param(
        "tasks.yml", "--- !!python/object/apply:os.system ['touch pwned']\n", id="python-tag"
    ),
    pytest.param("tasks.yml", "tasks:\n  - !!binary aGVsbG8=\n", id="binary-tag"),
    pytest.param(
        "tasks.yml", "tasks:\n  - {id: t1, prompt: x}\n---\ntasks: []\n", id="two-documents"
    ),
    pytest.param("tasks.yml", "tasks:\n  - {id: t1, prompt: x, id: t2}\n", id="duplicate-key"),
]


@FUZZ
@given(document=tasks_documents, form=st.sampled_from(["yaml", "json"]))
@example(document={"tasks": [{"id": "t1", "prompt": "ok"}]}, form="yaml")
@example(document={"tasks": [{"id": "t1", "prompt": "a\x00b"}]}, form="json")
def test_random_tasks_files_are_accepted_or_refused_in_one_line(
    fresh: Any, document: Any, form: str
) -> None:
    root = fresh()
    path = root / ".orchestra" / f"tasks.{form}"
    path.write_text(render(document, form))

    result = call(root, "load", "--tasks-file", str(path))

    assert_clean_outcome(result, document)
    if result.returncode == 2:  # the file is named (as the queue names it: in the project)
        assert str(path) in result.stderr or str(path.relative_to(root)) in result.stderr
        assert records(root) == {}, "nothing is queued from a file that fails validation"
    assert not (root / "pwned").exists()


task_ids = st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True).filter(
    lambda t: t not in (".", "..")
)
valid_prompts = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1
).filter(lambda p: bool(p.strip()))


@st.composite
def valid_tasks_documents(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(task_ids, min_size=1, max_size=5, unique=True))
    tasks = []
    for n, task_id in enumerate(ids):
        entry: dict[str, Any] = {"id": task_id, "prompt": draw(valid_prompts)}
        extras = {
            "agent": st.sampled_from(["fake", "fake2"]),
            "timeout": st.sampled_from(["90", "90s", "0.5s", "15m", "2h", "1h30m", 45, 2.5]),
            "max_retries": st.integers(0, 100),
            "priority": st.integers(-(10**6), 10**6),
            "depends_on": st.lists(st.sampled_from(ids[:n]), unique=True) if n else st.just([]),
        }
        for name, strategy in extras.items():
            if draw(st.booleans()):
                entry[name] = draw(strategy)
        tasks.append(entry)
    return {"defaults": {"agent": "fake"}, "tasks": tasks}


@settings(
    deadline=None,
    max_examples=15,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(document=valid_tasks_documents(), form=st.sampled_from(["yaml", "json"]))
def test_valid_tasks_files_are_loaded_exactly(fresh: Any, document: Any, form: str) -> None:
    root = fresh()
    path = root / ".orchestra" / f"tasks.{form}"
    path.write_text(render(document, form))

    result = call(root, "load", "--tasks-file", str(path))

    assert result.returncode == 0, result.stderr
    queued = records(root)
    assert sorted(queued) == sorted(t["id"] for t in document["tasks"])
    for task in document["tasks"]:
        record = queued[task["id"]]
        assert record["prompt"] == task["prompt"]
        assert record["dependsOn"] == task.get("depends_on", [])
        assert record["agent"] == task.get("agent", "fake")


def test_task_ids_starting_with_a_dot_are_not_lost(root: Path) -> None:
    (root / ".orchestra" / "tasks.yml").write_text(
        "tasks:\n  - {id: .hidden, agent: fake, prompt: 'write=ran.txt'}\n"
    )
    loaded = call(root, "load")
    started = call(root, "start", "fake", "exit=0", "--id", "...")
    if loaded.returncode == 2 and started.returncode == 2:
        return  # refusing such ids with a message is fine too
    assert sorted(records(root)) == ["...", ".hidden"]
    assert call(root, "run").returncode == 0
    assert (root / "ran.txt").exists()


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text_as_a_tasks_file(fresh: Any, text: str) -> None:
    root = fresh()
    (root / ".orchestra" / "tasks.yml").write_text(text)
    result = call(root, "load")
    assert_clean_outcome(result, text)
    if result.returncode == 2:
        assert records(root) == {}


@pytest.mark.parametrize(("name", "text"), NASTY_TASK_FILES)
def test_nasty_tasks_files(root: Path, name: str, text: str) -> None:
    path = root / ".orchestra" / name
    path.write_text(text)
    result = call(root, "load", "--tasks-file", str(path))
    assert_clean_outcome(result, text[:200])
    if result.returncode == 2:
        assert records(root) == {}
    assert not (root / "pwned").exists()


def test_a_deeply_nested_agent_config(root: Path) -> None:
    (root / ".orchestra" / "agent-config.json").write_text(
        '{"agents": ' + "[" * 5000 + "]" * 5000 + "}"
    )
    assert_clean_outcome(call(root, "run", "--dry-run"), "deep agent config")


def test_binary_and_unreadable_tasks_files(fresh: Any) -> None:
    root = fresh()
    tasks = root / ".orchestra" / "tasks.yml"
    tasks.write_bytes(b"tasks:\n  - {id: t1, prompt: \xff\xfe\x00}\n")
    assert_clean_outcome(call(root, "load"), "invalid utf-8")
    tasks.unlink()
    tasks.mkdir()
    assert_clean_outcome(call(root, "load"), "a directory")
    assert records(root) == {}


# -- agent configs -------------------------------------------------------------------------

AGENT_FIELDS = [
    "command",
    "args",
    "env",
    "timeout",
    "completion",
    "fallback",
    "rateLimitPatterns",
    "fatalPatterns",
    "successPatterns",
    "promptTemplateFile",
    "description",
    "bogus",
]
patterns = st.lists(st.sampled_from(["(", "[a-", "*", "rate.?limit", "(?P<x>", "\\", "a{2,1}"]))
agent_values = values | patterns | st.sampled_from(["exit", "sentinel", sys.executable])
agent_entries = st.dictionaries(st.sampled_from(AGENT_FIELDS), agent_values, max_size=6)
agent_documents = (
    st.fixed_dictionaries(
        {"agents": st.dictionaries(st.sampled_from(["fake", "claude", "x", ""]), agent_entries)}
    )
    | st.dictionaries(st.sampled_from(["agents", "other"]), values)
    | values
)


@FUZZ
@given(document=agent_documents)
@example(document={"agents": {"fake": {"command": "python", "args": ["a\x00b"]}}})
@example(document={"agents": {"fake": {"command": "x", "fallback": ["fake"]}}})
def test_random_agent_configs_are_accepted_or_refused_in_one_line(
    fresh: Any, document: Any
) -> None:
    root = fresh()
    (root / ".orchestra" / "agent-config.json").write_text(json.dumps(document))
    (root / ".orchestra" / "tasks.yml").write_text("tasks:\n  - {id: t1, agent: fake, prompt: x}\n")

    result = call(root, "run", "--dry-run")

    assert_clean_outcome(result, document)
    assert records(root) == {}


@pytest.mark.parametrize(
    "agent",
    [
        {**FAKE_AGENT, "args": [*FAKE_AGENT["args"], "a\x00b"]},
        {**FAKE_AGENT, "env": {"X": "a\x00b"}},
    ],
    ids=["args", "env"],
)
def test_nul_bytes_in_an_agent_config_are_refused_before_anything_starts(
    root: Path, agent: dict[str, Any]
) -> None:
    write_agents(root, {"fake": agent})
    (root / ".orchestra" / "tasks.yml").write_text("tasks:\n  - {id: t1, agent: fake, prompt: x}\n")
    result = call(root, "run")
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1
    assert "NUL" in result.stderr or "null" in result.stderr.lower()
    assert records(root) == {}


# -- command-line arguments ----------------------------------------------------------------

COMMANDS = [
    "start",
    "load",
    "run",
    "plan",
    "merge",
    "status",
    "logs",
    "retry",
    "cancel",
    "timeout",
    "clean",
]
FLAGS = [
    "--id",
    "--timeout",
    "--max-retries",
    "--priority",
    "--depends-on",
    "--tasks-file",
    "--agent-config",
    "--issue-label",
    "--repo",
    "--github-token",
    "--parallel",
    "--time-budget",
    "--grace",
    "--backoff",
    "--max-cost-usd",
    "--fail-on-pending",
    "--shard",
    "--durations",
    "--shards",
    "--json",
    "--failed",
    "--status",
    "--older-than",
    "--log-format",
    "--version",
    "--help",
    "-h",
    "--",
    "-",
]
WORDS = [
    "fake",
    "ghost",
    "done",
    "failed1",
    "waiting",
    "1",
    "0",
    "-1",
    "3/2",
    "0/0",
    "1/1",
    "10s",
    "1h30m",
    "soon",
    "nan",
    "inf",
    "1e999",
    "99999999999999999999",
    "complete,failed",
    "pending",
    "json",
    "console",
    "../..",
    "/",
    ".",
    "",
    " ",
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
]
tokens = (
    st.sampled_from(FLAGS)
    | st.sampled_from(WORDS)
    | st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        max_size=12,
    )
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A queue with a complete, a failed and a waiting task, copied for each example."""
    root = tmp_path_factory.mktemp("template") / "project"
    (root / ".orchestra").mkdir(parents=True)
    write_agents(root, {"fake": FAKE_AGENT})
    (root / ".orchestra" / "tasks.yml").write_text(
        "defaults: {agent: fake, max_retries: 0}\ntasks:\n"
        "  - {id: done, prompt: 'exit=0'}\n  - {id: failed1, prompt: 'exit=1'}\n"
    )
    assert call(root, "run").returncode == 1
    (root / ".orchestra" / "tasks.yml").unlink()
    assert call(root, "start", "fake", "exit=0", "--id", "waiting").returncode == 0
    return root


@settings(
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(COMMANDS)
    | st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6),
    args=st.lists(tokens, max_size=6),
)
@example(command="status", args=["--json", "--json"])
@example(command="timeout", args=["waiting", "1e999"])
@example(command="cancel", args=["../../etc/passwd"])
@example(command="start", args=["fake", "$(touch pwned) `touch pwned`; touch pwned"])
def test_random_command_lines_never_trace_back(
    template: Path, command: str, args: list[str]
) -> None:
    if command in ("status", "logs"):  # --watch / --follow would wait forever, by design
        args = [a for a in args if a not in ("--watch", "--follow", "-f")]
    if command == "run":  # a dry run: the point is the parsing, not the agents
        args = ["--dry-run", *args]
    if command == "merge":  # it reads every results.json below its DIRs: stay in the sandbox
        args = [a for a in args if not a.startswith("/") and ".." not in a]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "project"
        shutil.copytree(template, root)
        result = call(root, command, *args)
        if command == "merge" and result.returncode == 1:
            # merge exits with the merged report's code: the template's run had a failure
            assert "error" not in result.stderr.lower(), result.stderr
            return
        assert_clean_outcome(result, [command, *args])
        assert not (root / "pwned").exists()
        assert records(root), "the queue is still readable"


def test_a_newline_in_a_bad_argument_keeps_the_error_on_one_line(root: Path) -> None:
    result = call(root, "start", "fake", "prompt", "extra\n::error::injected")
    assert result.returncode == 2
    assert len(result.stderr.strip().split("\n")) == 1, result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["run", "--dry-run"],
        ["run"],
        ["load"],
        ["clean"],
        ["logs", "t"],
        ["cancel", "t"],
        ["retry", "--failed"],
        ["timeout", "t", "5s"],
        ["start", "fake", "x"],
        ["plan", "--shards", "2"],
    ],
    ids=lambda c: " ".join(c),
)
def test_a_root_that_is_a_file(tmp_path: Path, command: list[str]) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("not a directory\n")
    assert_clean_outcome(call(not_a_dir, *command), command)
    assert not_a_dir.read_text() == "not a directory\n"


# -- Action inputs ---------------------------------------------------------------------------

ACTION_INPUTS = [
    "mode",
    "shards",
    "shard",
    "merge_dirs",
    "durations_file",
    "tasks_file",
    "agent_config",
    "default_agent",
    "parallel",
    "time_budget",
    "grace",
    "timeout",
    "max_retries",
    "artifact_name",
    "create_prs",
    "fail_on_pending",
    "done_label",
    "failed_label",
    "trusted_users",
    "trusted_bots",
    "log_format",
]
input_values = st.sampled_from(
    [*WORDS, "run", "plan", "merge", "true", "false", "yes", "2/1", "a/b", "x\ny", "🙂", "-"]
) | st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=10)


@settings(
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(inputs=st.dictionaries(st.sampled_from(ACTION_INPUTS), input_values, max_size=5))
@example(inputs={"parallel": "many"})
@example(inputs={"mode": "merge", "merge_dirs": "nowhere"})
def test_random_action_inputs_never_trace_back(fresh: Any, inputs: dict[str, str]) -> None:
    """The Action's entrypoint with random inputs (no GitHub involved): it runs, or refuses
    with one ``::error`` annotation and one line on stderr."""
    root = fresh()
    (root / ".orchestra" / "tasks.yml").write_text("tasks:\n  - {id: t1, agent: fake, prompt: x}\n")
    if "merge_dirs" in inputs:  # merge reads every results.json below: stay in the sandbox
        inputs["merge_dirs"] = inputs["merge_dirs"].replace("..", "").lstrip("/") or "x"
    out = root.parent / f"{root.name}-runner"
    out.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(out),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(root),
        "GITHUB_OUTPUT": str(out / "output.txt"),
        "GITHUB_STEP_SUMMARY": str(out / "summary.md"),
        "ORCHESTRA_BACKOFF": "0.05",
        **{f"INPUT_{name.upper()}": value for name, value in inputs.items()},
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "orchestra_ci.action"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    context = (inputs, result.returncode, result.stdout[-1000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout, context
    assert "internal error" not in result.stderr, context
    assert result.returncode in (0, 1, 2), context
    if result.returncode == 2:
        errors = [line for line in result.stderr.split("\n") if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("orchestra-ci: error: "), context
        assert "::error title=orchestra-ci::" in result.stdout, context


# -- prompts reach the agent byte for byte ----------------------------------------------------

SHELLY = list("$`\"'\\;|&<>(){}[]*?!~#%^=\n\r\t \u00a0\u2028\x1b\x7f")
prompt_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00") | st.sampled_from(SHELLY),
    min_size=1,
    max_size=80,
) | st.sampled_from(
    [
        "{prompt}",
        "{taskId} {agent} {worktree}",
        "$(id) `id` ${HOME} $HOME",
        "'; rm -rf / #",
        '"quoted" \\"escaped\\"',
        "-p --help",
        "line one\nline two\r\nline three",
        "🏳️‍🌈 مرحبا שלום 日本語 \u202etxt.exe",
        "--",
    ]
)
# Every directive but argv= is ignored, so a prompt that happens to say "hang" cannot hang.
QUIET = (
    "record,fail_times,ratelimit,ratelimit_times,fatal,child_ignores_term,daemon,flood,"
    "write,sleep,hang,done_sentinel,error_sentinel,cost,crash,silent,exit"
)


def argv_agents(root: Path) -> None:
    env = {"FAKE_AGENT_IGNORE": QUIET}
    write_agents(
        root,
        {
            "placeholder": {**FAKE_AGENT, "env": env},
            "appended": {
                "command": sys.executable,
                "args": FAKE_AGENT["args"][:1],
                "env": env,
                "prompt": "arg",  # no {prompt} in args: appended as the last argument
            },
            "among": {
                "command": sys.executable,
                "args": [*FAKE_AGENT["args"][:1], "{taskId}", "{prompt}"],
                "env": env,
            },
        },
    )


@settings(
    deadline=None,
    max_examples=12,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(prompts=st.lists(prompt_text, min_size=1, max_size=4))
def test_prompts_reach_the_agent_byte_for_byte_as_one_argument(
    fresh: Any, prompts: list[str]
) -> None:
    root = fresh()
    argv_agents(root)
    out = root / "argv"
    out.mkdir()
    agents = ["placeholder", "appended", "among"]
    expected: dict[str, str] = {}
    tasks = []
    for n, text in enumerate(prompts):
        prompt = f"{text} argv={out / f'f{n}.json'}"
        expected[f"f{n}"] = prompt
        tasks.append({"id": f"f{n}", "agent": agents[n % 3], "prompt": prompt})
    tasks_file = root / ".orchestra" / "tasks.json"
    tasks_file.write_text(json.dumps({"tasks": tasks}))
    # The same prompts once more through `start` (argv, not a file).
    for n, text in enumerate(prompts):
        prompt = f"{text} argv={out / f's{n}.json'}"
        expected[f"s{n}"] = prompt
        started = call(root, "start", agents[n % 3], prompt, "--id", f"s{n}")
        assert started.returncode == 0, started.stderr

    result = call(root, "run", "--tasks-file", str(tasks_file), "--parallel", "4")

    assert result.returncode == 0, result.stderr[-2000:]
    for task_id, prompt in expected.items():
        argv = json.loads((out / f"{task_id}.json").read_text(encoding="utf-8"))
        n = int(task_id[1:])
        wanted = {"placeholder": [prompt], "appended": [prompt], "among": [task_id, prompt]}
        assert argv == wanted[agents[n % 3]], (task_id, argv)
        assert os.fsencode(argv[-1]) == prompt.encode("utf-8")
        assert records(root)[task_id]["prompt"] == prompt


@pytest.mark.parametrize(
    "tasks_file",
    [
        ("tasks.json", '{"tasks": [{"id": "t1", "agent": "fake", "prompt": "a\\u0000b"}]}'),
        ("tasks.yml", 'tasks:\n  - {id: t1, agent: fake, prompt: "a\\0b"}\n'),
        ("tasks.yml", "tasks:\n  - {id: t1, agent: fake, prompt_file: nul.txt}\n"),
    ],
    ids=["json-escape", "yaml-escape", "prompt-file"],
)
def test_nul_bytes_in_prompts_are_refused_with_a_message(
    root: Path, tasks_file: tuple[str, str]
) -> None:
    (root / "nul.txt").write_bytes(b"before\x00after")
    name, text = tasks_file
    path = root / ".orchestra" / name
    path.write_text(text)
    result = call(root, "run", "--tasks-file", str(path))
    assert result.returncode == 2
    assert "NUL" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert records(root) == {}


def test_nul_bytes_cannot_be_smuggled_through_start(root: Path) -> None:
    """An argv element cannot hold NUL; the closest a caller gets is the escape text."""
    result = call(root, "start", "fake", "\\x00 \\0 %00")
    assert result.returncode == 0
    assert records(root)[result.stdout.strip()]["prompt"] == "\\x00 \\0 %00"


# -- issue bodies ----------------------------------------------------------------------------

# Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties.txt), which includes
# the bidi controls, zero-width characters, variation selectors and tag characters.
DEFAULT_IGNORABLE = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
]


def invisible(ch: str) -> bool:
    """Characters a reader does not see: default-ignorable code points, control characters
    other than tab and newline, and the interlinear annotation marks."""
    if ch in "\t\n":
        return False
    code = ord(ch)
    return (
        unicodedata.category(ch) == "Cc"
        or 0xFFF9 <= code <= 0xFFFB
        or any(low <= code <= high for low, high in DEFAULT_IGNORABLE)
    )


def emoji_glue(text: str, i: int) -> bool:
    """The one exception: a joiner or presentation selector inside an emoji sequence."""
    ch, before = text[i], text[i - 1] if i else ""
    after = text[i + 1] if i + 1 < len(text) else ""
    if ch in "\ufe0e\ufe0f":
        if before in "0123456789#*":
            return after == "\u20e3"
        return bool(before) and ord(before) > 0x7F and unicodedata.category(before)[0] in "SP"
    if ch == "\u200d":
        if before in "\ufe0e\ufe0f":
            before = text[i - 2] if i > 1 else ""
        return all(
            c and (unicodedata.category(c) == "So" or "\U0001f3fb" <= c <= "\U0001f3ff")
            for c in (before, after)
        )
    return False


HIDING = [
    "<!--",
    "-->",
    "<!-",
    "--",
    "<",
    "!",
    "\u200b",
    "\u200d",
    "\u202e",
    "\u2066",
    "\ufeff",
    "\u00ad",
    "\U000e0041",
    "\U000e007f",
    "\x00",
    "\x1b",
    "\x85",
    "\ufe0f",
    "\r",
    "```",
    "~~~",
    "😀",
]
bodies = st.lists(
    st.sampled_from(HIDING) | st.text(max_size=8),
    max_size=30,
).map("".join)


def fenced(prompt: str, heading: str) -> list[str]:
    """The lines inside the code fence after ``heading``; fails if the fence is not closed
    by its own closing line (so nothing inside could have closed it early)."""
    lines = prompt[prompt.index(heading) + len(heading) :].split("\n")
    opening = lines[0]
    bar = opening.removesuffix("text")
    assert bar and set(bar) <= {"`"} and len(bar) >= 3, opening
    for n, line in enumerate(lines[1:], start=1):
        stripped = line.lstrip(" ")
        if len(line) - len(stripped) <= 3 and stripped.startswith(bar):
            assert stripped.rstrip() == bar, ("fence closed by content", line)
            return lines[1:n]
    raise AssertionError(f"fence after {heading!r} never closed")


@settings(deadline=None, max_examples=500)
@given(title=bodies, body=bodies, hidden=st.text(min_size=1, max_size=20))
@example(title="t", body="<<!---->!-- x -->", hidden="x")
@example(title="t", body="<!\u200b-- hide -->", hidden="x")
@example(title="```", body="````\n```text\n", hidden="~~~")
def test_issue_text_loses_html_comments_and_invisible_characters(
    title: str, body: str, hidden: str
) -> None:
    secret = "HIDDENPAYLOAD"
    while "-->" in hidden:
        hidden = hidden.replace("-->", "")
    smuggled = f"{body}<!-- {secret} {hidden} -->{body}"
    prompt = issue_prompt(7, title, smuggled)

    assert "<!--" not in prompt
    assert secret not in prompt
    bad = [
        f"U+{ord(ch):04X}@{i}"
        for i, ch in enumerate(prompt)
        if invisible(ch) and not emoji_glue(prompt, i)
    ]
    assert bad == []
    # Title and text stay inside their fences: nothing in them can close a fence early.
    assert len(fenced(prompt, "Issue title:\n")) == 1
    fenced(prompt, "Issue text:\n")
