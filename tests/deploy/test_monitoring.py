"""deploy/monitoring: the Prometheus alert rules and the Grafana dashboard, checked against the
service's real /metrics.

promtool (Debian's `prometheus` package, installed by scripts/test-services.sh) checks the rules
and runs their unit tests (deploy/monitoring/tests/); it also parses every dashboard expression,
put into a rule file of its own. Every metric name, label name and label value the rules and the
dashboard use must be in what /metrics answers (scraped through Django's test client, with rows in
every state they name) or in what Flower's /metrics answers (worker presence).
"""

import json
import re
import subprocess
import sys

import pytest
import yaml
from django.test import RequestFactory, override_settings
from django.urls import resolve
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import debian_tool
from tests.servers import ROOT

MONITORING = ROOT / "deploy" / "monitoring"
RULE_FILES = sorted(MONITORING.glob("*.yml"))
DASHBOARD = MONITORING / "resourced-dashboard.json"
RULE_TESTS = MONITORING / "tests" / "resourced-alerts.test.yml"
TOKEN = "monitoring-scrape-token"

# Grafana's variables, as a panel's query would see them, so that PromQL parses
GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "6h"}
# Prometheus's own series and the labels it adds to every scraped one
PROMETHEUS_SERIES = {"up": {"job", "instance"}}
TARGET_LABELS = {"job", "instance"}
PROMQL_WORDS = {
    # aggregations and their modifiers, binary operators and modifiers
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless",
    "atan2", "inf", "nan",
    # functions
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_quantile",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log2", "log10",
    "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt",
    "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time",
}


def promtool() -> str:
    return debian_tool("promtool", "prometheus")


# --- what the service and Flower really expose ------------------------------------------------------

def series_labels(text: str) -> dict[str, dict[str, set[str]]]:
    """Prometheus text -> {sample name: {label: values seen}}."""
    found: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = found.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return found


@pytest.fixture
def service_series(db, client) -> dict[str, dict[str, set[str]]]:
    """GET /metrics with a row in every state the rules and the dashboard name, a /healthz answer
    (503 here: no worker) and an unhandled exception counted by the real middleware."""
    from resourced import metrics
    from restore.models import Callback
    from tests.admin.conftest import make_export, make_failed, make_ready
    from tests.admin.test_dashboard import make_restore_job

    make_export()
    make_export(status="running", stage="encode", host="h")
    make_ready(lack_ms=1500)
    make_failed(code=-6)
    make_export(status="cancelled", stage="cancelled", error_code=-8)
    for state in Callback.State.values:
        job = make_restore_job("done")
        Callback.objects.create(job=job, type=Callback.Type.RESULT, url="https://client.example/cb", body="{}",
                                state=state)
    make_restore_job("restoring")
    assert client.get("/healthz").status_code in (200, 503)
    request = RequestFactory().get("/healthz")
    request.resolver_match = resolve("/healthz")
    metrics.RequestMetricsMiddleware(lambda r: None).process_exception(request, RuntimeError("probe"))

    metrics.database_collector.reset()
    with override_settings(METRICS_TOKEN=TOKEN):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    metrics.database_collector.reset()
    assert response.status_code == 200
    return series_labels(response.content.decode())


# Flower registers its metrics when it starts; a child per metric makes each print its samples.
FLOWER_METRICS = """
import prometheus_client
from prometheus_client.metrics import MetricWrapperBase
from flower.events import get_prometheus_metrics

for metric in vars(get_prometheus_metrics()).values():
    if isinstance(metric, MetricWrapperBase):
        metric.labels(*["probe"] * len(metric._labelnames))
print(prometheus_client.generate_latest().decode())
"""


@pytest.fixture(scope="module")
def flower_series() -> dict[str, dict[str, set[str]]]:
    out = subprocess.run([sys.executable, "-c", FLOWER_METRICS], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return {name: labels for name, labels in series_labels(out).items() if name.startswith("flower_")}


# --- the expressions -------------------------------------------------------------------------------

def rule_expressions() -> list[tuple[str, str]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return found


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return panels


def dashboard_expressions() -> list[tuple[str, str]]:
    found = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((f"panel {panel['id']} {panel['title']!r} {target['refId']}", expr))
    return found


SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
IDENTIFIER = re.compile(r"[a-zA-Z_:][\w:]*")


def parse(expr: str) -> tuple[list[tuple[str, list[tuple[str, str, str]]]], set[str]]:
    """A small reading of PromQL, enough for names: the selectors (metric, [(label, op, value)]) and
    the labels of by/without/on/ignoring clauses."""
    selectors = [(m.group(1), MATCHER.findall(m.group(2))) for m in SELECTOR.finditer(expr)]
    grouping = {label.strip() for m in GROUPING.finditer(expr) for label in m.group(2).split(",") if label.strip()}
    rest = SELECTOR.sub(" ", expr)
    rest = GROUPING.sub(" ", rest)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # ranges
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', " ", rest)  # strings (function arguments)
    rest = re.sub(r"\boffset\s+\w+", " ", rest)
    rest = re.sub(r"\b\d[\w.]*", " ", rest)  # numbers
    for name in IDENTIFIER.findall(rest):
        if name not in PROMQL_WORDS:
            selectors.append((name, []))
    return selectors, grouping


def problems_of(where: str, expr: str, service: dict, flower: dict) -> list[str]:
    known = {**service, **flower, **{name: {label: set() for label in labels}
                                     for name, labels in PROMETHEUS_SERIES.items()}}
    problems = []
    selectors, grouping = parse(expr)
    labels_in_use = set(TARGET_LABELS) | {"le"}
    for name, matchers in selectors:
        if name is None or name not in known:
            problems.append(f"{where}: {name!r} is not a metric /metrics answers")
            continue
        labels_in_use |= set(known[name])
        for label, op, value in matchers:
            if label in TARGET_LABELS:
                continue
            if label not in known[name]:
                problems.append(f"{where}: {name} has no label {label!r} (it has {sorted(known[name])})")
                continue
            if not name.startswith("resourced_"):
                continue  # Flower's worker and task names belong to each deployment
            seen = known[name][label]
            if op in ("=", "!="):
                wanted = [value]
            elif re.fullmatch(r"[\w-]+(\|[\w-]+)*", value):
                wanted = value.split("|")
            else:
                wanted = []  # a real pattern ("5.."): nothing to look up
            problems += [f"{where}: {name}{{{label}={item!r}}} never appears (values seen: {sorted(seen)})"
                         for item in wanted if item not in seen]
    problems += [f"{where}: grouping label {label!r} is on no metric of the expression"
                 for label in grouping - labels_in_use]
    return problems


# --- promtool ------------------------------------------------------------------------------------------

def test_promtool_checks_the_alert_rules():
    result = subprocess.run([promtool(), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass():
    """Firing and not firing, for failed exports, a stale queue, missing workers, callbacks given
    up and /healthz: deploy/monitoring/tests/resourced-alerts.test.yml."""
    result = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", RULE_TESTS.read_text()))
    assert {"ResourcedExportsFailing", "ResourcedExportQueueStale", "ResourcedNoIoWorker",
            "ResourcedCallbacksFailed", "ResourcedHealthCheckFailing"} <= tested


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expression_{i}", "expr": expr} for i, (_where, expr) in enumerate(dashboard_expressions())
    ]}]}
    path = tmp_path / "dashboard-expressions.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- names against the real /metrics ------------------------------------------------------------------------

def test_the_rules_use_only_metrics_and_labels_the_service_exposes(service_series, flower_series):
    problems = [p for where, expr in rule_expressions() for p in problems_of(where, expr, service_series, flower_series)]
    assert problems == []


def test_the_dashboard_uses_only_metrics_and_labels_the_service_exposes(service_series, flower_series):
    problems = [p for where, expr in dashboard_expressions()
                for p in problems_of(where, expr, service_series, flower_series)]
    assert problems == []


def test_the_name_check_catches_a_wrong_name_label_or_value(service_series, flower_series):
    """The checker itself: a typo in a metric, a label or a value is reported."""
    assert problems_of("x", 'sum(resourced_exports{status="failed"})', service_series, flower_series) == []
    assert problems_of("x", "resourced_export_failed_total", service_series, flower_series)
    assert problems_of("x", 'resourced_exports{state="failed"}', service_series, flower_series)
    assert problems_of("x", 'resourced_exports{status="broken"}', service_series, flower_series)
    assert problems_of("x", 'sum by (host) (resourced_exports)', service_series, flower_series)
    assert problems_of("x", "max(flower_worker_up)", service_series, flower_series)


# --- the dashboard's shape --------------------------------------------------------------------------------

def test_the_dashboard_is_grafana_json_with_a_datasource_and_a_query_on_every_panel():
    board = dashboard()
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36
    # the Prometheus data source is chosen at import (a variable), not a uid of some other Grafana
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard_panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    graphs = [panel for panel in panels if panel["type"] != "row"]  # rows only group panels
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target["datasource"] == panel["datasource"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    titles = " ".join(panel["title"] for panel in graphs)
    for subject in ("Queued", "Failed", "stage", "Workers online", "Restore jobs", "callbacks", "Latency"):
        assert subject.lower() in titles.lower(), subject
