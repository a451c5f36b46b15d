"""Cost and turn parsing from agent output."""

import json

from orchestra_ci.usage import Usage, parse_usage


def test_claude_json_result() -> None:
    line = json.dumps(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "num_turns": 4,
            "total_cost_usd": 0.0421,
            "usage": {"input_tokens": 1500, "output_tokens": 250},
            "result": "ok",
        }
    )
    usage = parse_usage("some text\n" + line + "\n")
    assert usage == Usage(cost_usd=0.0421, turns=4, input_tokens=1500, output_tokens=250)
    assert usage.fields() == {
        "costUsd": 0.0421,
        "turns": 4,
        "inputTokens": 1500,
        "outputTokens": 250,
    }


def test_codex_jsonl_turns_are_summed() -> None:
    events = [
        {"type": "thread.started"},
        {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 5}},
        {"type": "turn.completed", "usage": {"input_tokens": 20, "output_tokens": 7}},
    ]
    usage = parse_usage("\n".join(json.dumps(e) for e in events))
    assert usage == Usage(cost_usd=None, turns=2, input_tokens=30, output_tokens=12)


def test_plain_text_and_broken_json_report_nothing() -> None:
    assert parse_usage('Applied edit to a.py\n{not json}\n{"type": "result"}') == Usage()
    assert Usage().fields() == {}


def test_wrong_types_are_ignored() -> None:
    line = json.dumps(
        {"type": "result", "total_cost_usd": "a lot", "num_turns": True, "usage": "none"}
    )
    assert parse_usage(line) == Usage()
