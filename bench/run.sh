#!/usr/bin/env bash
# `make bench`: benchmarks of resourced against the ffmpeg command line and a plain DRF view.
# Installs what it needs on Debian as root (ffmpeg as the baseline, wrk as the load generator,
# PostgreSQL and Redis for the production stack); elsewhere it says what to install.
# Arguments go to bench/run.py (--quick for a short smoke run). Results: var/bench/results-*.json.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
PY="${PY:-.venv/bin/python}"

need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "bench needs: ${need[*]}. On Debian/Ubuntu: sudo apt-get install ${need[*]}" >&2
    echo "(ffmpeg is only the baseline the service is compared with; the service itself uses PyAV)" >&2
    exit 1
  fi
fi

mkdir -p var/bench
exec "$PY" -m bench.run "$@"
