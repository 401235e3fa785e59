"""Disk and memory of one export on a worker host, for sizing (docs/deploy.md). Not a test:

    .venv/bin/python -m tests.deploy.footprint [--seconds 60] [--width 1280 --height 720] [--types 0,1,2]

Starts what a host runs (deploy/start/worker-io and worker-cpu, one task at a time each) against
moto's S3 server and the embedded broker, exports one clip of each export type from a generated
DASH recording, and samples every 50 ms: the bytes in the export's work dir and the resident
memory of every process of both workers. Prints one row per export type.
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path


def process_group_rss(pgids: set[int]) -> dict[int, int]:
    """pid -> resident bytes, for every process in the given process groups."""
    page = os.sysconf("SC_PAGE_SIZE")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) in pgids:
                found[int(entry.name)] = int((entry / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return found


def tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="clip length")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--types", default="0,1,2", help="export types: 0 copy, 1 H.264, 2 H.265")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="resourced-footprint-"))
    os.environ.update(RESOURCED_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="resourced.settings.test",
                      DATABASE_URL=f"sqlite:///{var / 'db.sqlite3'}", PYTHONUNBUFFERED="1")
    logs = var / "logs"
    logs.mkdir()
    from tests.servers import EmbeddedRedis, S3Server

    broker = EmbeddedRedis(var, logs)  # the embedded broker the settings name for this var dir
    s3_server = S3Server(logs)
    os.environ["RESOURCED_S3_ENDPOINT_URL"] = s3_server.url
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from exports.models import Export
    from resourced.celery import app
    from resourced.s3 import default_client, ensure_buckets
    from resourced.sessions import session_create
    from tests import mediagen
    from tests.deploy.conftest import Host
    from tests.exports.conftest import ORIGIN_MS, export_body, upload_dir

    call_command("migrate", verbosity=0)
    ensure_buckets([settings.SOURCE_DEFAULT_BUCKET, settings.EXPORT_DEFAULT_BUCKET, settings.IMGBED_BUCKET])
    started = time.monotonic()
    recording_dir = var / "recording"
    manifest = mediagen.make_dash(str(recording_dir), duration_s=args.seconds + 10, width=args.width,
                                  height=args.height, template="timeline")
    peer = "PEER" + uuid.uuid4().hex[:8].upper()
    prefix = f"mp4/{peer}/rec-footprint/1"
    upload_dir(default_client(), settings.SOURCE_DEFAULT_BUCKET, str(recording_dir), prefix)
    print(f"recording: {args.seconds + 10} s {args.width}x{args.height}, {tree_bytes(recording_dir)} bytes, "
          f"made in {time.monotonic() - started:.1f} s", flush=True)

    host = Host("footprint", dict(os.environ), logs)
    try:
        host.wait_ready(app)
        pgids = {p.pid for p in host.processes.values()}
        time.sleep(2)
        idle = process_group_rss(pgids)
        print(f"idle RSS: {sorted(v // 2**20 for v in idle.values())} MiB (main and pool processes)", flush=True)
        _session, sid = session_create(userid="footprint@example.com", ttl_seconds=3600)
        api = APIClient()
        print("type  output_bytes  downloaded_bytes  peak_scratch_bytes  peak_rss_MiB(io,cpu pool)  seconds  timings")
        for export_type in (int(t) for t in args.types.split(",")):
            body = export_body(f"{prefix}/{Path(manifest).name}", sid, StartPos=ORIGIN_MS + 5000,
                               Duration=args.seconds * 1000, export_type=export_type, ExportFormat="mp4")
            answer = api.post("/resource/v1/i/export-to-s3dir", body, format="json").json()
            task_id = answer["TaskId"]
            work = host.work_dir / task_id
            peak_scratch, peak_rss = 0, {}
            t0 = time.monotonic()
            while True:
                export = Export.objects.get(task_id=task_id)
                peak_scratch = max(peak_scratch, tree_bytes(work))
                for pid, rss in process_group_rss(pgids).items():
                    peak_rss[pid] = max(peak_rss.get(pid, 0), rss)
                if export.status in ("ready", "failed"):
                    break
                if time.monotonic() - t0 > 1800:
                    raise TimeoutError(task_id)
                time.sleep(0.05)
            assert export.status == "ready", (export.error_code, export.error_message)
            pools = {pid: rss for pid, rss in peak_rss.items() if pid not in pgids}
            by_kind = {}
            for kind, process in host.processes.items():
                children = [pid for pid in pools if _parent(pid) == process.pid]
                by_kind[kind] = max((pools[pid] for pid in children), default=0) // 2**20
            print(f"{export_type:>4}  {export.output_bytes:>12}  {export.bytes_needed:>16}  {peak_scratch:>18}  "
                  f"{by_kind['io']:>12},{by_kind['cpu']:<12}  {time.monotonic() - t0:>7.1f}  {export.timings}",
                  flush=True)
    finally:
        host.stop()
        s3_server.stop()
        broker.stop()
    return 0


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


if __name__ == "__main__":
    sys.exit(main())
