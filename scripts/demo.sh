#!/usr/bin/env bash
# The README's main command: set up the venv, then synth -> fit -> evaluate end to end on the
# embedded default (generated data, local Parquet, pretrained EfficientNet-Lite0) and print where
# the results are. OUT=... changes the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
exec .venv/bin/python -m raydist.demo --out "${OUT:-runs/demo}" "$@"
