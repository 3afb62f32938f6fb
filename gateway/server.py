"""Serving the gateway with uvicorn, on a socket bound before uvicorn starts.

The socket is bound here so that an address in use is one sentence (uvicorn would log the error
and exit on its own). uvicorn's access log is off: it prints request lines with their query
strings, and those of ``/oauth/*`` hold authorisation codes, states and signatures.

``workers`` above 1 forks that many serving processes after the socket is bound and before any
thread starts, all accepting on the one socket (the kernel spreads connections between them); the
fleet's per-process caches reset in each child (:mod:`forks`). The first process stops the others
when it stops, and a child whose first process is gone (killed outright) stops by itself; a child
that fails stops the gateway with an error (:func:`_watch_children`).

SIGTERM and SIGINT end a process by :class:`SystemExit` once uvicorn has shut it down gracefully:
uvicorn raises the signal it caught again after its shutdown, and with the default handler that
would kill the first process before it stopped the others (left serving on the port, orphaned)
and before ``atexit`` sent its last metrics.

The store and the broker need not answer for the gateway to start: what must be brought up
before them (a :class:`gateway.health.Preparation`) is tried once before serving and then in the
background until it passes, while ``/readyz`` answers 503.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from types import FrameType

import uvicorn

from spark_integrations import logs, metrics
from spark_integrations.errors import ServiceError
from spark_integrations.gateway.app import create_app
from spark_integrations.gateway.health import Preparation
from spark_integrations.settings import Settings

__all__ = ["bind", "serve"]

logger = logging.getLogger("gateway")

#: Seconds between a child's looks at whether the first process is still there.
PARENT_CHECK_EVERY = 1.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or one :class:`ServiceError`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServiceError(f"cannot listen on {host}:{port} ({exc.strerror}).") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ServiceError(f"cannot listen on {host}:{port} ({exc.strerror or exc}).") from None
    sock.set_inheritable(True)
    return sock


def serve(
    settings: Settings,
    host: str,
    port: int,
    preparation: Preparation | None = None,
    workers: int = 1,
) -> None:
    """Serve the gateway from ``workers`` processes until SIGTERM or SIGINT.

    Raises:
        ServiceError: the address cannot be listened on, or a serving process ended on its
            own (the others are stopped with it).
        ConfigurationError: a step of ``preparation`` found the configuration wrong.
    """
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    logs.configure(
        settings.operations.log_format,
        level=logging.INFO,
        stream=sys.stderr,
        text_format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if preparation is not None:
        try:
            preparation.run_once(first=True)
        except BaseException:
            sock.close()
            raise
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    logger.info(
        "gateway listening on http://%s:%s (public URL %s, %d process%s)",
        shown,
        bound_port,
        settings.public_url,
        workers,
        "" if workers == 1 else "es",
    )
    children: list[int] = []
    lost: list[int] = []
    stopping = threading.Event()
    _exit_on_signals()
    try:
        first = os.getpid()
        for _ in range(workers - 1):
            pid = os.fork()
            if pid == 0:
                _serve_child(settings, sock, preparation, first)
            children.append(pid)
        _watch_children(children, stopping, lost)
        _serve_here(settings, sock, preparation)
    except SystemExit:
        if not lost:
            raise
    finally:
        stopping.set()
        _stop_children(children)
        sock.close()
    if lost:
        raise ServiceError(
            f"gateway process {lost[0]} ended on its own, so the gateway stopped; start it again."
        )


def _exit_on_signals() -> None:
    """SIGTERM and SIGINT raise :class:`SystemExit` (uvicorn replaces this while it serves and
    calls it again once it has shut down), so ``finally`` blocks and ``atexit`` run."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _serve_child(
    settings: Settings, sock: socket.socket, preparation: Preparation | None, first: int
) -> None:
    """A forked serving process: serve until stopped, then leave without the parent's exits
    (``os._exit``: no ``atexit``, so what it counted since the last flush is sent here)."""
    code = 0
    try:
        _watch_parent(first)
        _serve_here(settings, sock, preparation)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        logger.exception("a gateway process failed")
        code = 1
    finally:
        try:
            metrics.flush()
        finally:
            os._exit(code)


def _watch_parent(first: int) -> None:
    """Stop this child (SIGTERM to itself: uvicorn's graceful shutdown) once the first process
    is gone, killed without stopping its children, so none is left serving on the port."""

    def watch() -> None:
        while os.getppid() == first:
            time.sleep(PARENT_CHECK_EVERY)
        logger.warning("the first gateway process is gone; this one stops too")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="gateway-parent-watch", daemon=True).start()


def _watch_children(children: list[int], stopping: threading.Event, lost: list[int]) -> None:
    """Stop the gateway when a child fails (killed, out of memory, an error): rather than
    serve on with fewer processes unnoticed, it exits with an error so that whatever runs it
    starts it again whole. A child that stopped cleanly (status 0: it was sent SIGTERM or
    SIGINT itself, as a stop of the whole process group does) is only logged. Threads in the
    first process, started once every child is forked. A child is waited for without being
    reaped (``WNOWAIT``): its id stays its own until :func:`_stop_children` reaps it, so no
    signal can reach a process that took the id over."""
    if not hasattr(os, "waitid"):  # not on every platform; the gateway then just serves on
        return

    def watch(pid: int) -> None:
        try:
            ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            return
        if stopping.is_set():
            return
        if ended is not None and ended.si_code == os.CLD_EXITED and ended.si_status == 0:
            logger.warning("gateway process %d was stopped; the others serve on", pid)
            return
        lost.append(pid)
        logger.error("gateway process %d ended on its own; the gateway stops", pid)
        os.kill(os.getpid(), signal.SIGTERM)

    for pid in children:
        threading.Thread(target=watch, args=(pid,), name="gateway-child-watch", daemon=True).start()


def _stop_children(children: list[int]) -> None:
    """SIGTERM each child and wait for it; a second signal meanwhile kills those left."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    waiting = list(children)
    while waiting:
        try:
            os.waitpid(waiting[0], 0)
        except ChildProcessError:
            pass
        except SystemExit:  # asked again: stop waiting for graceful shutdowns
            for pid in waiting:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            continue
        waiting.pop(0)


def _serve_here(settings: Settings, sock: socket.socket, preparation: Preparation | None) -> None:
    """Serve on ``sock`` in this process: its own app, and its own preparation thread."""
    config = uvicorn.Config(
        create_app(settings, preparation=preparation),
        # JSON: uvicorn's own lines go to the root's JSON handler instead of its text ones.
        log_config=None
        if settings.operations.log_format == "json"
        else uvicorn.config.LOGGING_CONFIG,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        lifespan="off",
        log_level="info",
        timeout_graceful_shutdown=10,
    )
    if preparation is not None:
        preparation.start()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if preparation is not None:
            preparation.stop()
