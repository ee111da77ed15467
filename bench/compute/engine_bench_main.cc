// entrowatch_engine_bench: one engine timing through the same API the
// `entrowatch bench` commands use, for scripts.
//   entrowatch_engine_bench entropy ROWS VOCAB DTYPE THREADS [BACKEND]
//   entrowatch_engine_bench attention HEADS KV_HEADS SEQ HEAD_DIM CAUSAL(0|1) DTYPE THREADS
//   [BACKEND]
// Prints the result as one JSON line.

#include <cstdio>
#include <string>
#include <vector>

#include "common/command_line.h"
#include "common/status_macros.h"
#include "compute/engine_bench.h"

namespace {

using entrowatch::common::CommandSpec;
using entrowatch::common::ParsedArgs;
using entrowatch::compute::BenchResult;

constexpr int64_t kMaxDim = int64_t{1} << 24;

CommandSpec EntropySpec() {
  CommandSpec spec;
  spec.name = "entrowatch_engine_bench entropy";
  spec.usage = "entrowatch_engine_bench entropy ROWS VOCAB DTYPE THREADS [BACKEND]";
  spec.summary = "Time the token-entropy engine on random logits; prints one JSON line.";
  spec.min_positional = 4;
  spec.max_positional = 5;
  return spec;
}

CommandSpec AttentionSpec() {
  CommandSpec spec;
  spec.name = "entrowatch_engine_bench attention";
  spec.usage =
      "entrowatch_engine_bench attention HEADS KV_HEADS SEQ HEAD_DIM CAUSAL(0|1) DTYPE THREADS "
      "[BACKEND]";
  spec.summary = "Time the attention-entropy engine on random q and k; prints one JSON line.";
  spec.min_positional = 7;
  spec.max_positional = 8;
  return spec;
}

absl::StatusOr<BenchResult> RunEntropy(const ParsedArgs& args) {
  entrowatch::compute::EntropyBenchOptions options;
  ASSIGN_OR_RETURN(options.rows, args.PositionalInt(0, "ROWS", 1, kMaxDim));
  ASSIGN_OR_RETURN(options.vocab, args.PositionalInt(1, "VOCAB", 1, kMaxDim));
  ASSIGN_OR_RETURN(options.dtype, entrowatch::compute::ParseBenchDType(args.positional()[2]));
  ASSIGN_OR_RETURN(options.threads, args.PositionalInt(3, "THREADS", 0, 1024));
  if (args.positional().size() > 4) {
    options.backend = args.positional()[4];
  }
  return entrowatch::compute::RunEntropyBench(options);
}

absl::StatusOr<BenchResult> RunAttention(const ParsedArgs& args) {
  entrowatch::compute::AttentionBenchOptions options;
  ASSIGN_OR_RETURN(options.heads, args.PositionalInt(0, "HEADS", 1, 4096));
  ASSIGN_OR_RETURN(options.kv_heads, args.PositionalInt(1, "KV_HEADS", 0, 4096));
  ASSIGN_OR_RETURN(options.seq, args.PositionalInt(2, "SEQ", 1, 1 << 20));
  ASSIGN_OR_RETURN(options.head_dim, args.PositionalInt(3, "HEAD_DIM", 1, 4096));
  ASSIGN_OR_RETURN(const int64_t causal, args.PositionalInt(4, "CAUSAL", 0, 1));
  options.causal = causal == 1;
  ASSIGN_OR_RETURN(options.dtype, entrowatch::compute::ParseBenchDType(args.positional()[5]));
  ASSIGN_OR_RETURN(options.threads, args.PositionalInt(6, "THREADS", 0, 1024));
  if (args.positional().size() > 7) {
    options.backend = args.positional()[7];
  }
  return entrowatch::compute::RunAttentionBench(options);
}

int Usage() {
  std::fprintf(stderr, "usage: %s\n       %s\n", EntropySpec().usage.c_str(),
               AttentionSpec().usage.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    return Usage();
  }
  const std::string kind = argv[1];
  if (kind != "entropy" && kind != "attention") {
    return Usage();
  }
  const CommandSpec spec = kind == "entropy" ? EntropySpec() : AttentionSpec();
  const ParsedArgs args =
      entrowatch::common::ParseArgsOrExit(spec, std::vector<std::string>(argv + 2, argv + argc));
  const absl::StatusOr<BenchResult> result =
      kind == "entropy" ? RunEntropy(args) : RunAttention(args);
  if (absl::IsInvalidArgument(result.status())) {
    std::fprintf(stderr, "%s: %s\n", spec.name.c_str(),
                 std::string(result.status().message()).c_str());
    return 2;
  }
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", entrowatch::compute::BenchResultToJson(*result).c_str());
  return 0;
}
