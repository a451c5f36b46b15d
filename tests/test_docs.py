"""README.md documents every CLI option, Settings field and action.yml input and output,
and names none that does not exist (in the manner of sqlite-utils' documentation tests).

Where each is looked for:

* a subcommand's long options: in its synopsis, the first cell of its row in the table
  under "## Commands"; the top-level options: in the "Global options:" paragraph there;
* a Settings field: as a backticked name in the first cell of a row of the table under
  "## Configuration", whose env cell names the variable it is read from;
* an action input or output: backticked in the "**Inputs**" or "**Outputs**" paragraph.
"""

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from orchestra_ci.cli import build_parser
from orchestra_ci.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))

CODE = re.compile(r"`([^`]+)`")
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def section(title: str) -> str:
    """The text under the ``## title`` heading, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def table(text: str, header: str) -> list[list[str]]:
    """The body rows (cells stripped) of the first table in ``text`` whose header row
    starts with ``| header |``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:  # skip the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"\s\|\s", line.strip("| "))])
    return rows


def paragraph(text: str, opening: str) -> str:
    """The paragraph of ``text`` that starts with ``opening``."""
    match = re.search(rf"^{re.escape(opening)}.*?(?=\n\n|\Z)", text, re.M | re.S)
    assert match, f"README has no paragraph starting {opening!r}"
    return match.group(0)


# -- CLI -----------------------------------------------------------------------------------

PARSER = build_parser()
COMMANDS_SECTION = section("Commands")
GLOBAL_OPTIONS = paragraph(COMMANDS_SECTION, "Global options:")


def subcommands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + name, sub
                yield from subcommands(sub, f"{prefix}{name} ")


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    """Its long options, without ``--help`` and the hidden copies of the global options
    that every command takes too (documented once, with the global options)."""
    return [
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help" and action.help != argparse.SUPPRESS
    ]


def synopses() -> dict[str, str]:
    """Command name -> its synopsis: the code spans of the first cell of its rows in the
    Commands table (``retry TASK_ID`` / ``retry --failed`` is one row, two spans)."""
    found: dict[str, str] = {}
    for row in table(COMMANDS_SECTION, "command"):
        for span in CODE.findall(row[0]):
            name = span.split()[0]
            found[name] = f"{found.get(name, '')} {span}".strip()
    return found


SUBCOMMANDS = dict(subcommands(PARSER))
SYNOPSES = synopses()
CLI_OPTIONS = [("global", option) for option in long_options(PARSER)] + [
    (name, option) for name, sub in SUBCOMMANDS.items() for option in long_options(sub)
]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_command_has_a_row(command: str) -> None:
    assert command in SYNOPSES, f"no row for {command!r} in the README's Commands table"


@pytest.mark.parametrize(
    ("command", "option"), CLI_OPTIONS, ids=[f"{c} {o}" for c, o in CLI_OPTIONS]
)
def test_cli_option_documented(command: str, option: str) -> None:
    where = GLOBAL_OPTIONS if command == "global" else SYNOPSES.get(command, "")
    assert option in LONG_OPTION.findall(where), (
        f"{option} of {command!r} is not in its README synopsis: {where!r}"
    )


def test_documented_commands_and_options_exist() -> None:
    for command, synopsis in SYNOPSES.items():
        assert command in SUBCOMMANDS, f"README documents a command {command!r} that is gone"
        for option in LONG_OPTION.findall(synopsis):
            assert option in long_options(SUBCOMMANDS[command]), (
                f"README shows {command} {option}, which the parser does not have"
            )
    for option in LONG_OPTION.findall(GLOBAL_OPTIONS):
        assert option in long_options(PARSER), f"README shows a global option {option} that is gone"


# -- Settings ------------------------------------------------------------------------------

ENV_PREFIX = Settings.model_config.get("env_prefix", "")
CONFIG_ROWS = [
    (CODE.findall(row[0]), CODE.findall(row[1]))
    for row in table(section("Configuration"), "setting")
]


def env_names(field: str) -> list[str]:
    """The variables a field is read from: its aliases when it has any, else the prefixed
    name (pydantic-settings matches them case-insensitively; the README upper-cases)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        names = [c for c in alias.choices if isinstance(c, str) and c != field]
    elif isinstance(alias, str):
        names = [alias]
    else:
        names = [ENV_PREFIX + field]
    return [name.upper() for name in names]


@pytest.mark.parametrize("field", Settings.model_fields)
def test_setting_documented(field: str) -> None:
    rows = [envs for names, envs in CONFIG_ROWS if field in names]
    assert rows, f"setting {field!r} has no row in the README's Configuration table"
    wanted = env_names(field)
    assert any(set(wanted) & set(envs) for envs in rows), (
        f"the Configuration row of {field!r} names none of its variables {wanted}"
    )


def test_documented_variables_exist() -> None:
    known = {name for field in Settings.model_fields for name in env_names(field)}
    for _, envs in CONFIG_ROWS:
        for env in envs:
            if env.startswith(ENV_PREFIX):
                assert env in known, f"README documents {env}, which no setting reads"


# -- action.yml ----------------------------------------------------------------------------

ACTION_SECTION = section("The GitHub Action")


def documented_names(opening: str) -> list[str]:
    """The names a paragraph lists: backticked words outside parentheses, which hold
    defaults and remarks."""
    text = paragraph(ACTION_SECTION, opening)
    while (stripped := re.sub(r"\([^()]*\)", "", text)) != text:
        text = stripped
    return [span for span in CODE.findall(text) if re.fullmatch(r"[a-z][a-z0-9_-]*", span)]


@pytest.mark.parametrize("name", ACTION["inputs"])
def test_action_input_documented(name: str) -> None:
    assert name in documented_names("**Inputs**"), f"action input {name!r} is not in README"


@pytest.mark.parametrize("name", ACTION["outputs"])
def test_action_output_documented(name: str) -> None:
    assert name in documented_names("**Outputs**"), f"action output {name!r} is not in README"


def test_documented_inputs_and_outputs_exist() -> None:
    for opening, kind in (("**Inputs**", "inputs"), ("**Outputs**", "outputs")):
        for name in documented_names(opening):
            assert name in ACTION[kind], f"README lists {kind[:-1]} {name!r}, not in action.yml"
