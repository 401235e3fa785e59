"""The deployment files, checked without a container engine or systemd running: compose.yaml
parsed with PyYAML, the units with a small parser (and systemd-analyze where it is installed), the
start scripts with bash -n, the Dockerfile and env.example against the settings they feed."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.servers import ROOT

DEPLOY = ROOT / "deploy"
START = DEPLOY / "start"
KINDS = ("web", "worker-io", "worker-cpu", "beat", "flower")
WORK_DIR = "/var/lib/resourced/work"
# Variables env.example sets for the images of compose.yaml's PostgreSQL and MinIO containers.
INFRA_VARIABLES = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
}


# --- helpers -----------------------------------------------------------------------------------

def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR} / $$, as `docker compose config` resolves them with
    nothing set in the environment."""
    value = re.sub(r"\$\{([A-Z0-9_]+):?-([^}]*)\}", lambda m: m.group(2), value)
    value = re.sub(r"\$\{([A-Z0-9_]+)\}", "", value)
    return value.replace("$$", "$")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions (continuations joined), one list per stage."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def image_workdir() -> str:
    workdirs = [rest for instruction, rest in dockerfile_stages()[-1] if instruction == "WORKDIR"]
    return workdirs[-1]


def in_repo(path: str, prefix: str) -> Path:
    """A path inside the image (or the bare-metal install) as the file of this repository."""
    assert path.startswith(prefix.rstrip("/") + "/"), f"{path} is not under {prefix}"
    return ROOT / path[len(prefix.rstrip("/")) + 1:]


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit: section -> key -> every value (Environment= and the like repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        assert "=" in line, f"{path.name}: {line!r} is not key=value"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit(kind: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit(DEPLOY / "systemd" / f"resourced-{kind}.service")


def seconds(value: str) -> float:
    """systemd / compose durations: 30min, 1h, 90s, 45, 1h30m."""
    units = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001, "": 1}
    total = 0.0
    for number, unit_name in re.findall(r"(\d+(?:\.\d+)?)\s*(h|min|ms|m|s|)", value):
        total += float(number) * units[unit_name]
    return total


def env_example() -> dict[str, str]:
    """KEY=value lines of env.example, and the `# KEY=value` suggestions commented out."""
    found = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        match = re.match(r"^#?\s?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def env_example_set() -> dict[str, str]:
    return {k: v for k, v in (re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line).groups()
                              for line in (DEPLOY / "env.example").read_text().splitlines()
                              if re.match(r"^[A-Z][A-Z0-9_]*=", line))}


def settings_sources() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "resourced" / "settings").glob("*.py")))


def variables_read_by_settings() -> set[str]:
    return set(re.findall(r"env(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", settings_sources()))


def variables_required_in_production() -> set[str]:
    """env.<type>("NAME") with no default in production.py."""
    source = (ROOT / "resourced" / "settings" / "production.py").read_text()
    return set(re.findall(r"env\.\w+\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']\s*\)", source))


def variables_read_by_scripts() -> set[str]:
    text = "\n".join(p.read_text() for p in [*START.iterdir(), DEPLOY / "healthcheck"])
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text)) | set(re.findall(r"environ(?:\.get)?\(\s*[\"']([A-Z0-9_]+)", text))


# --- start scripts -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", [*KINDS, "../healthcheck"])
def test_start_script_is_strict_bash_that_execs(name):
    path = START / name
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert os.access(path, os.X_OK), f"{path} is not executable"
    assert re.search(r"^set -euo pipefail$", text, re.M)
    subprocess.run(["bash", "-n", str(path)], check=True)
    if name in KINDS:
        # the process replaces the shell, so it gets the signals (SIGTERM from systemd or docker)
        commands = [line for line in text.splitlines() if line and not line.startswith((" ", "#", "\t"))]
        assert commands[-1].startswith("exec "), f"{name}: the last command is not exec: {commands[-1]!r}"


def script_queues(kind: str) -> set[str]:
    match = re.search(r"--queues\s+(\S+)", (START / kind).read_text())
    return set(match.group(1).split(","))


def test_the_two_worker_kinds_consume_every_shared_queue_between_them():
    from exports.queues import QUEUE_MEDIA_CPU, QUEUE_MEDIA_IO
    from resourced.celery import declared_queues, host_bound_queues

    MEDIA_QUEUES, SHARED_QUEUES = host_bound_queues(), declared_queues()

    io, cpu = script_queues("worker-io"), script_queues("worker-cpu")
    assert io == {"default", "media.io", "restore", "callbacks"}
    assert cpu == {"media.cpu"}
    assert io | cpu == set(SHARED_QUEUES) and not io & cpu
    # each adds the host queue of the one media queue it consumes (resourced/celery.py)
    assert {q for q in io if q in MEDIA_QUEUES} == {QUEUE_MEDIA_IO}
    assert {q for q in cpu if q in MEDIA_QUEUES} == {QUEUE_MEDIA_CPU}
    for kind in ("worker-io", "worker-cpu"):
        text = (START / kind).read_text()
        assert 'RESOURCED_WORKER_HOSTNAME="${RESOURCED_WORKER_HOSTNAME:-$HOSTNAME}"' in text
        assert "--pool" in text and "--concurrency" in text
    assert "$(nproc)" in (START / "worker-cpu").read_text()


def test_web_beat_and_flower_scripts_run_what_they_should():
    web = (START / "web").read_text()
    assert "gunicorn resourced.wsgi" in web and "RUN_MIGRATIONS" in web and "manage.py migrate" in web
    assert "WEB_CONCURRENCY" in web and "WEB_THREADS" in web
    assert "--scheduler django_celery_beat.schedulers:DatabaseScheduler" in (START / "beat").read_text()
    flower = (START / "flower").read_text()
    assert "FLOWER_BASIC_AUTH" in flower and "celery -A resourced flower" in flower
    for kind in KINDS:
        assert 'DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-resourced.settings.production}"' in (
            START / kind).read_text()


# --- Dockerfile --------------------------------------------------------------------------------

def test_dockerfile_builds_one_slim_image_that_runs_as_a_user():
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    final = stages[-1]
    bases = [rest for stage in stages for instruction, rest in stage if instruction == "FROM"]
    assert all(("python:3.11-slim" in base) or base.startswith("${PYTHON_IMAGE}") for base in bases)
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", (DEPLOY / "Dockerfile").read_text())

    users = [rest for instruction, rest in final if instruction == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert any("useradd" in rest and user in rest for instruction, rest in final if instruction == "RUN")

    final_runs = " ".join(rest for instruction, rest in final if instruction == "RUN")
    for compiler in ("build-essential", "gcc", "apt-get install"):
        assert compiler not in final_runs, f"{compiler} in the final stage"
    assert "collectstatic" in final_runs
    assert any(instruction == "COPY" and "--from=build" in rest for instruction, rest in final)
    env = " ".join(rest for instruction, rest in final if instruction == "ENV")
    assert "DJANGO_SETTINGS_MODULE=resourced.settings.production" in env
    assert f"EXPORT_WORK_DIR={WORK_DIR}" in env
    # a HEALTHCHECK in the image, or one per service in compose.yaml (test_compose_* checks those)
    assert any(i == "HEALTHCHECK" for i, _ in final) or all(
        "healthcheck" in s for s in compose()["services"].values() if s.get("restart") != "no")


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "var", "deploy/env"} <= ignored
    assert "deploy" not in ignored and "deploy/start" not in ignored


def test_collectstatic_runs_with_the_dockerfiles_build_time_environment(tmp_path):
    """The exact RUN line of the Dockerfile, here: production settings, dummy secrets."""
    run = next(rest for instruction, rest in dockerfile_stages()[-1]
               if instruction == "RUN" and "collectstatic" in rest)
    assignments = dict(re.findall(r"([A-Z][A-Z0-9_]*)=(\S+)", run.split("python manage.py collectstatic")[0]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_"))}
    env.update(assignments, DJANGO_SETTINGS_MODULE="resourced.settings.production", RESOURCED_VAR_DIR=str(tmp_path),
               PYTHONDONTWRITEBYTECODE="1")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'collectstatic.sqlite3'}"
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True, timeout=120)
    assert (tmp_path / "static" / "admin" / "css" / "base.css").exists()
    assert not (tmp_path / "collectstatic.sqlite3").exists(), "collectstatic opened no database"


# --- compose.yaml ------------------------------------------------------------------------------

APP_SERVICES = {"web", "worker-io", "worker-cpu", "beat", "flower"}


def test_compose_has_every_process_and_store():
    services = compose()["services"]
    assert APP_SERVICES | {"postgres", "redis", "minio", "migrate", "createbuckets"} <= set(services)
    image = services["web"]["image"]
    for name in APP_SERVICES | {"migrate", "createbuckets"}:
        assert services[name]["image"] == image, f"{name}: one image for every process"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / services[name]["build"]["context"] / "deploy" / "Dockerfile").exists()


def test_compose_env_files_exist_and_are_the_same_for_every_service():
    services = compose()["services"]
    lists = []
    for name, service in services.items():
        entries = service.get("env_file")
        if name in ("redis", "nginx"):
            continue  # configured by its command line / its own files (and kept away from the secrets)
        assert entries, f"{name} has no env_file"
        entries = [e if isinstance(e, dict) else {"path": e} for e in ([entries] if isinstance(entries, str) else entries)]
        for entry in entries:
            path = DEPLOY / interpolate(entry["path"])
            if entry.get("required", True):
                assert path.is_file(), f"{name}: env_file {path} does not exist"
            else:
                assert path.name in (ROOT / ".dockerignore").read_text(), f"{path} may hold secrets"
        lists.append(entries)
    assert all(entries == lists[0] for entries in lists), "one environment for every service"


def test_compose_volumes_are_declared_and_the_scratch_volume_is_shared_by_the_worker_pair():
    data = compose()
    declared = set(data.get("volumes") or {})
    mounts: dict[str, dict[str, str]] = {}
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source} is not declared"
            mounts.setdefault(name, {})[target] = source
    io, cpu = mounts["worker-io"], mounts["worker-cpu"]
    assert io[WORK_DIR] == cpu[WORK_DIR] == "scratch"
    assert env_example()["EXPORT_WORK_DIR"] == WORK_DIR
    for name in ("web", "beat", "flower"):
        assert WORK_DIR not in mounts.get(name, {}), f"{name} needs no scratch space"
    services = data["services"]
    io_host = interpolate(services["worker-io"]["environment"]["RESOURCED_WORKER_HOSTNAME"])
    assert io_host and io_host == interpolate(services["worker-cpu"]["environment"]["RESOURCED_WORKER_HOSTNAME"])


def test_compose_healthchecks():
    services = compose()["services"]
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # one-shot
        assert "test" in service.get("healthcheck", {}), f"{name} has no healthcheck"
    flat = {name: " ".join(s["healthcheck"]["test"]) if isinstance(s.get("healthcheck", {}).get("test"), list)
            else s.get("healthcheck", {}).get("test", "") for name, s in services.items()}
    assert "pg_isready" in flat["postgres"]
    assert "redis-cli ping" in flat["redis"]
    assert "mc ready" in flat["minio"] or "minio/health" in flat["minio"]
    workdir = image_workdir()
    for name in APP_SERVICES:
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and in_repo(test[1], workdir) == DEPLOY / "healthcheck" and test[2] == name
    assert "/healthz" in (DEPLOY / "healthcheck").read_text()


def test_compose_dependencies_exist_and_wait_for_what_they_need():
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dependency, spec in (depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)):
            assert dependency in services, f"{name} depends on a service that does not exist: {dependency}"
            assert dependency != name
            condition = spec.get("condition", "service_started")
            if services[dependency].get("restart") == "no":
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition in ("service_healthy", "service_started"), (name, dependency)
    for name in APP_SERVICES:
        assert {"postgres", "redis", "migrate"} <= set(services[name]["depends_on"]), name
    assert "createbuckets" in services["worker-io"]["depends_on"]


def test_compose_commands_are_the_start_scripts_or_existing_management_commands():
    from django.core.management import get_commands

    services = compose()["services"]
    workdir = image_workdir()
    for name in APP_SERVICES:
        command = services[name]["command"]
        assert command == [f"{workdir}/deploy/start/{name}"], (name, command)
        assert in_repo(command[0], workdir).is_file()
    for name in ("migrate", "createbuckets"):
        command = services[name]["command"]
        assert command[:2] == ["python", "manage.py"] and command[2] in get_commands(), (name, command)
        assert services[name]["restart"] == "no"
    assert services["createbuckets"]["command"][2] == "ensurebuckets"
    for name in ("worker-io", "worker-cpu"):
        assert seconds(services[name]["stop_grace_period"]) >= 600, "warm shutdown time for running tasks"
    assert services["web"]["environment"]["RUN_MIGRATIONS"] == "0"  # the migrate service did it


def test_compose_app_containers_are_unprivileged():
    services = compose()["services"]
    for name in APP_SERVICES:
        service = services[name]
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert "no-new-privileges:true" in service["security_opt"] and service["cap_drop"] == ["ALL"]
    assert "127.0.0.1:" in services["flower"]["ports"][0], "flower is published on loopback only"


def nginx_directives(text: str) -> list[tuple[str, str]]:
    """(location or "server"/"http", 'directive value') of deploy/nginx/resourced.conf, comments dropped."""
    found, where = [], ["http"]
    for line in (re.sub(r"#.*", "", raw).strip() for raw in text.splitlines()):
        if line.endswith("{"):
            where.append(line[:-1].strip())
        elif line == "}":
            where.pop()
        elif line:
            found.append((where[-1], line.rstrip(";")))
    return found


def test_compose_publishes_nginx_in_front_of_web_and_its_limits_are_the_services():
    """Clients reach gunicorn only through nginx (docs/deploy.md, "The reverse proxy"), whose
    upstream is the web's address and whose body limits are the settings' (API_MAX_JSON_BYTES,
    IMGBED_MAX_UPLOAD_BYTES), so that nginx refuses exactly what the app would."""
    from django.conf import settings

    services = compose()["services"]
    web, nginx = services["web"], services["nginx"]
    assert "ports" not in web, "gunicorn is not published: clients go through nginx"
    assert interpolate(nginx["ports"][0]).endswith(":8080")
    assert nginx["depends_on"]["web"] == {"condition": "service_started", "restart": True}
    assert nginx["read_only"] is True and nginx["cap_drop"] == ["ALL"] and "/tmp" in nginx["tmpfs"]
    assert (DEPLOY / nginx["build"]["context"] / "Dockerfile").is_file()
    assert web["environment"]["FORWARDED_ALLOW_IPS"] == "*"

    text = (DEPLOY / "nginx" / "resourced.conf").read_text()
    directives = nginx_directives(text)
    assert ("upstream resourced_web", f"server web:{web['environment']['WEB_BIND'].rsplit(':', 1)[1]}") in directives
    assert ("server", "listen 8080") in directives
    upload = "location ^~ /api/imgbed/v1/upload/"
    megabytes = {where: int(line.split()[1].rstrip("m")) * 1024 * 1024
                 for where, line in directives if line.startswith("client_max_body_size ")}
    assert megabytes == {"server": settings.API_MAX_JSON_BYTES, upload: settings.IMGBED_MAX_UPLOAD_BYTES}
    assert int(env_example()["API_MAX_JSON_BYTES"]) == settings.API_MAX_JSON_BYTES
    assert int(env_example()["IMGBED_MAX_UPLOAD_BYTES"]) == settings.IMGBED_MAX_UPLOAD_BYTES
    assert f"over the limit of {settings.API_MAX_JSON_BYTES} bytes" in text
    assert f"over the upload limit of {settings.IMGBED_MAX_UPLOAD_BYTES} bytes" in text
    assert (upload, "proxy_request_buffering off") in directives
    assert ("server", "proxy_request_buffering on") in directives
    read_timeout = next(line for where, line in directives if line.startswith("proxy_read_timeout "))
    assert seconds(read_timeout.split()[1]) > int(env_example()["WEB_TIMEOUT"])
    dockerfiles = [(DEPLOY / "Dockerfile").read_text(), (DEPLOY / "nginx" / "Dockerfile").read_text()]
    bases = [re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.M).group(1) for dockerfile in dockerfiles]
    assert bases[0] == bases[1], "nginx's image is built on the application's base image"


# --- systemd units -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_systemd_unit(kind):
    sections = unit(kind)
    service = sections["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert sections["Unit"]["Description"]
    assert one["User"] not in ("root", "0") and one["Group"]
    assert one["EnvironmentFile"] == "/etc/resourced/env"
    assert one["WorkingDirectory"] == "/opt/resourced"
    assert one["ExecStart"] == f"/opt/resourced/deploy/start/{kind}"
    assert in_repo(one["ExecStart"], "/opt/resourced").is_file()
    assert one["Restart"] == "on-failure"
    assert one["KillSignal"] == "SIGTERM" and one["KillMode"] == "mixed"
    assert one["NoNewPrivileges"] == "yes"
    assert one["ProtectSystem"] == "strict"
    assert one["PrivateTmp"] == "yes"
    assert one["ProtectHome"] == "yes"
    environment = dict(value.split("=", 1) for value in service.get("Environment", []))
    assert environment["DJANGO_SETTINGS_MODULE"] == "resourced.settings.production"
    assert environment["PATH"].startswith("/opt/resourced/.venv/bin:")
    assert "resourced.target" in sections["Install"]["WantedBy"]
    if kind.startswith("worker"):
        # Celery's warm shutdown: the running tasks finish before SIGKILL
        assert seconds(one["TimeoutStopSec"]) >= 600
        assert WORK_DIR in " ".join(service["ReadWritePaths"]).split()
        assert environment["EXPORT_WORK_DIR"] == WORK_DIR
    else:
        assert "ReadWritePaths" not in service, f"{kind} writes nowhere"
    if kind == "web":
        assert environment["PROMETHEUS_MULTIPROC_DIR"].startswith("/run/" + one["RuntimeDirectory"] + "/")
    if kind == "flower":
        assert one["RestartPreventExitStatus"] == "78"  # deploy/start/flower without FLOWER_BASIC_AUTH


def test_systemd_target_and_tmpfiles():
    target = parse_unit(DEPLOY / "systemd" / "resourced.target")
    assert target["Install"]["WantedBy"] == ["multi-user.target"]
    tmpfiles = [line.split() for line in (DEPLOY / "systemd" / "resourced.tmpfiles.conf").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert ["d", WORK_DIR, "0750", "resourced", "resourced"] == tmpfiles[0][:5]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing(tmp_path):
    """systemd's own parser: unknown keys, bad values, a missing ExecStart binary (pointed at this
    repository's start scripts instead of /opt/resourced)."""
    for path in (DEPLOY / "systemd").glob("resourced*.service"):
        text = path.read_text().replace("/opt/resourced/deploy/start/", f"{START}/")
        (tmp_path / path.name).write_text(text)
    shutil.copy(DEPLOY / "systemd" / "resourced.target", tmp_path)
    units = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                            timeout=120)
    problems = [line for line in result.stderr.splitlines() if "resourced" in line]
    assert not problems, "\n".join(problems)


# --- env.example -------------------------------------------------------------------------------

def test_env_example_has_every_variable_production_requires():
    required = variables_required_in_production()
    assert required >= {"DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "AWS_ACCESS_KEY_ID",
                        "AWS_SECRET_ACCESS_KEY", "EXPORT_CREDENTIALS_KEYS", "CALLBACK_SECRET", "FLOWER_BASIC_AUTH",
                        "METRICS_TOKEN"}
    missing = required - set(env_example_set())
    assert not missing, f"env.example does not set {sorted(missing)}"


def test_every_variable_in_env_example_is_read_by_something():
    """By the settings, by a start script, or by the PostgreSQL/MinIO image of compose.yaml."""
    readers = variables_read_by_settings() | variables_read_by_scripts()
    infra = set().union(*INFRA_VARIABLES.values())
    unknown = set(env_example()) - readers - infra
    assert not unknown, f"env.example sets variables nothing reads: {sorted(unknown)}"
    services = compose()["services"]
    for service, names in INFRA_VARIABLES.items():
        assert services[service]["env_file"] == services["web"]["env_file"], f"{service} reads the same file"
        assert names <= set(env_example_set())
    assert "RESOURCED_FAULT_INJECTION" not in env_example(), "fault tests only"


def test_env_example_holds_no_real_secret():
    values = env_example_set()
    import base64

    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "CALLBACK_SECRET", "FLOWER_BASIC_AUTH",
                 "METRICS_TOKEN", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"):
        assert "example" in values[name] and "CHANGE" in values[name], name
    assert base64.urlsafe_b64decode(values["EXPORT_CREDENTIALS_KEYS"]) == b"example-key-not-for-production!!"
    assert values["POSTGRES_PASSWORD"] in values["DATABASE_URL"], "the database container and the URL agree"
    assert values["MINIO_ROOT_PASSWORD"] == values["AWS_SECRET_ACCESS_KEY"]


def test_production_settings_load_from_env_example():
    """env.example is complete: resourced.settings.production loads from it alone, and its Fernet
    key encrypts and decrypts a destination key."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    env.update(env_example_set(), DJANGO_SETTINGS_MODULE="resourced.settings.production", PYTHONDONTWRITEBYTECODE="1",
               RESOURCED_VAR_DIR=os.environ["RESOURCED_VAR_DIR"])
    script = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        "from exports.credentials import decrypt_credentials, encrypt_credentials, parse_export_s3_key\n"
        "assert settings.DATABASES['default']['ENGINE'].endswith('postgresql'), settings.DATABASES\n"
        "assert settings.CELERY_BROKER_URL.startswith('redis://')\n"
        "assert str(settings.EXPORT_WORK_DIR) == '/var/lib/resourced/work'\n"
        "creds = parse_export_s3_key('AKIAEXAMPLE:secret')\n"
        "assert decrypt_credentials(encrypt_credentials(creds)).secret_key == 'secret'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
