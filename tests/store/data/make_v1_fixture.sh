#!/bin/sh
# Writes v1_state.db: the state database of an entrowatchd that stores
# contributions in the schema version 1 layout, after replaying
# v1_reports.jsonl (steps still pending when it stops).
# usage: make_v1_fixture.sh ENTROWATCHD ENTROWATCH
set -eu
daemon=$1
cli=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/config.yaml" <<YAML
grpc:
  listen: "127.0.0.1:0"
metrics:
  listen: "127.0.0.1:0"
console:
  enabled: false
compute:
  backend: cpu
state_dir: "$work/state"
aggregation:
  step_timeout_seconds: 3600
YAML
"$daemon" --config "$work/config.yaml" --ready-file "$work/ready" 2> "$work/log" &
pid=$!
i=0
while [ ! -s "$work/ready" ] && [ $i -lt 200 ]; do
  sleep 0.1
  i=$((i + 1))
done
addr=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["grpc_address"])' "$work/ready")
"$cli" --addr "$addr" replay "$here/v1_reports.jsonl"
kill -TERM "$pid"
wait "$pid"
cp "$work/state/entrowatch.db" "$here/v1_state.db"
