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
"""

import http.client
import json
import os
import sys
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


def main(kind: str, argv: list[str]) -> int:
    dump = os.environ.get("FAKE_CLI_DUMP")
    name = f"{os.environ.get('ORCHESTRA_TASK_ID')}.{os.environ.get('ORCHESTRA_ATTEMPT')}"
    if dump:
        seen = {"env": dict(os.environ), "argv": [kind, *argv], "cwd": os.getcwd()}
        Path(dump, f"{name}.json").write_text(json.dumps(seen))
    url, headers, body = _request(kind, argv)
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request(
        "POST", target, json.dumps(body), {"content-type": "application/json", **headers}
    )
    response = connection.getresponse()
    if response.status != 200:
        print(f"API Error: {response.status} {response.read().decode(errors='replace')}")
        return 1
    text = []
    for n, event in enumerate(_events(response)):
        if n == 0 and dump:
            Path(dump, f"{name}.first-event").touch()
        text.append(_text(kind, event))
    Path("reply.txt").write_text("".join(text))
    print("".join(text))
    if kind == "aider":  # what the preset's success patterns look for
        print("Applied edit to reply.txt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2:]))
