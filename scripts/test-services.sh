#!/usr/bin/env bash
# Makes sure the system servers the suite uses are installed. Nothing is started here: the test
# harness starts its own servers on loopback. On Debian as root they are installed with apt-get;
# elsewhere this says what to install, and the tests that need them are skipped with that reason.
set -euo pipefail
bash "$(dirname "$0")/install-browser.sh"
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
{ command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } || need+=(postgresql)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "missing: ${need[*]} (on Debian: sudo apt-get install ${need[*]}); tests needing them are skipped"
fi
