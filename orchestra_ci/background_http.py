"""An HTTP server run from a background thread, that ends its open connections when it stops.

``http.server`` alone leaves kept-alive and streaming connections running after
``shutdown()``: a stopped server would go on answering the clients it already had. Here every
connection (and any other socket a handler registers, such as one to an upstream) is tracked
and shut down on :meth:`BackgroundServer.stop`.
"""

import contextlib
import socket
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast


class TrackingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()
        super().__init__(address, handler)

    def track(self, sock: socket.socket) -> None:
        with self._sockets_lock:
            self._sockets.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._sockets_lock:
            self._sockets.discard(sock)

    def cut_all(self) -> None:
        with self._sockets_lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class TrackedHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, no Nagle delay, silent; its connection tracked."""

    protocol_version = "HTTP/1.1"
    sys_version = ""
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.tracking_server().track(self.connection)

    def finish(self) -> None:
        self.tracking_server().untrack(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def tracking_server(self) -> TrackingServer:
        return cast(TrackingServer, self.server)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: what is logged is up to the server, not a line per request on stderr."""


class BackgroundServer(ABC):
    """Serves :meth:`make_server` from a daemon thread: ``with Sub(...) as running:``, or
    :meth:`start` and :meth:`stop`."""

    url_scheme = "http"
    thread_name = "http-server"

    def __init__(self) -> None:
        self._server: TrackingServer | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def make_server(self) -> TrackingServer:
        """A new server, bound and listening."""

    def start(self) -> Self:
        if self._server is None:
            self._server = self.make_server()
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=self.thread_name,
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the port is free again) and end every open connection."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.cut_all()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, no trailing slash; RuntimeError when it is not running."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        host, port = self._server.server_address[:2]
        return f"{self.url_scheme}://{host!s}:{port}"
