"""The credential proxy's server: real HTTP from a client playing the agent, through the
proxy, to the provider stand-in."""

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from orchestra_ci.credential_proxy import (
    FATAL_PATTERNS,
    KEY_VARIABLES,
    UNAVAILABLE_PATTERNS,
    Provider,
    ProxyConfigError,
    ProxyUsage,
    Route,
    credential,
    proxy_config,
    withheld_variables,
)
from orchestra_ci.limits import read_output
from orchestra_ci.proxy_server import CredentialProxy
from tests.doubles.fake_provider import Canned, FakeProvider

HANG_GUARD = 10.0


# -- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _connect(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=HANG_GUARD), target


def call(
    url: str, body: Any = None, headers: dict[str, str] | None = None, method: str = "POST"
) -> Answer:
    """One request as an agent's SDK would send it, on a fresh connection."""
    connection, target = _connect(url)
    try:
        data = None if body is None else json.dumps(body).encode()
        connection.request(
            method, target, data, {"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        names = {k.lower(): v for k, v in response.getheaders()}
        return Answer(response.status, names, response.read())
    finally:
        connection.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass(frozen=True)
class Case:
    """One kind of request an agent makes: under which provider route, to which path."""

    provider: Provider
    path: str
    body: dict[str, Any]
    auth: Callable[[str], dict[str, str]]
    upstream_path: str

    def url(self, route: Route) -> str:
        return route.base_urls[self.provider] + self.path


_MESSAGES = [{"role": "user", "content": "Say hello"}]
_GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}
_ANTHROPIC_BODY = {"model": "claude-x", "max_tokens": 64, "messages": _MESSAGES}
_CHAT_BODY = {"model": "gpt-x", "messages": _MESSAGES}
_CHAT_STREAM = {**_CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}


def _anthropic_auth(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def _gemini_auth(key: str) -> dict[str, str]:
    return {"x-goog-api-key": key}


JSON_CASES = {
    "anthropic": Case(
        "anthropic", "/v1/messages", _ANTHROPIC_BODY, _anthropic_auth, "/v1/messages"
    ),
    "openai-chat": Case("openai", "/chat/completions", _CHAT_BODY, bearer, "/v1/chat/completions"),
    "openai-responses": Case(
        "openai", "/responses", {"model": "gpt-x", "input": "Say hello"}, bearer, "/v1/responses"
    ),
    "gemini": Case(
        "gemini",
        "/v1beta/models/gemini-x:generateContent",
        _GEMINI_BODY,
        _gemini_auth,
        "/v1beta/models/gemini-x:generateContent",
    ),
    "openai-compatible": Case(
        "openai-compatible", "/chat/completions", _CHAT_BODY, bearer, "/v1/chat/completions"
    ),
}
STREAM_CASES = {
    "anthropic": Case(
        "anthropic",
        "/v1/messages",
        {**_ANTHROPIC_BODY, "stream": True},
        _anthropic_auth,
        "/v1/messages",
    ),
    "openai-chat": Case(
        "openai", "/chat/completions", _CHAT_STREAM, bearer, "/v1/chat/completions"
    ),
    "openai-responses": Case(
        "openai",
        "/responses",
        {"model": "gpt-x", "input": "Say hello", "stream": True},
        bearer,
        "/v1/responses",
    ),
    "gemini": Case(
        "gemini",
        "/v1beta/models/gemini-x:streamGenerateContent?alt=sse",
        _GEMINI_BODY,
        _gemini_auth,
        "/v1beta/models/gemini-x:streamGenerateContent",
    ),
}


def send(case: Case, route: Route, key: str | None = None) -> Answer:
    return call(case.url(route), case.body, case.auth(key or route.dummy_key))


def credentials_for(api: FakeProvider) -> dict[Provider, Any]:
    return {
        "anthropic": credential("anthropic", api.anthropic_key, api.url),
        "openai": credential("openai", api.openai_key, f"{api.url}/v1"),
        "gemini": credential("gemini", api.gemini_key, api.url),
        "openai-compatible": credential("openai-compatible", api.openai_key, f"{api.url}/v1"),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def read_first_event(response: http.client.HTTPResponse) -> bytes:
    """Bytes up to the end of the first SSE event."""
    seen = b""
    while b"\n\n" not in seen.replace(b"\r\n", b"\n"):
        data = response.read1(65536)
        assert data, f"the stream ended before its first event: {seen!r}"
        seen += data
    return seen


@pytest.fixture
def api() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake
    assert not fake.errors, fake.errors[0]


@pytest.fixture
def proxy(api: FakeProvider) -> Iterator[CredentialProxy]:
    with CredentialProxy(credentials_for(api)) as running:
        yield running


def secrets_of(api: FakeProvider) -> list[str]:
    return [api.anthropic_key, api.openai_key, api.gemini_key]


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(JSON_CASES))
def test_the_real_key_reaches_the_provider_and_the_dummy_key_does_not(
    api: FakeProvider, proxy: CredentialProxy, name: str
) -> None:
    case = JSON_CASES[name]
    route = proxy.route("task-1")

    answer = send(case, route)

    assert answer.status == 200, answer.body
    [got] = api.requests_to(case.upstream_path)
    real = credentials_for(api)[case.provider]
    assert got.headers[real.header] == real.value
    token = route.base_urls[case.provider].rsplit("/", 2)[1]
    seen = json.dumps([got.path, got.query, got.headers]) + got.body.decode()
    assert route.dummy_key not in seen
    assert token not in seen
    assert got.json() == case.body


@pytest.mark.parametrize("name", sorted(JSON_CASES))
def test_the_dummy_key_alone_is_refused_by_the_provider(
    api: FakeProvider, proxy: CredentialProxy, name: str
) -> None:
    """What the agent holds is worthless without the proxy."""
    case = JSON_CASES[name]
    route = proxy.route("task-1")
    upstream = credentials_for(api)[case.provider].upstream
    direct = f"{upstream.origin}{upstream.base_path}{case.path}"

    answer = call(direct, case.body, case.auth(route.dummy_key))

    assert answer.status in (400, 401), answer.body


def test_an_anthropic_auth_token_goes_as_a_bearer_token(api: FakeProvider) -> None:
    held = proxy_config({"ANTHROPIC_AUTH_TOKEN": api.anthropic_key, "ANTHROPIC_BASE_URL": api.url})
    with CredentialProxy(held.credentials) as proxy:
        answer = send(JSON_CASES["anthropic"], proxy.route("t"))

    assert answer.status == 200, answer.body
    [got] = api.requests_to("/v1/messages")
    assert got.headers["authorization"] == f"Bearer {api.anthropic_key}"
    assert "x-api-key" not in got.headers


def test_a_gemini_key_in_the_query_is_dropped_and_the_rest_kept(
    api: FakeProvider, proxy: CredentialProxy
) -> None:
    route = proxy.route("t")
    url = f"{route.base_urls['gemini']}/v1beta/models/g:streamGenerateContent"

    answer = call(f"{url}?key={route.dummy_key}&alt=sse", _GEMINI_BODY)

    assert answer.status == 200, answer.body
    [got] = api.requests
    assert got.query == {"alt": ["sse"]}
    assert got.headers["x-goog-api-key"] == api.gemini_key


def test_a_chunked_request_body_is_forwarded_whole(
    api: FakeProvider, proxy: CredentialProxy
) -> None:
    connection, target = _connect(JSON_CASES["anthropic"].url(proxy.route("t")))
    body = json.dumps(_ANTHROPIC_BODY).encode()
    try:
        connection.request(
            "POST",
            target,
            iter([body[:10], body[10:]]),
            {"Content-Type": "application/json", **_anthropic_auth("dummy")},
            encode_chunked=True,
        )
        response = connection.getresponse()
        assert response.status == 200, response.read()
    finally:
        connection.close()
    [got] = api.requests
    assert got.body == body
    assert got.headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in got.headers


# -- refusals ------------------------------------------------------------------------------


def _with_token(url: str, token: str) -> str:
    parts = urllib.parse.urlsplit(url)
    _, _, provider_and_rest = parts.path.removeprefix("/").partition("/")
    return parts._replace(path=f"/{token}/{provider_and_rest}").geturl()


def test_requests_without_a_valid_route_token_are_refused_and_never_reach_the_provider(
    api: FakeProvider, proxy: CredentialProxy
) -> None:
    case = JSON_CASES["anthropic"]
    url = case.url(proxy.route("task-1"))
    proxy.route("task-2")
    proxy.revoke("task-2")
    revoked = proxy.route("task-3")
    proxy.revoke("task-3")
    attempts = [
        _with_token(url, "not-a-token"),
        _with_token(url, ""),
        f"{proxy.url}/v1/messages",
        f"{proxy.url}/",
        case.url(revoked),
    ]

    for attempt in attempts:
        answer = call(attempt, case.body, case.auth(api.anthropic_key))
        assert answer.status == 403, (attempt, answer.body)
        assert answer.json()["error"]["type"] == "proxy_error"
        assert "route token" in answer.json()["error"]["message"]

    assert api.requests == []
    assert send(case, proxy.route("task-1")).status == 200


def test_a_revoked_route_is_replaced_by_a_new_one_and_keeps_its_usage(
    proxy: CredentialProxy,
) -> None:
    first = proxy.route("t")
    assert proxy.route("t") == first
    assert send(JSON_CASES["anthropic"], first).status == 200

    proxy.revoke("t")
    second = proxy.route("t")

    assert second.base_urls != first.base_urls
    assert send(JSON_CASES["anthropic"], first).status == 403
    assert send(JSON_CASES["anthropic"], second).status == 200
    assert proxy.usage("t").requests == 2


def test_unknown_providers_and_dot_segments_are_refused(
    api: FakeProvider, proxy: CredentialProxy
) -> None:
    route = proxy.route("t")
    base = route.base_urls["openai"]

    unknown = call(base.replace("/openai", "/mistral") + "/chat/completions", _CHAT_BODY)
    dots = call(f"{base}/../../v1/messages", _ANTHROPIC_BODY)
    encoded = call(f"{base}/%2e%2e/v1/messages", _ANTHROPIC_BODY)

    assert (unknown.status, dots.status, encoded.status) == (404, 400, 400)
    assert "mistral" in unknown.json()["error"]["message"]
    assert api.requests == []


def test_a_provider_without_a_key_has_no_route(api: FakeProvider) -> None:
    with CredentialProxy({"openai": credential("openai", api.openai_key, api.url)}) as proxy:
        route = proxy.route("t")
        answer = call(route.base_urls["openai"].replace("openai", "anthropic") + "/v1/messages")

    assert set(route.base_urls) == {"openai"}
    assert answer.status == 404


# -- streaming -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STREAM_CASES))
def test_a_stream_reaches_the_agent_event_by_event(
    api: FakeProvider, proxy: CredentialProxy, name: str
) -> None:
    """The stand-in sends the first event, then waits until the test has read it: a proxy
    that buffered would make it wait in vain (an error noted by the stand-in)."""
    case = STREAM_CASES[name]
    gate = api.stream_gate = threading.Event()
    connection, target = _connect(case.url(proxy.route("t")))
    try:
        connection.request("POST", target, json.dumps(case.body).encode(), case.auth("dummy"))
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")

        first = read_first_event(response)
        gate.set()
        rest = response.read()
    finally:
        gate.set()
        connection.close()

    assert not api.errors, api.errors
    assert first.startswith((b"event: ", b"data: "))
    whole = (first + rest).decode()
    assert all(word in whole for word in api.reply.split())
    assert proxy.usage("t") == ProxyUsage(1, api.input_tokens, api.output_tokens)


def test_the_agent_connection_is_kept_alive_across_streams_and_json(
    api: FakeProvider, proxy: CredentialProxy
) -> None:
    route = proxy.route("t")
    connection, _ = _connect(route.base_urls["anthropic"])
    cases = [STREAM_CASES["anthropic"], JSON_CASES["openai-chat"], STREAM_CASES["gemini"]]
    try:
        for case in cases:
            _, target = _connect(case.url(route))
            connection.request("POST", target, json.dumps(case.body).encode(), case.auth("x"))
            response = connection.getresponse()
            assert response.status == 200
            response.read()
    finally:
        connection.close()

    assert proxy.usage("t") == ProxyUsage(3, 3 * api.input_tokens, 3 * api.output_tokens)


# -- usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [*JSON_CASES.values(), *STREAM_CASES.values()],
    ids=[*(f"json-{n}" for n in JSON_CASES), *(f"stream-{n}" for n in STREAM_CASES)],
)
def test_usage_is_counted_from_each_kind_of_response(
    api: FakeProvider, proxy: CredentialProxy, case: Case
) -> None:
    assert send(case, proxy.route("t")).status == 200

    assert proxy.usage("t") == ProxyUsage(1, api.input_tokens, api.output_tokens)


def test_usage_is_counted_per_task(api: FakeProvider, proxy: CredentialProxy) -> None:
    for case in (JSON_CASES["anthropic"], STREAM_CASES["openai-responses"]):
        assert send(case, proxy.route("a")).status == 200
    assert send(STREAM_CASES["gemini"], proxy.route("b")).status == 200
    assert send(JSON_CASES["openai-chat"], proxy.route("b"), key="wrong").status == 200

    tokens_in, tokens_out = api.input_tokens, api.output_tokens
    assert proxy.usage("a") == ProxyUsage(2, 2 * tokens_in, 2 * tokens_out)
    assert proxy.usage("b") == ProxyUsage(2, 2 * tokens_in, 2 * tokens_out)
    assert proxy.usage("never-ran") == ProxyUsage()


def test_a_provider_error_passes_through_and_counts_as_a_request(
    api: FakeProvider, proxy: CredentialProxy
) -> None:
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    api.canned["/v1/messages"] = Canned(429, (("retry-after", "7"),), body)

    answer = send(JSON_CASES["anthropic"], proxy.route("t"))

    assert (answer.status, answer.headers["retry-after"], answer.body) == (429, "7", body)
    assert proxy.usage("t") == ProxyUsage(1, 0, 0)


def test_redirects_are_passed_back_not_followed(api: FakeProvider, proxy: CredentialProxy) -> None:
    api.canned["/v1/messages"] = Canned(307, (("Location", "https://elsewhere.example/"),))

    answer = send(JSON_CASES["anthropic"], proxy.route("t"))

    assert (answer.status, answer.headers["location"]) == (307, "https://elsewhere.example/")
    assert len(api.requests) == 1


# -- failures ------------------------------------------------------------------------------


def test_an_unreachable_upstream_gives_a_clear_502_and_the_proxy_keeps_serving(
    api: FakeProvider,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    held = {**credentials_for(api), "anthropic": credential("anthropic", "sk-ant-x" * 3, down)}
    with CredentialProxy(held, connect_timeout=2) as proxy:
        route = proxy.route("t")
        failed = send(JSON_CASES["anthropic"], route)
        served = send(JSON_CASES["openai-chat"], route)

    assert failed.status == 502
    error = failed.json()["error"]
    assert error["type"] == "proxy_error"
    assert error["message"].startswith("credential proxy: cannot connect to the anthropic upstream")
    assert down in error["message"]
    assert served.status == 200
    assert proxy.usage("t").requests == 1


def test_the_proxys_own_errors_are_recognised_in_an_agents_output(api: FakeProvider) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    held = {**credentials_for(api), "anthropic": credential("anthropic", "sk-ant-x" * 3, down)}
    with CredentialProxy(held, connect_timeout=2) as proxy:
        base = proxy.route("t").base_urls["openai"]
        bodies = {
            "unreachable": send(JSON_CASES["anthropic"], proxy.route("t")).body,
            "no provider": call(base.replace("/openai", "/mistral") + "/x", _CHAT_BODY).body,
            "refused": call(_with_token(base, "stale") + "/chat/completions", _CHAT_BODY).body,
            "dot segments": call(f"{base}/../x", _CHAT_BODY).body,
        }

    def kind(body: bytes) -> tuple[str | None, str | None]:
        message = json.loads(body)["error"]["message"]
        claude = f"API Error: 502 {body.decode()}"  # the body as it came
        codex = json.dumps({"type": "turn.failed", "error": {"message": body.decode()}})
        seen = {
            read_output(text, [*UNAVAILABLE_PATTERNS], [*FATAL_PATTERNS])
            for text in (claude, codex)
        }
        assert len(seen) == 1, seen
        verdict = seen.pop()
        assert verdict.matched in (None, message)  # the whole message, no more
        return verdict.kind, verdict.matched

    assert kind(bodies["unreachable"])[0] == "rate_limited"
    assert kind(bodies["no provider"])[0] == "fatal"
    assert kind(bodies["refused"])[0] == "fatal"
    assert kind(bodies["dot segments"]) == (None, None)


def test_an_upstream_that_breaks_off_a_stream_cuts_the_agents_response_only(
    api: FakeProvider, proxy: CredentialProxy
) -> None:
    api.cut_streams_after = 2
    route = proxy.route("t")

    with pytest.raises(http.client.IncompleteRead):
        send(STREAM_CASES["anthropic"], route)
    api.cut_streams_after = None

    assert send(STREAM_CASES["anthropic"], route).status == 200
    usage = proxy.usage("t")
    assert (usage.requests, usage.input_tokens) == (2, 2 * api.input_tokens)


def test_stop_frees_the_port(api: FakeProvider) -> None:
    proxy = CredentialProxy(credentials_for(api)).start()
    port = urllib.parse.urlsplit(proxy.url).port or 0
    assert send(JSON_CASES["anthropic"], proxy.route("t")).status == 200

    proxy.stop()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD).close()
    with pytest.raises(RuntimeError):
        proxy.route("t")
    assert proxy.usage("t").requests == 1
    with CredentialProxy(credentials_for(api), port=port) as again:
        assert again.url == f"http://127.0.0.1:{port}"


def test_stop_cuts_a_stream_in_flight(api: FakeProvider) -> None:
    gate = api.stream_gate = threading.Event()
    proxy = CredentialProxy(credentials_for(api)).start()
    case = STREAM_CASES["anthropic"]
    connection, target = _connect(case.url(proxy.route("t")))
    try:
        connection.request("POST", target, json.dumps(case.body).encode(), case.auth("x"))
        response = connection.getresponse()
        read_first_event(response)

        proxy.stop()

        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        gate.set()
        connection.close()


# -- HTTPS upstreams -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_api(certificate: tuple[Path, Path]) -> Iterator[FakeProvider]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with FakeProvider(ssl_context=context) as fake:
        yield fake


def test_an_https_upstream_is_reached_with_its_certificate_verified(
    tls_api: FakeProvider, certificate: tuple[Path, Path]
) -> None:
    held = {"anthropic": credential("anthropic", tls_api.anthropic_key, tls_api.url)}
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    with CredentialProxy(held, ssl_context=trusting) as proxy:
        trusted = send(STREAM_CASES["anthropic"], proxy.route("t"))
    with CredentialProxy(held) as proxy:
        untrusted = send(JSON_CASES["anthropic"], proxy.route("t"))

    assert trusted.status == 200
    assert b"message_stop" in trusted.body
    assert untrusted.status == 502
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.json()["error"]["message"]


# -- secrets stay out of what the proxy says ---------------------------------------------


def test_no_key_appears_in_logs_errors_or_reprs(
    api: FakeProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    held = {**credentials_for(api), "gemini": credential("gemini", api.gemini_key, down)}
    texts: list[str] = []
    with structlog.testing.capture_logs() as logs, CredentialProxy(held) as proxy:
        route = proxy.route("t")
        texts.append(send(JSON_CASES["gemini"], route).body.decode())
        texts.append(call(f"{proxy.url}/nope/anthropic/v1/messages", _ANTHROPIC_BODY).body.decode())
        api.cut_streams_after = 1
        with pytest.raises(http.client.IncompleteRead):
            send(STREAM_CASES["anthropic"], route)
        texts += [repr(held), repr(route), repr(proxy_config({"OPENAI_API_KEY": api.openai_key}))]
    for bad in ({"OPENAI_API_KEY": "sk-\nsecret-value"}, {"GEMINI_API_KEY": "x\x00secretvalue"}):
        with pytest.raises(ProxyConfigError) as raised:
            proxy_config(bad)
        texts.append(str(raised.value))
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, json.dumps(logs)]

    assert len(logs) >= 3  # the 502, the refusal and the broken-off stream were logged
    everything = "\n".join(texts)
    for secret in [*secrets_of(api), "secret-value", "secretvalue"]:
        assert secret not in everything


# -- configuration -------------------------------------------------------------------------


def test_what_agents_must_not_get_is_every_key_and_the_held_providers_base_urls() -> None:
    environ = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_BASE_URL": "https://gateway.example"}
    config = proxy_config(environ)

    assert config.withheld == KEY_VARIABLES | {"OPENAI_BASE_URL", "OPENAI_API_BASE"}
    assert withheld_variables(["openai"]) == config.withheld
    with CredentialProxy(config.credentials) as proxy:
        assert proxy.providers == {"openai"}
        assert proxy.withheld == config.withheld
