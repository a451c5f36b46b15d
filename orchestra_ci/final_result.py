"""Reading an agent's own account of how its run ended (pure).

Some CLIs' exit codes do not tell: Gemini CLI stopped by SIGTERM exits 0 with nothing on
stdout, and OpenCode exits 0 after auto-rejecting a permission it was asked for, with the
task left undone. An agent's ``resultFormat`` names how its final result is written; the
parser for that format reads it from the output. A parser returns None when the output
holds nothing it can judge, and the exit code decides as for any agent.
"""

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

ResultFormat = Literal["gemini-json", "opencode-run"]

_DECODER = json.JSONDecoder()
_OBJECT_START = re.compile(r"^\{", re.M)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PERMISSION = re.compile(r"permission requested: (.*?);\s*auto-rejecting", re.I)


@dataclass(frozen=True)
class FinalResult:
    """What the agent reported: whether its run succeeded, and the error it gave if not."""

    ok: bool
    error: str | None = None


def _objects(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects that start a line, one line (JSONL) or pretty-printed over many."""
    for start in _OBJECT_START.finditer(text):
        try:
            value, _ = _DECODER.raw_decode(text, start.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _gemini_json(text: str) -> FinalResult:
    """Gemini CLI ``-o json``: success prints ``{"session_id", "response", "stats"}`` on
    stdout; an error prints ``{"session_id", "error": {"type", "message", "code"}}`` on
    stderr (``code`` being the HTTP status). Neither means it did not finish (SIGTERM: exit
    0, stdout empty)."""
    final = None
    for obj in _objects(text):
        if "response" in obj or "error" in obj:
            final = obj
    if final is None:
        return FinalResult(False, "no final JSON result in its output: it did not finish")
    error = final.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        status = f" (HTTP {code})" if isinstance(code, int) else ""
        return FinalResult(False, f"{error.get('message') or 'an error'}{status}")
    if error is not None:
        return FinalResult(False, str(error))
    return FinalResult(True)


def _opencode_run(text: str) -> FinalResult | None:
    """``opencode run`` (text output): nothing marks success, but a permission "ask" is
    auto-rejected (``! permission requested: <what>; auto-rejecting``) and the model carries
    on without it: the run exits 0 although the task was not done as asked."""
    match = _PERMISSION.search(_ANSI.sub("", text))
    if match is None:
        return None
    return FinalResult(False, f"it asked for a permission, which was auto-rejected: {match[1]}")


_PARSERS: dict[ResultFormat, Callable[[str], FinalResult | None]] = {
    "gemini-json": _gemini_json,
    "opencode-run": _opencode_run,
}


def read_result(result_format: ResultFormat | None, text: str) -> FinalResult | None:
    """The final result the agent reported in ``text`` (its output's tail), if its format
    is known and the output says something about it."""
    if result_format is None:
        return None
    return _PARSERS[result_format](text)
