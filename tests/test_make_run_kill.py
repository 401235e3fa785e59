"""`make run` survives pool processes killed in the middle of a task, as the kernel's OOM killer
does it: the real stack of scripts/devserver.py (embedded Redis, moto's S3, gunicorn, a Celery
worker on every queue, beat, Flower) on free ports and a fresh var dir.

Every export completes, each clip is in the export bucket once, an export submitted after the
kills completes too (the worker is not wedged), and Flower's broker page lists the queues.
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from tests import mediagen
from tests.exports.conftest import ORIGIN_MS, export_body
from tests.servers import ROOT, free_port, pool_children, wait_for, wait_for_port

pytestmark = pytest.mark.slow

PYTHON = str(Path(sys.executable).parent / "python")
EXPORTS = 4
KILLS = 3
FLOWER_AUTH = "ops:run-kill"
URL = "/resource/v1/i/export-to-s3dir"


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        children = pool_children(todo.pop())
        found.update(children)
        todo.extend(children)
    return found


class RunStack:
    """scripts/devserver.py as `make run` starts it, after the Makefile's `migrate` steps; Flower
    behind FLOWER_BASIC_AUTH=flower_auth (None: open, as `make run` leaves it)."""

    def __init__(self, var_dir: Path, *, flower_auth: str | None = FLOWER_AUTH, **extra_env):
        self.var_dir = var_dir
        self.web_port, self.flower_port, self.s3_port = free_port(), free_port(), free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.flower = f"http://127.0.0.1:{self.flower_port}"
        self.s3_url = f"http://127.0.0.1:{self.s3_port}"
        # the suite's own settings (its var dir, database, broker, S3 endpoint) stay out
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DJANGO_", "CELERY_", "RESOURCED_", "FLOWER_", "AWS_", "EXPORT_"))
               and k not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
        env.update(
            DJANGO_SETTINGS_MODULE="resourced.settings.base",
            RESOURCED_VAR_DIR=str(var_dir),
            RESOURCED_WEB_ADDR=f"127.0.0.1:{self.web_port}",
            RESOURCED_FLOWER_PORT=str(self.flower_port),
            RESOURCED_S3_ADDR=f"127.0.0.1:{self.s3_port}",
            PYTHONUNBUFFERED="1",
        )
        if flower_auth:
            env["FLOWER_BASIC_AUTH"] = flower_auth
        env.update({k: str(v) for k, v in extra_env.items()})
        self.env = env
        from resourced.embedded_broker import broker_url

        self.broker_url = broker_url(var_dir)
        for command in (["migrate", "--noinput", "-v", "0"], ["collectstatic", "--noinput", "-v", "0"]):
            subprocess.run([PYTHON, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=300)
        self.log_path = var_dir / "make-run.log"
        self.log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen([PYTHON, "scripts/devserver.py"], cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.seen: set[int] = set()  # every process of the stack seen so far, for the final clean-up

    def read_log(self, tail: int = 6000) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def wait_running(self, timeout: float = 120) -> None:
        def running():
            if self.process.poll() is not None:
                raise AssertionError(f"make run exited with {self.process.returncode}:\n{self.read_log()}")
            return "resourced is running" in self.read_log(tail=10**7)

        wait_for(running, timeout, "make run up")
        wait_for_port(self.flower_port, 60, self.process)

    def worker_pid(self) -> int:
        for pid in pool_children(self.process.pid):
            if "worker" in cmdline(pid) and any(part.endswith("celery") for part in cmdline(pid)):
                return pid
        raise AssertionError(f"no celery worker under make run:\n{self.read_log()}")

    def remember_processes(self) -> None:
        self.seen |= descendants(self.process.pid)

    def active_tasks(self) -> list[str]:
        """The names of the tasks the worker's pool runs now (Celery's inspect, through the stack's broker)."""
        from celery import Celery

        probe = Celery("probe", broker=self.broker_url, set_as_current=False)
        try:
            replies = probe.control.inspect(timeout=1.0, limit=1).active() or {}  # one worker: no need to wait on
        finally:
            probe.close()
        return [task["name"] for tasks in replies.values() for task in tasks or []]

    def session_id(self) -> str:
        out = subprocess.run([PYTHON, "manage.py", "createsession", "--user", "run-kill@example.com"], cwd=ROOT,
                             env=self.env, check=True, capture_output=True, text=True, timeout=120).stdout
        session = out.strip()
        assert len(session) == 32, out
        return session

    def s3(self):
        return boto3.client("s3", endpoint_url=self.s3_url, aws_access_key_id="resourced",
                            aws_secret_access_key="resourced-secret", region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def stop(self) -> None:
        self.remember_processes()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for pid in [self.process.pid, *self.seen]:  # whatever is left, group by group
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait()
        self.log.close()


@pytest.fixture
def stack(log_dir):
    # a short var dir: the embedded broker's unix socket path lives under it
    var_dir = Path(tempfile.mkdtemp(prefix="rs-run-"))
    run = RunStack(var_dir, RESOURCED_FAULT_INJECTION=json.dumps({"delay": {"encode": 3}}),
                   # the kills may land on the same export more than once: the attempt budget is not under test
                   EXPORT_MAX_ATTEMPTS=10)
    try:
        run.wait_running()
        yield run
    finally:
        run.stop()
        kept = shutil.copy(run.log_path, log_dir / f"make-run-{var_dir.name}.log")
        print(f"make run log ({kept}):\n{run.read_log(4000)}")
        shutil.rmtree(var_dir, ignore_errors=True)


def upload_recording(s3, duration_s: int = 24) -> str:
    prefix = f"mp4/PEER{uuid.uuid4().hex[:8].upper()}/rec-run-kill/1"
    with tempfile.TemporaryDirectory() as tmp:
        manifest = mediagen.make_dash(tmp, duration_s=duration_s, width=640, height=360)
        for path in Path(tmp).rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), "recordings", f"{prefix}/{path.relative_to(tmp).as_posix()}")
    return f"{prefix}/{Path(manifest).name}"


def test_make_run_survives_pool_processes_killed_during_encode(stack):
    http = requests.Session()
    session = stack.session_id()
    wait_for(lambda: http.get(f"{stack.web}/healthz", timeout=10).status_code == 200, 90, "healthz 200")
    s3 = stack.s3()
    live_path = upload_recording(s3)
    peer = live_path.split("/")[1]

    def submit(index: int) -> tuple[str, dict]:
        body = export_body(live_path, session, export_type=1, StartPos=ORIGIN_MS + 2000 + 1000 * index,
                           Duration=4000, FileName=f"clip-{index}")
        answer = http.post(f"{stack.web}{URL}", json=body, timeout=30).json()
        assert answer["ErrorCode"] == 1, answer
        return answer["TaskId"], body

    def state(task_id: str) -> dict:
        return http.get(f"{stack.web}{URL}/{task_id}", headers={"X-Session-Id": session}, timeout=30).json()

    submitted = [submit(i) for i in range(EXPORTS)]
    worker = stack.worker_pid()
    stack.remember_processes()
    kills: list[dict] = []
    deadline = time.monotonic() + 240
    while len(kills) < KILLS and time.monotonic() < deadline:
        states = {task_id: state(task_id) for task_id, _ in submitted}
        encoding = [t for t, s in states.items() if s["ErrorCode"] == 1 and s["Stage"] == "encode"]
        if not encoding:
            if all(s["ErrorCode"] != 1 for s in states.values()):
                break  # every export is done: no more to kill in
            time.sleep(0.1)
            continue
        active = stack.active_tasks()
        if not active:  # the pool is between tasks: a kill now would interrupt nothing
            time.sleep(0.1)
            continue
        victims = pool_children(worker)
        assert victims, "the worker has pool processes"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        kills.append({"at": round(time.monotonic() - stack.started, 1), "encoding": encoding, "active": active,
                      "pids": victims})
        # the pool is back (new processes) and the re-delivered tasks have started again
        wait_for(lambda killed=set(victims): set(pool_children(worker)) - killed, 30, "pool respawned")
        stack.remember_processes()
        time.sleep(1.5)
    print("kills:", json.dumps(kills))
    assert len(kills) >= KILLS, f"only {len(kills)} kills landed in encode: {kills}\n{stack.read_log()}"

    finals = {}
    for task_id, _body in submitted:
        finals[task_id] = wait_for(lambda t=task_id: (s := state(t))["ErrorCode"] != 1 and s, 240,
                                   f"export {task_id} final")
    bad = {t: s for t, s in finals.items() if s["ErrorCode"] != 5}
    assert not bad, f"exports not ready after the kills: {bad}\n{stack.read_log()}"

    # the worker is not wedged: a fresh export goes through
    fresh_id, _ = submit(EXPORTS)
    fresh = wait_for(lambda: (s := state(fresh_id))["ErrorCode"] != 1 and s, 120, "the export after the kills")
    assert fresh["ErrorCode"] == 5, f"{fresh}\n{stack.read_log()}"
    finals[fresh_id] = fresh

    # each clip exactly once in the export bucket, nothing else beside them
    listed = s3.list_objects_v2(Bucket="export", Prefix=f"export/{peer}/").get("Contents", [])
    keys = sorted(o["Key"] for o in listed)
    expected = sorted(s["VideoPath"].lstrip("/") for s in finals.values())  # /<dir>/<peer>/<file>: a key of "export"
    assert len(keys) == len(set(keys)) == EXPORTS + 1, keys
    assert keys == expected, (keys, [s["VideoPath"] for s in finals.values()])

    # Flower's broker page works on the embedded Redis and lists the queues
    auth = {"Authorization": "Basic " + base64.b64encode(FLOWER_AUTH.encode()).decode()}
    assert http.get(f"{stack.flower}/broker", timeout=30).status_code == 401, "FLOWER_BASIC_AUTH applies"
    # Flower asked the worker for its queues when it started, maybe before the worker was up: ask again
    refresh = http.get(f"{stack.flower}/api/workers", params={"refresh": "1"}, headers=auth, timeout=30)
    assert refresh.status_code == 200, refresh.text[:2000]
    page = http.get(f"{stack.flower}/broker", headers=auth, timeout=30)
    assert page.status_code == 200, page.text[:2000]
    queues = re.findall(r'<tr id="([^"]+)"', page.text)
    print("Flower's broker page lists:", queues)
    assert {"default", "media.io", "media.cpu"} <= set(queues), page.text[-3000:]
