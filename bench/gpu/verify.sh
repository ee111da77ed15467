#!/usr/bin/env bash
# The whole GPU check in one command, run from a bundle made by make_bundle.sh
# on a GPU host:  cd BUNDLE && ./verify.sh
# Prints device info, runs every gpu-labelled test (CudaEngineTest.*), the
# kernel and end-to-end benchmarks and the PyTorch anchors in the same run,
# then one table with pass / fail per line (summarize.py): the token-entropy
# kernel must read at least as fast as torch's amax pass over the same
# tensor, the attention-entropy kernel must be no slower than flash SDPA
# forward on the same shape. Kernel times on both sides are kernel-only
# (back-to-back launches, L2 flushed before each sample) on shapes larger
# than the L2. Exits non-zero when a test fails, a figure is missing or a
# line fails. Raw outputs land in $OUT (default ./verify-out).
set -uo pipefail
cd "$(dirname "$0")"
out=${OUT:-$PWD/verify-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$PWD/lib:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
python=${PYTHON:-python3}
status=0

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 | tee "$out/device.txt"
date -u +"%Y-%m-%d %H:%M UTC" | tee -a "$out/device.txt"

echo "== gpu tests"
# The fixture path compiled into the test binary is the build tree's; the
# bundle carries its own copy and the gpu tests do not read it.
if ! bin/entrowatch_compute_test --gtest_filter='CudaEngineTest.*' --gtest_brief=1 \
    2>&1 | tee "$out/gpu_tests.txt"; then
  status=1
fi
if grep -q "SKIPPED" "$out/gpu_tests.txt"; then
  echo "gpu tests were skipped: no usable device" >&2
  status=1
fi

echo "== entrowatch kernels and engine"
bin/entrowatch_gpu_bench 2>&1 | tee "$out/entrowatch_gpu.jsonl" || status=1

echo "== PyTorch anchors"
OUT="$out" "$python" torch_anchors_gpu.py 2>&1 | tee "$out/anchors.txt" || status=1

echo "== summary"
if ! "$python" summarize.py "$out/entrowatch_gpu.jsonl" "$out/anchor.json" \
    | tee "$out/summary.md"; then
  status=1
fi
[ "$status" -eq 0 ] && echo "verify: all lines pass" || echo "verify: FAILED" >&2
exit $status
