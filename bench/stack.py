"""The production stack of the benchmarks, on loopback.

PostgreSQL, Redis, moto's S3 server (bench/s3server.py: byte counting at the server side, no proxy
in between), gunicorn with bench.settings (production settings + one constant view), and per host
the two workers of deploy/start: an io worker (default, media.io, restore, callbacks) and a cpu
worker (media.cpu), both with the same RESOURCED_WORKER_HOSTNAME and EXPORT_WORK_DIR.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import mediagen  # noqa: E402
from tests.servers import (  # noqa: E402
    BIN, EmbeddedRedis, PostgresServer, RedisServer, free_port, pool_children, production_env, stop_process,
    wait_for_port,
)

ORIGIN_MS = int(mediagen.DEFAULT_ORIGIN.timestamp() * 1000)
SOURCE_BUCKET = "recordings"
DEST_BUCKET = "export"
IMGBED_BUCKET = "imgbed"
HOST = "benchhost"


class CountingS3:
    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"s3-{self.port}.log", "wb")
        self.process = subprocess.Popen([str(BIN / "python"), "-m", "bench.s3server", str(self.port)], cwd=ROOT,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, 30, self.process)

    def requests(self, reset: bool = False) -> list[list]:
        with urllib.request.urlopen(f"{self.url}/__bench__/requests", timeout=30) as answer:
            items = json.loads(answer.read())
        if reset:
            self.reset()
        return items

    def set_delay(self, ms: float) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/__bench__/delay?ms={ms}", method="POST"),
                               timeout=30).read()

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/__bench__/reset", method="POST"), timeout=30).read()

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


class CeleryWorker:
    """One `celery worker` as deploy/start/worker-io or worker-cpu starts it."""

    QUEUES = {"io": "default,media.io,restore,callbacks", "cpu": "media.cpu",
              "all": "default,media.io,media.cpu,restore,callbacks"}  # "all": the one worker of make run

    def __init__(self, env: dict, log_dir: Path, *, kind: str, concurrency: int, app: str = "resourced"):
        queues = self.QUEUES[kind]
        self.nodename = f"{kind}@{HOST}"
        args = [str(BIN / "celery"), "-A", app, "worker", "--hostname", self.nodename, "--queues", queues,
                "--pool", "prefork", "--concurrency", str(concurrency), "--loglevel", "INFO", "--task-events",
                "--without-mingle", "--without-gossip"]
        if kind == "cpu":
            args += ["--max-tasks-per-child", "100"]
        self.log_path = log_dir / f"worker-{kind}.log"
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, cwd=ROOT, env=dict(env, RESOURCED_WORKER_HOSTNAME=HOST),
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def pids(self) -> list[int]:
        return [self.process.pid, *pool_children(self.process.pid)]

    def stop(self) -> None:
        stop_process(self.process, timeout=30)
        self.log.close()


class Web:
    def __init__(self, env: dict, log_dir: Path, *, workers: int, threads: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / "gunicorn.log", "ab")
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), "resourced.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
             "--threads", str(threads), "--timeout", "60", "--access-logfile", "-", "--error-logfile", "-",
             "--worker-tmp-dir", "/dev/shm"],
            cwd=ROOT, env=dict(env, DJANGO_SETTINGS_MODULE=env.get("BENCH_WEB_SETTINGS", "bench.settings")), stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, 60, self.process)

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def _sqlite_value(value):
    """SQLite's text for a JSON column or a timestamp, as psycopg would answer them."""
    from datetime import datetime, timezone

    if isinstance(value, str) and value[:1] == "{":
        return json.loads(value)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[13] == ":":
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return value


class BenchStack:
    """embedded=False: the production stack (PostgreSQL, Redis, an io and a cpu worker);
    embedded=True: the `make run` stack (SQLite and the embedded Redis under the var dir, one worker
    on every queue with its default concurrency, the base settings)."""

    def __init__(self, base: Path, *, embedded: bool = False):
        self.base = base
        self.embedded = embedded
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.work_dir = base / "work"
        self.s3 = CountingS3(self.logs)
        common = dict(AWS_ACCESS_KEY_ID="bench-access", AWS_SECRET_ACCESS_KEY="bench-secret",
                      PROMETHEUS_MULTIPROC_DIR=base / "var" / "prometheus", EXPORT_WORK_DIR=self.work_dir,
                      EXPORT_SATURATION_LIMIT=1000000000, API_SUBMIT_RATE="")  # the bench submits as fast as it can
        if embedded:
            (base / "var").mkdir(parents=True, exist_ok=True)
            self.postgres = None
            self.redis = EmbeddedRedis(base / "var", self.logs)
            self.env = production_env(
                base, database_url=f"sqlite:///{base / 'var' / 'resourced.sqlite3'}", broker_url=self.redis.url,
                s3_url=self.s3.url, settings_module="resourced.settings.base", BENCH_WEB_SETTINGS="bench.settings_embedded",
                **common)
        else:
            self.postgres = PostgresServer(base)
            self.redis = RedisServer(base)
            self.env = production_env(base, database_url=self.postgres.url, broker_url=self.redis.url,
                                      s3_url=self.s3.url, LOG_JSON="true", **common)
        (base / "var" / "prometheus").mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("ensurebuckets")
        # a default quota that lets the benchmark submit as much as it likes
        self.sql("INSERT INTO exports_quota (scope, subject, max_active_exports, max_waiting, max_clip_ms, "
                 "max_minutes_per_day, note) VALUES ('default', '', 1000000000, 1000000000, 7200000, 2000000000, 'bench') "
                 "ON CONFLICT (scope, subject) DO UPDATE SET max_active_exports = EXCLUDED.max_active_exports, "
                 "max_waiting = EXCLUDED.max_waiting, max_minutes_per_day = EXCLUDED.max_minutes_per_day")
        self.session_id = self.manage("createsession", "--user", "bench@example.com").strip()
        self.web: Web | None = None
        self.workers: list[CeleryWorker] = []
        self.s3_client = self._client()

    # --- parts ---------------------------------------------------------------------------------
    def _client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.s3.url, aws_access_key_id="bench-access",
                            aws_secret_access_key="bench-secret", region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))

    def manage(self, *args: str) -> str:
        result = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def sql(self, query: str, *params):
        """One statement on a connection kept open (autocommit), so that polling stays cheap."""
        if self.embedded:
            import sqlite3

            if getattr(self, "_conn", None) is None:
                self._conn = sqlite3.connect(self.base / "var" / "resourced.sqlite3", isolation_level=None,
                                             timeout=30, check_same_thread=False)
            rows = self._conn.execute(query.replace("%s", "?"), params).fetchall()
            return [tuple(_sqlite_value(v) for v in row) for row in rows]
        import psycopg

        if getattr(self, "_conn", None) is None or self._conn.closed:
            self._conn = psycopg.connect(self.postgres.url.replace("postgres://", "postgresql://"), autocommit=True)
        with self._conn.cursor() as cursor:
            cursor.execute(query, params)
            return cursor.fetchall() if cursor.description else None

    def start_web(self, workers: int = 2, threads: int = 4) -> Web:
        self.web = Web(self.env, self.logs, workers=workers, threads=threads)
        return self.web

    def start_workers(self, *, io: int = 4, cpu: int = 2, app: str = "resourced") -> None:
        from celery import Celery

        if self.embedded:  # as scripts/devserver.py starts it
            self.workers = [CeleryWorker(self.env, self.logs, kind="all", concurrency=io, app=app)]
        else:
            self.workers = [CeleryWorker(self.env, self.logs, kind="io", concurrency=io, app=app),
                            CeleryWorker(self.env, self.logs, kind="cpu", concurrency=cpu, app=app)]
        probe = Celery(broker=self.redis.url)
        try:
            deadline = time.monotonic() + 90
            waiting = {w.nodename for w in self.workers}
            while waiting:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers {waiting} did not answer a ping")
                for w in self.workers:
                    if w.process.poll() is not None:
                        raise RuntimeError(f"worker {w.nodename} exited: see {w.log_path}")
                for reply in probe.control.ping(destination=list(waiting), timeout=0.5) or []:
                    waiting -= set(reply)
        finally:
            probe.close()

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []

    # --- data ----------------------------------------------------------------------------------
    def upload_recording(self, manifest: Path, prefix: str) -> str:
        """Every file of a local recording under `prefix/` in the source bucket, public-read (the
        ffmpeg baseline reads it over plain HTTP); returns the manifest's key."""
        local = manifest.parent
        paths = [p for p in local.rglob("*") if p.is_file() and p.name != "DONE.json"]

        def put(path: Path) -> None:
            self.s3_client.upload_file(str(path), SOURCE_BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}",
                                       ExtraArgs={"ACL": "public-read"})

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, paths))
        return f"{prefix}/{manifest.name}"

    def export(self, task_id: str) -> dict:
        rows = self.sql("SELECT status, stage, error_code, error_message, created_at, started_at, finished_at, timings, "
                        "bytes_downloaded, bytes_needed, output_bytes, lead_ms, output_duration_ms, video_key "
                        "FROM exports_export WHERE task_id = %s", task_id)
        keys = ("status", "stage", "code", "message", "created_at", "started_at", "finished_at", "timings",
                "bytes_downloaded", "bytes_needed", "output_bytes", "lead_ms", "output_duration_ms", "video_key")
        return dict(zip(keys, rows[0]))

    def stop(self) -> None:
        if getattr(self, "_conn", None) is not None:
            self._conn.close()
        self.stop_workers()
        if self.web:
            self.web.stop()
        self.s3.stop()
        self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()
