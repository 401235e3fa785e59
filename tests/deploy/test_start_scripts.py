"""The start scripts and the healthcheck, run: the processes they start answer, and refuse what
they should refuse. The suite's settings and embedded broker stand in for production's."""

import base64
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.conftest import START, deploy_env
from tests.servers import ROOT, free_port, wait_for_port

HEALTHCHECK = ROOT / "deploy" / "healthcheck"
pytestmark = pytest.mark.django_db(transaction=True)


def start(kind: str, env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen([str(START / kind)], cwd="/", env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def terminate(process: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM to the exec'd process alone, as systemd (KillMode=mixed) and docker do."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def healthcheck(kind: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(HEALTHCHECK), kind], cwd="/", env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(s3_server):
    from tests.conftest import worker_env

    return deploy_env(worker_env(), CELERY_WORKER_ARGS="--without-mingle --without-gossip")


@pytest.mark.parametrize("value", [None, "", "nocolon", "ops:secret,:nouser"])
def test_flower_refuses_to_start_without_basic_auth(env, value):
    env = dict(env)
    env.pop("FLOWER_BASIC_AUTH", None)
    if value is not None:
        env["FLOWER_BASIC_AUTH"] = value
    result = subprocess.run([str(START / "flower")], cwd="/", env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 78, result.stderr
    assert "FLOWER_BASIC_AUTH" in result.stderr and "refusing to start" in result.stderr


def test_flower_asks_for_basic_auth(env, log_dir):
    port = free_port()
    env = dict(env, FLOWER_BASIC_AUTH="ops:s3cret,second:pw", FLOWER_PORT=str(port), FLOWER_ADDRESS="127.0.0.1")
    process = start("flower", env, log_dir / f"flower-{port}.log")
    try:
        wait_for_port(port, 60, process)
        assert get(f"http://127.0.0.1:{port}/")[0] == 401
        assert get(f"http://127.0.0.1:{port}/", "ops:wrong")[0] == 401
        assert get(f"http://127.0.0.1:{port}/", "ops:s3cret")[0] == 200
        assert get(f"http://127.0.0.1:{port}/workers", "second:pw")[0] == 200
        assert healthcheck("flower", env).returncode == 0  # /healthcheck, the page served without auth
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"s3cret" not in cmdline, "the password is not on the command line"
    finally:
        terminate(process)


def test_web_migrates_empties_stale_metrics_and_serves_healthz(env, log_dir, tmp_path, celery_worker):
    port = free_port()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_12345.db").write_bytes(b"stale")
    env = dict(env, RUN_MIGRATIONS="1", WEB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1", WEB_THREADS="2",
               PROMETHEUS_MULTIPROC_DIR=str(metrics))
    log = log_dir / f"web-{port}.log"
    process = start("web", env, log)
    try:
        wait_for_port(port, 90, process)
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200, body  # the session's worker answers on both media queues
        assert json.loads(body)["status"] == "ok"
        assert healthcheck("web", env).returncode == 0
        assert not (metrics / "counter_12345.db").exists(), "counters of the last run removed at start"
        assert "No migrations to apply" in log.read_text()
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"gunicorn" in cmdline and b"bash" not in cmdline.split(b"\0")[0], "exec: gunicorn replaced the shell"
    finally:
        assert terminate(process) == 0, log.read_text()[-3000:]
    assert healthcheck("web", env).returncode != 0


def test_beat_schedules_the_sweep_from_the_database(env, log_dir):
    from django_celery_beat.models import PeriodicTask

    env = dict(env, EXPORT_SWEEP_INTERVAL_SECONDS="1")
    log = log_dir / f"beat-{time.monotonic_ns()}.log"
    process = start("beat", env, log)
    try:
        deadline = time.monotonic() + 60
        while "Sending due task exports-sweep-stale" not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        assert terminate(process) == 0  # beat writes last_run_at back when it stops
    assert "DatabaseScheduler" in log.read_text()
    task = PeriodicTask.objects.get(name="exports-sweep-stale")
    assert task.task == "exports.sweep_stale" and task.last_run_at is not None
    assert healthcheck("beat", env).returncode == 0
    stale = healthcheck("beat", dict(env, BEAT_HEALTH_MAX_AGE="0"))
    assert stale.returncode != 0 and "last ran" in stale.stderr
