"""orchestra_ci.settings: flags > ORCHESTRA_* env > .orchestra/config.yml > defaults."""

import os
from pathlib import Path

import pytest

from orchestra_ci.errors import UsageError
from orchestra_ci.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("ORCHESTRA_"):
            monkeypatch.delenv(name)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".orchestra").mkdir()
    return tmp_path


def config(root: Path, text: str) -> None:
    (root / ".orchestra" / "config.yml").write_text(text)


def usage_error(root: Path, **flags: object) -> str:
    with pytest.raises(UsageError) as info:
        load_settings(root, **flags)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.exit_code == 2
    return message


def test_defaults(project: Path) -> None:
    s = load_settings(project)
    assert s.parallel == 4
    assert s.time_budget is None
    assert s.grace == 10.0
    assert s.timeout == 1800.0
    assert s.backoff == 10.0
    assert s.backoff_max == 600.0
    assert s.default_agent == "claude"
    assert s.fail_on_pending is False
    assert s.log_cap_bytes == 52428800
    assert s.tasks_file is None
    assert s.agent_config is None


def test_config_file_values(project: Path) -> None:
    config(
        project,
        "parallel: 2\ngrace: 3s\ntime_budget: 1h30m\ntimeout: 15m\nbackoff: 0.5s\n"
        "backoff_max: 2m\ndefault_agent: codex\nfail_on_pending: true\n"
        "tasks_file: custom/tasks.yml\n",
    )
    s = load_settings(project)
    assert s.parallel == 2
    assert s.grace == 3.0
    assert s.time_budget == 5400.0
    assert s.timeout == 900.0
    assert s.backoff == 0.5
    assert s.backoff_max == 120.0
    assert s.default_agent == "codex"
    assert s.fail_on_pending is True
    assert s.tasks_file == Path("custom/tasks.yml")


def test_env_overrides_config_file_key_by_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config(project, "parallel: 2\ngrace: 3s\ndefault_agent: codex\n")
    monkeypatch.setenv("ORCHESTRA_PARALLEL", "7")
    monkeypatch.setenv("ORCHESTRA_GRACE", "2m")
    s = load_settings(project)
    assert s.parallel == 7
    assert s.grace == 120.0
    assert s.default_agent == "codex"  # not in the environment: the file still counts


def test_flags_override_env_and_none_flags_are_ignored(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config(project, "parallel: 2\ngrace: 3s\nbackoff: 1s\n")
    monkeypatch.setenv("ORCHESTRA_PARALLEL", "7")
    monkeypatch.setenv("ORCHESTRA_GRACE", "2m")
    s = load_settings(project, parallel=9, grace=None, backoff=None, time_budget="45s")
    assert s.parallel == 9
    assert s.grace == 120.0  # flag not given: env
    assert s.backoff == 1.0  # flag not given, no env: file
    assert s.time_budget == 45.0


@pytest.mark.parametrize(
    ("in_file", "in_env", "flag", "expected"),
    [
        (False, False, False, 30.0 * 60),
        (True, False, False, 60.0),
        (True, True, False, 120.0),
        (False, True, False, 120.0),
        (True, True, True, 180.0),
        (True, False, True, 180.0),
    ],
)
def test_precedence_for_one_setting(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_file: bool,
    in_env: bool,
    flag: bool,
    expected: float,
) -> None:
    if in_file:
        config(project, "timeout: 1m\n")
    if in_env:
        monkeypatch.setenv("ORCHESTRA_TIMEOUT", "2m")
    flags = {"timeout": "3m"} if flag else {}
    assert load_settings(project, **flags).timeout == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("0.5s", 0.5), ("15m", 900.0), ("2h", 7200.0), ("1h30m", 5400.0)],
)
def test_durations_as_strings_in_env_and_yaml(
    project: Path, monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    monkeypatch.setenv("ORCHESTRA_TIME_BUDGET", text)
    monkeypatch.setenv("ORCHESTRA_BACKOFF_MAX", text)
    config(project, f"grace: '{text}'\nbackoff: {text}\n")
    s = load_settings(project)
    assert (s.time_budget, s.backoff_max, s.grace, s.backoff) == (seconds,) * 4


def test_yaml_numbers_are_seconds(project: Path) -> None:
    config(project, "grace: 5\ntimeout: 2.5\n")
    s = load_settings(project)
    assert (s.grace, s.timeout) == (5.0, 2.5)


def test_the_credential_proxy_is_off_in_the_cli_unless_turned_on(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(project).credential_proxy is False
    monkeypatch.setenv("ORCHESTRA_CREDENTIAL_PROXY", "true")
    assert load_settings(project).credential_proxy is True


def test_env_booleans(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_FAIL_ON_PENDING", "true")
    assert load_settings(project).fail_on_pending is True
    monkeypatch.setenv("ORCHESTRA_FAIL_ON_PENDING", "0")
    assert load_settings(project).fail_on_pending is False


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("ORCHESTRA_GRACE", "soon", "grace"),
        ("ORCHESTRA_TIME_BUDGET", "-5s", "time_budget"),
        ("ORCHESTRA_PARALLEL", "many", "parallel"),
        ("ORCHESTRA_PARALLEL", "0", "parallel"),
        ("ORCHESTRA_FAIL_ON_PENDING", "maybe", "fail_on_pending"),
        ("ORCHESTRA_LOG_CAP_BYTES", "12", "log_cap_bytes"),
        ("ORCHESTRA_BACKOFF", "10 minutes\nlater", "backoff"),
    ],
)
def test_bad_env_value_is_a_one_line_usage_error(
    project: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, setting: str
) -> None:
    monkeypatch.setenv(variable, value)
    message = usage_error(project)
    assert message.startswith(f"{variable}: ") and "\n" not in message


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("timeout: soon\n", "timeout"),
        ("parallel: 0\n", "parallel"),
        ("parallel: [1, 2]\n", "parallel"),
        ("backoff_max: {a: 1}\n", "backoff_max"),
        ("grace: 1h30x\n", "grace"),
    ],
)
def test_bad_config_file_value_is_a_one_line_usage_error(
    project: Path, text: str, setting: str
) -> None:
    config(project, text)
    assert setting in usage_error(project)


def test_bad_flag_value_is_a_one_line_usage_error(project: Path) -> None:
    assert "grace" in usage_error(project, grace="whenever")
    assert "parallel" in usage_error(project, parallel=0)


@pytest.mark.parametrize(
    "text", ["parallel: [\n", "- parallel\n- 4\n", "just a string\n", "a: b: c\n", "\x00"]
)
def test_malformed_config_file_is_a_one_line_usage_error_naming_it(
    project: Path, text: str
) -> None:
    config(project, text)
    assert "config.yml" in usage_error(project)


def test_unknown_keys_in_config_file_are_rejected(project: Path) -> None:
    config(project, "parallel: 3\nno_such_setting: 1\n")
    with pytest.raises(UsageError, match=r"config.yml: unknown setting 'no_such_setting'$"):
        load_settings(project)


def test_unrelated_orchestra_variables_are_ignored(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRA_ROOT", "/somewhere/else")
    monkeypatch.setenv("ORCHESTRA_DEMO_DELAY", "not a number")
    assert load_settings(project) == load_settings(project, parallel=None)
    assert load_settings(project).parallel == 4


def test_empty_config_file_means_defaults(project: Path) -> None:
    config(project, "")
    assert load_settings(project) == Settings()


def test_config_is_read_from_the_given_root_only(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    (elsewhere / ".orchestra").mkdir()
    config(elsewhere, "parallel: 11\n")
    monkeypatch.chdir(elsewhere)
    assert load_settings(project).parallel == 4
    assert load_settings(elsewhere).parallel == 11
    # the file of one call does not leak into a later Settings() built without a root
    assert Settings().parallel == 4


@pytest.mark.parametrize("text", ["- parallel\n- 4\n", "just a string\n", "42\n"])
def test_config_file_that_is_not_a_mapping_says_so(project: Path, text: str) -> None:
    config(project, text)
    assert "mapping" in usage_error(project)


def test_an_unknown_key_in_config_yml_is_named_with_the_nearest_setting(project: Path) -> None:
    config(project, "paralel: 3\n")
    with pytest.raises(
        UsageError, match=r"unknown setting 'paralel' \(did you mean 'parallel'\?\)"
    ):
        load_settings(project)


def test_a_bad_value_is_named_by_where_it_came_from(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError, match=r"^--max-cost-usd: Input should be greater"):
        load_settings(project, max_cost_usd=-3)
    with pytest.raises(UsageError, match=r"^input 'parallel': Input should be greater"):
        load_settings(project, named=lambda f: f"input {f!r}", parallel=0)
    monkeypatch.setenv("ORCHESTRA_PARALLEL", "0")
    with pytest.raises(UsageError, match=r"^ORCHESTRA_PARALLEL: Input should be greater"):
        load_settings(project)
    monkeypatch.delenv("ORCHESTRA_PARALLEL")
    config(project, "parallel: 0\n")
    with pytest.raises(UsageError, match=r"config.yml: field 'parallel': Input should be"):
        load_settings(project)


def test_a_bad_shard_is_named_by_where_it_came_from_before_anything_loads(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError, match=r"^--shard: invalid shard '5/2': K must be between"):
        load_settings(project, shard="5/2")
    monkeypatch.setenv("ORCHESTRA_SHARD", "two")
    with pytest.raises(UsageError, match=r"^ORCHESTRA_SHARD: invalid shard 'two': use K/N"):
        load_settings(project)
    monkeypatch.setenv("ORCHESTRA_SHARD", "2/3")
    assert load_settings(project).shard == "2/3"
