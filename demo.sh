#!/usr/bin/env bash
# The whole thing in one command, from a fresh clone:
#   sets up .venv (the SDK with the `local` extra, Flask, requests and the matching
#   auto-instrumentations), starts `hyperdx local` (ClickStack's tables in embedded ClickHouse,
#   no Docker) on a temporary data directory and free ports, runs examples/flask_app.py under
#   `opentelemetry-instrument`, sends it a few requests (one failing), prints what arrived
#   (logs, traces, one trace's waterfall, metrics) and stops everything.
# Environment: PYTHON (interpreter that creates .venv, default python3), KEEP_DATA=1 keeps the
# data directory and prints its path.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv/bin
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hyperdx-demo.XXXXXX")
DATA="$WORK/data"
LOCAL_PID=""
APP_PID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  local code=$?
  if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then
    kill -TERM "$APP_PID" 2>/dev/null || true
    wait "$APP_PID" 2>/dev/null || true
  fi
  if [ -n "$LOCAL_PID" ] && kill -0 "$LOCAL_PID" 2>/dev/null; then
    kill -INT "$LOCAL_PID" 2>/dev/null || true
    wait "$LOCAL_PID" 2>/dev/null || true
  fi
  if [ "$code" -ne 0 ]; then
    echo "demo failed (exit $code); logs:" >&2
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  fi
  if [ "${KEEP_DATA:-0}" = "1" ]; then
    echo "data kept in $DATA (hyperdx sql --data-dir $DATA \"SELECT ...\")"
  else
    rm -rf "$WORK"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. environment ---------------------------------------------------------------------------
if [ ! -x "$VENV/python" ]; then
  say "creating .venv"
  "$PYTHON" -m venv .venv
fi
if "$VENV/python" -c "import chdb, flask, requests, hyperdx.local.server, \
opentelemetry.instrumentation.flask, opentelemetry.instrumentation.requests" 2>/dev/null; then
  say "using the existing .venv"
else
  say "installing hyperdx-opentelemetry[local], flask, requests"
  "$VENV/python" -m pip install -q --upgrade pip
  "$VENV/python" -m pip install -q -e ".[local]" flask requests
  say "installing the matching instrumentations (opentelemetry-bootstrap -a install)"
  if ! "$VENV/opentelemetry-bootstrap" -a install >"$WORK/bootstrap.log" 2>&1; then
    cat "$WORK/bootstrap.log" >&2
    exit 1
  fi
  "$VENV/python" -m pip list 2>/dev/null | awk '/^opentelemetry-instrumentation-/ {print "  " $1 " " $2}'
fi

py() { "$VENV/python" -c "$@"; }
http_get() {  # prints the status code of GET $1
  py 'import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)' "$1"
}

# --- 2. hyperdx local -------------------------------------------------------------------------
say "starting hyperdx local (data: $DATA)"
export HYPERDX_LOCAL_DATA_DIR="$DATA"
"$VENV/hyperdx" local --data-dir "$DATA" --http-port 0 --grpc-port 0 >"$WORK/local.log" 2>&1 &
LOCAL_PID=$!
for _ in $(seq 1 300); do
  [ -f "$DATA/hyperdx-local.json" ] && break
  kill -0 "$LOCAL_PID" 2>/dev/null || { cat "$WORK/local.log" >&2; exit 1; }
  sleep 0.1
done
[ -f "$DATA/hyperdx-local.json" ] || { echo "hyperdx local did not start" >&2; exit 1; }
cat "$WORK/local.log"
eval "$(py 'import json, sys
s = json.load(open(sys.argv[1]))
print("HTTP_PORT=%s; API_KEY=%s" % (s["http_port"], s["api_key"]))' "$DATA/hyperdx-local.json")"
APP_PORT=$(py 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# --- 3. the example app under the agent -------------------------------------------------------
say "running examples/flask_app.py under opentelemetry-instrument on port $APP_PORT"
OTEL_SERVICE_NAME=shop \
HYPERDX_API_KEY="$API_KEY" \
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$HTTP_PORT" \
OTEL_METRIC_EXPORT_INTERVAL=1000 \
PORT="$APP_PORT" \
  "$VENV/opentelemetry-instrument" "$VENV/python" examples/flask_app.py >"$WORK/app.log" 2>&1 &
APP_PID=$!
for _ in $(seq 1 200); do
  [ "$(http_get "http://127.0.0.1:$APP_PORT/" 2>/dev/null || true)" = "200" ] && break
  kill -0 "$APP_PID" 2>/dev/null || { cat "$WORK/app.log" >&2; exit 1; }
  sleep 0.1
done

say "sending requests"
for path in /checkout /checkout /checkout /fail; do
  echo "GET $path -> $(http_get "http://127.0.0.1:$APP_PORT$path")"
done

say "stopping the app (SIGTERM flushes its telemetry)"
kill -TERM "$APP_PID"
wait "$APP_PID" || true
APP_PID=""

# Everything the app exported has been answered 200, and a 200 means stored; wait anyway in
# case the exporter was still retrying.
TRACE_SQL="SELECT TraceId FROM otel_traces WHERE ServiceName = 'shop' AND SpanName = 'GET /checkout' ORDER BY Timestamp DESC LIMIT 1"
TRACE_ID=""
for _ in $(seq 1 100); do
  TRACE_ID=$("$VENV/hyperdx" sql --json "$TRACE_SQL" | py 'import json, sys
rows = json.load(sys.stdin)
print(rows[0]["TraceId"] if rows else "")')
  [ -n "$TRACE_ID" ] && break
  sleep 0.2
done
[ -n "$TRACE_ID" ] || { echo "no checkout trace arrived" >&2; exit 1; }

# --- 4. what arrived --------------------------------------------------------------------------
say "hyperdx logs --service shop"
"$VENV/hyperdx" logs --service shop
say "hyperdx traces"
"$VENV/hyperdx" traces
say "hyperdx trace $TRACE_ID"
"$VENV/hyperdx" trace "$TRACE_ID"
FAILED_ID=$("$VENV/hyperdx" sql --json "SELECT TraceId FROM otel_traces WHERE ServiceName = 'shop' AND StatusCode = 'Error' LIMIT 1" \
  | py 'import json, sys
rows = json.load(sys.stdin)
print(rows[0]["TraceId"] if rows else "")')
if [ -n "$FAILED_ID" ]; then
  say "hyperdx trace $FAILED_ID   (the failing request)"
  "$VENV/hyperdx" trace "$FAILED_ID"
fi
say "hyperdx metrics"
"$VENV/hyperdx" metrics
say "the same data with ClickStack's SQL"
"$VENV/hyperdx" sql "SELECT SpanName, count() AS spans, round(avg(Duration) / 1e6, 2) AS avg_ms, countIf(StatusCode = 'Error') AS errors FROM otel_traces GROUP BY SpanName ORDER BY SpanName"

CH_URL=$(sed -n 's/^ *ClickHouse HTTP *\(http[^ ]*\).*/\1/p' "$WORK/local.log")
if [ -n "$CH_URL" ]; then
  say "the same data over ClickHouse's HTTP interface ($CH_URL, read-only, password = the key)"
  py 'import sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/?default_format=PrettyCompactMonoBlock",
    data=b"SELECT ServiceName, SeverityText, count() AS records FROM otel_logs GROUP BY ALL ORDER BY ALL",
    headers={"X-ClickHouse-User": "default", "X-ClickHouse-Key": sys.argv[2]})
print(urllib.request.urlopen(req, timeout=30).read().decode(), end="")' "$CH_URL" "$API_KEY"
fi

say "done: stopping hyperdx local"
if [ "${KEEP_DATA:-0}" = "1" ]; then
  START="$VENV/hyperdx local --data-dir $DATA"
  KEY_ARG="$API_KEY"
else
  START="$VENV/hyperdx local        # KEEP_DATA=1 ./demo.sh keeps this demo's data to browse"
  KEY_ARG='"$(cat ~/.local/share/hyperdx/local/api-key)"'
fi
say "try it with HyperDX's own terminal UI (hdx): start hyperdx local, point your app at it, then"
echo "  $START"
echo "  npx -y @hyperdx/cli@0.6.3 auth login -a http://127.0.0.1:8000 -e you@localhost -p $KEY_ARG"
echo "  npx -y @hyperdx/cli@0.6.3 tui          (the port is the 'HyperDX API' one hyperdx local prints)"
