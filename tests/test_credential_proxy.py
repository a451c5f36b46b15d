"""The credential proxy's deciding parts, called directly: configuration from the
environment, routing a request, metering usage (the server: test_proxy_server)."""

import json
from typing import Any

import pytest

from orchestra_ci.credential_proxy import (
    KEY_VARIABLES,
    PROVIDERS,
    Forward,
    Provider,
    ProxyConfigError,
    ProxyUsage,
    Refusal,
    Route,
    UsageMeter,
    credential,
    parse_upstream,
    plan_request,
    proxy_config,
    response_headers,
    token_counts,
)

# -- configuration (pure) ------------------------------------------------------------------


def test_an_environment_without_keys_proxies_nothing_but_still_withholds_key_names() -> None:
    config = proxy_config({"PATH": "/bin", "ANTHROPIC_API_KEY": "  "})

    assert config.credentials == {}
    assert config.withheld == KEY_VARIABLES
    assert {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY", "GEMINI_API_KEY"} <= (
        config.withheld
    )


def test_usage_since_an_earlier_reading() -> None:
    assert ProxyUsage(5, 300, 80).since(ProxyUsage(2, 100, 30)) == ProxyUsage(3, 200, 50)


def test_keys_and_base_urls_are_read_from_the_environment() -> None:
    config = proxy_config(
        {
            "ANTHROPIC_API_KEY": "sk-ant-1234567",
            "ANTHROPIC_BASE_URL": "https://gateway.example/anthropic/",
            "CODEX_API_KEY": "sk-codex-12345",
            "OPENAI_API_BASE": "http://localhost:8000/v1",
            "GOOGLE_API_KEY": "AIza-1234567",
            "OPENAI_COMPATIBLE_API_KEY": "or-1234567",
            "OPENAI_COMPATIBLE_BASE_URL": "https://openrouter.ai/api/v1",
        }
    )

    got = {p: (c.upstream.origin + c.upstream.base_path, c.header, c.value)
           for p, c in config.credentials.items()}  # fmt: skip
    assert got == {
        "anthropic": ("https://gateway.example:443/anthropic", "x-api-key", "sk-ant-1234567"),
        "openai": ("http://localhost:8000/v1", "authorization", "Bearer sk-codex-12345"),
        "gemini": (
            "https://generativelanguage.googleapis.com:443",
            "x-goog-api-key",
            "AIza-1234567",
        ),
        "openai-compatible": (
            "https://openrouter.ai:443/api/v1",
            "authorization",
            "Bearer or-1234567",
        ),
    }
    assert config.withheld == KEY_VARIABLES | {
        "ANTHROPIC_BASE_URL",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "GOOGLE_GEMINI_BASE_URL",
        "OPENAI_COMPATIBLE_BASE_URL",
    }


def test_the_first_key_variable_wins_and_defaults_are_the_public_apis() -> None:
    config = proxy_config({"OPENAI_API_KEY": "sk-first", "CODEX_API_KEY": "sk-second"})

    [(provider, held)] = config.credentials.items()
    assert (provider, held.key) == ("openai", "sk-first")
    assert held.upstream.origin + held.upstream.base_path == "https://api.openai.com:443/v1"
    assert "OPENAI_BASE_URL" in config.withheld
    assert "ANTHROPIC_BASE_URL" not in config.withheld  # not proxied: left to the agent


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"OPENAI_COMPATIBLE_API_KEY": "k-1234567"}, "OPENAI_COMPATIBLE_BASE_URL is not"),
        ({"ANTHROPIC_API_KEY": "k-1234567", "ANTHROPIC_BASE_URL": "ftp://x"}, "http"),
        ({"OPENAI_API_KEY": "k-1", "OPENAI_BASE_URL": "https://u:pw@host/v1"}, "user info"),
        ({"GEMINI_API_KEY": "k-1", "GOOGLE_GEMINI_BASE_URL": "http://h:port"}, "valid URL"),
        ({"OPENAI_API_KEY": "sk-éèà"}, "cannot go in a header"),
    ],
)
def test_unusable_settings_are_configuration_errors_naming_the_variables(
    environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ProxyConfigError) as raised:
        proxy_config(environ)

    message = str(raised.value)
    assert message.startswith("credential proxy: ")
    assert expected in message
    assert next(iter(environ)) in message
    assert raised.value.exit_code == 2
    assert not any(value in message for value in environ.values() if len(value) > 4)


def test_parse_upstream_splits_a_base_url() -> None:
    assert parse_upstream("http://[::1]:8080/v1/") == parse_upstream("http://[::1]:8080/v1")
    upstream = parse_upstream("http://[::1]:8080/v1/")
    assert (upstream.host, upstream.port, upstream.base_path) == ("::1", 8080, "/v1")
    assert upstream.origin == "http://[::1]:8080"
    with pytest.raises(ValueError, match="query"):
        parse_upstream("https://h/v1?api-key=123")


def test_a_route_environment_points_sdks_at_the_proxied_providers_only() -> None:
    route = Route("t", {"anthropic": "http://p/a", "openai": "http://p/o"}, "dummy")

    assert route.environment() == {
        "ANTHROPIC_BASE_URL": "http://p/a",
        "ANTHROPIC_API_KEY": "dummy",
        "OPENAI_BASE_URL": "http://p/o",
        "OPENAI_API_BASE": "http://p/o",
        "OPENAI_API_KEY": "dummy",
    }
    assert "dummy" not in repr(route)
    assert "http://p" not in repr(route)


# -- routing (pure) ------------------------------------------------------------------------

_HELD: dict[Provider, Any] = {
    "openai": credential("openai", "sk-real", "https://api.example/v1"),
    "gemini": credential("gemini", "AIza-real"),
}


def test_a_request_is_planned_onto_the_upstream_with_the_real_key() -> None:
    headers = [
        ("Host", "127.0.0.1:1234"),
        ("Authorization", "Bearer dummy"),
        ("X-Api-Key", "dummy"),
        ("Connection", "keep-alive, X-Trace"),
        ("X-Trace", "hop"),
        ("Keep-Alive", "timeout=5"),
        ("Accept-Encoding", "gzip"),
        ("Content-Length", "12"),
        ("OpenAI-Beta", "assistants=v2"),
        ("Accept", "text/event-stream"),
    ]

    plan = plan_request("/tok/openai/chat/completions?x=1", headers, {"tok": "t"}, _HELD)

    assert plan == Forward(
        "t",
        "openai",
        _HELD["openai"].upstream,
        "/v1/chat/completions?x=1",
        [
            ("OpenAI-Beta", "assistants=v2"),
            ("Accept", "text/event-stream"),
            ("authorization", "Bearer sk-real"),
        ],
    )
    assert "sk-real" not in repr(plan)


@pytest.mark.parametrize(
    ("target", "upstream_target"),
    [
        ("/tok/gemini/v1beta/models/m:streamGenerateContent?alt=sse&key=d", "alt=sse"),
        ("/tok/gemini/v1beta/models/m:generateContent?key=d", ""),
        ("/tok/gemini/v1beta/models/m:generateContent?%6bey=d&a=%20b&&", "a=%20b"),
    ],
)
def test_gemini_key_parameters_are_removed(target: str, upstream_target: str) -> None:
    plan = plan_request(target, [("x-goog-api-key", "d")], {"tok": "t"}, _HELD)

    assert isinstance(plan, Forward)
    assert plan.target.partition("?")[2] == upstream_target
    assert plan.headers == [("x-goog-api-key", "AIza-real")]


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/wrong/openai/chat/completions", 403),
        ("/openai/chat/completions", 403),
        ("tok/openai/x", 403),
        ("", 403),
        ("/tok/anthropic/v1/messages", 404),
        ("/tok/openai-compatibles/x", 404),
        ("/tok/openai/a/../../admin", 400),
        ("/tok/openai/./x", 400),
    ],
)
def test_requests_the_proxy_refuses(target: str, status: int) -> None:
    plan = plan_request(target, [], {"tok": "t"}, _HELD)

    assert isinstance(plan, Refusal)
    assert plan.status == status
    assert plan.message.startswith("credential proxy: ")


def test_a_route_without_a_path_goes_to_the_base() -> None:
    plans = [plan_request(t, [], {"tok": "t"}, _HELD) for t in ("/tok/openai", "/tok/gemini/")]

    assert [p.target for p in plans if isinstance(p, Forward)] == ["/v1", "/"]


def test_response_headers_lose_hop_by_hop_and_framing() -> None:
    headers = [
        ("Content-Type", "text/event-stream"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "5"),
        ("Connection", "close"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]

    assert response_headers(headers) == [
        ("Content-Type", "text/event-stream"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


def test_every_provider_has_a_default_key_header() -> None:
    for provider in PROVIDERS:
        assert credential(provider, "k", "http://h").header


# -- usage (pure) --------------------------------------------------------------------------


def _metered(content_type: str | None, body: bytes, step: int = 1, limit: int = 4 << 20) -> Any:
    meter = UsageMeter(content_type, limit)
    for start in range(0, len(body), step):
        meter.feed(body[start : start + step])
    meter.finish()
    return meter.input_tokens, meter.output_tokens


_ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
    b'{"input_tokens":25,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"hi"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_an_event_stream_is_metered_whatever_its_chunking(step: int) -> None:
    assert _metered("text/event-stream; charset=utf-8", _ANTHROPIC_STREAM, step) == (25, 15)


def test_an_over_long_event_line_is_skipped_and_the_next_ones_still_read() -> None:
    long_line = b'data: {"pad":"' + b"x" * 300 + b'","usage":{"input_tokens":999}}\n\n'

    got = _metered("text/event-stream", long_line + _ANTHROPIC_STREAM, step=50, limit=200)

    assert got == (25, 15)


def test_a_json_body_over_the_limit_is_not_read() -> None:
    body = json.dumps({"usage": {"input_tokens": 1, "output_tokens": 2}, "pad": "x" * 300})

    assert _metered("application/json", body.encode(), 64, limit=200) == (None, None)
    assert _metered("application/json", body.encode(), 64) == (1, 2)


def test_a_gemini_json_array_stream_counts_its_last_chunk() -> None:
    chunks = [
        {"usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": n}} for n in (1, 2, 3)
    ]

    assert _metered("application/json; charset=UTF-8", json.dumps(chunks).encode(), 5) == (9, 3)


def test_bodies_without_usage_or_of_other_types_count_nothing() -> None:
    assert _metered("text/html", b"<p>usage</p>") == (None, None)
    assert _metered(None, b'{"usage":{"input_tokens":3}}') == (None, None)
    assert _metered("application/json", b"not json") == (None, None)
    assert _metered("text/event-stream", b"data: [DONE]\n\ndata: {broken\n\n") == (None, None)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"usage": {"input_tokens": 3, "output_tokens": 4}}, (3, 4)),
        ({"message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}, (3, 1)),
        ({"usage": {"prompt_tokens": 5, "completion_tokens": 6}}, (5, 6)),
        ({"usage": None, "choices": []}, (None, None)),
        ({"type": "response.created", "response": {"usage": None}}, (None, None)),
        ({"response": {"usage": {"input_tokens": 7, "output_tokens": 8}}}, (7, 8)),
        (
            {"usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3}},
            (2, 3),
        ),
        (
            {
                "usageMetadata": {
                    "promptTokenCount": 2,
                    "candidatesTokenCount": 3,
                    "thoughtsTokenCount": 10,
                }
            },
            (2, 13),
        ),
        ({"usageMetadata": {"promptTokenCount": 2}}, (2, None)),
        ({"usage": {"input_tokens": True, "output_tokens": -1}}, (None, None)),
        ([{"usage": {"input_tokens": 1}}], (None, None)),
    ],
)
def test_token_counts_of_each_provider(obj: object, expected: tuple[int | None, ...]) -> None:
    assert token_counts(obj) == expected
