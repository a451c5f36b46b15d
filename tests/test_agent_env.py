"""The environment an agent gets, decided from the runner's (pure)."""

from collections.abc import Mapping
from pathlib import Path

import pytest

from orchestra_ci.agent_env import (
    NEVER_PASSED,
    Place,
    agent_environment,
    is_git_credential,
    passed_environment,
    resolve,
    without_git_credentials,
)
from orchestra_ci.credential_proxy import withheld_variables

PLACE = Place("t1", 2, Path("/queue"), Path("/queue/.orchestra/worktrees/t1"))
RUNNER = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/runner",
    "PWD": "/somewhere/else",
    "ANTHROPIC_API_KEY": "sk-ant-real",
    "ANTHROPIC_BASE_URL": "https://gateway.example",
    "OPENAI_BASE_URL": "http://localhost:11434/v1",  # a keyless local endpoint
    "NPM_TOKEN": "npm_users_own",
    "INPUT_GITHUB_TOKEN": "ghs_input",
    "INPUT_PARALLEL": "4",
    **{name: f"value of {name}" for name in NEVER_PASSED},
}


def build(
    own: Mapping[str, str] | None = None,
    withheld: frozenset[str] = frozenset(),
    proxied: Mapping[str, str] | None = None,
) -> dict[str, str]:
    passed = passed_environment(RUNNER, withheld)
    return agent_environment(passed, RUNNER, PLACE, own=own or {}, proxied=proxied)


def test_the_runners_credentials_and_the_actions_inputs_never_reach_an_agent() -> None:
    env = build()
    assert not [name for name in env if name in NEVER_PASSED or name.startswith("INPUT_")]
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "ACTIONS_RUNTIME_TOKEN", "GIT_ASKPASS"):
        assert name in NEVER_PASSED
    assert {"ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_URL"} <= NEVER_PASSED
    assert {"ACTIONS_RESULTS_URL", "ACTIONS_CACHE_URL", "ORCHESTRA_GITHUB_TOKEN"} <= NEVER_PASSED


def test_everything_else_reaches_it_keys_included_without_the_proxy() -> None:
    env = build()
    for name in ("PATH", "HOME", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "NPM_TOKEN"):
        assert env[name] == RUNNER[name]


def test_the_task_and_its_working_directory() -> None:
    env = build(own={"ORCHESTRA_TASK_ID": "other", "PWD": "/elsewhere"})
    assert env["ORCHESTRA_TASK_ID"] == "t1" and env["ORCHESTRA_ATTEMPT"] == "2"
    assert env["ORCHESTRA_ROOT"] == "/queue"
    assert env["PWD"] == "/queue/.orchestra/worktrees/t1"  # not the runner's, nor the agent's


def test_with_the_proxy_the_held_keys_and_their_base_urls_are_replaced_by_the_route() -> None:
    withheld = withheld_variables(["anthropic"])
    route = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9/tok/anthropic", "ANTHROPIC_API_KEY": "d"}
    env = build(withheld=withheld, proxied=route)
    assert env["ANTHROPIC_BASE_URL"] == route["ANTHROPIC_BASE_URL"]
    assert env["ANTHROPIC_API_KEY"] == "d"
    assert "sk-ant-real" not in env.values() and "https://gateway.example" not in env.values()
    assert env["OPENAI_BASE_URL"] == RUNNER["OPENAI_BASE_URL"]  # not proxied: left alone


def test_an_agent_without_a_route_gets_no_held_key_at_all() -> None:
    env = build(withheld=withheld_variables(["anthropic"]), proxied=None)
    assert "ANTHROPIC_API_KEY" not in env and "ANTHROPIC_BASE_URL" not in env


def test_the_agents_own_env_wins_over_the_route_and_may_name_a_withheld_variable() -> None:
    own = {"ANTHROPIC_BASE_URL": "https://mine.example", "GH_TOKEN": "{env:GH_TOKEN}"}
    env = build(own=own, withheld=withheld_variables(["anthropic"]), proxied={"X": "1"})
    assert env["ANTHROPIC_BASE_URL"] == "https://mine.example"
    assert env["GH_TOKEN"] == "value of GH_TOKEN" and env["X"] == "1"


def test_references_in_an_agents_env() -> None:
    environ = {"A": "alpha", "B": "beta"}
    own = {"ONE": "{env:A}", "TWO": "x-{env:A}-{env:B}", "UNSET": "{env:C}", "KEEP": "{A} {env:}"}
    assert resolve(own, environ) == {
        "ONE": "alpha",
        "TWO": "x-alpha-beta",
        "UNSET": "",
        "KEEP": "{A} {env:}",
    }


@pytest.mark.parametrize(
    "key",
    [
        "credential.helper",
        "credential.https://github.com.helper",
        "Credential.UserName",
        "http.extraheader",
        "http.https://github.com/.extraheader",
        "HTTP.https://github.com/.extraHeader",
        "core.askPass",
    ],
)
def test_git_configuration_that_carries_a_credential(key: str) -> None:
    assert is_git_credential(key)


@pytest.mark.parametrize(
    "key", ["http.sslVerify", "http.https://x/.proxy", "core.quotePath", "credentials", "user.name"]
)
def test_git_configuration_that_does_not(key: str) -> None:
    assert not is_git_credential(key)


def test_git_configuration_in_the_environment_loses_its_credentials_and_is_renumbered() -> None:
    environ = {
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_0": "http.https://github.com/.extraheader",
        "GIT_CONFIG_VALUE_0": "AUTHORIZATION: basic c2VjcmV0",
        "GIT_CONFIG_KEY_1": "core.quotePath",
        "GIT_CONFIG_VALUE_1": "false",
        "GIT_CONFIG_KEY_2": "credential.helper",
        "GIT_CONFIG_VALUE_2": "store",
        "GIT_CONFIG_KEY_7": "http.extraheader",  # beyond the count: git ignores it, so do we
        "GIT_CONFIG_VALUE_7": "AUTHORIZATION: basic c2VjcmV0",
        "PATH": "/bin",
    }
    assert without_git_credentials(environ) == {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "core.quotePath",
        "GIT_CONFIG_VALUE_0": "false",
        "PATH": "/bin",
    }


def test_git_configuration_of_only_credentials_leaves_no_count() -> None:
    environ = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraheader",
        "GIT_CONFIG_VALUE_0": "AUTHORIZATION: bearer t",
    }
    assert without_git_credentials(environ) == {}


def test_a_git_configuration_count_that_is_not_a_number_drops_the_entries() -> None:
    environ = {"GIT_CONFIG_COUNT": "x", "GIT_CONFIG_KEY_0": "a.b", "GIT_CONFIG_VALUE_0": "c"}
    assert without_git_credentials(environ) == {}


def test_git_parameters_are_dropped_only_when_they_mention_a_credential() -> None:
    header = {"GIT_CONFIG_PARAMETERS": "'http.https://github.com/.extraheader'='AUTH: x'"}
    plain = {"GIT_CONFIG_PARAMETERS": "'core.quotepath'='false'"}
    assert without_git_credentials(header) == {}
    assert without_git_credentials(plain) == plain
