#!/usr/bin/env bash
# Installs the headless browser that tests/browser drives: Debian's chromium and its matching
# chromedriver (Selenium talks to chromedriver; both come from the same Debian source, so their
# versions always match). Nothing is downloaded outside the distribution's packages.
# As root on Debian they are installed with apt-get; elsewhere this says what to install, and the
# browser tests are skipped with that reason.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null
else
  echo "missing: ${need[*]} (on Debian: sudo apt-get install ${need[*]}); the browser tests are skipped"
fi
