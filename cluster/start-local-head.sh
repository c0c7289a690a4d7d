#!/usr/bin/env bash
# Start a Ray head on 127.0.0.1, with token authentication, to try `ray job submit` on one machine.
# Run from the project root with the venv active (jobs run the `python` that `ray start` saw).
# Stop it with `ray stop`.
#
# The token: RAY_AUTH_TOKEN if you export one, else a fresh one written (mode 600) to
# RAY_AUTH_TOKEN_PATH (default runs/ray_auth_token). It is never printed; submit with
#   RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=<that file> ray job submit --address http://127.0.0.1:8265 -- ...
set -euo pipefail
PORT=${RAY_PORT:-6380}
DASH=${RAY_DASHBOARD_PORT:-8265}
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   # makes the node advertise 127.0.0.1
export RAY_AUTH_MODE=token
if [ -z "${RAY_AUTH_TOKEN:-}" ]; then
  export RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH:-$PWD/runs/ray_auth_token}
  mkdir -p "$(dirname "$RAY_AUTH_TOKEN_PATH")"
  (umask 077 && python -c "import secrets; print(secrets.token_hex(32))" > "$RAY_AUTH_TOKEN_PATH")
  echo "token written to $RAY_AUTH_TOKEN_PATH (export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH to submit)"
fi
# dashboard and Jobs API on loopback only: nothing outside this machine can reach them
# RAY_TEMP_DIR: this head's own session folder (its processes then name it on their command lines)
ray start --head --port="$PORT" --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 \
  --dashboard-port="$DASH" --num-cpus="${RAY_NUM_CPUS:-2}" --disable-usage-stats ${RAY_TEMP_DIR:+--temp-dir="$RAY_TEMP_DIR"}
echo "submit with: ray job submit --address http://127.0.0.1:$DASH --working-dir . \\"
echo "  --runtime-env-json '{\"excludes\": [\".venv\", \".git\", \"runs\"]}' -- python jobs/evaluate.py --data ... --model ... --out ..."
