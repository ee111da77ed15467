#!/usr/bin/env bash
# Runs entrowatchd on config/entrowatch.yaml, drives it with two simulated
# runs (one healthy, one collapsing), prints `entrowatch status` and an
# excerpt of /metrics, then stops the daemon. Usage: scripts/demo.sh [BUILD_DIR]
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
field() { sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" "$work/ready.json"; }
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
echo "== stopping entrowatchd (pid $pid)"
kill -TERM "$pid"
wait "$pid"
pid=
tail -n 2 "$work/daemon.log"
