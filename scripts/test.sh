#!/usr/bin/env bash
# The README's test command: set up the venv, lint, run the whole suite (slow-marked items excluded;
# RAYDIST_TEST_ALL=1 runs them too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 PYTHONDONTWRITEBYTECODE=1
.venv/bin/ruff check raydist jobs tests benchmarks mlflow scripts cluster
# the docs site: no page may hold a broken link (tests/test_docs.py checks the CLI page is the parsers')
site=$(mktemp -d)
if ! log=$(NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --site-dir "$site" 2>&1); then
  echo "$log" >&2
  echo "docs: mkdocs build --strict failed" >&2
  exit 1
fi
rm -rf "$site"
echo "docs: built (mkdocs --strict)"
marker=(-m "not slow")
[ "${RAYDIST_TEST_ALL:-0}" = 1 ] && marker=()
.venv/bin/python -m pytest "${marker[@]}" -p no:cacheprovider --durations=20 "$@"
