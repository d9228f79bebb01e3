#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it by path; no browser download).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "note: Chromium missing and not root: browser tests will be skipped (apt-get install chromium)" >&2
fi
