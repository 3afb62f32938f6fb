"""The sandbox server: a threaded HTTP/1.1 server in the background, or in the foreground.

:class:`SandboxServer` is what tests use (``with SandboxServer(opts) as srv: srv.url``);
:func:`serve` is what the command line runs until SIGTERM or SIGINT. Stopping closes the
listening socket, cuts open keep-alive connections, joins their threads, and stops the churn and
webhook threads, so a test leaves no thread or socket behind.
"""

from __future__ import annotations

import contextlib
import selectors
import signal
import socket
import socketserver
import sys
import threading
from http.server import ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, TextIO

from spark_integrations.sandbox.core import Sandbox
from spark_integrations.sandbox.handler import SandboxRequestHandler
from spark_integrations.sandbox.options import SandboxOptions

__all__ = ["SandboxHTTPServer", "SandboxServer", "serve"]


class SandboxHTTPServer(ThreadingHTTPServer):
    """A thread per connection, a deep accept queue, and a registry of open connections."""

    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, host: str, port: int, sandbox: Sandbox) -> None:
        """Bind and listen on ``host:port`` (IPv6 when ``host`` holds a colon)."""
        self.sandbox = sandbox
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._open: dict[socket.socket, threading.Thread | None] = {}
        self._open_lock = threading.Lock()
        # Made first: a failed bind calls server_close, which closes them.
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__((host, port), SandboxRequestHandler)
        # Non-blocking accept: a client that gives up between select and accept cannot hang us.
        self.socket.setblocking(False)

    def serve_until_woken(self) -> None:
        """Accept connections until :meth:`wake`.

        Unlike ``serve_forever``, which polls for shutdown every ``poll_interval``, this waits on
        the listening socket and a wake-up socket, so stopping takes no time and idling no CPU.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._handle_request_noblock()  # type: ignore[attr-defined]

    def wake(self) -> None:
        """Make :meth:`serve_until_woken` return."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def server_close(self) -> None:
        """Close the listening socket and the wake-up sockets."""
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup of ``HTTPServer.server_bind``."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """Register the connection (before its thread starts), then start its thread."""
        sock = request if isinstance(request, socket.socket) else request[1]
        with self._open_lock:
            self._open[sock] = None
        super().process_request(request, client_address)

    def process_request_thread(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """Serve one connection, its thread registered so :meth:`close_connections` can join it."""
        sock = request if isinstance(request, socket.socket) else request[1]
        with self._open_lock:
            if sock in self._open:
                self._open[sock] = threading.current_thread()
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.pop(sock, None)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """Ignore clients that went away; report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Shut down every open connection and wait for their threads to finish."""
        with self._open_lock:
            open_now = list(self._open.items())
        for sock, _ in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in open_now:
            if thread is not None:
                thread.join(timeout)


class SandboxServer:
    """A sandbox listening in a background thread.

    Example:
        with SandboxServer(SandboxOptions(port=0, api_key="k")) as srv:
            requests.get(srv.url + "/v1/items", headers={"X-API-Key": "k"})
    """

    def __init__(self, options: SandboxOptions | None = None) -> None:
        """Nothing runs until :meth:`start`."""
        self.options = options or SandboxOptions()
        self._sandbox: Sandbox | None = None
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._bound: tuple[str, int] | None = None

    @property
    def sandbox(self) -> Sandbox:
        """The state behind the server (counters, dataset...), for in-process inspection."""
        if self._sandbox is None:
            raise RuntimeError("the sandbox server is not started")
        return self._sandbox

    @property
    def host(self) -> str:
        """The address it listens (or listened) on."""
        if self._bound is None:
            raise RuntimeError("the sandbox server was never started")
        return self._bound[0]

    @property
    def port(self) -> int:
        """The real port (useful with ``port=0``); still known after :meth:`stop`."""
        if self._bound is None:
            raise RuntimeError("the sandbox server was never started")
        return self._bound[1]

    @property
    def url(self) -> str:
        """Base URL, like ``http://127.0.0.1:8140`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> SandboxServer:
        """Generate the data, bind, and serve in a daemon thread; returns ``self``.

        Raises:
            OSError: the address cannot be bound (in use, not local...).
        """
        if self._httpd is not None:
            return self
        sandbox = Sandbox(self.options)
        self._httpd = SandboxHTTPServer(self.options.host, self.options.port, sandbox)
        self._sandbox = sandbox
        self._bound = (self._httpd.server_name, self._httpd.server_port)
        sandbox.start()
        self._thread = threading.Thread(
            target=self._httpd.serve_until_woken,
            name="sandbox-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, stop background threads; idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        assert self._sandbox is not None and self._thread is not None
        self._sandbox.stopping.set()
        httpd.wake()
        self._thread.join()
        httpd.server_close()
        httpd.close_connections()
        self._sandbox.stop()

    def __enter__(self) -> SandboxServer:
        """Start (if not yet) and return ``self``."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop."""
        self.stop()


def serve(options: SandboxOptions, out: TextIO | None = None) -> None:
    """Run a sandbox in the foreground until SIGTERM or SIGINT, then stop cleanly.

    Prints ``sandbox listening on http://HOST:PORT`` (the real port) to ``out`` (stdout) once
    listening, so a parent process can wait for that line.

    Raises:
        OSError: the address cannot be bound.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with SandboxServer(options) as server:
            print(f"sandbox listening on {server.url}", file=out or sys.stdout, flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
