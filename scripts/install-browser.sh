#!/usr/bin/env bash
# What the browser test needs: Debian's Chromium (Playwright drives it by path; no browser download)
# and Solara's front-end files from the npm registry (the page cannot reach a CDN here).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} missing and not root: the browser test will be skipped" >&2
    exit 0
  fi
fi
.venv/bin/python -m twin.viz.assets
