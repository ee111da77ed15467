#!/usr/bin/env bash
# Builds report_fuzzer with clang (libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer over the whole library code it links) and runs
# it over a copy of the seed corpus for a bounded time. Exit status is the
# fuzzer's: non-zero on any crash, leak, sanitizer report or broken contract;
# the reproducer is then left in BUILD_DIR/artifacts/.
#
# usage: tests/fuzz/run_fuzz.sh [BUILD_DIR [SECONDS]]
#   BUILD_DIR  clang build directory (default: build-fuzz at the repository root)
#   SECONDS    fuzzing time (default 60)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
build="${1:-${root}/build-fuzz}"
seconds="${2:-60}"
# A fixed seed and input count make the run reproducible (the test suite
# must not fail by chance); FUZZ_SEED=0 asks libFuzzer for a random seed and
# FUZZ_RUNS=-1 fuzzes until SECONDS pass, for exploring.
seed="${FUZZ_SEED:-1}"
runs="${FUZZ_RUNS:-2000000}"
jobs="${FUZZ_BUILD_JOBS:-2}"

clangxx="$(command -v clang++-14 || command -v clang++ || true)"
clangc="$(command -v clang-14 || command -v clang || true)"
if [[ -z "${clangxx}" || -z "${clangc}" ]]; then
  echo "run_fuzz.sh: clang++ not found (Debian: clang-14, libclang-rt-14-dev)" >&2
  exit 1
fi

# Only the fuzzer's own dependencies are built: the proto, common, ingest and
# compute libraries. Tests stay on so that tests/fuzz is part of the tree;
# benchmarks and CUDA are off.
if [[ ! -f "${build}/CMakeCache.txt" ]]; then
  cmake -S "${root}" -B "${build}" \
    -DCMAKE_C_COMPILER="${clangc}" -DCMAKE_CXX_COMPILER="${clangxx}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link -DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link \
    -DENTROWATCH_SANITIZE=address,undefined -DENTROWATCH_FUZZ=ON \
    -DENTROWATCH_CUDA=OFF -DENTROWATCH_BENCH=OFF -DENTROWATCH_TESTS=ON >"${build}.configure.log" 2>&1 ||
    { cat "${build}.configure.log" >&2; exit 1; }
fi
make -C "${build}" -j"${jobs}" report_fuzzer >"${build}.make.log" 2>&1 ||
  { tail -n 60 "${build}.make.log" >&2; exit 1; }

work="$(mktemp -d "${build}/run.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
cp "${here}"/corpus/* "${work}/"
mkdir -p "${build}/artifacts"
# Known crashes stay reproducible: each file in crashes/ must now pass.
if compgen -G "${here}/crashes/*" >/dev/null; then
  "${build}/tests/fuzz/report_fuzzer" "${here}"/crashes/*
fi
exec "${build}/tests/fuzz/report_fuzzer" "${work}" \
  -seed="${seed}" -runs="${runs}" -max_total_time="${seconds}" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 -artifact_prefix="${build}/artifacts/"
