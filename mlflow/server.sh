#!/usr/bin/env bash
# Start an MLflow tracking server on 127.0.0.1 with a sqlite backend store and a local (or s3://)
# artifact root. Usage: bash mlflow/server.sh [DIR] [PORT] [ARTIFACTS_URI]
# (No __init__.py in this folder on purpose: it would shadow the mlflow library.)
set -euo pipefail
DIR=${1:-runs/mlflow}
PORT=${2:-5000}
ART=${3:-$DIR/artifacts}
mkdir -p "$DIR"
# Job execution off: the server then needs ~440 MB instead of ~1.8 GB (measured here).
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec mlflow server --host 127.0.0.1 --port "$PORT" --backend-store-uri "sqlite:///$DIR/mlflow.db" \
  --artifacts-destination "$ART" --workers 1
