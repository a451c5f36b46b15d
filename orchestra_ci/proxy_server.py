"""The credential proxy's server: the edge that acts on :mod:`credential_proxy`'s decisions.

:class:`CredentialProxy` serves the routes with ``http.server`` and forwards with
``http.client``: no redirects are followed, bodies stream through chunk by chunk (SSE is
never held back), and the proxy's own failures reach the agent as an HTTP error with a JSON
body ``{"error": {"type": "proxy_error", "message": "credential proxy: ..."}}``. It is
imported only by a run that holds provider keys.
"""

import http.client
import json
import secrets
import ssl
import sys
import threading
from collections.abc import Iterable, Mapping
from email.message import Message
from io import BufferedIOBase
from typing import Any, cast

from orchestra_ci.background_http import BackgroundServer, TrackedHandler, TrackingServer
from orchestra_ci.credential_proxy import (
    MESSAGE_PREFIX,
    Credential,
    Forward,
    ProxyUsage,
    Refusal,
    Route,
    Upstream,
    UsageMeter,
    log,
    plan_request,
    response_headers,
    withheld_variables,
)
from orchestra_ci.providers import PROVIDERS, Provider

_CHUNK = 64 * 1024
_BODYLESS_STATUSES = frozenset({204, 304})


class _BadBody(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _read_body(rfile: BufferedIOBase, headers: Message, limit: int) -> bytes:
    """The request body, whole (requests are small; only responses need to stream)."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return _read_chunked(rfile, limit)
    raw = headers.get("Content-Length")
    if raw is None:
        return b""
    if not raw.strip().isdigit():
        raise _BadBody(400, f"{MESSAGE_PREFIX}invalid Content-Length")
    length = int(raw)
    if length > limit:
        raise _BadBody(413, f"{MESSAGE_PREFIX}request body over {limit} bytes")
    body = rfile.read(length)
    if len(body) < length:
        raise _BadBody(400, f"{MESSAGE_PREFIX}request body cut short")
    return body


def _read_chunked(rfile: BufferedIOBase, limit: int) -> bytes:
    body = bytearray()
    while True:
        size_field = rfile.readline(1024).partition(b";")[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise _BadBody(400, f"{MESSAGE_PREFIX}invalid chunked request body") from None
        if size == 0:
            break
        if len(body) + size > limit:
            raise _BadBody(413, f"{MESSAGE_PREFIX}request body over {limit} bytes")
        chunk = rfile.read(size)
        if len(chunk) < size or rfile.readline(3).strip():
            raise _BadBody(400, f"{MESSAGE_PREFIX}invalid chunked request body")
        body += chunk
    while rfile.readline(8192).strip():  # trailer fields, dropped
        pass
    return bytes(body)


class _Tally:
    """One response's usage, added to its task's once: when the body ends or breaks off."""

    def __init__(self, proxy: "CredentialProxy", task_id: str, content_type: str | None) -> None:
        self.meter = UsageMeter(content_type)
        self._proxy = proxy
        self._task_id = task_id
        self._open = True

    def close(self) -> None:
        if self._open:
            self._open = False
            self.meter.finish()
            self._proxy.record(self._task_id, self.meter)


class _Server(TrackingServer):
    def __init__(self, proxy: "CredentialProxy", address: tuple[str, int]) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Agents that hang up are normal; anything else is logged by type only (exception
        texts of http.client may quote header values)."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError):
            log.warning("credential proxy: request failed", error=type(error).__name__)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


class _Handler(TrackedHandler):
    server_version = "orchestra-ci-credential-proxy"
    timeout = 600  # an idle agent connection is closed after this

    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def _proxy(self) -> None:
        proxy = self._server().proxy
        decision = proxy.plan(self.path, self.headers.items())
        if isinstance(decision, Refusal):
            if decision.status == 403:
                log.warning("credential proxy: refused a request without a valid route token")
            self._send_error(decision.status, decision.message, close=True)
            return
        try:
            body = _read_body(self.rfile, self.headers, proxy.body_limit)
        except _BadBody as error:
            self._send_error(error.status, str(error), close=True)
            return
        self._forward(proxy, decision, body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

    def _forward(self, proxy: "CredentialProxy", forward: Forward, body: bytes) -> None:
        where = f"the {forward.provider} upstream {forward.upstream.origin}"
        try:
            upstream = proxy.connect(forward.upstream)
        except OSError as error:
            self._fail(proxy, 502, forward, f"cannot connect to {where}", error)
            return
        sock = upstream.sock
        self._server().track(sock)
        try:
            self._exchange(proxy, forward, upstream, body, where)
        finally:
            self._server().untrack(sock)
            upstream.close()

    def _exchange(
        self,
        proxy: "CredentialProxy",
        forward: Forward,
        upstream: http.client.HTTPConnection,
        body: bytes,
        where: str,
    ) -> None:
        try:
            upstream.putrequest(self.command, forward.target)
            for name, value in forward.headers:
                upstream.putheader(name, value)
        except (ValueError, http.client.HTTPException):
            self._send_error(400, f"{MESSAGE_PREFIX}the request cannot be forwarded as it is")
            return
        if body or self.command in ("POST", "PUT", "PATCH"):
            upstream.putheader("Content-Length", str(len(body)))
        try:
            upstream.endheaders(body or None)
            response = upstream.getresponse()
        except TimeoutError as error:
            self._fail(proxy, 504, forward, f"no answer from {where} in time", error)
            return
        except (OSError, http.client.HTTPException) as error:
            self._fail(proxy, 502, forward, f"no answer from {where}", error)
            return
        tally = _Tally(proxy, forward.task_id, response.getheader("Content-Type"))
        try:
            self._relay(response, tally, where)
        finally:
            tally.close()

    def _relay(self, response: http.client.HTTPResponse, tally: "_Tally", where: str) -> None:
        """Pass the response on as it arrives: Content-Length when the upstream gave one,
        else chunked, every piece written at once."""
        self.send_response_only(response.status, response.reason)
        for name, value in response_headers(response.getheaders()):
            self.send_header(name, value)
        if self.command == "HEAD" or response.status in _BODYLESS_STATUSES:
            length = response.getheader("Content-Length")
            if length is not None and self.command == "HEAD":
                self.send_header("Content-Length", length)
            tally.close()
            self.end_headers()
            return
        chunked = response.length is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(response.length))
        self.end_headers()
        if self._pump(response, tally, chunked, where) and chunked:
            self._write(b"0\r\n\r\n")

    def _pump(
        self, response: http.client.HTTPResponse, tally: "_Tally", chunked: bool, where: str
    ) -> bool:
        """Copy the body; False when either side broke off (the agent then sees a cut
        response, and the connection is closed). The usage is counted as soon as the body
        is complete, before the agent can see its end."""
        while True:
            try:
                data = response.read1(_CHUNK)
                if not data and response.length:
                    raise http.client.IncompleteRead(b"", response.length)
            except (OSError, http.client.HTTPException) as error:
                message = f"{MESSAGE_PREFIX}{where} broke off a response: {_describe(error)}"
                log.warning(self._server().proxy.scrub(message))
                self.close_connection = True
                return False
            if not data:
                tally.close()
                return True
            tally.meter.feed(data)
            if response.length == 0:  # all of a Content-Length body
                tally.close()
            if not self._write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data):
                return False

    def _write(self, data: bytes) -> bool:
        try:
            self.wfile.write(data)
        except OSError:  # the agent hung up
            self.close_connection = True
            return False
        return True

    def _fail(
        self, proxy: "CredentialProxy", status: int, forward: Forward, what: str, error: Exception
    ) -> None:
        message = proxy.scrub(f"{MESSAGE_PREFIX}{what}: {_describe(error)}")
        log.warning(message, task=forward.task_id, provider=forward.provider, status=status)
        self._send_error(status, message)

    def _send_error(self, status: int, message: str, *, close: bool = False) -> None:
        body = json.dumps({"error": {"type": "proxy_error", "message": message}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._write(body)


class CredentialProxy(BackgroundServer):
    """The proxy on ``host`` (loopback) and ``port`` (0: any free one), holding
    ``credentials``. ``with CredentialProxy(config.credentials) as proxy:`` runs it in a
    background thread; :meth:`route` gives each task its way in, :meth:`usage` what the task
    used so far (also after :meth:`stop`).

    ``connect_timeout`` bounds reaching an upstream (TCP and TLS); ``read_timeout`` bounds
    each wait for it afterwards, so it must outlast a slow model's silence before its first
    byte. HTTPS upstreams are verified with ``ssl_context`` (default: the system's CAs).
    """

    body_limit = 64 << 20
    thread_name = "credential-proxy"

    def __init__(
        self,
        credentials: Mapping[Provider, Credential],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._credentials = dict(credentials)
        self._address = (host, port)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._tls = ssl_context or ssl.create_default_context()
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = {}  # task -> live route token
        self._tasks: dict[str, str] = {}  # live route token -> task
        self._usage: dict[str, ProxyUsage] = {}
        super().__init__()

    def make_server(self) -> TrackingServer:
        return _Server(self, self._address)

    # -- routes and usage

    def route(self, task_id: str) -> Route:
        """The task's route, made on first use and the same until :meth:`revoke`."""
        url = self.url
        with self._lock:
            token = self._tokens.get(task_id)
            if token is None:
                token = secrets.token_urlsafe(24)
                self._tokens[task_id], self._tasks[token] = token, task_id
        base_urls = {p: f"{url}/{token}/{p}" for p in PROVIDERS if p in self._credentials}
        return Route(task_id, base_urls, f"orchestra-proxy-{token}")

    def revoke(self, task_id: str) -> None:
        """End the task's route: requests with its token are refused from now on (what an
        agent left running after its attempt sends), and a later :meth:`route` makes a new
        one. Usage counted so far is kept."""
        with self._lock:
            token = self._tokens.pop(task_id, None)
            self._tasks.pop(token or "", None)

    def usage(self, task_id: str) -> ProxyUsage:
        with self._lock:
            return self._usage.get(task_id, ProxyUsage())

    @property
    def providers(self) -> frozenset[Provider]:
        """The providers it holds a key for."""
        return frozenset(self._credentials)

    @property
    def withheld(self) -> frozenset[str]:
        """The runner's variables that agents must not get while it runs."""
        return withheld_variables(self._credentials)

    # -- for the request handler

    def plan(self, target: str, headers: Iterable[tuple[str, str]]) -> Forward | Refusal:
        with self._lock:
            return plan_request(target, headers, self._tasks, self._credentials)

    def connect(self, upstream: Upstream) -> http.client.HTTPConnection:
        """An open connection to ``upstream``; raises OSError (TimeoutError, ssl.SSLError,
        ...) when it cannot be reached in ``connect_timeout``."""
        connection = (
            http.client.HTTPSConnection(
                upstream.host, upstream.port, timeout=self._connect_timeout, context=self._tls
            )
            if upstream.scheme == "https"
            else http.client.HTTPConnection(
                upstream.host, upstream.port, timeout=self._connect_timeout
            )
        )
        try:
            connection.connect()
            connection.sock.settimeout(self._read_timeout)
        except BaseException:
            connection.close()
            raise
        return connection

    def record(self, task_id: str, meter: UsageMeter) -> None:
        with self._lock:
            self._usage[task_id] = self._usage.get(task_id, ProxyUsage()).plus(meter)

    def scrub(self, text: str) -> str:
        """``text`` with every key masked, for messages built from exception texts."""
        for held in self._credentials.values():
            text = text.replace(held.key, "***")
        return text
