"""Production behaviour under faults: PostgreSQL, Redis and the S3 endpoint on loopback, real workers.

Every wait is bounded; every test ends with the export's promises checked: completed exactly once
(one object, one ready row), or failed with the right ErrorCode, never hanging.
"""

import json
import os
import signal
import time

import pytest

from tests.production.conftest import DEST_BUCKET, export_body
from tests.servers import pool_children

STAGES = ["download", "cut", "encode", "thumbnail", "upload"]
DELAY_EACH_STAGE = json.dumps({"delay": {stage: 1.5 for stage in STAGES}})


@pytest.fixture(scope="module")
def live_path(prod_stack):
    return prod_stack.upload_recording("faults", duration_s=10, template="timeline")


def assert_exactly_once(stack, task_id: str, body: dict) -> None:
    state = stack.export_state(task_id)
    assert state["status"] == "ready", state
    ready = stack.sql("SELECT count(*) FROM exports_export WHERE idempotency_key = %s AND status = 'ready'",
                      state["key"])[0][0]
    assert ready == 1
    peer = body["LivePath"].split("/")[1]
    keys = stack.objects(DEST_BUCKET, f"export/{peer}/{body['FileName']}")
    assert len(keys) == 1, keys


def test_an_export_completes_on_postgresql_and_redis(stack, live_path):
    stack.start_worker("prod-a")
    sid = stack.session_id()
    body = export_body(live_path, sid, export_type=1)
    answer = stack.post_export(body).json()
    assert answer["ErrorCode"] == 1, answer
    state = stack.wait_final(answer["TaskId"], timeout=60)
    assert state["status"] == "ready", state
    assert_exactly_once(stack, answer["TaskId"], body)
    again = stack.post_export(body).json()
    assert again["ErrorCode"] == 5 and again["TaskId"] == answer["TaskId"]
    assert again["VideoPath"] == f"/export/{live_path.split('/')[1]}/{body['FileName']}.ts"


@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_of_the_pool_in_each_stage_completes_exactly_once(stack, live_path, stage):
    worker = stack.start_worker("prod-kill", RESOURCED_FAULT_INJECTION=DELAY_EACH_STAGE)
    body = export_body(live_path, stack.session_id(), export_type=1)
    task_id = stack.post_export(body).json()["TaskId"]
    # running: its attempt counted, its time not recorded yet (the thumbnail and the upload run at once: Stage
    # names one of them)
    stack.wait_for(task_id, lambda s: s["attempts"].get(stage) == 1 and stage not in s["timings"], 60,
                   f"{stage} running")
    killed = pool_children(worker.process.pid)
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    state = stack.wait_final(task_id, timeout=90)
    assert state["attempts"][stage] == 2, state  # the killed stage ran again, once
    assert_exactly_once(stack, task_id, body)


def test_redis_restart_with_exports_queued_and_running_loses_none(stack, live_path):
    stack.start_worker("prod-redis", RESOURCED_FAULT_INJECTION=json.dumps({"delay": {"cut": 2, "encode": 1}}))
    stack.start_beat()
    sid = stack.session_id()
    start = export_body(live_path, sid)["StartPos"]
    bodies = [export_body(live_path, sid, StartPos=start + 1000 * i) for i in range(4)]
    task_ids = [stack.post_export(body).json()["TaskId"] for body in bodies]
    stack.wait_for(task_ids[0], lambda s: s["status"] == "running", 30, "first export running")
    queued = stack.sql("SELECT count(*) FROM exports_export WHERE task_id = ANY(%s) AND status = 'queued'", task_ids)
    assert queued[0][0] >= 1, "some exports are still queued when Redis goes down"
    stack.redis.restart(down_seconds=2)
    for task_id, body in zip(task_ids, bodies):
        state = stack.wait_final(task_id, timeout=120)
        assert state["status"] == "ready", state
        assert_exactly_once(stack, task_id, body)


def test_s3_answering_5xx_and_stalling_for_a_share_of_requests_still_completes(stack, live_path):
    stack.start_worker("prod-flaky")
    stack.proxy.configure(error_rate=0.2, stall_rate=0.05, stall_seconds=3)
    sid = stack.session_id()
    start = export_body(live_path, sid)["StartPos"]
    bodies = [export_body(live_path, sid, StartPos=start + 500 * i) for i in range(3)]
    started = time.monotonic()
    task_ids = [stack.post_export(body).json()["TaskId"] for body in bodies]
    for task_id, body in zip(task_ids, bodies):
        state = stack.wait_final(task_id, timeout=150)
        assert state["status"] == "ready", state
        assert_exactly_once(stack, task_id, body)
    counts = stack.proxy.faults.counts
    assert counts["errors"] > 0, counts
    print(f"flaky S3: {counts} in {time.monotonic() - started:.1f} s")


def test_source_storage_down_fails_with_minus_5_after_the_retry_budget(stack, live_path):
    stack.start_worker("prod-src-down")
    stack.proxy.configure(error_rate=1.0, statuses=(503,),
                          match=lambda method, path: path.startswith("/recordings/"))
    started = time.monotonic()
    task_id = stack.post_export(export_body(live_path, stack.session_id())).json()["TaskId"]
    state = stack.wait_final(task_id, timeout=120)
    assert state["status"] == "failed" and state["code"] == -5, state
    assert time.monotonic() - started < 120


def test_destination_refusing_uploads_fails_with_minus_6(stack, live_path):
    stack.start_worker("prod-dst-down")
    stack.proxy.configure(error_rate=1.0, statuses=(500,),
                          match=lambda method, path: method in ("PUT", "POST") and path.startswith(f"/{DEST_BUCKET}/"))
    body = export_body(live_path, stack.session_id())
    task_id = stack.post_export(body).json()["TaskId"]
    state = stack.wait_final(task_id, timeout=120)
    assert state["status"] == "failed" and state["code"] == -6, state
    assert not (stack.base / "work" / task_id).exists()


def test_a_vanished_worker_host_is_restarted_by_beat_and_completes(stack, live_path):
    doomed = stack.start_worker("prod-doomed", RESOURCED_FAULT_INJECTION=json.dumps({"delay": {"encode": 30}}))
    body = export_body(live_path, stack.session_id(), export_type=1)
    task_id = stack.post_export(body).json()["TaskId"]
    stack.wait_for(task_id, lambda s: s["stage"] == "encode", 60, "encode on the doomed host")
    os.killpg(doomed.process.pid, signal.SIGKILL)  # the host vanishes, its work dir with it
    doomed.process.wait()
    stack.workers.remove(doomed)
    stack.start_worker("prod-survivor")
    stack.start_beat()
    state = stack.wait_final(task_id, timeout=120)
    assert state["restarts"] == 1 and state["host"] == "prod-survivor", state
    assert set(state["step_hosts"].values()) == {"prod-survivor"}
    assert_exactly_once(stack, task_id, body)


def test_a_corrupt_segment_fails_with_minus_7_after_bounded_attempts(stack):
    live_path = stack.upload_recording("corrupt", duration_s=6, template="timeline")
    prefix = live_path.rsplit("/", 1)[0]
    segments = sorted(k for k in stack.objects("recordings", prefix) if k.endswith(".m4s") and "init" not in k)
    for key in segments:
        stack.direct_s3.put_object(Bucket="recordings", Key=key, Body=os.urandom(40_000))
    stack.start_worker("prod-corrupt")
    task_id = stack.post_export(export_body(live_path, stack.session_id())).json()["TaskId"]
    state = stack.wait_final(task_id, timeout=90)
    assert state["status"] == "failed" and state["code"] == -7, state
    assert max(state["attempts"].values()) <= 3
