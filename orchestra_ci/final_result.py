"""Reading an agent's own account of how its run ended (pure).

Some CLIs' exit codes do not tell: Gemini CLI stopped by SIGTERM exits 0 with nothing on
stdout, OpenCode exits 0 after auto-rejecting a permission it was asked for, with the task
left undone, and Claude Code's JSON result may say ``is_error: true`` whatever its exit
code. An agent's ``resultFormat`` names how its final result is written; the parser for
that format reads it from the output. A parser returns None when the output holds nothing
it can judge, and the exit code decides as for any agent. A result may also name the kind
of its failure (an HTTP status the CLI reports: 429 is a rate limit, 401 fatal), which the
output's patterns would otherwise have to guess.
"""

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from orchestra_ci.limits import Limit

ResultFormat = Literal["claude-json", "codex-jsonl", "gemini-json", "opencode-run"]

_DECODER = json.JSONDecoder()
_OBJECT_START = re.compile(r"^\{", re.M)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PERMISSION = re.compile(r"permission requested: (.*?);\s*auto-rejecting", re.I)
_CODEX_STATUS = re.compile(r"(?:last status|unexpected status):?\s+(\d{3})\b", re.I)
# HTTP statuses whose kind is certain: waiting helps a 429 (rate limit) or a 529
# (Anthropic's "overloaded"); it does not help a rejected key.
_STATUS_KINDS: dict[int, Limit] = {429: "rate_limited", 529: "rate_limited", 401: "fatal"}


@dataclass(frozen=True)
class FinalResult:
    """What the agent reported: whether its run succeeded, and the error it gave if not."""

    ok: bool
    error: str | None = None
    kind: Limit | None = None  # what the failure is, when the result says (its HTTP status)


def _objects(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects that start a line, one line (JSONL) or pretty-printed over many."""
    for start in _OBJECT_START.finditer(text):
        try:
            value, _ = _DECODER.raw_decode(text, start.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _claude_json(text: str) -> FinalResult | None:
    """Claude Code ``--output-format json``: one ``{"type": "result", "subtype", "is_error",
    "api_error_status", "result", ...}`` object. ``subtype`` says "success" even on an API
    error, so ``is_error`` decides, and a ``subtype`` naming an error (``error_max_turns``,
    ``error_during_execution``) fails too. ``api_error_status`` (null for a connection
    error) names the kind. No result object (refused to start, killed): None, the exit code
    decides. A ``result`` text is the model's own words and is not judged: a run that did
    nothing it was asked to is caught by ``require_changes``, not by reading its prose."""
    final = None
    for obj in _objects(text):
        if obj.get("type") == "result" and ("is_error" in obj or "subtype" in obj):
            final = obj
    if final is None:
        return None
    subtype = str(final.get("subtype") or "")
    if final.get("is_error") is not True and not subtype.startswith("error"):
        return FinalResult(True)
    status = final.get("api_error_status")
    message = final.get("result")
    if not isinstance(message, str) or not message.strip():
        errors = final.get("errors")
        if isinstance(errors, list) and errors:
            message = "; ".join(str(e) for e in errors)
        elif subtype == "error_max_turns":
            message = f"it reached its maximum number of turns ({final.get('num_turns')})"
        else:
            message = subtype.replace("_", " ") if subtype.startswith("error") else "an error"
    if isinstance(status, int) and str(status) not in message:
        message = f"{message} (HTTP {status})"
    kind = _STATUS_KINDS.get(status) if isinstance(status, int) else None
    return FinalResult(False, message.strip(), kind)


def _codex_jsonl(text: str) -> FinalResult | None:
    """``codex exec --json``: JSONL events; a turn ends with ``turn.completed`` or
    ``{"type": "turn.failed", "error": {"message"}}``, and ``{"type": "error", "message"}``
    reports an error. The last of these decides (an error it recovered from is followed by
    ``turn.completed``); none: None. Its message names the HTTP status it gave up on
    (``exceeded retry limit, last status: 429 Too Many Requests``, ``unexpected status 401
    Unauthorized: ...``)."""
    final = None
    for obj in _objects(text):
        if obj.get("type") in ("turn.completed", "turn.failed", "error"):
            final = obj
    if final is None:
        return None
    if final["type"] == "turn.completed":
        return FinalResult(True)
    error = final.get("error")
    message = error.get("message") if isinstance(error, dict) else final.get("message")
    if not isinstance(message, str) or not message.strip():
        message = "its turn failed" if final["type"] == "turn.failed" else "an error"
    status = _CODEX_STATUS.search(message)
    return FinalResult(
        False, message.strip(), _STATUS_KINDS.get(int(status[1])) if status else None
    )


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
    "claude-json": _claude_json,
    "codex-jsonl": _codex_jsonl,
    "gemini-json": _gemini_json,
    "opencode-run": _opencode_run,
}


def read_result(result_format: ResultFormat | None, text: str) -> FinalResult | None:
    """The final result the agent reported in ``text`` (its output's tail), if its format
    is known and the output says something about it."""
    if result_format is None:
        return None
    return _PARSERS[result_format](text)
