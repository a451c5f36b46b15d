"""Agent presets, agent-config.json and rendering of argv and prompts."""

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestra_ci.agents import (
    AgentSpec,
    load_agents,
    proxy_settings,
    render_argv,
    render_prompt,
    require_agent,
    substitute,
)
from orchestra_ci.errors import UsageError
from orchestra_ci.presets import DEFAULT_QUOTA_PATTERNS, PRESETS, agent_names

VALUES = {"taskId": "t-1", "agent": "fake", "worktree": "/w/t-1"}
NASTY_PROMPTS = [
    "plain",
    "semi; rm -rf / && echo $HOME `id` $(whoami) | cat > /tmp/x &",
    'quotes "double" \'single\' \\backslash\\ \\"',
    "line one\nline two\r\nline three\n",
    "ünïcødé — 中文 🎉",
    "braces {taskId} {agent} {worktree} {prompt} {unknown} {{doubled}} { } {",
    "  leading and trailing spaces  ",
    "-p --flag=value",
    "*.py ~ ?glob [a-z]",
    "",
]


def write_config(tmp_path: Path, data: Any, name: str = "agent-config.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def config_error(tmp_path: Path, data: Any) -> str:
    path = write_config(tmp_path, data)
    with pytest.raises(UsageError) as info:
        load_agents(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


# -- presets -------------------------------------------------------------------------------


def test_presets_load_without_a_config_file() -> None:
    agents = load_agents(None)
    assert {"claude", "codex", "opencode", "aider", "gemini", "demo"} <= set(agents)
    assert set(agents) == set(PRESETS)
    for name, spec in agents.items():
        assert spec.command, name
        assert any("{prompt}" in arg for arg in spec.args), name


def test_demo_preset_runs_the_bundled_agent_with_this_python() -> None:
    demo = load_agents(None)["demo"]
    assert demo.command == sys.executable
    assert render_argv(demo, "hello", VALUES) == [
        sys.executable,
        "-m",
        "orchestra_ci.demo_agent",
        "hello",
    ]


def test_claude_preset_fields_use_camel_case_config_names() -> None:
    claude = load_agents(None)["claude"]
    assert claude.command == "claude"
    assert claude.rate_limit_patterns == PRESETS["claude"]["rateLimitPatterns"]
    assert claude.fatal_patterns == PRESETS["claude"]["fatalPatterns"]


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(UsageError, match="not found") as info:
        load_agents(path)
    assert str(path) in str(info.value)


# -- config file ---------------------------------------------------------------------------


def test_config_overrides_preset_field_by_field(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, {"agents": {"claude": {"timeout": "45m", "args": ["--print", "{prompt}"]}}}
    )
    claude = load_agents(path)["claude"]
    preset = load_agents(None)["claude"]
    assert claude.timeout == 2700.0
    assert claude.args == ["--print", "{prompt}"]
    # fields the config does not mention keep the preset's values
    assert claude.command == preset.command
    assert claude.env == preset.env
    assert claude.rate_limit_patterns == preset.rate_limit_patterns
    assert claude.fatal_patterns == preset.fatal_patterns


def test_config_adds_new_agents_and_keeps_presets(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "agents": {
                "auggie": {
                    "command": "auggie",
                    "args": ["-i", "{prompt}", "-p"],
                    "promptTemplateFile": ".orchestra/prompts/auggie.txt",
                    "env": {"AUGGIE_MODE": "ci"},
                    "completion": "sentinel",
                    "fallback": ["claude"],
                    "rateLimitPatterns": ["rate.?limit", "429"],
                    "fatalPatterns": ["invalid api key"],
                    "timeout": 90,
                }
            }
        },
    )
    agents = load_agents(path)
    assert set(PRESETS) < set(agents)
    auggie = agents["auggie"]
    assert auggie == AgentSpec(
        command="auggie",
        args=["-i", "{prompt}", "-p"],
        env={"AUGGIE_MODE": "ci"},
        timeout=90.0,
        completion="sentinel",
        fallback=["claude"],
        rateLimitPatterns=["rate.?limit", "429"],
        fatalPatterns=["invalid api key"],
        quotaPatterns=DEFAULT_QUOTA_PATTERNS,
        promptTemplateFile=".orchestra/prompts/auggie.txt",
    )
    assert agents["codex"] == load_agents(None)["codex"]


def test_new_agent_defaults(tmp_path: Path) -> None:
    spec = load_agents(write_config(tmp_path, {"agents": {"x": {"command": "x"}}}))["x"]
    assert spec.args == ["{prompt}"]
    assert spec.env == {}
    assert spec.completion == "exit"
    assert spec.timeout is None
    assert spec.fallback == []


def test_fallback_to_another_configured_agent(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, {"agents": {"a": {"command": "a", "fallback": ["b"]}, "b": {"command": "b"}}}
    )
    assert load_agents(path)["a"].fallback == ["b"]


def test_unknown_fallback_agent_rejected(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"agents": {"x": {"command": "x", "fallback": ["nope"]}}})
    assert "agent 'x'" in message
    assert "fallback" in message
    assert "'nope'" in message


def test_invalid_json(tmp_path: Path) -> None:
    message = config_error(tmp_path, '{"agents": {"x": ')
    assert "invalid JSON" in message


def test_enormous_integer_is_invalid_json(tmp_path: Path) -> None:
    assert "invalid JSON" in config_error(tmp_path, '{"agents": {}, "n": ' + "9" * 5000 + "}")


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "agent-config.json"
    path.write_bytes(b'{"agents": {"\xff": {}}}')
    with pytest.raises(UsageError) as info:
        load_agents(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("agent", "field", "shown"),
    [
        ({"command": "x", "timeout": "5x"}, "timeout", "invalid duration"),
        ({"command": "x", "timeout": [1]}, "timeout", "invalid duration"),
        ({"command": "x", "timeout": True}, "timeout", "invalid duration"),
        ({"command": ""}, "command", ""),
        ({"args": ["a"]}, "command", "required"),
        ({"command": "x", "args": "--flag"}, "args", ""),
        ({"command": "x", "env": {"A": 1}}, "env", ""),
        ({"command": "x", "completion": "maybe"}, "completion", ""),
        ({"command": "x", "colour": "red"}, "colour", ""),
        ({"command": "x", "rateLimitPatterns": ["(unclosed"]}, "rateLimitPatterns", "regular"),
        ({"command": "x", "fatalPatterns": ["*bad"]}, "fatalPatterns", "regular"),
    ],
)
def test_bad_field_names_file_agent_and_field(
    tmp_path: Path, agent: dict[str, object], field: str, shown: str
) -> None:
    message = config_error(tmp_path, {"agents": {"mine": agent}})
    assert "agent 'mine'" in message
    assert f"field '{field}" in message
    assert shown in message


def test_bad_override_of_a_preset_names_it(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"agents": {"claude": {"timeout": "soon"}}})
    assert "agent 'claude'" in message
    assert "field 'timeout'" in message


def test_agent_that_is_not_an_object(tmp_path: Path) -> None:
    assert "agent 'x'" in config_error(tmp_path, {"agents": {"x": "claude"}})


@pytest.mark.parametrize("data", [[], {}, {"agents": []}, {"agents": {}, "extra": 1}])
def test_bad_top_level(tmp_path: Path, data: object) -> None:
    config_error(tmp_path, data)


def test_require_agent(tmp_path: Path) -> None:
    agents = load_agents(None)
    assert require_agent(agents, "codex", "here") is agents["codex"]
    with pytest.raises(UsageError) as info:
        require_agent(agents, "cluade", "tasks.yml: task 'a'")
    message = str(info.value)
    assert message.startswith("tasks.yml: task 'a'")
    assert "'cluade'" in message
    for name in ("claude", "codex", "demo", "gemini"):
        assert name in message


# -- agent_names ---------------------------------------------------------------------------


def test_agent_names_without_config() -> None:
    assert agent_names(None) == set(PRESETS)


def test_agent_names_reads_config_names_without_validating(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"agents": {"broken": {"timeout": "not a duration"}}})
    assert agent_names(path) == set(PRESETS) | {"broken"}


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '{"agents": [{"a": 1}]}', '"text"'])
def test_agent_names_tolerates_unreadable_config(tmp_path: Path, data: str) -> None:
    assert agent_names(write_config(tmp_path, data)) >= set(PRESETS)


def test_agent_names_missing_config(tmp_path: Path) -> None:
    assert agent_names(tmp_path / "absent.json") == set(PRESETS)


# -- argv ----------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", NASTY_PROMPTS)
def test_prompt_is_one_argv_element_byte_for_byte(prompt: str) -> None:
    spec = AgentSpec(command="agent", args=["-p", "{prompt}", "--id", "{taskId}"])
    assert render_argv(spec, prompt, VALUES) == ["agent", "-p", prompt, "--id", "t-1"]


def test_args_without_a_placeholder_run_as_written() -> None:
    # As agent-orchestrator runs them: `touch made-by-{taskId}.txt` makes one file.
    spec = AgentSpec(command="touch", args=["made-by-{taskId}.txt"])
    assert spec.prompt_via == "none"
    assert render_argv(spec, "Write the release notes", VALUES) == ["touch", "made-by-t-1.txt"]


@pytest.mark.parametrize("prompt", NASTY_PROMPTS)
def test_prompt_arg_without_a_placeholder_is_appended(prompt: str) -> None:
    spec = AgentSpec(command="agent", args=["--yes", "--task={taskId}"], prompt="arg")
    assert render_argv(spec, prompt, VALUES) == ["agent", "--yes", "--task=t-1", prompt]


def test_prompt_arg_with_empty_args() -> None:
    spec = AgentSpec(command="agent", args=[], prompt="arg")
    assert render_argv(spec, "{agent}", VALUES) == ["agent", "{agent}"]


def test_prompt_on_stdin_is_not_in_argv() -> None:
    spec = AgentSpec(command="agent", args=["-p", "{prompt}"], prompt="stdin")
    assert render_argv(spec, "secret plan", VALUES) == ["agent", "-p", ""]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{promt}"], "unknown placeholder {promt} in argument 1; did you mean {prompt}?"),
        (["-x", "--id={task_id}"], "{task_id} in argument 2; did you mean {taskId}?"),
        (["{WorkTree}"], "did you mean {worktree}?"),
    ],
)
def test_a_misspelt_placeholder_is_refused_at_load(args: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        AgentSpec(command="agent", args=args)


def test_braces_that_are_not_placeholders_pass() -> None:
    script = 'for name in names: print(f"{name}={value}")'
    spec = AgentSpec(command="agent", args=['-c={"a": 1}', script, "{prompt}", "{}"])
    assert render_argv(spec, "p", VALUES) == ["agent", '-c={"a": 1}', script, "p", "{}"]


def test_default_args_are_just_the_prompt() -> None:
    spec = AgentSpec(command="agent")
    assert render_argv(spec, "do it", VALUES) == ["agent", "do it"]


@pytest.mark.parametrize("prompt", NASTY_PROMPTS)
def test_placeholder_inside_a_larger_argument(prompt: str) -> None:
    spec = AgentSpec(command="agent", args=["--message={prompt}!"])
    assert render_argv(spec, prompt, VALUES) == ["agent", f"--message={prompt}!"]


def test_all_placeholders_are_substituted() -> None:
    spec = AgentSpec(
        command="agent", args=["{agent}", "{taskId}", "--cwd", "{worktree}", "{prompt}"]
    )
    assert render_argv(spec, "p", VALUES) == ["agent", "fake", "t-1", "--cwd", "/w/t-1", "p"]


def test_braces_that_are_not_placeholders_are_left_alone() -> None:
    spec = AgentSpec(command="agent", args=["{}", "{", "}", '{"json": 1}', "{prompt}"])
    assert render_argv(spec, "p", VALUES) == ["agent", "{}", "{", "}", '{"json": 1}', "p"]


def test_command_is_not_substituted_or_split() -> None:
    spec = AgentSpec(command="/opt/my agent/{agent}", args=["{prompt}"])
    assert render_argv(spec, "p", VALUES)[0] == "/opt/my agent/{agent}"


def test_values_containing_placeholders_are_not_substituted_again() -> None:
    values = {"taskId": "{prompt}", "agent": "{taskId}", "worktree": "/w"}
    spec = AgentSpec(command="a", args=["{taskId}", "{agent}", "{prompt}"])
    assert render_argv(spec, "{agent}", values) == ["a", "{prompt}", "{taskId}", "{agent}"]


def test_substitute_single_pass() -> None:
    assert substitute("{a}{b}", {"a": "{b}", "b": "B"}) == "{b}B"
    assert substitute("{x{a}}", {"a": "A"}) == "{xA}"
    assert substitute("no braces", {"a": "A"}) == "no braces"
    assert substitute("", {"a": "A"}) == ""


# -- prompt templates ----------------------------------------------------------------------


def test_render_prompt_without_template_returns_prompt_unchanged() -> None:
    spec = AgentSpec(command="x")
    for prompt in NASTY_PROMPTS:
        assert render_prompt(spec, prompt, VALUES, Path("/nonexistent")) == prompt


def test_render_prompt_with_template_relative_to_root(tmp_path: Path) -> None:
    (tmp_path / ".orchestra" / "prompts").mkdir(parents=True)
    template = tmp_path / ".orchestra" / "prompts" / "auggie.txt"
    template.write_text(
        "Task {taskId} for {agent}:\n{userPrompt}\n(also {prompt}) {unknown}\n", encoding="utf-8"
    )
    spec = AgentSpec(command="auggie", promptTemplateFile=".orchestra/prompts/auggie.txt")
    prompt = "fix {taskId} ünï"
    assert render_prompt(spec, prompt, VALUES, tmp_path) == (
        "Task t-1 for fake:\nfix {taskId} ünï\n(also fix {taskId} ünï) {unknown}\n"
    )


def test_render_prompt_with_absolute_template(tmp_path: Path) -> None:
    template = tmp_path / "t.txt"
    template.write_text("<<{prompt}>>", encoding="utf-8")
    spec = AgentSpec(command="x", promptTemplateFile=str(template))
    assert render_prompt(spec, "p", VALUES, Path("/elsewhere")) == "<<p>>"


def test_render_prompt_missing_template_is_a_usage_error(tmp_path: Path) -> None:
    spec = AgentSpec(command="x", promptTemplateFile="missing.txt")
    with pytest.raises(UsageError, match=r"missing\.txt"):
        render_prompt(spec, "p", VALUES, tmp_path)


def test_render_prompt_sentinel_protocol_mentions_sentinel_files() -> None:
    spec = AgentSpec(command="x", completion="sentinel")
    values = {
        **VALUES,
        "doneFile": "/q/.orchestra/tasks/t-1.done",
        "errorFile": "/q/.orchestra/tasks/t-1.error",
    }
    prompt = "Refactor {doneFile} handling"
    text = render_prompt(spec, prompt, values, Path("/q"))
    assert "/q/.orchestra/tasks/t-1.done" in text
    assert "/q/.orchestra/tasks/t-1.error" in text
    assert "t-1" in text
    assert prompt in text  # the user's prompt is inserted as is, not substituted
    assert "{userPrompt}" not in text
    assert '"error"' in text  # the JSON example survives substitution


def test_template_file_takes_precedence_over_sentinel_protocol(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("custom: {prompt}")
    spec = AgentSpec(command="x", completion="sentinel", promptTemplateFile="t.txt")
    assert render_prompt(spec, "p", VALUES, tmp_path) == "custom: p"


# -- the credential proxy ------------------------------------------------------------------


def test_each_preset_names_the_provider_it_speaks() -> None:
    agents = load_agents(None)
    assert {name: spec.provider for name, spec in agents.items()} == {
        "claude": "anthropic",
        "codex": "openai",
        "aider": "openai",
        "gemini": "gemini",
        "opencode": "openai",
        "demo": None,
    }


def test_a_custom_agent_opts_in_by_naming_its_provider(tmp_path: Path) -> None:
    custom = {
        "command": "mine",
        "provider": "openai-compatible",
        "proxyArgs": ["--base-url", "{proxyBaseUrl}"],
        "proxyEnv": {"MY_KEY": "{proxyKey}"},
    }
    agents = load_agents(
        write_config(tmp_path, {"agents": {"mine": custom, "old": {"command": "x"}}})
    )
    assert agents["mine"].provider == "openai-compatible"
    assert agents["mine"].proxy_args == ["--base-url", "{proxyBaseUrl}"]
    assert agents["old"].provider is None and agents["old"].proxy_args == []


def test_an_unknown_provider_is_refused(tmp_path: Path) -> None:
    message = config_error(tmp_path, {"agents": {"mine": {"command": "x", "provider": "acme"}}})
    assert "mine" in message and "provider" in message


def test_overriding_a_presets_args_keeps_its_proxy_args(tmp_path: Path) -> None:
    agents = load_agents(
        write_config(tmp_path, {"agents": {"codex": {"args": ["exec", "{prompt}"]}}})
    )
    assert agents["codex"].proxy_args == PRESETS["codex"]["proxyArgs"]


def test_proxy_settings_fill_in_the_route() -> None:
    spec = AgentSpec(
        command="a",
        proxy_args=["-c", 'base_url="{proxyBaseUrl}"', "{taskId}"],
        proxy_env={"CONFIG": '{"baseURL": "{proxyBaseUrl}", "key": "{proxyKey}"}'},
    )
    args, env = proxy_settings(spec, "http://127.0.0.1:1/t/openai", "dummy")
    assert args == ["-c", 'base_url="http://127.0.0.1:1/t/openai"', "{taskId}"]
    assert env == {"CONFIG": '{"baseURL": "http://127.0.0.1:1/t/openai", "key": "dummy"}'}


def test_extra_arguments_go_just_before_the_prompt() -> None:
    spec = AgentSpec(command="agent", args=["exec", "--quiet", "{prompt}", "--after"])
    extra = ["-c", "x=1"]
    assert render_argv(spec, "p", VALUES, extra) == [
        "agent",
        "exec",
        "--quiet",
        "-c",
        "x=1",
        "p",
        "--after",
    ]
    appended = AgentSpec(command="agent", args=["--yes"], prompt="arg")
    assert render_argv(appended, "p", VALUES, extra) == ["agent", "--yes", "-c", "x=1", "p"]


def test_the_codex_preset_through_the_proxy() -> None:
    codex = load_agents(None)["codex"]
    args, env = proxy_settings(codex, "http://127.0.0.1:1/t/openai", "dummy")
    argv = render_argv(codex, "p", VALUES, args)
    assert argv[-1] == "p" and env == {}
    flags = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert "model_provider=orchestra" in flags
    assert 'model_providers.orchestra.base_url="http://127.0.0.1:1/t/openai"' in flags
    assert 'model_providers.orchestra.env_key="OPENAI_API_KEY"' in flags
    assert 'model_providers.orchestra.wire_api="responses"' in flags


def test_the_opencode_preset_through_the_proxy() -> None:
    opencode = load_agents(None)["opencode"]
    args, env = proxy_settings(opencode, "http://127.0.0.1:1/t/openai", "dummy")
    config = json.loads(env["OPENCODE_CONFIG_CONTENT"])
    assert args == []
    assert config == {
        "provider": {"openai": {"options": {"baseURL": "http://127.0.0.1:1/t/openai"}}}
    }
