"""Every ``--help`` answers the user: each option and argument says what it does, its
default and its unit; each command shows examples that parse; the top-level help gives the
duration format and the exit codes of ``run``."""

import argparse
import re
import shlex
from collections.abc import Iterator

import pytest
from pydantic import AliasChoices

from orchestra_ci import cli
from orchestra_ci.cli import _help_width, build_parser
from orchestra_ci.durations import _FACTORS, parse_duration
from orchestra_ci.settings import Settings

PARSER = build_parser()


def parsers(
    parser: argparse.ArgumentParser, name: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``(command, parser)`` for the top-level parser (command "") and every subcommand."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}".strip())


PARSERS = dict(parsers(PARSER))
SUBCOMMANDS = {name: parser for name, parser in PARSERS.items() if name}


def rendered(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An action's help as ``--help`` shows it (``%(default)s`` filled in), on one line."""
    return " ".join(parser._get_formatter()._expand_help(action).split())


def documented() -> Iterator[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    """Every action that ``--help`` lists, but ``-h/--help`` and ``--version``."""
    for name, parser in PARSERS.items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            yield name, parser, action


ACTIONS = [(parser, action) for _, parser, action in documented()]
IDS = [
    f"{name or 'top'} {'/'.join(action.option_strings) or action.metavar or action.dest}"
    for name, _, action in documented()
]
OPTIONS = [(p, a) for p, a in ACTIONS if a.option_strings]
OPTION_IDS = [i for i, (_, a) in zip(IDS, ACTIONS, strict=True) if a.option_strings]


@pytest.mark.parametrize(("parser", "action"), ACTIONS, ids=IDS)
def test_every_argument_has_a_sentence(
    parser: argparse.ArgumentParser, action: argparse.Action
) -> None:
    text = rendered(parser, action) if action.help else ""
    assert re.fullmatch(r"\S.*\w.*\.", text), f"help of {action.dest!r} is no sentence: {text!r}"


@pytest.mark.parametrize(("parser", "action"), OPTIONS, ids=OPTION_IDS)
def test_every_option_says_its_default(
    parser: argparse.ArgumentParser, action: argparse.Action
) -> None:
    """An option with a value of its own shows that value; one that takes a value and may be
    left out says what leaving it out means (or that it is required)."""
    text = rendered(parser, action)
    if action.default not in (None, False, argparse.SUPPRESS):
        assert "default" in text, f"{action.option_strings[0]}: no default in {text!r}"
        if isinstance(action.default, str | int | float):
            assert f"default: {action.default}" in text, (
                f"{action.option_strings[0]}: its default {action.default!r} is not in {text!r}"
            )
    if action.nargs != 0:
        wanted = "(required)" if action.required else "default"
        assert wanted in text, f"{action.option_strings[0]}: no {wanted!r} in {text!r}"


def variables() -> set[str]:
    """The variables the settings are read from, and ``ORCHESTRA_ROOT`` (read by the CLI)."""
    names = {"ORCHESTRA_ROOT"}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(c).upper() for c in alias.choices if str(c) != field}
        else:
            names.add(f"ORCHESTRA_{field.upper()}")
    return names


SETTING_DEFAULT = re.compile(r"\$ORCHESTRA_(\w+) or \.orchestra/config\.yml, else ([^,;)]+)")


@pytest.mark.parametrize(("parser", "action"), ACTIONS, ids=IDS)
def test_defaults_are_the_settings_defaults(
    parser: argparse.ArgumentParser, action: argparse.Action
) -> None:
    """A variable named in a help exists, and a default said to come after the variable and
    config.yml is the setting's own default."""
    text = rendered(parser, action)
    for variable in re.findall(r"\$([A-Z][A-Z0-9_]*)", text):
        assert variable in variables(), f"{action.dest}: no setting reads ${variable}"
    for variable, fallback in SETTING_DEFAULT.findall(text):
        default = Settings.model_fields[variable.lower()].default
        if default is None:
            assert not re.match(r"\d", fallback), f"${variable} has no default, not {fallback}"
        elif isinstance(default, bool):
            assert fallback == ("on" if default else "off"), f"${variable}: {fallback!r}"
        else:
            assert parse_duration(fallback) == default, f"${variable}: {fallback!r}"


@pytest.mark.parametrize(("parser", "action"), ACTIONS, ids=IDS)
def test_durations_and_money_name_their_unit(
    parser: argparse.ArgumentParser, action: argparse.Action
) -> None:
    text = rendered(parser, action)
    if action.type is cli._duration:
        assert "a duration" in text, f"{action.dest}: its unit is not said in {text!r}"
    if action.dest.endswith("_usd"):
        assert "US dollars" in text, f"{action.dest}: its unit is not said in {text!r}"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_command_has_examples(command: str) -> None:
    epilog = SUBCOMMANDS[command].epilog or ""
    assert f"orchestra-ci {command}" in epilog, f"{command} --help shows no example"


def examples() -> Iterator[tuple[str, str]]:
    for name, parser in PARSERS.items():
        for line in (parser.epilog or "").splitlines():
            if line.strip().startswith("orchestra-ci "):
                yield name, line.strip()


EXAMPLES = list(examples())


@pytest.mark.parametrize(("command", "example"), EXAMPLES, ids=[e for _, e in EXAMPLES])
def test_examples_parse(command: str, example: str) -> None:
    try:
        args = build_parser().parse_args(shlex.split(example)[1:])
    except SystemExit:
        pytest.fail(f"the example {example!r} does not parse")
    if command:
        assert args.command == command, f"an example of {command} runs {args.command}"


@pytest.fixture
def columns_60(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A terminal 60 columns wide; the width is read once per process, so the cached one
    is dropped before and after."""
    monkeypatch.setenv("COLUMNS", "60")
    _help_width.cache_clear()
    yield
    _help_width.cache_clear()


@pytest.mark.usefixtures("columns_60")
def test_help_keeps_the_examples_lines_and_wraps_the_options() -> None:
    for name, parser in PARSERS.items():
        text = parser.format_help()
        lines = text.splitlines()
        for line in (parser.epilog or "").splitlines():
            assert line in lines, f"{name or 'top'} --help broke the epilog line {line!r}"
        options = text[: text.index(parser.epilog)] if parser.epilog else text
        too_long = [line for line in options.splitlines() if len(line) > 60]
        assert not too_long, f"{name or 'top'} --help does not wrap: {too_long}"


TOP_HELP = " ".join(PARSER.format_help().split())


def test_top_help_gives_the_duration_format() -> None:
    found = re.search(r"durations \(.*?\): (.*?) e\.g\. (.*?) exit codes", TOP_HELP)
    assert found, "the top-level help does not give the duration format"
    units = re.findall(r"\b(ms|s|m|h|d)\b", found.group(1))
    assert set(units) == set(_FACTORS), f"the units are {sorted(_FACTORS)}, not {units}"
    written = [part.strip() for part in found.group(2).split(",")]
    assert {"90s", "10m", "1h30m"} <= set(written)
    for example in written:
        parse_duration(example)  # each is accepted as written


def test_top_help_gives_the_exit_codes_of_run() -> None:
    section = TOP_HELP[TOP_HELP.index("exit codes of run:") :]
    for code, meaning in (
        ("0", "no task failed"),
        ("1", "at least one task failed for good"),
        ("2", "bad usage or configuration"),
        ("130/143", "stopped by SIGINT/SIGTERM"),
    ):
        assert f" {code} {meaning}" in section, f"exit code {code} is not explained"
    assert "--fail-on-pending" in section
