"""The GitHub Actions runner's file and stdout contract: outputs, summary, commands.

Escaping follows the runner's rules: data escapes ``%``, CR and LF; properties also ``:``
and ``,``. Outputs use the multi-line heredoc form with a random delimiter.
"""

import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

SUMMARY_LIMIT = 1024 * 1024


def escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: str | None) -> str:
    props = ",".join(f"{k}={escape_property(v)}" for k, v in properties.items() if v is not None)
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def annotate(env: Mapping[str, str], kind: str, message: str, title: str = "orchestra-ci") -> None:
    """A notice, warning or error: an annotation inside GitHub Actions, one line on stderr
    elsewhere (a terminal has no use for ``::warning::``)."""
    if env.get("GITHUB_ACTIONS") == "true":
        print(command(kind, message, title=title), flush=True)
    else:
        print(f"orchestra-ci: {kind}: {message}", file=sys.stderr, flush=True)


def mask_commands(values: Iterable[str]) -> list[str]:
    """``::add-mask::`` lines; multi-line secrets are masked line by line as well."""
    lines: list[str] = []
    for value in values:
        parts = [value, *value.splitlines()] if "\n" in value else [value]
        lines.extend(command("add-mask", p) for p in parts if p.strip())
    return lines


def heredoc(name: str, value: str) -> str:
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def write_outputs(outputs: Mapping[str, str], env: Mapping[str, str] | None = None) -> bool:
    """Append step outputs to ``$GITHUB_OUTPUT``; False when not running in Actions."""
    path = (os.environ if env is None else env).get("GITHUB_OUTPUT")
    if not path:
        return False
    with Path(path).open("a", encoding="utf-8") as f:
        for name, value in outputs.items():
            f.write(heredoc(name, value))
    return True


def fit_summary(markdown: str, limit: int = SUMMARY_LIMIT) -> str:
    """Cut a summary to the runner's size limit (bytes), on a line boundary, with a note.

    A code block (a mermaid chart, say) left open by the cut is closed first, so the note
    shows as text instead of disappearing into the block.
    """
    data = markdown.encode()
    if len(data) <= limit:
        return markdown
    note = "\n\n_Summary truncated to fit GitHub's 1 MiB limit; see results.json._\n"
    budget = limit - len(note.encode()) - 4
    while True:
        cut = data[: max(budget, 0)].decode(errors="ignore")
        cut = cut[: cut.rfind("\n") + 1]
        fence = _open_fence(cut)
        closing = f"{fence}\n" if fence else ""
        result = cut + closing + note
        if len(result.encode()) <= limit or not cut:
            return result
        budget = len(cut.encode()) - len(closing.encode())


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")


def _open_fence(markdown: str) -> str | None:
    """The opening run of a fenced code block still open at the end of ``markdown``."""
    fence: str | None = None
    for line in markdown.split("\n"):
        match = _FENCE.match(line)
        if match is None:
            continue
        run, rest = match.groups()
        if fence is None:
            if not (run[0] == "`" and "`" in rest):  # backticks in the info: not a fence
                fence = run
        elif run[0] == fence[0] and len(run) >= len(fence) and not rest.strip():
            fence = None
    return fence


def write_summary(markdown: str, env: Mapping[str, str] | None = None) -> bool:
    path = (os.environ if env is None else env).get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(fit_summary(markdown))
    return True


def print_log_group(out: TextIO, title: str, text: str) -> None:
    """A collapsible log group whose content cannot smuggle in workflow commands."""
    token = secrets.token_hex(16)
    out.write(command("group", title) + "\n")
    out.write(f"::stop-commands::{token}\n")
    out.write(text if text.endswith("\n") or not text else text + "\n")
    out.write(f"::{token}::\n")
    out.write("::endgroup::\n")
