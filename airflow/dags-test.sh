#!/usr/bin/env bash
# airflow/dags-test.sh [COMMAND...]: `airflow dags test --use-executor coincast`, one DAG run through the configured
# executor (make airflow-test: LocalExecutor, AIRFLOW__CORE__PARALLELISM task processes at a time), not task after task
# in one process. Airflow 3 task processes reach the execution API over HTTP, so an `airflow api-server --apps
# execution` (one worker) runs on a free 127.0.0.1 port for the length of the run, and is stopped on exit; COMMAND
# runs while it starts (make airflow-test: the project's scratch copy and export). The metadata database must be
# migrated first. The API server's log: $AIRFLOW_HOME/api-server.log. Exit status: COMMAND's when it fails, else the
# run's (1 when the DAG run failed). airflow/unstick.py watches the run: Airflow 3.3's LocalExecutor can wait forever
# at shutdown on an idle worker (apache/airflow#67870), which it then stops.
set -euo pipefail
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT="$port"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$port/execution/"
setsid airflow api-server --apps execution --workers 1 --port "$port" >"$AIRFLOW_HOME/api-server.log" 2>&1 &
api=$!
trap 'kill -TERM -- "-$api" 2>/dev/null; wait "$api" 2>/dev/null || true' EXIT
if (($#)); then "$@"; fi
python - "$AIRFLOW__CORE__EXECUTION_API_SERVER_URL" "$api" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1] + "health", int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(f"dags-test.sh: airflow api-server exited (log: {os.environ['AIRFLOW_HOME']}/api-server.log)")
    time.sleep(0.3)
sys.exit(f"dags-test.sh: airflow api-server did not answer {url} within 120 s")
EOF
echo "dags-test.sh: execution API on $AIRFLOW__CORE__EXECUTION_API_SERVER_URL"
airflow dags test --use-executor coincast &
run=$!
# an idle LocalExecutor worker can hold the executor's shutdown forever (apache/airflow#67870): airflow/unstick.py
python "$(dirname "$0")/unstick.py" "$run" &
wait "$run"
