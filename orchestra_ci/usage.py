"""Cost, turns and tokens as agent CLIs report them in their output (pure).

Claude Code's ``--output-format json`` prints one result object with ``total_cost_usd``,
``num_turns`` and ``usage``; Codex's ``--json`` prints JSONL events whose ``turn.completed``
carry ``usage``. Anything else reports nothing, which is fine.
"""

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    cost_usd: float | None = None
    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None

    def fields(self) -> dict[str, float | int]:
        """The attempt-record fields for what was reported."""
        names = {
            "costUsd": self.cost_usd,
            "turns": self.turns,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
        }
        return {k: v for k, v in names.items() if v is not None}


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
