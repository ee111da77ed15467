#!/usr/bin/env bash
# Ingest load benchmark: starts entrowatchd and the do-nothing gRPC sink on
# 127.0.0.1 (free ports), drives each with the same payloads for N = 1, 64,
# 1024 streams; then saturates a second daemon with a small queue bound by
# 1024 streams and a burst of unary Submits to show pushback (flow control,
# RESOURCE_EXHAUSTED) and its RSS against the bound. Prints the machine, the
# config bounds and one table; the daemon/sink ratio is the figure that
# survives a noisy machine.
#
# usage: bench/load/run_load.sh [BUILD_DIR]      (default: build-load)
# environment:
#   LOAD_STREAMS="1 64 1024"   stream counts
#   LOAD_SECONDS=10            sending time per (N, server), 1 s warm-up included
#   LOAD_ROUNDS=3              sink/daemon pairs per N, alternated; the ratio
#                              reported is the median over the rounds
#   LOAD_WINDOW=4              reports in flight per stream
#   LOAD_BURST=48              concurrent Submits with logits at the end (0 = none)
#   LOAD_QUEUE_MAX_BYTES=536870912   the daemon's ingest.queue_max_bytes (its
#                              memory_limit_bytes is 128 MiB more)
#   LOAD_MEMORY_BUDGET=1610612736    the daemon's ingest.memory_budget_bytes
#   LOAD_MAX_RSS_MB=6144       safety stop: stop sending when a server's RSS passes this
#   LOAD_OVERLOAD=1            0 skips the overload check (it can take several GiB)
#   LOAD_OVERLOAD_QUEUE_BYTES=67108864   queue bound of the second, deliberately
#                              small daemon that the overload check saturates
#   LOAD_OVERLOAD_BUDGET=536870912   its ingest.memory_budget_bytes
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
build="$(cd "${1:-${root}/build-load}" && pwd)"
streams_list="${LOAD_STREAMS:-1 64 1024}"
seconds="${LOAD_SECONDS:-10}"
rounds="${LOAD_ROUNDS:-3}"
window="${LOAD_WINDOW:-4}"
burst="${LOAD_BURST:-48}"
queue_max_bytes="${LOAD_QUEUE_MAX_BYTES:-536870912}"
memory_budget="${LOAD_MEMORY_BUDGET:-1610612736}"
overload_budget="${LOAD_OVERLOAD_BUDGET:-536870912}"
max_rss_mb="${LOAD_MAX_RSS_MB:-6144}"
overload="${LOAD_OVERLOAD:-1}"
overload_queue_bytes="${LOAD_OVERLOAD_QUEUE_BYTES:-67108864}"

load="${build}/bench/load/entrowatch_load"
sink="${build}/bench/load/entrowatch_null_sink"
daemon="${build}/src/daemon/entrowatchd"
for binary in "${load}" "${sink}" "${daemon}"; do
  if [[ ! -x "${binary}" ]]; then
    echo "run_load.sh: ${binary} missing; make -C ${build} entrowatch_load entrowatch_null_sink entrowatchd" >&2
    exit 1
  fi
done

work="$(mktemp -d /tmp/entrowatch_load.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "${pid}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${pid}" 2>/dev/null || true
  done
  rm -rf "${work}"
}
trap cleanup EXIT

wait_ready() {  # PID FILE
  for _ in $(seq 300); do
    [[ -s "$2" ]] && return 0
    kill -0 "$1" 2>/dev/null || { echo "run_load.sh: server $1 exited early" >&2; return 1; }
    sleep 0.1
  done
  echo "run_load.sh: no ready file $2 after 30 s" >&2
  return 1
}

start_daemon() {  # NAME QUEUE_MAX_BYTES WORKERS BACKEND MEMORY_BUDGET
  cat >"${work}/$1.yaml" <<YAML
grpc: {listen: "127.0.0.1:0"}
metrics: {listen: "127.0.0.1:0"}
ingest: {queue_max_bytes: $2, workers: $3, memory_limit_bytes: $(($2 + (128 << 20))),
         memory_budget_bytes: $5}
# Every round streams to new runs (128 per round at N = 1024).
runs: {max_runs: 4096}
compute: {backend: $4}
log: {level: warn}
YAML
  "${daemon}" --config "${work}/$1.yaml" --ready-file "${work}/$1.ready" 2>"${work}/$1.log" &
  pids+=($!)
  wait_ready "${pids[-1]}" "${work}/$1.ready"
}

start_daemon daemon "${queue_max_bytes}" 2 auto "${memory_budget}"
daemon_pid="${pids[-1]}"
"${sink}" --ready-file "${work}/sink.ready" --max-seconds 3600 2>"${work}/sink.log" &
pids+=($!)
sink_pid="${pids[-1]}"
wait_ready "${sink_pid}" "${work}/sink.ready"

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "daemon: $(cat "${work}/daemon.ready")"
echo "config: ingest.queue_max_bytes ${queue_max_bytes} ($((queue_max_bytes >> 20)) MiB)," \
  "ingest.memory_limit_bytes queue + 128 MiB, max_waiting_reports default 64," \
  "ingest.memory_budget_bytes ${memory_budget} ($((memory_budget >> 20)) MiB), workers 2"
echo "load: ${seconds} s per run (1 s warm-up), window ${window} per stream, 8 ranks per run," \
  "512 token entropies per report, a [64, 152064] bf16 logits block every 10th step"
echo

results="${work}/results.jsonl"
for n in ${streams_list}; do
  for round in $(seq "${rounds}"); do
    for server in sink daemon; do
      verify=()
      [[ "${server}" == daemon ]] && verify=(--verify-runs)
      "${load}" --ready-file "${work}/${server}.ready" --streams "${n}" --window "${window}" \
        --duration "${seconds}" --warmup 1 --drain 60 --max-server-rss-mb "${max_rss_mb}" \
        --run-prefix "load-${n}-${server}-${round}" --label "${server}/${round}" \
        "${verify[@]}" --json >>"${results}" || true
    done
  done
done
# Beyond capacity: a daemon with a small queue bound and one worker on the
# float64 reference engine (about 10x slower than the vectorized one), so
# that offered load exceeds capacity on any machine; first 1024 streams, then
# a burst of unary Submits. Daemon rows end with a check, run by run through
# Monitor.GetRun, that entrowatchd holds every report it acknowledged
# (entrowatch_load exits 1 otherwise; the table says how many are missing).
if [[ "${overload}" != 0 ]]; then
  kill -TERM "${sink_pid}" "${daemon_pid}"
  start_daemon overload "${overload_queue_bytes}" 1 cpu-reference "${overload_budget}"
  "${load}" --ready-file "${work}/overload.ready" --streams 1024 --window "${window}" \
    --duration "${seconds}" --warmup 1 --drain 60 --max-server-rss-mb "${max_rss_mb}" \
    --run-prefix "overload" --label "overload-streams" --verify-runs --json >>"${results}" || true
  if [[ "${burst}" -gt 0 ]]; then
    "${load}" --ready-file "${work}/overload.ready" --streams 1 --duration 2 --warmup 1 \
      --submit-burst "${burst}" --run-prefix "burst" --label "overload-burst" --json >>"${results}"
  fi
fi

/usr/bin/python3 - "${results}" "${memory_budget}" "${overload_queue_bytes}" "${overload_budget}" <<'PY'
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
budget_mib = int(sys.argv[2]) / 2**20
overload_queue_mib = int(sys.argv[3]) / 2**20
overload_budget_mib = int(sys.argv[4]) / 2**20
import statistics

def split(label):
    server, _, round_ = label.partition("/")
    return server, round_

sink = {(r["streams"], split(r["label"])[1]): r for r in rows if split(r["label"])[0] == "sink"}
ratios = {}
print("| N | server / round | reports/s | MiB/s | Ack p50 ms | Ack p99 ms | vs sink | server CPU cores "
      "| RSS end MiB | RSS max MiB | RSS max / budget | sent | acked ok | refused, resent | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    server, round_ = split(r["label"])
    if server not in ("sink", "daemon"):
        continue
    ratio = ""
    paired = sink.get((r["streams"], round_), {})
    if server == "daemon" and paired.get("reports_per_s"):
        value = r["reports_per_s"] / paired["reports_per_s"]
        ratios.setdefault(r["streams"], []).append(value)
        ratio = f"{value:.2f}"
    cores = r["server_cpu_s"] / r["window_s"] if r["window_s"] else 0
    errors = sum(r["ack_errors"].values()) + r["streams_failed"] + r["unmatched"]
    note = " (RSS stop)" if r["stopped_early"] else ""
    print(f'| {r["streams"]} | {r["label"]}{note} | {r["reports_per_s"]:.0f} | {r["mib_per_s"]:.0f} '
          f'| {r["p50_ms"]:.1f} | {r["p99_ms"]:.1f} | {ratio} | {cores:.2f} '
          f'| {r["server_rss_end_mib"]:.0f} | {r["server_rss_max_mib"]:.0f} '
          f'| {r["server_rss_max_mib"] / budget_mib if budget_mib else float("nan"):.2f} '
          f'| {r["sent"]} | {r["ok"]} '
          f'| {r["refused"]}, {r["resent"]} | {errors} |')
verified = [r for r in rows if split(r["label"])[0] == "daemon" and "runs_verified" in r]
if verified:
    missing = sum(r["acked_missing"] for r in verified)
    errors = [r["verify_error"] for r in verified if r["verify_error"]]
    print(f"\nGetRun check of the daemon rows: {sum(r['runs_verified'] for r in verified)} runs, "
          f"{missing} acknowledged reports missing" + (f"; {errors[0]}" if errors else ""))
if ratios:
    print()
    print("| N | daemon / sink, median of rounds | rounds | min | max |")
    print("|---|---|---|---|---|")
    for n, values in ratios.items():
        print(f"| {n} | {statistics.median(values):.2f} | {len(values)} | {min(values):.2f} "
              f"| {max(values):.2f} |")
if any(r["label"].startswith("overload") for r in rows):
    print(f"\nBeyond capacity: a second daemon with ingest.queue_max_bytes {overload_queue_mib:.0f} MiB, "
      f"ingest.memory_limit_bytes {overload_queue_mib + 128:.0f} MiB, "
      f"ingest.memory_budget_bytes {overload_budget_mib:.0f} MiB, 1 worker, the float64 reference engine")
for r in rows:
    if r["label"] == "overload-streams":
        errors = sum(r["ack_errors"].values()) + r["streams_failed"] + r["unmatched"]
        print(f'- 1024 streams: {r["reports_per_s"]:.0f} reports/s, Ack p50 {r["p50_ms"]:.0f} ms, '
              f'p99 {r["p99_ms"]:.0f} ms; of {r["sent"]} sent: {r["ok"]} acknowledged OK, '
              f'{r["late"]} late (step already finalized by timeout), '
              f'{r["sent"] - r["acked"]} unacknowledged, {errors} errors; pushback: {r["refused"]} reports '
              f'answered UNAVAILABLE, {r["stream_restarts"]} streams resumed, {r["resent"]} reports resent; '
              f'RSS max {r["server_rss_max_mib"]:.0f} MiB = '
              f'{r["server_rss_max_mib"] / overload_budget_mib if overload_budget_mib else float("nan"):.2f} '
              f'x the memory budget'
              f'{" (RSS safety stop)" if r["stopped_early"] else ""}; '
              f'GetRun check of {r["runs_verified"]} runs: {r["acked_missing"]} acknowledged '
              f'reports missing')
    if r["label"] == "overload-burst":
        names = {"0": "OK", "8": "RESOURCE_EXHAUSTED", "4": "DEADLINE_EXCEEDED", "14": "UNAVAILABLE"}
        codes = ", ".join(f'{names.get(k, "code " + k)} {v}' for k, v in r["submit_codes"].items())
        print(f'- {sum(r["submit_codes"].values())} concurrent unary Submits with a logits block '
              f'each: {codes}; RSS peak since start {r["server_rss_hwm_mib"]:.0f} MiB')
PY
