"""A local stand-in of the Anthropic, OpenAI and Gemini APIs, served over real HTTP.

One server answers the three providers' paths with their own keys, so that a test can point a
client (or the credential proxy) at it::

    with FakeProvider() as api:
        # Anthropic: base URL api.url; OpenAI: api.url + "/v1"; Gemini: api.url
        ...
        assert api.requests[-1].headers["x-api-key"] == api.anthropic_key

What it imitates, as far as clients and the proxy depend on it:

- Anthropic ``POST /v1/messages``: a message object with ``usage.input_tokens`` /
  ``output_tokens``, or with ``"stream": true`` the SSE events ``message_start`` (input tokens,
  output 1), ``content_block_start``, ``ping``, one ``content_block_delta`` per word,
  ``content_block_stop``, ``message_delta`` (the output tokens so far) and ``message_stop``.
  The key goes in ``x-api-key`` (or ``Authorization: Bearer``, as for auth tokens); otherwise
  401 ``{"type": "error", "error": {"type": "authentication_error", ...}}``.
- OpenAI ``POST /v1/chat/completions``: a ``chat.completion`` with ``usage.prompt_tokens`` /
  ``completion_tokens``, or streamed ``chat.completion.chunk`` events, a final usage chunk
  (``choices: []``) only when ``stream_options.include_usage`` asks for it, then
  ``data: [DONE]``. ``POST /v1/responses``: a ``response`` with ``usage.input_tokens`` /
  ``output_tokens``, or streamed ``response.*`` events ending in ``response.completed``. The
  key goes in ``Authorization: Bearer``; otherwise 401 ``invalid_api_key`` (the given key
  masked in the message, as the real API does).
- Gemini ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent`` (also
  under ``/v1`` and ``/v1alpha``, as the real API and the Python SDK use them)
  (``?alt=sse``: ``data:`` events separated by CRLF, as Google sends them; else one JSON array
  of the chunks), each chunk with running ``usageMetadata`` counts. The key goes in
  ``x-goog-api-key`` or the ``key`` query parameter; a wrong key gets what the real API
  answers, 400 ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``, and none 403
  ``PERMISSION_DENIED``.
- Streams use chunked transfer encoding, one chunk per event, ``event_delay`` apart. When
  :attr:`FakeProvider.stream_gate` is set to an Event, a stream sends its first event and then
  waits for it, so a test can prove that the first event reached it before the rest was sent
  (a wait that times out is noted in :attr:`FakeProvider.errors`). With
  :attr:`FakeProvider.cut_streams_after` a stream drops its connection after that many
  events.

The reply is :attr:`FakeProvider.reply` (one output token per word); every request reports
:attr:`FakeProvider.input_tokens` input tokens. :attr:`FakeProvider.canned` maps a path to a
fixed answer (no key check), e.g. a redirect. Every request is kept, headers included and
unredacted, in :attr:`FakeProvider.requests`. Not imitated: models, tools, content checks,
rate limits, anything else (404).
"""

import json
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from orchestra_ci.background_http import BackgroundServer, TrackedHandler, TrackingServer

__all__ = ["Canned", "FakeProvider", "RecordedRequest"]

_GEMINI_PATH = re.compile(
    r"^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)$"
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Canned:
    """A fixed answer for one path."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any = None  # JSON, sent with Content-Length
    events: list[bytes] = field(default_factory=list)  # else these, streamed
    raw: bytes | None = None  # else these bytes, sent with Content-Length
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _sse(data: Any, event: str | None = None, end: bytes = b"\n\n") -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + end


class FakeProvider(BackgroundServer):
    """The stand-in server. ``with FakeProvider() as api:`` starts it on a free loopback port
    (HTTPS with ``ssl_context``, a server-side context holding its certificate); ``api.url``
    is its address."""

    thread_name = "fake-provider"

    def __init__(
        self,
        *,
        reply: str = "Hello from the fake provider",
        input_tokens: int = 12,
        event_delay: float = 0.005,
        gate_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.anthropic_key = f"sk-ant-api03-{secrets.token_urlsafe(24)}"
        self.openai_key = f"sk-proj-{secrets.token_urlsafe(24)}"
        self.gemini_key = f"AIza{secrets.token_urlsafe(26)}"
        self.reply = reply
        self.input_tokens = input_tokens
        self.event_delay = event_delay
        self.gate_timeout = gate_timeout
        self.stream_gate: threading.Event | None = None
        self.cut_streams_after: int | None = None
        self.canned: dict[str, Canned] = {}
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._tls = ssl_context
        self.url_scheme = "https" if ssl_context else "http"
        super().__init__()

    def make_server(self) -> TrackingServer:
        return _Server(self, self._tls)

    @property
    def output_tokens(self) -> int:
        return len(self._words())

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    # ------------------------------------------------------------------ answering

    def _answer(self, request: RecordedRequest) -> _Reply:
        canned = self.canned.get(request.path)
        if canned is not None:
            return _Reply(canned.status, raw=canned.body, headers=canned.headers)
        body = _json_object(request.body)
        if request.method != "POST":
            return _Reply(404, {"error": {"message": "Not found"}})
        if request.path == "/v1/messages":
            return self._anthropic(request, body)
        if request.path == "/v1/chat/completions":
            return self._openai(request, body, self._chat)
        if request.path == "/v1/responses":
            return self._openai(request, body, self._responses)
        match = _GEMINI_PATH.match(request.path)
        if match:
            return self._gemini(request, match[1], match[2] == "streamGenerateContent")
        return _Reply(404, {"error": {"message": "Not found"}})

    def _words(self) -> list[str]:
        words = self.reply.split()
        return [w if i == 0 else f" {w}" for i, w in enumerate(words)]

    # -- Anthropic

    def _anthropic(self, request: RecordedRequest, body: dict[str, Any]) -> _Reply:
        given = {request.headers.get("x-api-key"), request.headers.get("authorization")}
        if not given & {self.anthropic_key, f"Bearer {self.anthropic_key}"}:
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return _Reply(401, {"type": "error", "error": error, "request_id": _id("req_")})
        model = str(body.get("model", "claude-fake"))
        message: dict[str, Any] = {
            "id": _id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": self.reply}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        }
        if not body.get("stream"):
            return _Reply(200, message)
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 1},
        }
        events = [
            _sse({"type": "message_start", "message": start}, "message_start"),
            _sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            _sse({"type": "ping"}, "ping"),
            *(
                _sse(
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": word},
                    },
                    "content_block_delta",
                )
                for word in self._words()
            ),
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": self.output_tokens},
                },
                "message_delta",
            ),
            _sse({"type": "message_stop"}, "message_stop"),
        ]
        return _Reply(200, events=events, content_type="text/event-stream; charset=utf-8")

    # -- OpenAI

    def _openai(
        self,
        request: RecordedRequest,
        body: dict[str, Any],
        answer: Callable[[dict[str, Any]], _Reply],
    ) -> _Reply:
        auth = request.headers.get("authorization", "")
        if auth == f"Bearer {self.openai_key}":
            return answer(body)
        given = auth.removeprefix("Bearer ").strip()
        message = (
            f"Incorrect API key provided: {_masked(given)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
            if given
            else "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        error = {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key" if given else None,
        }
        return _Reply(401, {"error": error})

    def _usage_openai(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def _chat(self, body: dict[str, Any]) -> _Reply:
        model = str(body.get("model", "gpt-fake"))
        common = {"id": _id("chatcmpl-"), "created": int(time.time()), "model": model}
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": self.reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            completion = {"object": "chat.completion", **common, "choices": [choice]}
            return _Reply(200, {**completion, "usage": self._usage_openai()})
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunk = {"object": "chat.completion.chunk", **common}

        def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**chunk, "choices": [choice], **({"usage": None} if with_usage else {})}

        chunks = [
            event({"role": "assistant", "content": "", "refusal": None}),
            *(event({"content": word}) for word in self._words()),
            event({}, "stop"),
        ]
        if with_usage:
            chunks.append({**chunk, "choices": [], "usage": self._usage_openai()})
        events = [*map(_sse, chunks), b"data: [DONE]\n\n"]
        return _Reply(200, events=events, content_type="text/event-stream; charset=utf-8")

    def _responses(self, body: dict[str, Any]) -> _Reply:
        text = {"type": "output_text", "text": self.reply, "annotations": []}
        item = {
            "type": "message",
            "id": _id("msg_"),
            "status": "completed",
            "role": "assistant",
            "content": [text],
        }
        done = {
            "id": _id("resp_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": str(body.get("model", "gpt-fake")),
            "output": [item],
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
        }
        if not body.get("stream"):
            return _Reply(200, done)
        created = {**done, "status": "in_progress", "output": [], "usage": None}
        started = {**item, "status": "in_progress", "content": []}
        place = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        steps: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": created}),
            ("response.output_item.added", {"output_index": 0, "item": started}),
            ("response.content_part.added", {**place, "part": {**text, "text": ""}}),
            *(("response.output_text.delta", {**place, "delta": w}) for w in self._words()),
            ("response.output_text.done", {**place, "text": self.reply}),
            ("response.content_part.done", {**place, "part": text}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            ("response.completed", {"response": done}),
        ]
        events = [
            _sse({"type": kind, "sequence_number": n, **data}, kind)
            for n, (kind, data) in enumerate(steps)
        ]
        return _Reply(200, events=events, content_type="text/event-stream; charset=utf-8")

    # -- Gemini

    def _gemini(self, request: RecordedRequest, model: str, stream: bool) -> _Reply:
        given = request.headers.get("x-goog-api-key") or (request.query.get("key") or [""])[0]
        if given != self.gemini_key:
            return _Reply(*_gemini_key_error(given))
        words = self._words()
        chunks = [self._gemini_chunk(model, [w], i + 1, len(words)) for i, w in enumerate(words)]
        if not stream:
            return _Reply(200, self._gemini_chunk(model, words, len(words), len(words)))
        if request.query.get("alt") == ["sse"]:
            events = [_sse(chunk, end=b"\r\n\r\n") for chunk in chunks]
            return _Reply(200, events=events, content_type="text/event-stream")
        return _Reply(200, chunks)

    def _gemini_chunk(self, model: str, words: list[str], sent: int, total: int) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": "".join(words)}], "role": "model"},
            "index": 0,
        }
        if sent == total:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": self.input_tokens,
                "candidatesTokenCount": sent,
                "totalTokenCount": self.input_tokens + sent,
            },
            "modelVersion": model,
            "responseId": _id(""),
        }

    # -- streaming

    def _stream(self, handler: "_Handler", events: Iterable[bytes]) -> None:
        for n, event in enumerate(events, start=1):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            if n == self.cut_streams_after:
                handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
                return
            gate = self.stream_gate
            if n == 1 and gate is not None and not gate.wait(self.gate_timeout):
                self.errors.append("the stream gate was not released: is the stream buffered?")
            time.sleep(self.event_delay)
        handler.wfile.write(b"0\r\n\r\n")


def _gemini_key_error(given: str) -> tuple[int, dict[str, Any]]:
    if not given:
        message = (
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API."
        )
        return 403, {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED"}}
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    error = {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [info],
    }
    return 400, {"error": error}


def _masked(key: str) -> str:
    return f"{key[:3]}{'*' * max(len(key) - 7, 0)}{key[-4:]}" if len(key) > 8 else "***"


def _id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Server(TrackingServer):
    def __init__(self, fake: FakeProvider, tls: ssl.SSLContext | None) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up are normal; anything else is the fake's own bug."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            self.fake.errors.append(traceback.format_exc())


class _Handler(TrackedHandler):
    server_version = "fake-provider"
    timeout = 60

    def _serve(self) -> None:
        fake = cast(_Server, self.server).fake
        length = int(self.headers.get("Content-Length") or 0)
        path, _, query = self.path.partition("?")
        request = RecordedRequest(
            self.command,
            path,
            urllib.parse.parse_qs(query, keep_blank_values=True),
            {name.lower(): value for name, value in self.headers.items()},
            self.rfile.read(length) if length > 0 else b"",
        )
        with fake.lock:
            fake.requests.append(request)
        reply = fake._answer(request)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-type" for name, _ in reply.headers):
            self.send_header("Content-Type", reply.content_type)
        if reply.events:
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            fake._stream(self, reply.events)
            return
        data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve
