#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (PYTHON=... wins), or fail with a one-line hint.
set -euo pipefail
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
candidates=("${PYTHON:-}" python3.13 python3.12 python3 python)
for dir in "$HOME/.pyenv/versions" /root/.pyenv/versions /usr/local/bin; do
  for p in "$dir"/3.13*/bin/python "$dir"/3.12*/bin/python; do candidates+=("$p"); done
done
for c in "${candidates[@]}"; do
  [ -n "$c" ] || continue
  path=$(command -v "$c" 2>/dev/null || true)
  [ -n "$path" ] && ok "$path" && { echo "$path"; exit 0; }
done
echo "error: aiaas-twin needs Python >= 3.12 (Mesa 3.5); install one or set PYTHON=/path/to/python3.12" >&2
exit 1
