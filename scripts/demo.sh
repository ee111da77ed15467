#!/usr/bin/env bash
# Runs entrowatchd on config/entrowatch.yaml, drives it with two simulated
# runs (one healthy, one collapsing), prints `entrowatch status` and an
# excerpt of /metrics, saves a screenshot of the collapsing run's console page
# to BUILD_DIR/demo/, then stops the daemon (ENTROWATCH_DEMO_KEEP=1 keeps it
# running to explore the console). Usage: scripts/demo.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
daemon="$build/src/daemon/entrowatchd"
cli="$build/src/cli/entrowatch"
work=$(mktemp -d /tmp/entrowatch-demo-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting entrowatchd on config/entrowatch.yaml"
"$daemon" --config config/entrowatch.yaml --ready-file "$work/ready.json" 2> "$work/daemon.log" &
pid=$!
for _ in $(seq 200); do
  [ -s "$work/ready.json" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log"; exit 1; }
  sleep 0.05
done
[ -s "$work/ready.json" ] || { echo "entrowatchd did not become ready"; cat "$work/daemon.log"; exit 1; }
field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" "$work/ready.json"; }
addr=$(field grpc_address)
metrics=$(field metrics_address)
cat "$work/daemon.log"

echo
echo "== entrowatch simulate: a healthy run and a collapsing run, 2 ranks each"
"$cli" simulate --addr "$addr" --scenario healthy --run demo-healthy --ranks 2 --steps 150 &
healthy=$!
"$cli" simulate --addr "$addr" --scenario entropy_collapse --run demo-collapse --ranks 2 --steps 150
wait "$healthy"

echo
echo "== entrowatch status"
"$cli" status --addr "$addr"
echo
echo "== entrowatch status --run demo-collapse"
"$cli" status --addr "$addr" --run demo-collapse

echo
echo "== excerpt of http://$metrics/metrics"
curl -s "http://$metrics/metrics" | grep -E '^entrowatch_(token_entropy_(mean|p10|p90)_nats|grad_norm|last_step|health_state|anomaly_active|reports_total|build_info)' \
  | grep -v ' 0$' | head -40

echo
echo "== the web console: http://$metrics/ (runs), http://$metrics/runs/demo-collapse"
mkdir -p "$build/demo"
shot="$(cd "$build/demo" && pwd)/demo-collapse.png"
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$chromium" ]; then
  rm -f "$shot"
  timeout 60 "$chromium" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --force-device-scale-factor=1 --window-size=1400,1240 --virtual-time-budget=10000 \
    --user-data-dir="$work/chromium" --screenshot="$shot" \
    "http://$metrics/runs/demo-collapse" > "$work/chromium.log" 2>&1 || true
  if [ -s "$shot" ]; then
    echo "screenshot of the collapsing run's page: $shot"
  else
    echo "chromium could not save a screenshot:"; tail -n 5 "$work/chromium.log"
  fi
else
  echo "(no chromium here for a screenshot; scripts/setup-deps.sh test installs it)"
fi
if [ "${ENTROWATCH_DEMO_KEEP:-0}" = 1 ]; then
  echo
  echo "== entrowatchd keeps running (pid $pid): open http://$metrics/ in a browser; Ctrl-C stops it"
  wait "$pid" || true
  pid=
  exit 0
fi
echo "To explore the console in a browser, keep the daemon running: ENTROWATCH_DEMO_KEEP=1 make demo"

echo
echo "== stopping entrowatchd (pid $pid)"
kill -TERM "$pid"
wait "$pid"
pid=
tail -n 2 "$work/daemon.log"
