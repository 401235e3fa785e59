"""`make run`: the whole service in the foreground on embedded defaults.

Starts the local S3-compatible endpoint (moto's server) unless RESOURCED_S3_ENDPOINT_URL is set,
then gunicorn, one Celery worker on every queue, Celery beat and Flower. Prints the URLs. Ctrl-C or
SIGTERM stops every process it started (each runs in its own process group).
"""

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
S3_ADDR = "127.0.0.1:9000"

children: list[tuple[str, subprocess.Popen]] = []
stopping = False


def log(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def start(name: str, argv: list[str], env: dict) -> subprocess.Popen:
    process = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
    children.append((name, process))
    return process


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


def stop_all(*_args) -> None:
    global stopping
    if stopping:
        return
    stopping = True
    log("stopping every process")
    # SIGTERM to each leader: gunicorn and Celery shut their own children down gracefully.
    for _name, process in reversed(children):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for _name, process in children:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for _name, process in children:  # whatever is left of each process group
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    log("stopped")


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "resourced.settings.base")
    env.setdefault("CALLBACK_ALLOW_PRIVATE", "true")  # the embedded setup runs the callback loop on loopback
    env.setdefault("PYTHONUNBUFFERED", "1")
    manage = [str(BIN / "python"), "manage.py"]
    signal.signal(signal.SIGTERM, lambda *a: (stop_all(), sys.exit(0)))
    signal.signal(signal.SIGINT, lambda *a: (stop_all(), sys.exit(0)))
    try:
        if "RESOURCED_S3_ENDPOINT_URL" not in os.environ:
            env["RESOURCED_S3_ENDPOINT_URL"] = f"http://{S3_ADDR}"
            host, port = S3_ADDR.split(":")
            start("s3", [str(BIN / "moto_server"), "-H", host, "-p", port], env)
            wait_for_port(host, int(port), 30, "the local S3 endpoint")
        subprocess.run(manage + ["ensurebuckets"], cwd=ROOT, env=env, check=True)
        host, port = WEB_ADDR.split(":")
        # request metrics of the previous run's gunicorn processes (prometheus_client multiprocess files)
        shutil.rmtree(env.get("PROMETHEUS_MULTIPROC_DIR", ROOT / "var" / "prometheus"), ignore_errors=True)
        start(
            "web",
            [str(BIN / "gunicorn"), "resourced.wsgi", "-b", WEB_ADDR, "-w", env.get("WEB_CONCURRENCY", "2"),
             "--threads", "4", "--access-logfile", "-", "--graceful-timeout", "10"],
            env,
        )
        start("worker", [str(BIN / "celery"), "-A", "resourced", "worker", "-l", "INFO",
                         "-Q", "default,media.io,media.cpu,restore,callbacks", "-E"], env)
        start("beat", [str(BIN / "celery"), "-A", "resourced", "beat", "-l", "INFO",
                       "-s", str(ROOT / "var" / "celerybeat-schedule")], env)
        # Flower reads FLOWER_BASIC_AUTH from its environment: the password stays out of `ps`
        start("flower", [str(BIN / "celery"), "-A", "resourced", "flower", "--address=127.0.0.1",
                         f"--port={FLOWER_PORT}"], env)
        wait_for_port(host, int(port), 60, "gunicorn")
        base = f"http://{WEB_ADDR}"
        s3 = env["RESOURCED_S3_ENDPOINT_URL"] or "AWS S3"
        broker = env.get("CELERY_BROKER_URL", "embedded (filesystem transport under var/broker)")
        database = urlparse(env["DATABASE_URL"]).scheme if env.get("DATABASE_URL") else "SQLite under var/"
        print(
            "\n"
            f"  resourced is running\n"
            f"  API        {base}/resource/v1/i/export-to-s3dir\n"
            f"  health     {base}/healthz\n"
            f"  admin      {base}/admin/   (python manage.py createsuperuser to log in)\n"
            f"  API docs   {base}/api/docs/   schema {base}/api/schema/\n"
            f"  Flower     http://127.0.0.1:{FLOWER_PORT}/\n"
            f"  S3         {s3}\n"
            f"  database   {database}; broker {broker.split('://')[0]}\n"
            f"  a session  .venv/bin/python manage.py createsession --user you@example.com\n"
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
