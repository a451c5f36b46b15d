"""Cost, turns and tokens as agent CLIs report them in their output (pure).

Claude Code's ``--output-format json`` prints one result object with ``total_cost_usd``,
``num_turns`` and ``usage``; Codex's ``--json`` prints JSONL events whose ``turn.completed``
carry ``usage``. Anything else reports nothing, which is fine. What the credential proxy
counted for an attempt fills in what its agent did not report.
"""

import json
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Usage:
    cost_usd: float | None = None
    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    requests: int | None = None  # API requests, as the credential proxy counted them

    def fields(self) -> dict[str, float | int]:
        """The attempt-record fields for what was reported."""
        names = {
            "costUsd": self.cost_usd,
            "turns": self.turns,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "requests": self.requests,
        }
        return {k: v for k, v in names.items() if v is not None}

    def with_proxy_counts(self, requests: int, input_tokens: int, output_tokens: int) -> "Usage":
        """This usage completed by what the credential proxy counted for the same attempt:
        its requests, and the tokens the agent did not report (a count of 0 means the
        responses showed none)."""
        return replace(
            self,
            requests=requests,
            input_tokens=_reported_or(self.input_tokens, input_tokens),
            output_tokens=_reported_or(self.output_tokens, output_tokens),
        )


def _reported_or(reported: int | None, counted: int) -> int | None:
    return reported if reported is not None else counted or None


def _objects(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append(value)
    return found


def _add(total: int | None, value: Any) -> int | None:
    return (total or 0) + value if isinstance(value, int) and not isinstance(value, bool) else total


def _tokens(
    obj: dict[str, Any], tokens_in: int | None, tokens_out: int | None
) -> tuple[int | None, int | None]:
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return tokens_in, tokens_out
    return _add(tokens_in, usage.get("input_tokens")), _add(tokens_out, usage.get("output_tokens"))


def parse_usage(text: str) -> Usage:
    cost: float | None = None
    turns: int | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    for obj in _objects(text):
        if obj.get("type") == "result" and "total_cost_usd" in obj:  # Claude Code
            value = obj.get("total_cost_usd")
            if isinstance(value, int | float) and not isinstance(value, bool):
                cost = (cost or 0.0) + float(value)
            turns = _add(turns, obj.get("num_turns"))
            tokens_in, tokens_out = _tokens(obj, tokens_in, tokens_out)
        elif obj.get("type") == "turn.completed":  # Codex JSONL
            turns = _add(turns, 1)
            tokens_in, tokens_out = _tokens(obj, tokens_in, tokens_out)
    return Usage(cost, turns, tokens_in, tokens_out)
