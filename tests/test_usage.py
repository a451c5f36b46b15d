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


def test_the_proxys_counts_fill_in_what_the_agent_did_not_report() -> None:
    silent = Usage()
    assert silent.with_proxy_counts(3, 120, 40) == Usage(
        input_tokens=120, output_tokens=40, requests=3
    )
    assert silent.with_proxy_counts(3, 120, 40).fields() == {
        "inputTokens": 120,
        "outputTokens": 40,
        "requests": 3,
    }


def test_what_the_agent_reported_wins_over_the_proxys_counts() -> None:
    reported = Usage(cost_usd=0.5, turns=2, input_tokens=1000, output_tokens=200)
    assert reported.with_proxy_counts(2, 990, 199) == Usage(0.5, 2, 1000, 200, requests=2)


def test_responses_that_showed_no_tokens_record_none() -> None:
    assert Usage().with_proxy_counts(0, 0, 0) == Usage(requests=0)
    assert Usage().with_proxy_counts(2, 0, 0) == Usage(requests=2)
