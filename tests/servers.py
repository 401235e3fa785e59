"""Real servers for the suite, on loopback: the S3-compatible endpoint and Celery workers.

Plain functions and classes (no pytest), so benchmarks and fault tests can use them too.
"""

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
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class S3Server:
    """moto's S3 server, which speaks the S3 HTTP API (multipart, storage classes, restore)."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"s3-{self.port}.log", "wb")
        self.process = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, 30, self.process)

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


class Worker:
    """A real Celery worker process (prefork pool) consuming the given queues."""

    def __init__(self, env: dict, log_dir: Path, *, hostname: str = "testhost",
                 queues: str = "default,media.io,media.cpu,restore,callbacks", concurrency: int = 2,
                 extra_args: tuple[str, ...] = ()):
        self.hostname = hostname
        self.env = dict(env, RESOURCED_WORKER_HOSTNAME=hostname)
        self.log_path = log_dir / f"worker-{hostname}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(BIN / "celery"), "-A", "resourced", "worker", "-l", "INFO", "-n", f"w@{hostname}",
             "-Q", queues, "-c", str(concurrency), "-E", "--without-mingle", "--without-gossip", *extra_args],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def nodename(self) -> str:
        return f"w@{self.hostname}"

    def wait_ready(self, app, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.read_log()[-3000:]}")
            replies = app.control.ping(destination=[self.nodename], timeout=0.5) or []
            if replies:
                return
        raise TimeoutError(f"worker {self.nodename} did not answer within {timeout} s:\n{self.read_log()[-3000:]}")

    def read_log(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        self.log.close()
