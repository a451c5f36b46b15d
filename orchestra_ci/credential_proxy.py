"""A loopback HTTP proxy that holds the provider API keys, so that agents never do.

Agents run prompts taken from issues with their permission checks off: whatever sits in their
environment or files, a prompt can make them print or send away. So the keys stay in the
runner. Each task gets a :class:`Route`: a base URL per provider,
``http://127.0.0.1:PORT/<token>/<provider>``, to give its CLI instead of the real endpoint, and
a dummy key. The proxy refuses (403) any request whose path lacks a live route token, so other
local processes cannot borrow the keys; for the others it drops the agent's own auth header,
adds the real key and forwards the request to the provider, or to the user's own base URL.
The token also names the task, so the proxy counts requests and tokens per task from the
responses, for CLIs that report no usage themselves.

As elsewhere in the project, pure functions decide (:func:`proxy_config` from the
environment, :func:`plan_request` for a request's upstream and headers, :class:`UsageMeter`
for the token counts in a response); the server that acts on them,
:class:`~orchestra_ci.proxy_server.CredentialProxy`, is a module of its own, imported only by
a run that holds keys. No key is ever logged or put in an error message.
"""

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

import structlog

from orchestra_ci.errors import UsageError
from orchestra_ci.providers import PROVIDERS, Provider

log = structlog.get_logger("orchestra_ci")

Headers = list[tuple[str, str]]

_DEFAULT_UPSTREAMS: dict[Provider, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "gemini": "https://generativelanguage.googleapis.com",
}
_KEY_HEADERS: dict[Provider, str] = {
    "anthropic": "x-api-key",
    "openai": "authorization",
    "gemini": "x-goog-api-key",
    "openai-compatible": "authorization",
}
MESSAGE_PREFIX = "credential proxy: "
"""Every message of the proxy's own errors starts with this, for agents' output patterns."""

# How an agent's output shows the proxy's own errors (the message of the JSON error body,
# up to its closing quote), as output patterns: a request the proxy can never serve ends the
# attempt as fatal; an upstream it cannot reach, like a provider outage, as rate limited.
FATAL_PATTERNS = (rf"{MESSAGE_PREFIX}(?:refused|no provider)[^\"\\\n]*",)
UNAVAILABLE_PATTERNS = (rf"{MESSAGE_PREFIX}(?:cannot connect to|no answer from)[^\"\\\n]*",)


class ProxyConfigError(UsageError):
    """A provider key or base URL in the environment that the proxy cannot use."""


# -- configuration (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    """Where one provider's requests go (``https://api.openai.com/v1``), split for http.client."""

    scheme: Literal["http", "https"]
    host: str
    port: int
    base_path: str  # "" or e.g. "/v1": no trailing slash

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_upstream(url: str) -> Upstream:
    """Raises ValueError naming what is wrong; the message never repeats the URL, which may
    carry a secret."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError("a base URL must not carry user info, a query or a fragment")
    scheme = cast(Literal["http", "https"], parts.scheme)
    default_port = 443 if scheme == "https" else 80
    return Upstream(scheme, parts.hostname, port or default_port, parts.path.rstrip("/"))


@dataclass(frozen=True)
class Credential:
    """The key one provider's requests get, in which header, and where they go."""

    upstream: Upstream
    header: str  # "authorization" means "Bearer <key>"
    key: str = field(repr=False)

    @property
    def value(self) -> str:
        return f"Bearer {self.key}" if self.header == "authorization" else self.key


def credential(
    provider: Provider, key: str, base_url: str | None = None, *, bearer: bool = False
) -> Credential:
    """The credential for ``provider``: its usual auth header (``bearer`` forces
    ``Authorization: Bearer``), sent to ``base_url`` or else the provider's public API.

    Raises ValueError for a key that cannot go in a header (the message never repeats it) or
    an unusable base URL."""
    url = base_url or _DEFAULT_UPSTREAMS.get(provider)
    if url is None:
        raise ValueError(f"{provider} has no public endpoint: it needs a base URL")
    key = key.strip()
    if not key or not (key.isascii() and key.isprintable()):
        raise ValueError("the key is empty or holds characters that cannot go in a header")
    return Credential(
        parse_upstream(url), "authorization" if bearer else _KEY_HEADERS[provider], key
    )


@dataclass(frozen=True)
class _Source:
    """The environment variables one provider's key and base URL are read from (first set
    wins); agents are pointed at the proxy through the same names."""

    provider: Provider
    keys: tuple[str, ...]
    base_urls: tuple[str, ...]


_SOURCES = (
    _Source("anthropic", ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"), ("ANTHROPIC_BASE_URL",)),
    _Source("openai", ("OPENAI_API_KEY", "CODEX_API_KEY"), ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    _Source("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), ("GOOGLE_GEMINI_BASE_URL",)),
    _Source("openai-compatible", ("OPENAI_COMPATIBLE_API_KEY",), ("OPENAI_COMPATIBLE_BASE_URL",)),
)
_BEARER_KEYS = frozenset({"ANTHROPIC_AUTH_TOKEN"})  # Claude Code sends it as a Bearer token
KEY_VARIABLES = frozenset(name for source in _SOURCES for name in source.keys)
"""Every variable the proxy takes a key from."""


@dataclass(frozen=True)
class ProxyConfig:
    """What the proxy holds, and what agents must therefore not get.

    ``withheld`` names every key variable (set or not) and the base-URL variables of the
    proxied providers: agents get these from their :meth:`Route.environment` instead."""

    credentials: Mapping[Provider, Credential]
    withheld: frozenset[str]


def _first_set(environ: Mapping[str, str], names: Iterable[str]) -> tuple[str, str] | None:
    return next(((name, environ[name]) for name in names if environ.get(name, "").strip()), None)


def withheld_variables(providers: Iterable[Provider]) -> frozenset[str]:
    """What agents must not get from the runner while the proxy holds ``providers``' keys:
    every key variable (set or not) and those providers' base-URL variables."""
    held = set(providers)
    urls = (name for source in _SOURCES if source.provider in held for name in source.base_urls)
    return KEY_VARIABLES | frozenset(urls)


def proxy_config(environ: Mapping[str, str]) -> ProxyConfig:
    """The providers that have a key in ``environ``, each with its upstream: the user's base
    URL (``ANTHROPIC_BASE_URL``, ``OPENAI_BASE_URL``, ...) if set, else the public API.

    Raises ProxyConfigError (naming the variables, never their values) for a key or base URL
    that cannot be used, or an OpenAI-compatible key without its base URL."""
    credentials: dict[Provider, Credential] = {}
    for source in _SOURCES:
        key = _first_set(environ, source.keys)
        if key is None:
            continue
        url = _first_set(environ, source.base_urls)
        if url is None and source.provider not in _DEFAULT_UPSTREAMS:
            raise ProxyConfigError(
                f"{MESSAGE_PREFIX}{key[0]} is set but {' or '.join(source.base_urls)} is not"
            )
        try:
            credentials[source.provider] = credential(
                source.provider, key[1], url and url[1], bearer=key[0] in _BEARER_KEYS
            )
        except ValueError as error:
            names = key[0] if url is None else f"{key[0]} / {url[0]}"
            raise ProxyConfigError(f"{MESSAGE_PREFIX}{names}: {error}") from None
    return ProxyConfig(credentials, withheld_variables(credentials))


# -- one request (pure) --------------------------------------------------------------------

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_AUTH_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})
# Set by the edge: Host and Content-Length for the upstream, and "Accept-Encoding: identity"
# (http.client's default) so that the usage in a response can be read as it passes.
_SET_BY_PROXY = frozenset({"host", "content-length", "accept-encoding", "expect"})


@dataclass(frozen=True)
class Forward:
    """A request to pass on: for which task and provider, to where, with which headers."""

    task_id: str
    provider: Provider
    upstream: Upstream
    target: str  # path and query on the upstream
    headers: Headers = field(repr=False)


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def _end_to_end(headers: Iterable[tuple[str, str]]) -> Headers:
    """``headers`` without hop-by-hop ones, including those a Connection header names."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in pairs if n.lower() not in _HOP_BY_HOP and n.lower() not in named]


def request_headers(headers: Iterable[tuple[str, str]], credential: Credential) -> Headers:
    """The agent's headers as the upstream gets them: its own key replaced by the real one."""
    dropped = _AUTH_HEADERS | _SET_BY_PROXY
    kept = [(n, v) for n, v in _end_to_end(headers) if n.lower() not in dropped]
    return [*kept, (credential.header, credential.value)]


def response_headers(headers: Iterable[tuple[str, str]]) -> Headers:
    """The upstream's headers as the agent gets them; the edge sets the body's framing."""
    return [(n, v) for n, v in _end_to_end(headers) if n.lower() != "content-length"]


def _without_key_param(query: str) -> str:
    """``query`` without ``key=`` (Gemini clients may send their key there), else verbatim."""
    kept = (p for p in query.split("&") if urllib.parse.unquote_plus(p.partition("=")[0]) != "key")
    return "&".join(p for p in kept if p)


def _has_dot_segment(path: str) -> bool:
    return any(s in (".", "..") for s in urllib.parse.unquote(path).split("/"))


def plan_request(
    target: str,
    headers: Iterable[tuple[str, str]],
    routes: Mapping[str, str],
    credentials: Mapping[Provider, Credential],
) -> Forward | Refusal:
    """What to do with a request for ``target`` (``/<token>/<provider>/<path>?<query>``):
    ``routes`` maps the live route tokens to their tasks. The path after the provider is
    appended to the upstream's base path."""
    path, _, query = target.partition("?")
    token, _, rest = path.removeprefix("/").partition("/")
    name, slash, tail = rest.partition("/")
    task_id = routes.get(token) if path.startswith("/") else None
    if task_id is None:
        return Refusal(403, f"{MESSAGE_PREFIX}refused: the path carries no valid route token")
    provider = next((p for p in PROVIDERS if p == name), None)
    chosen = credentials.get(provider) if provider is not None else None
    if provider is None or chosen is None:
        return Refusal(404, f"{MESSAGE_PREFIX}no provider {name!r} with a key on this proxy")
    if _has_dot_segment(tail):
        return Refusal(400, f"{MESSAGE_PREFIX}'.' and '..' path segments are not forwarded")
    upstream_path = f"{chosen.upstream.base_path}{slash}{tail}" or "/"
    if provider == "gemini":
        query = _without_key_param(query)
    upstream_target = f"{upstream_path}?{query}" if query else upstream_path
    return Forward(
        task_id, provider, chosen.upstream, upstream_target, request_headers(headers, chosen)
    )


# -- usage in a response (pure) ------------------------------------------------------------


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _first_count(usage: Mapping[str, object], *names: str) -> int | None:
    return next((c for c in map(_count, map(usage.get, names)) if c is not None), None)


def token_counts(obj: object) -> tuple[int | None, int | None]:
    """Input and output tokens that one response object or stream event reports, whatever
    the provider: Anthropic (``usage``, ``message.usage`` in ``message_start``), OpenAI Chat
    Completions (``prompt_tokens``/``completion_tokens``), the Responses API (also
    ``response.usage`` in its events), and Gemini (``usageMetadata``; thinking tokens count
    as output, as they are billed)."""
    if not isinstance(obj, dict):
        return None, None
    meta = obj.get("usageMetadata")
    if isinstance(meta, dict):
        parts = [_count(meta.get(n)) for n in ("candidatesTokenCount", "thoughtsTokenCount")]
        counted = [p for p in parts if p is not None]
        return _count(meta.get("promptTokenCount")), sum(counted) if counted else None
    for holder in (obj, obj.get("message"), obj.get("response")):
        usage = holder.get("usage") if isinstance(holder, dict) else None
        if isinstance(usage, dict):
            return (
                _first_count(usage, "input_tokens", "prompt_tokens"),
                _first_count(usage, "output_tokens", "completion_tokens"),
            )
    return None, None


class UsageMeter:
    """The token counts of one response body, read as it passes through.

    Every provider reports running totals within a response (Anthropic's ``message_start``
    then ``message_delta``, Gemini's chunks), so the last count seen is the response's. An
    event stream is read line by line; a JSON body (an object, or Gemini's array of chunks)
    is kept until it ends. At most ``limit`` bytes are kept: past that a line or body is not
    read, and its counts are missed."""

    def __init__(self, content_type: str | None, limit: int = 4 << 20) -> None:
        media = (content_type or "").partition(";")[0].strip().lower()
        self._events = media == "text/event-stream"
        self._json = media == "application/json" or media.endswith("+json")
        self._limit = limit
        self._kept = bytearray()
        self._skipping = False
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None

    def feed(self, data: bytes) -> None:
        if self._events:
            self._feed_lines(data)
        elif self._json and not self._skipping:
            self._kept += data
            self._overflowed()

    def finish(self) -> None:
        """The body has ended: read what is still kept."""
        kept, self._kept = bytes(self._kept), bytearray()
        if self._skipping or not kept:
            return
        if self._events:
            self._line(kept)
            return
        value = _json_or_none(kept)
        for obj in value if isinstance(value, list) else [value]:
            self._observe(obj)

    def _feed_lines(self, data: bytes) -> None:
        if b"\n" not in data:
            self._keep(data)
            return
        first, *lines, rest = (bytes(self._kept) + data).split(b"\n")
        if not self._skipping:
            self._line(first)
        for line in lines:
            self._line(line)
        self._kept, self._skipping = bytearray(), False
        self._keep(rest)

    def _keep(self, data: bytes) -> None:
        if not self._skipping:
            self._kept += data
            self._overflowed()

    def _overflowed(self) -> None:
        if len(self._kept) > self._limit:
            self._kept, self._skipping = bytearray(), True

    def _line(self, line: bytes) -> None:
        if line.startswith(b"data:"):
            self._observe(_json_or_none(line[5:].strip()))

    def _observe(self, obj: object) -> None:
        tokens_in, tokens_out = token_counts(obj)
        if tokens_in is not None:
            self.input_tokens = tokens_in
        if tokens_out is not None:
            self.output_tokens = tokens_out


def _json_or_none(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        return None


@dataclass(frozen=True)
class ProxyUsage:
    """What one task's requests through the proxy used; a request counts once the upstream
    answered it, whatever the status."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def plus(self, meter: UsageMeter) -> "ProxyUsage":
        return ProxyUsage(
            self.requests + 1,
            self.input_tokens + (meter.input_tokens or 0),
            self.output_tokens + (meter.output_tokens or 0),
        )

    def since(self, before: "ProxyUsage") -> "ProxyUsage":
        """What was used after ``before``, an earlier reading of the same task's usage."""
        return ProxyUsage(
            self.requests - before.requests,
            self.input_tokens - before.input_tokens,
            self.output_tokens - before.output_tokens,
        )


@dataclass(frozen=True)
class Route:
    """How one task reaches the proxy: a base URL per proxied provider (it carries the
    task's route token) and the dummy key to send with it, which the proxy discards."""

    task_id: str
    base_urls: Mapping[Provider, str] = field(repr=False)
    dummy_key: str = field(repr=False)

    def environment(self) -> dict[str, str]:
        """The variables that point provider SDKs, and the CLIs that read them, at this route:
        ``ANTHROPIC_BASE_URL``/``ANTHROPIC_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_API_BASE``/
        ``OPENAI_API_KEY``, ``GOOGLE_GEMINI_BASE_URL``/``GEMINI_API_KEY`` and
        ``OPENAI_COMPATIBLE_BASE_URL``/``OPENAI_COMPATIBLE_API_KEY``, for the proxied ones."""
        env: dict[str, str] = {}
        for source in _SOURCES:
            url = self.base_urls.get(source.provider)
            if url is not None:
                env.update(dict.fromkeys(source.base_urls, url))
                env[source.keys[0]] = self.dummy_key
        return env


__all__ = [
    "FATAL_PATTERNS",
    "KEY_VARIABLES",
    "MESSAGE_PREFIX",
    "PROVIDERS",
    "UNAVAILABLE_PATTERNS",
    "Credential",
    "Forward",
    "Provider",
    "ProxyConfig",
    "ProxyConfigError",
    "ProxyUsage",
    "Refusal",
    "Route",
    "Upstream",
    "UsageMeter",
    "credential",
    "parse_upstream",
    "plan_request",
    "proxy_config",
    "request_headers",
    "response_headers",
    "token_counts",
    "withheld_variables",
]
