"""A distinctive ExportS3Key goes through real exports; then every place it could leak is searched."""

import base64
import os
import re
import subprocess

import requests

from tests.production.conftest import export_body


def admin_session(stack) -> requests.Session:
    stack.manage("createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com",
                 extra_env={"DJANGO_SUPERUSER_PASSWORD": "ops-password"})
    session = requests.Session()
    login = f"{stack.web.url}/admin/login/"
    page = session.get(login, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(login, data={"username": "ops", "password": "ops-password", "csrfmiddlewaretoken": token,
                                       "next": "/admin/"}, headers={"Referer": login}, timeout=10)
    assert answer.status_code == 200 and "Log out" in answer.text or "logout" in answer.text.lower()
    return session


def test_the_destination_secret_never_leaks(stack):
    secret = "LEAKCANARY" + os.urandom(8).hex()
    access = "AKIACANARY" + os.urandom(4).hex().upper()
    live_path = stack.upload_recording("secrets", duration_s=6, template="timeline")
    stack.direct_s3.create_bucket(Bucket="client-secret-bucket")
    bodies = [export_body(live_path, stack.session_id(), ExportS3Bucket="client-secret-bucket",
                          ExportS3Key=f"{access}:{secret}", export_type=kind, StartPos=start)
              for kind, start in ((0, export_body(live_path, "")["StartPos"]), (1, export_body(live_path, "")["StartPos"] + 500))]

    # queued, credentials stored encrypted: the admin shows neither the secret nor its ciphertext
    task_ids = [stack.post_export(body).json()["TaskId"] for body in bodies]
    ciphertext = stack.sql("SELECT dest_credentials FROM exports_export WHERE task_id = %s", task_ids[0])[0][0]
    assert ciphertext and secret.encode() not in bytes(ciphertext)
    admin = admin_session(stack)
    pages = [admin.get(f"{stack.web.url}/admin/exports/export/", timeout=10).text]
    pk = stack.sql("SELECT id FROM exports_export WHERE task_id = %s", task_ids[0])[0][0]
    pages.append(admin.get(f"{stack.web.url}/admin/exports/export/{pk}/change/", timeout=10).text)
    token_text = bytes(ciphertext).decode(errors="ignore")
    for page in pages:
        assert secret not in page and token_text not in page
        assert base64.b64encode(bytes(ciphertext)).decode() not in page

    stack.start_worker("prod-secrets")
    for task_id in task_ids:
        state = stack.wait_final(task_id, timeout=120)
        assert state["status"] == "ready", state
    assert stack.objects("client-secret-bucket", "export/")

    # erased at the end
    assert stack.sql("SELECT count(*) FROM exports_export WHERE length(dest_credentials) > 0")[0][0] == 0
    # logs of every process
    worker_log = stack.workers[0].read_log()
    assert task_ids[0] in worker_log, "the worker logged the exports"
    for log in [stack.web.read_log(), worker_log]:
        assert secret not in log
    # the broker: every message Redis received is in its append-only file
    broker_bytes = stack.redis.append_only_bytes()
    assert task_ids[0].encode() in broker_bytes, "the append-only file holds the messages"
    assert secret.encode() not in broker_bytes and access.encode() not in broker_bytes
    # the result backend and the whole database
    results = stack.sql("SELECT coalesce(task_args,'') || coalesce(task_kwargs,'') || coalesce(result,'') "
                        "FROM django_celery_results_taskresult")
    assert results and all(secret not in row[0] for row in results)
    dump = subprocess.run([str(stack.postgres.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(stack.postgres.port),
                           "-U", "resourced", "resourced"], capture_output=True, check=True).stdout
    assert b"exports_export" in dump and secret.encode() not in dump
    # the admin after the end
    for url in ("/admin/exports/export/", f"/admin/exports/export/{pk}/change/",
                "/admin/django_celery_results/taskresult/"):
        assert secret not in admin.get(f"{stack.web.url}{url}", timeout=10).text
