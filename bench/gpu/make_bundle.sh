#!/usr/bin/env bash
# Packs what bench/gpu/verify.sh needs into one folder that runs on a GPU host:
#   bench/gpu/make_bundle.sh BUILD_DIR DEST
# BUILD_DIR must hold entrowatch_compute_test, entrowatch_gpu_bench and
# entrowatch_engine_bench built with CUDA. Binaries and their shared libraries
# (all but libc, the CUDA driver/runtime and NCCL, which a GPU host has) go to
# DEST/bin and DEST/lib, beside verify.sh and the PyTorch anchors.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: make_bundle.sh BUILD_DIR DEST" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
build=$1
dest=$2
bins=("$build/tests/compute/entrowatch_compute_test" "$build/bench/gpu/entrowatch_gpu_bench"
      "$build/bench/compute/entrowatch_engine_bench")
mkdir -p "$dest/bin" "$dest/lib"
skip='/(libc|libm|libstdc\+\+|libgcc_s|ld-linux-x86-64|libpthread|librt|libdl|libcuda|libcudart|libnccl|libnvidia[^/]*)\.so'
for bin in "${bins[@]}"; do
  [ -x "$bin" ] || { echo "missing $bin" >&2; exit 2; }
  cp -L "$bin" "$dest/bin/"
  ldd "$bin" | awk '/=> \//{print $3}' | { grep -Ev "$skip" || true; } | while read -r lib; do
    cp -Ln "$lib" "$dest/lib/" 2>/dev/null || true
  done
done
cp "$here/verify.sh" "$here/torch_anchors_gpu.py" "$here/summarize.py" "$dest/"
du -sh "$dest" | awk '{print "bundle size: " $1}'
