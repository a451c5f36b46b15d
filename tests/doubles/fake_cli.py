"""A stand-in for the agent CLIs of the presets, as far as finding their endpoint goes.

Usage: ``python tests/doubles/fake_cli.py KIND ARGS...`` where KIND is ``claude``,
``codex``, ``gemini``, ``opencode`` or ``aider`` and ARGS what orchestra-ci passes that
preset. It finds its endpoint and key as the real CLI does (AGENT-CLIS.md):

- claude: ``ANTHROPIC_BASE_URL`` + ``ANTHROPIC_API_KEY`` (``x-api-key``), Messages API;
- codex: the ``-c model_provider=...`` provider's ``base_url`` and ``env_key``, else
  ``OPENAI_BASE_URL`` + ``OPENAI_API_KEY``, Responses API;
- gemini: ``GOOGLE_GEMINI_BASE_URL`` + ``GEMINI_API_KEY`` (``x-goog-api-key``),
  ``streamGenerateContent?alt=sse``;
- opencode: the OpenAI provider's ``baseURL`` in ``OPENCODE_CONFIG_CONTENT``, else
  ``OPENAI_BASE_URL``, + ``OPENAI_API_KEY``, Chat Completions (usage asked for);
- aider: ``OPENAI_API_BASE`` + ``OPENAI_API_KEY``, Chat Completions.

It makes one streaming request, writes the streamed text to ``reply.txt`` in its working
directory and prints it (as aider, also ``Applied edit to reply.txt``). On an HTTP error it
prints ``API Error: <status> <body>`` and exits 1, as Claude Code does. With
``FAKE_CLI_DUMP`` set to a directory it first writes ``<task>.<attempt>.json`` there: its
environment, argv and working directory; and once the first event of the stream has
arrived, ``<task>.<attempt>.first-event``.

Gemini CLI and OpenCode also behave as AGENT-CLIS.md records for 0.61.0 and 1.18.33:

- gemini: without ``--skip-trust`` it exits 55 (not a trusted directory). Unless
  ``GEMINI_CLI_NO_RELAUNCH=true`` it relaunches itself as a child and the parent ignores
  SIGTERM, SIGINT and SIGHUP while waiting for it. SIGTERM makes it exit 0 with nothing on
  stdout. With ``-o json`` its result is ``{"session_id", "response", "stats"}``
  (indented) on stdout, an API error ``{"session_id", "error": {"type", "message",
  "code"}}`` on stderr with the exit code the HTTP status mod 256 (a daily quota's message
  is its own). ``FAKE_CLI_HANG`` set: the working process writes its pid to
  ``<task>.<attempt>.worker`` in the dump directory and sleeps instead of answering.
- opencode: it writes ``reply.txt`` where ``$PWD`` points (its directory is taken from
  ``$PWD``, not the working directory), and reads a piped stdin to its end before starting.
  ``FAKE_CLI_ASK=<permission>`` set: it asks for that permission, auto-rejects it
  (``! permission requested: ...; auto-rejecting``), writes nothing and exits 0. An API
  error prints ``Error: <message>`` on stderr (ANSI-coloured) and exits 1.

Claude Code and Codex report a failure in their result, as 2.1.197 and 0.169.0 do:
``FAKE_CLI_FAIL=<message>`` set, claude prints its ``--output-format json`` result with
``"subtype": "success", "is_error": true`` and that ``result`` (``api_error_status`` from
``FAKE_CLI_STATUS``, else null), codex the ``--json`` events ending in ``turn.failed`` with
that message; both exit 0 without making a request.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _options(argv: list[str]) -> dict[str, str]:
    """Codex's ``-c key=value`` flags, TOML strings unquoted."""
    pairs = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "-c"]
    return {k: v.strip('"') for k, _, v in (p.partition("=") for p in pairs)}


def _request(kind: str, argv: list[str]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and body of the one request the CLI makes."""
    env = os.environ
    prompt = [{"role": "user", "content": argv[-1]}]
    if kind == "claude":
        base = env.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com")
        headers = {"x-api-key": env.get("ANTHROPIC_API_KEY", "")}
        body = {"model": "claude-fake", "max_tokens": 64, "stream": True, "messages": prompt}
        return f"{base}/v1/messages", headers, body
    if kind == "gemini":
        base = env.get("GOOGLE_GEMINI_BASE_URL", "https://generativelanguage.googleapis.com")
        url = f"{base}/v1beta/models/gemini-fake:streamGenerateContent?alt=sse"
        body = {"contents": [{"role": "user", "parts": [{"text": argv[-1]}]}]}
        return url, {"x-goog-api-key": env.get("GEMINI_API_KEY", "")}, body
    base = env.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    key = env.get("OPENAI_API_KEY", "")
    if kind == "codex":
        options = _options(argv)
        provider = options.get("model_provider")
        if provider:
            base = options[f"model_providers.{provider}.base_url"]
            key = env.get(options[f"model_providers.{provider}.env_key"], "")
        body = {"model": "gpt-fake", "stream": True, "input": argv[-1]}
        return f"{base}/responses", {"authorization": f"Bearer {key}"}, body
    if kind == "opencode":
        config = json.loads(env.get("OPENCODE_CONFIG_CONTENT") or "{}")
        base = config.get("provider", {}).get("openai", {}).get("options", {}).get("baseURL", base)
    elif kind == "aider":
        base = env.get("OPENAI_API_BASE", "https://api.openai.com/v1")
    body = {"model": "gpt-fake", "stream": True, "messages": prompt}
    if kind == "opencode":
        body["stream_options"] = {"include_usage": True}
    return f"{base}/chat/completions", {"authorization": f"Bearer {key}"}, body


def _events(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    for line in response:
        data = line.strip()
        if data.startswith(b"data:") and data[5:].strip() != b"[DONE]":
            yield json.loads(data[5:])


def _text(kind: str, event: dict[str, Any]) -> str:
    if kind == "claude":
        return (
            str(event.get("delta", {}).get("text", ""))
            if event["type"] == "content_block_delta"
            else ""
        )
    if kind == "codex":
        return str(event["delta"]) if event["type"] == "response.output_text.delta" else ""
    if kind == "gemini":
        return "".join(p.get("text", "") for p in event["candidates"][0]["content"]["parts"])
    choices = event.get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content") or "")


_RED, _YELLOW, _BOLD, _RESET = "\x1b[91m", "\x1b[93m", "\x1b[1m", "\x1b[0m"


def _gemini_start(argv: list[str]) -> int | None:
    """Gemini CLI's start-up: its trust check and its relaunch. An exit code, or None to
    carry on in this process."""
    if "--skip-trust" not in argv and os.environ.get("GEMINI_CLI_TRUST_WORKSPACE") != "true":
        print("Gemini CLI is not running in a trusted directory. ...", file=sys.stderr)
        return 55
    if os.environ.get("GEMINI_CLI_NO_RELAUNCH") != "true" and not os.environ.get("FAKE_CLI_CHILD"):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        child = subprocess.Popen(
            [sys.executable, *sys.orig_argv[1:]], env={**os.environ, "FAKE_CLI_CHILD": "1"}
        )
        return child.wait()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # stopped: exit 0, stdout empty
    return None


def _json_output(argv: list[str]) -> bool:
    return "json" in (
        argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in ("-o", "--output-format")
    )


def _api_error(kind: str, argv: list[str], status: int, body: str) -> int:
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = body
    if kind == "gemini" and _json_output(argv):
        if status == 429 and "PerDay" in body:
            message = "You have exhausted your daily quota on this model."
        error = {"type": "Error", "message": message, "code": status}
        print(json.dumps({"session_id": "fake", "error": error}), file=sys.stderr)
        return status % 256
    if kind == "opencode":
        print(f"{_RED}{_BOLD}Error: {_RESET}{message}", file=sys.stderr)
        return 1
    print(f"API Error: {status} {body}")
    return 1


def _report_failure(kind: str, message: str) -> int:
    """The result a run that failed reports while exiting 0."""
    if kind == "claude":
        status = os.environ.get("FAKE_CLI_STATUS")
        result = {"type": "result", "subtype": "success", "is_error": True, "result": message}
        result["api_error_status"] = int(status) if status else None
        print(json.dumps(result))
    else:
        for event in (
            {"type": "thread.started", "thread_id": "fake"},
            {"type": "turn.started"},
            {"type": "turn.failed", "error": {"message": message}},
        ):
            print(json.dumps(event))
    return 0


def main(kind: str, argv: list[str]) -> int:
    dump = os.environ.get("FAKE_CLI_DUMP")
    name = f"{os.environ.get('ORCHESTRA_TASK_ID')}.{os.environ.get('ORCHESTRA_ATTEMPT')}"
    if kind == "gemini":
        code = _gemini_start(argv)
        if code is not None:
            return code
    if dump and not os.environ.get("FAKE_CLI_CHILD"):
        seen = {"env": dict(os.environ), "argv": [kind, *argv], "cwd": os.getcwd()}
        Path(dump, f"{name}.json").write_text(json.dumps(seen))
    if kind == "gemini" and os.environ.get("FAKE_CLI_HANG"):
        Path(dump or ".", f"{name}.worker").write_text(str(os.getpid()))
        while True:
            time.sleep(3600)
    if kind == "opencode":
        if not os.isatty(0):
            sys.stdin.read()  # a piped prompt: it waits for the pipe's end
        asked = os.environ.get("FAKE_CLI_ASK")
        if asked:
            print(
                f"{_YELLOW}{_BOLD}! {_RESET}permission requested: {asked} (/elsewhere/*); "
                "auto-rejecting",
                file=sys.stderr,
            )
            print(
                f"{_RED}{_BOLD}Error: {_RESET}The user rejected permission to use this "
                "specific tool call.",
                file=sys.stderr,
            )
            print("I could not do it without that permission.")
            return 0
    failure = os.environ.get("FAKE_CLI_FAIL")
    if failure and kind in ("claude", "codex"):
        return _report_failure(kind, failure)
    url, headers, body = _request(kind, argv)
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request(
        "POST", target, json.dumps(body), {"content-type": "application/json", **headers}
    )
    response = connection.getresponse()
    if response.status != 200:
        return _api_error(kind, argv, response.status, response.read().decode(errors="replace"))
    text = []
    for n, event in enumerate(_events(response)):
        if n == 0 and dump:
            Path(dump, f"{name}.first-event").touch()
        text.append(_text(kind, event))
    where = Path(os.environ["PWD"]) if kind == "opencode" else Path()
    (where / "reply.txt").write_text("".join(text))
    if kind == "gemini" and _json_output(argv):
        result = {"session_id": "fake", "response": "".join(text), "stats": {"models": {}}}
        print(json.dumps(result, indent=2))
        return 0
    print("".join(text))
    if kind == "aider":  # what the preset's success patterns look for
        print("Applied edit to reply.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2:]))
