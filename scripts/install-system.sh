#!/usr/bin/env bash
# System packages the tests need beyond the Python ones: Debian's chromium (browser tests through
# Playwright with executable_path), CJK fonts (PDF reports), poppler-utils (PDF -> PNG), and the
# pinned TimescaleDB-in-WebAssembly server for the TimescaleDB smoke test (needs Node.js).
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null || need+=(chromium)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need+=(fonts-noto-cjk)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
command -v pdftoppm >/dev/null || need+=(poppler-utils)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing system packages (install as root): ${need[*]}" >&2
  fi
fi

if command -v npm >/dev/null && [ -f tools/pglite/package.json ]; then
  if [ ! -d tools/pglite/node_modules ]; then
    (cd tools/pglite && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
