#!/usr/bin/env bash
# CPU token-entropy benchmark with its PyTorch anchors in the same run.
#   bench/compute/run_cpu_bench.sh [BUILD_DIR] [ROWS] [VOCAB] [REPEATS]
# Needs the entrowatch_engine_bench and entrowatch_compute_bench targets
# built in BUILD_DIR (default: build) and Debian's python3-torch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
rows=${2:-256}
vocab=${3:-152064}
repeats=${4:-5}
engine="$build/bench/compute/entrowatch_engine_bench"
micro="$build/bench/compute/entrowatch_compute_bench"
for bin in "$engine" "$micro"; do
  [ -x "$bin" ] || { echo "missing $bin: build entrowatch_engine_bench entrowatch_compute_bench" >&2; exit 2; }
done
/usr/bin/python3 "$here/cpu_bench.py" "$engine" "$rows" "$vocab" "$repeats"
echo
echo "# Google Benchmark (real time; CPU time is the calling thread's)"
"$micro" --benchmark_min_time=0.5 2>&1 | grep -E '^(BM_|Benchmark|-)'
