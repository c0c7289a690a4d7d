#!/usr/bin/env bash
# Create .venv (if needed) and install raydist with its test extras.
# torch/torchvision are installed FIRST and pinned: an unpinned torch pulls a multi-GB download.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RAYDIST_VENV:-.venv}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# open3d needs libusb at import time; install it when we can (root with apt), else say so.
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq libusb-1.0-0) >/dev/null 2>&1 || echo "warning: could not apt-get install libusb-1.0-0 (open3d needs it)"
  else
    echo "warning: libusb-1.0 not found; open3d (CFM) needs it: apt-get install libusb-1.0-0"
  fi
fi
# constraints.txt pins every package to what CI tested (scripts/lock.sh refreshes it)
constraints=(-c constraints.txt)
[ "${RAYDIST_UNCONSTRAINED:-0}" = 1 ] && constraints=()
stamp="$VENV/.raydist-installed"
log="$VENV/install.log"
# One line per step; pip's full output goes to $log (printed in full only when a step fails).
step() {
  local what=$1 t0=$SECONDS
  shift
  if "$@" >>"$log" 2>&1; then
    echo "install: $what ($((SECONDS - t0)) s)"
  else
    echo "install: $what FAILED; the last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  : >"$log"
  echo "install: into $VENV (full log: $log)"
  step "pip" "$VENV/bin/python" -m pip install --upgrade pip
  step "torch ${TORCH_VERSION:-2.14.1}, torchvision ${TORCHVISION_VERSION:-0.29.1}" \
    "$VENV/bin/python" -m pip install "${constraints[@]}" "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
  step "raydist and its dependencies (.[dev])" "$VENV/bin/python" -m pip install "${constraints[@]}" -e ".[dev]"
  touch "$stamp"
fi
