#!/usr/bin/env bash
# Start a Ray head on 127.0.0.1 to try `ray job submit` on one machine. Run from the project root
# with the venv active (jobs run the `python` that `ray start` saw). Stop it with `ray stop`.
set -euo pipefail
PORT=${RAY_PORT:-6380}
DASH=${RAY_DASHBOARD_PORT:-8265}
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   # makes the node advertise 127.0.0.1
# Ray 2.5x+ dashboards require a token: export the same RAY_AUTH_MODE/RAY_AUTH_TOKEN when submitting.
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=${RAY_AUTH_TOKEN:-$(python -c "import secrets; print(secrets.token_hex(16))")}
echo "RAY_AUTH_TOKEN=$RAY_AUTH_TOKEN (export it, with RAY_AUTH_MODE=token, in the shell that submits)"
ray start --head --port="$PORT" --node-ip-address=127.0.0.1 --dashboard-host=127.0.0.1 \
  --dashboard-port="$DASH" --num-cpus="${RAY_NUM_CPUS:-2}" --disable-usage-stats
echo "submit with: ray job submit --address http://127.0.0.1:$DASH --working-dir . \\"
echo "  --runtime-env-json '{\"excludes\": [\".venv\", \".git\", \"runs\"]}' -- python jobs/evaluate.py --data ... --model ... --out ..."
