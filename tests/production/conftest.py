"""The production stack on loopback: PostgreSQL, Redis, the S3 endpoint behind a fault-injecting
proxy, gunicorn, Celery workers and beat, all with production settings.

These tests talk to the service over HTTP and read its database with psycopg; they never use the
Django test database of the rest of the suite.
"""

import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from tests import mediagen
from tests.faultproxy import FaultProxy
from tests.servers import (
    BIN,
    ROOT,
    Beat,
    Gunicorn,
    PostgresServer,
    RedisServer,
    S3Server,
    Worker,
    find_postgres_bin,
    production_env,
)

ORIGIN_MS = int(mediagen.DEFAULT_ORIGIN.timestamp() * 1000)
SOURCE_BUCKET = "recordings"
DEST_BUCKET = "export"


def _missing_servers() -> str | None:
    import shutil

    missing = [name for name, ok in (("postgresql", find_postgres_bin()), ("redis-server", shutil.which("redis-server")))
               if not ok]
    return ", ".join(missing) if missing else None


class Stack:
    """Everything a production deployment runs, on this machine."""

    def __init__(self, base: Path):
        self.base = base
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresServer(base)
        self.redis = RedisServer(base)
        self.s3 = S3Server(self.logs)
        self.proxy = FaultProxy(self.s3.url)
        self.env = production_env(
            base, database_url=self.postgres.url, broker_url=self.redis.url, s3_url=self.proxy.url,
            settings_module="resourced.settings.faults",
            EXPORT_STALE_SECONDS=8, EXPORT_SWEEP_INTERVAL_SECONDS=2, EXPORT_HEARTBEAT_SECONDS=1,
            EXPORT_MAX_ATTEMPTS=3, CELERY_VISIBILITY_TIMEOUT=60, CELERY_TASK_TIME_LIMIT=50,
            CELERY_TASK_SOFT_TIME_LIMIT=45, S3_CONNECT_TIMEOUT=2, S3_READ_TIMEOUT=2, S3_MAX_ATTEMPTS=3,
            LOG_JSON="false",
        )
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("ensurebuckets")
        self.web = Gunicorn(self.env, self.logs)
        self.workers: list[Worker] = []
        self.beat: Beat | None = None
        self.direct_s3 = self._direct_client()

    def _direct_client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.s3.url, aws_access_key_id="service-access",
                            aws_secret_access_key="service-secret", region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def manage(self, *args: str, extra_env: dict | None = None) -> str:
        result = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=dict(self.env, **(extra_env or {})),
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def start_worker(self, hostname: str, **extra_env) -> Worker:
        env = dict(self.env, **{k: str(v) for k, v in extra_env.items()})
        worker = Worker(env, self.logs, hostname=hostname, concurrency=2)
        from celery import Celery

        probe = Celery(broker=self.redis.url)
        try:
            worker.wait_ready(probe, timeout=60)
        finally:
            probe.close()
        self.workers.append(worker)
        return worker

    def start_beat(self) -> Beat:
        self.beat = Beat(self.env, self.logs)
        return self.beat

    def session_id(self) -> str:
        return self.manage("createsession", "--user", "prod@example.com").strip()

    def sql(self, query: str, *params):
        with psycopg.connect(self.postgres.url.replace("postgres://", "postgresql://")) as conn:
            with conn.cursor() as cursor:
                cursor.execute(query, params)
                return cursor.fetchall() if cursor.description else None

    def post_export(self, body: dict) -> requests.Response:
        return requests.post(f"{self.web.url}/resource/v1/i/export-to-s3dir", json=body, timeout=30)

    def export_state(self, task_id: str) -> dict:
        rows = self.sql("SELECT status, stage, error_code, error_message, attempts, restarts, host, step_hosts, "
                        "idempotency_key, timings FROM exports_export WHERE task_id = %s", task_id)
        status, stage, code, message, attempts, restarts, host, hosts, key, timings = rows[0]
        return {"status": status, "stage": stage, "code": code, "message": message, "attempts": attempts,
                "restarts": restarts, "host": host, "step_hosts": hosts, "key": key, "timings": timings or {}}

    def wait_for(self, task_id: str, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        state = {}
        while time.monotonic() < deadline:
            state = self.export_state(task_id)
            if predicate(state):
                return state
            time.sleep(0.05)
        raise AssertionError(f"export {task_id}: {what} not reached in {timeout} s; last state {state}")

    def wait_final(self, task_id: str, timeout: float = 120) -> dict:
        return self.wait_for(task_id, lambda s: s["status"] in ("ready", "failed", "cancelled"), timeout, "an end")

    def upload_recording(self, name: str, **options) -> str:
        local = self.base / "recordings" / name
        manifest = mediagen.make_dash(str(local), **options)
        peer = "P" + uuid.uuid4().hex[:10].upper()
        prefix = f"mp4/{peer}/rec-{name}/1"
        for path in local.rglob("*"):
            if path.is_file():
                self.direct_s3.upload_file(str(path), SOURCE_BUCKET, f"{prefix}/{path.relative_to(local).as_posix()}")
        return f"{prefix}/{Path(manifest).name}"

    def objects(self, bucket: str, prefix: str) -> list[str]:
        answer = self.direct_s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for item in answer.get("Contents", [])]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.beat:
            self.beat.stop()
        self.web.stop()
        self.proxy.stop()
        self.s3.stop()
        self.redis.stop()
        self.postgres.stop()


@pytest.fixture(scope="session")
def prod_stack(tmp_path_factory):
    missing = _missing_servers()
    if missing:
        pytest.skip(f"{missing} not installed: run `make test` as root on Debian, or apt-get install {missing}")
    stack = Stack(tmp_path_factory.mktemp("prod"))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(prod_stack):
    """The shared stack; the workers and beat a test starts are stopped after it, faults cleared."""
    yield prod_stack
    for worker in prod_stack.workers:
        worker.stop()
    prod_stack.workers.clear()
    if prod_stack.beat:
        prod_stack.beat.stop()
        prod_stack.beat = None
    prod_stack.proxy.configure()


def export_body(live_path: str, session_id: str, **overrides) -> dict:
    body = {
        "ServiceCaller": "mma",
        "StartPos": ORIGIN_MS + 2000,
        "StartTime": "00:00:02",
        "Duration": 3000,
        "LivePath": live_path,
        "SessionId": session_id,
        "export_type": 0,
        "userid": f"u-{uuid.uuid4().hex[:8]}",
        "FileName": f"clip-{uuid.uuid4().hex[:8]}",
    }
    body.update(overrides)
    return body


if sys.platform != "linux":  # /proc and runuser
    pytest.skip("the production stack tests need Linux", allow_module_level=True)


def pytest_collection_modifyitems(config, items):
    """Every test of this folder needs the production servers: mark it (a `pytestmark` in a
    conftest marks nothing), so that `-m production` / `-m "not production"` select them."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.production)
