#!/usr/bin/env bash
# Makes sure the system servers the suite uses are installed. Nothing is started here: the test
# harness starts its own servers on loopback. On Debian as root they are installed with apt-get;
# elsewhere this says what to install, and the tests that need them are skipped with that reason.
set -euo pipefail
bash "$(dirname "$0")/install-browser.sh"
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } || need+=(postgresql)
# the real-packager corpus (tests/corpus.py): ffmpeg's dash / hls muxers, GStreamer's dashsink / hlssink2
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
{ command -v gst-launch-1.0 >/dev/null 2>&1 \
  && gst-inspect-1.0 dashsink >/dev/null 2>&1 && gst-inspect-1.0 hlssink2 >/dev/null 2>&1 \
  && gst-inspect-1.0 h264parse >/dev/null 2>&1 && gst-inspect-1.0 matroskademux >/dev/null 2>&1; } \
  || need+=(gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
            gstreamer1.0-libav)
# promtool checks and unit-tests the alert rules under deploy/monitoring (tests/deploy/test_monitoring.py)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# nginx in front of gunicorn (tests/production/test_slow_clients.py starts its own, as the test user,
# on a free loopback port, with deploy/nginx/resourced.conf); /usr/sbin is not on every user's PATH
{ command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || need+=(nginx)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [[ " ${need[*]} " == *" nginx "* ]]; then
    # Debian's package enables and starts nginx on port 80 where a service manager lets it (a
    # container's policy-rc.d usually does not): the suite needs no system nginx, so none is left running.
    if [ -d /run/systemd/system ]; then
      systemctl disable --now nginx >/dev/null 2>&1 || true
    else
      update-rc.d nginx disable >/dev/null 2>&1 || true
      /usr/sbin/nginx -s quit >/dev/null 2>&1 || true
    fi
  fi
else
  echo "missing: ${need[*]} (on Debian: sudo apt-get install ${need[*]}); tests needing them are skipped"
fi
