"""Helpers shared by the benchmark scripts: child processes with their own rusage, medians,
machine description, results files."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_VAR = ROOT / "var" / "bench"
PY = str(Path(sys.executable))


def run_measured(argv: list[str], *, cwd=None, env=None, timeout: float = 600) -> dict:
    """Run a child to its end; its own wall time, CPU time and peak RSS (os.wait4: this child only)."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited with {proc.returncode}:\n{stderr.decode(errors='replace')[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024.0,
        "stdout": stdout.decode(errors="replace"),
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores; /proc/stat): the difference
    over one export counts every process that worked for it (workers, web, broker, database, the S3
    server, ffmpeg), ours and the baseline's alike."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem_gib, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_at_start": loadavg()}
    try:
        import av

        info["pyav"] = av.__version__
        info["pyav_ffmpeg"] = av.ffmpeg_version_info
    except Exception:
        pass
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
        info["ffmpeg_cli"] = first
    except Exception:
        pass
    return info


def write_json(name: str, data: dict) -> Path:
    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    path = BENCH_VAR / name
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
