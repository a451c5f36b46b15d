"""Loading and validating the tasks file (YAML or JSON)."""

import json
from pathlib import Path
from textwrap import dedent

import pytest

from orchestra_ci.errors import UsageError
from orchestra_ci.record import DEFAULT_MAX_RETRIES
from orchestra_ci.task_spec import TaskSpec
from orchestra_ci.tasksfile import load_tasks_file


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".orchestra").mkdir(parents=True)
    return root


def write(root: Path, text: str, name: str = "tasks.yml") -> Path:
    path = root / ".orchestra" / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def load(root: Path, text: str, name: str = "tasks.yml") -> list[TaskSpec]:
    return load_tasks_file(write(root, text, name), root, "demo")


def load_error(root: Path, text: str, name: str = "tasks.yml") -> str:
    path = write(root, text, name)
    with pytest.raises(UsageError) as info:
        load_tasks_file(path, root, "demo")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


# -- valid files ---------------------------------------------------------------------------


def test_minimal_task_gets_builtin_defaults(project: Path) -> None:
    path = write(project, "tasks:\n  - id: fix-lint\n    prompt: Fix every ruff warning\n")
    specs = load_tasks_file(path, project, "claude")
    assert specs == [
        TaskSpec(
            id="fix-lint",
            agent="claude",
            prompt="Fix every ruff warning",
            timeout=None,
            max_retries=DEFAULT_MAX_RETRIES,
            backoff=None,
            backoff_max=None,
            depends_on=[],
            priority=0,
            source_file=".orchestra/tasks.yml",
        )
    ]


def test_defaults_apply_to_every_task_and_tasks_override_them(project: Path) -> None:
    specs = load(
        project,
        """\
        defaults:
          agent: claude
          timeout: 30m
          max_retries: 5
          backoff: 10s
          backoff_max: 10m
          priority: 3
        tasks:
          - id: plain
            prompt: p1
          - id: custom
            prompt: p2
            agent: codex
            timeout: 1h30m
            max_retries: 0
            backoff: 0.5s
            backoff_max: 90
            priority: 10
            depends_on: [plain]
        """,
    )
    plain, custom = specs
    assert (plain.agent, plain.timeout, plain.max_retries) == ("claude", 1800.0, 5)
    assert (plain.backoff, plain.backoff_max, plain.priority) == (10.0, 600.0, 3)
    assert plain.depends_on == []
    assert (custom.agent, custom.timeout, custom.max_retries) == ("codex", 5400.0, 0)
    assert (custom.backoff, custom.backoff_max, custom.priority) == (0.5, 90.0, 10)
    assert custom.depends_on == ["plain"]


def test_zero_overrides_are_kept_not_replaced_by_defaults(project: Path) -> None:
    (spec,) = load(
        project,
        """\
        defaults: {timeout: 1h, backoff: 5s, priority: 7, max_retries: 4}
        tasks:
          - {id: a, prompt: p, timeout: 0, backoff: 0, priority: 0, max_retries: 0}
        """,
    )
    assert (spec.timeout, spec.backoff, spec.priority, spec.max_retries) == (0.0, 0.0, 0, 0)


def test_tasks_keep_file_order(project: Path) -> None:
    specs = load(project, "tasks:\n" + "".join(f"  - {{id: t{i}, prompt: p}}\n" for i in range(20)))
    assert [s.id for s in specs] == [f"t{i}" for i in range(20)]


def test_json_file(project: Path) -> None:
    data = {
        "defaults": {"agent": "codex", "timeout": 90},
        "tasks": [
            {"id": "a", "prompt": "first"},
            {"id": "b", "prompt": "second", "depends_on": ["a"], "timeout": "2h"},
        ],
    }
    specs = load(project, json.dumps(data), "tasks.json")
    assert [(s.id, s.agent, s.timeout, s.depends_on) for s in specs] == [
        ("a", "codex", 90.0, []),
        ("b", "codex", 7200.0, ["a"]),
    ]


def test_prompt_is_kept_verbatim(project: Path) -> None:
    prompt = "Line one\n  indented $HOME `x` \"q\" 'q' {taskId} ünï 🎉\n"
    (spec,) = load(project, json.dumps({"tasks": [{"id": "a", "prompt": prompt}]}), "t.json")
    assert spec.prompt == prompt


def test_yaml_block_prompt(project: Path) -> None:
    (spec,) = load(
        project,
        """\
        tasks:
          - id: a
            prompt: |
              Do this.
              Then that.
        """,
    )
    assert spec.prompt == "Do this.\nThen that.\n"


@pytest.mark.parametrize("text", ["", "\n\n", "   \n", "# only a comment\n", "---\n"])
def test_empty_yaml_file_gives_no_tasks(project: Path, text: str) -> None:
    assert load(project, text) == []


@pytest.mark.parametrize("text", ["", "  \n"])
def test_empty_json_file_gives_no_tasks(project: Path, text: str) -> None:
    assert load(project, text, "tasks.json") == []


def test_file_without_tasks_gives_no_tasks(project: Path) -> None:
    assert load(project, "defaults:\n  agent: claude\n") == []
    assert load(project, "tasks: []\n") == []


# -- prompt_file ---------------------------------------------------------------------------


def test_prompt_file_relative_to_root(project: Path) -> None:
    (project / "prompts").mkdir()
    (project / "prompts" / "docs.md").write_text("Write the docs.\n", encoding="utf-8")
    (spec,) = load(project, "tasks:\n  - id: docs\n    prompt_file: prompts/docs.md\n")
    assert spec.prompt == "Write the docs.\n"


def test_prompt_file_relative_to_tasks_file_folder(project: Path) -> None:
    (project / ".orchestra" / "p.md").write_text("beside the tasks file", encoding="utf-8")
    (spec,) = load(project, "tasks:\n  - id: a\n    prompt_file: p.md\n")
    assert spec.prompt == "beside the tasks file"


def test_prompt_file_prefers_root_over_tasks_folder(project: Path) -> None:
    (project / "p.md").write_text("from root", encoding="utf-8")
    (project / ".orchestra" / "p.md").write_text("from tasks folder", encoding="utf-8")
    (spec,) = load(project, "tasks:\n  - id: a\n    prompt_file: p.md\n")
    assert spec.prompt == "from root"


def test_prompt_file_missing(project: Path) -> None:
    message = load_error(project, "tasks:\n  - id: docs\n    prompt_file: nope.md\n")
    assert "'docs'" in message
    assert "prompt_file" in message
    assert "nope.md" in message
    assert "not found" in message


def test_prompt_file_that_is_a_directory_is_not_found(project: Path) -> None:
    (project / "prompts").mkdir()
    message = load_error(project, "tasks:\n  - id: docs\n    prompt_file: prompts\n")
    assert "not found" in message


def test_prompt_file_with_nul_byte(project: Path) -> None:
    (project / "p.md").write_bytes(b"hello\x00world")
    message = load_error(project, "tasks:\n  - id: a\n    prompt_file: p.md\n")
    assert "'a'" in message
    assert "prompt_file" in message
    assert "NUL" in message


def test_prompt_file_not_utf8(project: Path) -> None:
    (project / "p.md").write_bytes(b"\xff\xfe\xfa")
    message = load_error(project, "tasks:\n  - id: a\n    prompt_file: p.md\n")
    assert "prompt_file" in message


def test_prompt_file_empty(project: Path) -> None:
    (project / "p.md").write_text("  \n")
    message = load_error(project, "tasks:\n  - id: a\n    prompt_file: p.md\n")
    assert "prompt_file" in message
    assert "empty" in message


# -- invalid files -------------------------------------------------------------------------


def test_missing_file(project: Path) -> None:
    path = project / ".orchestra" / "absent.yml"
    with pytest.raises(UsageError, match="not found") as info:
        load_tasks_file(path, project, "demo")
    assert str(path) in str(info.value)


def test_malformed_yaml_names_the_line(project: Path) -> None:
    message = load_error(
        project,
        """\
        tasks:
          - id: a
            prompt: ok
           bad: [
        """,
    )
    assert "invalid YAML" in message
    assert "line 4" in message


def test_malformed_yaml_tab(project: Path) -> None:
    message = load_error(project, "tasks:\n\t- id: a\n")
    assert "invalid YAML" in message
    assert "line 2" in message


def test_malformed_json(project: Path) -> None:
    message = load_error(project, '{"tasks": [\n  {"id": "a",}\n]}', "tasks.json")
    assert "invalid JSON" in message
    assert "line 2" in message


def test_enormous_integer_is_a_usage_error(project: Path) -> None:
    message = load_error(project, "tasks:\n  - id: a\n    prompt: p\n    priority: " + "9" * 5000)
    assert "invalid YAML" in message
    message = load_error(
        project, '{"tasks": [{"id": "a", "prompt": "p", "priority": ' + "9" * 5000 + "}]}", "t.json"
    )
    assert "invalid JSON" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(project: Path, text: str) -> None:
    assert "mapping" in load_error(project, text)


def test_duplicate_ids(project: Path) -> None:
    message = load_error(
        project,
        """\
        tasks:
          - {id: same, prompt: one}
          - {id: other, prompt: two}
          - {id: same, prompt: three}
        """,
    )
    assert "'same'" in message
    assert "'id'" in message
    assert "duplicate" in message


@pytest.mark.parametrize("bad_id", ["has space", "a/b", "../x", "..", ".", "x" * 101, "ünï", ""])
def test_bad_id_characters(project: Path, bad_id: str) -> None:
    data = {"tasks": [{"id": "ok", "prompt": "p"}, {"id": bad_id, "prompt": "p"}]}
    message = load_error(project, json.dumps(data), "tasks.json")
    assert "tasks[1]" in message
    assert "field 'id'" in message
    assert "invalid task id" in message


def test_bad_dependency_id(project: Path) -> None:
    message = load_error(project, "tasks:\n  - {id: a, prompt: p, depends_on: ['no way']}\n")
    assert "task 'a'" in message
    assert "depends_on" in message


def test_depends_on_must_be_a_list(project: Path) -> None:
    message = load_error(project, "tasks:\n  - {id: a, prompt: p, depends_on: b}\n")
    assert "task 'a'" in message
    assert "field 'depends_on'" in message


def test_unknown_task_key(project: Path) -> None:
    message = load_error(project, "tasks:\n  - {id: docs, prompt: p, colour: red}\n")
    assert "task 'docs'" in message
    assert "field 'colour'" in message


def test_unknown_defaults_key(project: Path) -> None:
    message = load_error(project, "defaults:\n  agnet: claude\ntasks: []\n")
    assert "defaults.agnet" in message


def test_unknown_top_level_key(project: Path) -> None:
    message = load_error(project, "task:\n  - {id: a, prompt: p}\n")
    assert "field 'task'" in message


def test_missing_id_names_the_position(project: Path) -> None:
    message = load_error(project, "tasks:\n  - {id: a, prompt: p}\n  - {prompt: q}\n")
    assert "tasks[1]" in message
    assert "field 'id'" in message


def test_task_that_is_not_a_mapping(project: Path) -> None:
    message = load_error(project, "tasks:\n  - just a string\n")
    assert "tasks[0]" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [("5x", "'5x'"), ("-1m", "'-1m'"), ("true", "True"), ("[1]", "[1]"), ("2024-01-01", "date")],
)
def test_bad_task_duration(project: Path, value: str, shown: str) -> None:
    message = load_error(project, f"tasks:\n  - id: slow\n    prompt: p\n    timeout: {value}\n")
    assert "task 'slow'" in message
    assert "field 'timeout'" in message
    assert "invalid duration" in message
    assert shown in message


@pytest.mark.parametrize("field", ["timeout", "backoff", "backoff_max"])
def test_bad_default_duration(project: Path, field: str) -> None:
    message = load_error(project, f"defaults:\n  {field}: soon\ntasks: []\n")
    assert f"field 'defaults.{field}'" in message
    assert "invalid duration" in message


def test_huge_duration_number(project: Path) -> None:
    message = load_error(project, "tasks:\n  - {id: a, prompt: p, timeout: " + "9" * 400 + "}\n")
    assert "field 'timeout'" in message


@pytest.mark.parametrize("value", ["-1", "101", "1.5", "many"])
def test_bad_max_retries(project: Path, value: str) -> None:
    message = load_error(project, f"tasks:\n  - {{id: a, prompt: p, max_retries: {value}}}\n")
    assert "task 'a'" in message
    assert "field 'max_retries'" in message


def test_both_prompt_and_prompt_file(project: Path) -> None:
    (project / "p.md").write_text("x")
    message = load_error(project, "tasks:\n  - {id: both, prompt: p, prompt_file: p.md}\n")
    assert "task 'both'" in message
    assert "'prompt'" in message
    assert "'prompt_file'" in message


def test_neither_prompt_nor_prompt_file(project: Path) -> None:
    message = load_error(project, "tasks:\n  - {id: neither}\n")
    assert "task 'neither'" in message
    assert "'prompt'" in message
    assert "'prompt_file'" in message


def test_nul_byte_in_prompt(project: Path) -> None:
    message = load_error(project, 'tasks:\n  - {id: a, prompt: "before\\0after"}\n')
    assert "task 'a'" in message
    assert "field 'prompt'" in message
    assert "NUL" in message


def test_nul_byte_in_json_prompt(project: Path) -> None:
    message = load_error(project, '{"tasks": [{"id": "a", "prompt": "x\\u0000"}]}', "t.json")
    assert "field 'prompt'" in message
    assert "NUL" in message


def test_blank_prompt(project: Path) -> None:
    message = load_error(project, "tasks:\n  - {id: a, prompt: '   '}\n")
    assert "field 'prompt'" in message
    assert "empty" in message


def test_prompt_must_be_text(project: Path) -> None:
    message = load_error(project, "tasks:\n  - {id: a, prompt: 42}\n")
    assert "field 'prompt'" in message


def test_error_message_escapes_newlines_in_ids(project: Path) -> None:
    data = {"tasks": [{"id": "bad\nid", "prompt": "p"}]}
    message = load_error(project, json.dumps(data), "tasks.json")
    assert "field 'id'" in message


def test_first_bad_task_fails_the_whole_file(project: Path) -> None:
    load_error(
        project,
        """\
        tasks:
          - {id: good, prompt: p}
          - {id: bad, prompt: p, timeout: never}
        """,
    )


def test_base_comes_from_the_task_or_the_defaults_and_must_be_one_ref(project: Path) -> None:
    specs = load(
        project,
        "defaults: {base: worktree}\ntasks:\n"
        "  - {id: a, prompt: x}\n"
        "  - {id: b, prompt: x, base: origin/release}\n",
    )
    assert [s.base for s in specs] == ["worktree", "origin/release"]
    assert load(project, "tasks:\n  - {id: a, prompt: x}\n")[0].base is None  # the setting's
    for bad in ("--all", "two words", ""):
        error = load_error(project, f"tasks:\n  - {{id: a, prompt: x, base: {bad!r}}}\n")
        assert "task 'a'" in error and "field 'base'" in error and "git ref" in error
