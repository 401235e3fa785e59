"""GET /metrics: Prometheus text with request metrics and export metrics read from the database."""

import os
import subprocess
import sys

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from resourced import metrics
from tests.admin.conftest import make_export, make_failed, make_ready
from tests.servers import ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_database_numbers():
    metrics.database_collector.reset()
    yield
    metrics.database_collector.reset()


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_export_metrics_by_result_stage_durations_bytes_and_lack(client):
    make_ready(lack_ms=0, output_bytes=1000, bytes_downloaded=5000, duration_ms=4000,
               timings={"download": 0.3, "cut": 0.1, "encode": 2.0, "thumbnail": 0.05, "upload": 0.2})
    make_ready(lack_ms=2500, output_bytes=3000, bytes_downloaded=7000, duration_ms=8000,
               timings={"download": 12.0, "cut": 0.2, "encode": 0.0, "thumbnail": 0.05, "upload": 0.7})
    make_failed(code=-6, bytes_downloaded=100, timings={"download": 0.2, "cut": 0.1})
    make_failed(code=-6)
    make_failed(code=-7)
    make_export()
    make_export(status="running", stage="encode", host="h")

    samples = scrape(client)
    assert value(samples, "resourced_exports", status="ready", error_code="5") == 2
    assert value(samples, "resourced_exports", status="failed", error_code="-6") == 2
    assert value(samples, "resourced_exports", status="failed", error_code="-7") == 1
    assert value(samples, "resourced_exports_active", status="queued", stage="queued") == 1
    assert value(samples, "resourced_exports_active", status="running", stage="encode") == 1

    stage = "resourced_export_stage_duration_seconds"
    assert value(samples, f"{stage}_count", stage="download") == 3
    assert value(samples, f"{stage}_sum", stage="download") == pytest.approx(12.5)
    assert value(samples, f"{stage}_bucket", stage="download", le="0.25") == 1
    assert value(samples, f"{stage}_bucket", stage="download", le="0.5") == 2
    assert value(samples, f"{stage}_bucket", stage="download", le="10.0") == 2
    assert value(samples, f"{stage}_bucket", stage="download", le="30.0") == 3
    assert value(samples, f"{stage}_bucket", stage="download", le="+Inf") == 3
    assert value(samples, f"{stage}_count", stage="upload") == 2
    assert value(samples, f"{stage}_bucket", stage="encode", le="0.1") == 1

    assert value(samples, "resourced_export_downloaded_bytes_total") == 12_100
    assert value(samples, "resourced_export_uploaded_bytes_total") == 4000
    assert value(samples, "resourced_export_clip_seconds_total") == 12.0
    assert value(samples, "resourced_export_lack_seconds_count") == 2
    assert value(samples, "resourced_export_lack_seconds_sum") == 2.5
    assert value(samples, "resourced_export_lack_seconds_bucket", le="0.0") == 1
    assert value(samples, "resourced_export_lack_seconds_bucket", le="5.0") == 2
    assert value(samples, "resourced_exports_incomplete") == 1
    assert value(samples, "resourced_metrics_database_up") == 1


def test_restore_jobs_are_counted(client):
    from tests.admin.test_dashboard import make_restore_job

    make_restore_job("restoring")
    make_restore_job("restoring")
    make_restore_job("done")
    samples = scrape(client)
    assert value(samples, "resourced_restore_jobs", status="restoring") == 2
    assert value(samples, "resourced_restore_jobs", status="done") == 1


def test_requests_are_counted_by_view_and_status(client):
    before = scrape(client)
    client.get("/healthz-does-not-exist")
    client.get("/resource/v1/i/export-to-s3dir/0123456789abcdef0123456789abcdef", HTTP_X_SESSION_ID="nope")
    after = scrape(client)
    assert (value(after, "resourced_http_requests_total", method="GET", view="<unresolved>", status="404")
            - value(before, "resourced_http_requests_total", method="GET", view="<unresolved>", status="404")) == 1
    views = {labels for (name, labels) in after if name == "resourced_http_requests_total"}
    assert any(dict(labels)["view"] == "metrics" for labels in views)
    duration = [k for k in after if k[0] == "resourced_http_request_duration_seconds_count"
                and dict(k[1])["view"] == "metrics"]
    assert duration and after[duration[0]] >= 1
    # the raw path never becomes a label
    assert not any("0123456789abcdef" in str(labels) for (_name, labels) in after)


def test_the_database_is_read_at_most_once_per_cache_period(client, django_assert_max_num_queries):
    with override_settings(METRICS_DATABASE_CACHE_SECONDS=60):
        scrape(client)
        make_failed(code=-9)
        with django_assert_max_num_queries(0):
            samples = scrape(client)
        assert value(samples, "resourced_exports", status="failed", error_code="-9") == 0
        metrics.database_collector.reset()
        assert value(scrape(client), "resourced_exports", status="failed", error_code="-9") == 1


@override_settings(METRICS_TOKEN="scrape-token-1")
def test_a_token_protects_metrics_when_set(client):
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "scrape-token-1"}):
        refused = client.get("/metrics", **headers)
        assert refused.status_code == 401 and refused["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert refused.json() == {"code": 401,
                                  "message": "metrics: a bearer token is required (Authorization: Bearer <token>)"}
        assert b"resourced_" not in refused.content
    assert scrape(client, HTTP_AUTHORIZATION="Bearer scrape-token-1")


@pytest.mark.parametrize("token", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_production_settings_refuse_to_load_without_a_metrics_token(tmp_path, token):
    """As Flower without its auth: no production process starts with /metrics open."""
    from tests.servers import production_env

    env = production_env(tmp_path, database_url="postgres://x@127.0.0.1:1/x", broker_url="redis://127.0.0.1:1/0",
                         s3_url="http://127.0.0.1:1")
    env.pop("METRICS_TOKEN")
    if token is not None:
        env["METRICS_TOKEN"] = token
    script = "import django; django.setup(); from django.conf import settings; print(repr(settings.METRICS_TOKEN))"
    refused = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60, check=False)
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr and "METRICS_TOKEN" in refused.stderr
    started = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=dict(env, METRICS_TOKEN="t0ken"),
                             capture_output=True, text=True, timeout=60, check=False)
    assert started.returncode == 0 and started.stdout.strip() == "'t0ken'", started.stderr[-2000:]


def multiprocess_env(folder) -> dict:
    return dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder), DJANGO_SETTINGS_MODULE="resourced.settings.test")


def scrape_in_another_process(env: dict) -> str:
    """What /metrics answers from the multiprocess folder of `env` (request metrics only)."""
    scrape_code = (
        "import django; django.setup();"
        "from prometheus_client import generate_latest; from resourced import metrics;"
        "metrics.database_collector.collect = lambda: iter(());"
        "print(generate_latest(metrics.registry()).decode())"
    )
    return subprocess.run([sys.executable, "-c", scrape_code], cwd=ROOT, env=env, check=True, timeout=60,
                          capture_output=True, text=True).stdout


def test_request_metrics_add_up_across_processes(tmp_path):
    """Two processes (as gunicorn's workers) count into one folder; a scrape sums them."""
    env = multiprocess_env(tmp_path)
    count = (
        "import django; django.setup();"
        "from django.test import Client; c = Client();"
        "[c.get('/no/such/page') for _ in range({n})]"
    )
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", count.format(n=n)], cwd=ROOT, env=env, check=True, timeout=60)
    out = scrape_in_another_process(env)
    totals = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(out) for s in family.samples
        if s.name == "resourced_http_requests_total"
    }
    assert totals[(("method", "GET"), ("status", "404"), ("view", "<unresolved>"))] == 5
    assert len(list(tmp_path.glob("*.db"))) >= 2


def test_other_processes_metrics_in_the_folder_stay_out(tmp_path):
    """Flower (and the workers) set up Django too, so they share the multiprocess folder; Flower's
    own counters written there must not leak into the web's /metrics."""
    env = multiprocess_env(tmp_path)
    as_flower = ("from prometheus_client import Counter, Gauge;"
                 "Counter('flower_events', 'events', ['task']).labels('exports.download').inc();"
                 "Gauge('flower_worker_online', 'online', ['worker'], multiprocess_mode='all').labels('w').set(1)")
    subprocess.run([sys.executable, "-c", as_flower], cwd=ROOT, env=env, check=True, timeout=60)
    count = "import django; django.setup(); from django.test import Client; Client().get('/no/such/page')"
    subprocess.run([sys.executable, "-c", count], cwd=ROOT, env=env, check=True, timeout=60)
    out = scrape_in_another_process(env)
    names = {family.name for family in text_string_to_metric_families(out)}
    assert "resourced_http_requests" in names
    assert not [name for name in names if name.startswith("flower")], names
