"""Worker hosts as deploy/ runs them, on one machine.

A host is the pair that deploy/start/worker-io and deploy/start/worker-cpu start, with the same
RESOURCED_WORKER_HOSTNAME and the same EXPORT_WORK_DIR: what a bare-metal host runs under systemd
and what compose runs on one Docker host. Two hosts here differ in both, like two machines.
"""

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.exports.conftest import recordings_dir, uploaded_recordings  # noqa: F401  (fixtures)
from tests.servers import BIN, ROOT

START = ROOT / "deploy" / "start"


def deploy_env(base: dict, **extra) -> dict:
    """`base` (a worker_env) with the venv's commands on PATH, as the start scripts expect."""
    env = dict(base)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Host:
    """worker-io and worker-cpu of one host, each in its own process group."""

    KINDS = ("io", "cpu")

    def __init__(self, name: str, env: dict, log_dir: Path, *, io_concurrency: int = 1, cpu_concurrency: int = 1):
        self.name = name
        self.work_dir = log_dir.parent / f"work-{name}"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.env = deploy_env(
            env,
            RESOURCED_WORKER_HOSTNAME=name,
            EXPORT_WORK_DIR=self.work_dir,
            WORKER_IO_CONCURRENCY=io_concurrency,
            WORKER_CPU_CONCURRENCY=cpu_concurrency,
            # no peers to sync with at start (mingle would wait a second for replies that never come)
            CELERY_WORKER_ARGS="--without-mingle --without-gossip",
        )
        self.logs: dict[str, Path] = {}
        self.processes: dict[str, subprocess.Popen] = {}
        for kind in self.KINDS:
            path = log_dir / f"host-{name}-{kind}-{time.monotonic_ns()}.log"
            self.logs[kind] = path
            with open(path, "wb") as log:
                self.processes[kind] = subprocess.Popen(
                    [str(START / f"worker-{kind}")], cwd="/", env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def nodename(self, kind: str) -> str:
        return f"{kind}@{self.name}"

    @property
    def nodenames(self) -> list[str]:
        return [self.nodename(kind) for kind in self.KINDS]

    def read_logs(self) -> str:
        return "\n".join(f"--- {kind} ---\n" + path.read_text(errors="replace")[-4000:] for kind, path in self.logs.items())

    def wait_ready(self, app, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(self.nodenames)
        while waiting and time.monotonic() < deadline:
            for kind, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"worker-{kind} of {self.name} exited with {process.returncode}:\n"
                                       f"{self.read_logs()}")
            for reply in app.control.ping(destination=sorted(waiting), timeout=0.5) or []:
                waiting -= set(reply)
        if waiting:
            raise TimeoutError(f"{sorted(waiting)} did not answer within {timeout} s:\n{self.read_logs()}")

    def kill(self) -> None:
        """The machine is gone: SIGKILL to every process of both workers, no warm shutdown."""
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)

    def stop(self) -> None:
        stop_hosts([self])


def stop_hosts(hosts) -> None:
    """SIGTERM to every worker at once (a warm shutdown takes seconds), then wait for each."""
    processes = [p for host in hosts for p in host.processes.values() if p.poll() is None]
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def other_nodes(app, mine: set[str]) -> list[str]:
    """Every worker that answers a ping, except `mine`."""
    replies = app.control.ping(timeout=1.0) or []
    return sorted({node for reply in replies for node in reply} - mine)


def set_consuming(app, nodes: list[str], queue: str, consume: bool) -> None:
    """Tell workers to stop (or start again) taking tasks from a shared queue, and wait for their yes."""
    if not nodes:
        return
    call = app.control.add_consumer if consume else app.control.cancel_consumer
    replies = call(queue, destination=nodes, reply=True, timeout=5.0) or []
    answered = {node for reply in replies for node in reply}
    assert answered == set(nodes), f"{sorted(set(nodes) - answered)} did not answer {call.__name__}({queue})"


@pytest.fixture
def two_hosts(celery_worker, log_dir):
    """Hosts A and B, and only they download: every other worker (the session's `celery_worker`,
    which consumes every shared queue) stops consuming media.io for the test, so that the host
    that holds an export's work dir is always one of these two. It is running in every case:
    the assertions are made with it there."""
    from exports.queues import QUEUE_MEDIA_IO
    from resourced.celery import app
    from tests.conftest import worker_env

    suffix = uuid.uuid4().hex[:6]
    hosts = {}
    try:
        for letter in ("a", "b"):
            host = Host(f"host-{letter}-{suffix}", worker_env(), log_dir)
            hosts[host.name] = host
        for host in hosts.values():
            host.wait_ready(app)
        others = other_nodes(app, {n for h in hosts.values() for n in h.nodenames})
        set_consuming(app, others, QUEUE_MEDIA_IO, consume=False)
        try:
            yield hosts
        finally:
            set_consuming(app, others, QUEUE_MEDIA_IO, consume=True)
    finally:
        stop_hosts(hosts.values())
