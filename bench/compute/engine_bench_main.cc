// entrowatch_engine_bench: one engine timing through the same API the
// `entrowatch bench` commands use, for scripts.
//   entrowatch_engine_bench entropy ROWS VOCAB DTYPE THREADS [BACKEND]
//   entrowatch_engine_bench attention HEADS KV_HEADS SEQ HEAD_DIM CAUSAL(0|1) DTYPE THREADS
//   [BACKEND]
// Prints the result as one JSON line.

#include <cstdio>
#include <cstdlib>
#include <string>

#include "compute/engine_bench.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: entrowatch_engine_bench entropy ROWS VOCAB DTYPE THREADS [BACKEND]\n"
               "       entrowatch_engine_bench attention HEADS KV_HEADS SEQ HEAD_DIM CAUSAL DTYPE "
               "THREADS [BACKEND]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using entrowatch::compute::BenchResult;
  if (argc < 2) {
    return Usage();
  }
  const std::string kind = argv[1];
  absl::StatusOr<BenchResult> result;
  if (kind == "entropy" && (argc == 6 || argc == 7)) {
    entrowatch::compute::EntropyBenchOptions options;
    options.rows = std::atoll(argv[2]);
    options.vocab = std::atoll(argv[3]);
    auto dtype = entrowatch::compute::ParseBenchDType(argv[4]);
    if (!dtype.ok()) {
      std::fprintf(stderr, "%s\n", dtype.status().ToString().c_str());
      return 2;
    }
    options.dtype = *dtype;
    options.threads = std::atoi(argv[5]);
    if (argc == 7) {
      options.backend = argv[6];
    }
    result = entrowatch::compute::RunEntropyBench(options);
  } else if (kind == "attention" && (argc == 9 || argc == 10)) {
    entrowatch::compute::AttentionBenchOptions options;
    options.heads = std::atoll(argv[2]);
    options.kv_heads = std::atoll(argv[3]);
    options.seq = std::atoll(argv[4]);
    options.head_dim = std::atoll(argv[5]);
    options.causal = std::string(argv[6]) == "1";
    auto dtype = entrowatch::compute::ParseBenchDType(argv[7]);
    if (!dtype.ok()) {
      std::fprintf(stderr, "%s\n", dtype.status().ToString().c_str());
      return 2;
    }
    options.dtype = *dtype;
    options.threads = std::atoi(argv[8]);
    if (argc == 10) {
      options.backend = argv[9];
    }
    result = entrowatch::compute::RunAttentionBench(options);
  } else {
    return Usage();
  }
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", entrowatch::compute::BenchResultToJson(*result).c_str());
  return 0;
}
