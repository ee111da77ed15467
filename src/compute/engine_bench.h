#pragma once

// Capacity benchmarks behind `entrowatch bench entropy` and `entrowatch bench
// attention`: build the engine the daemon would build for a backend, time it
// on random inputs of a given shape, and report throughput.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/tensor_view.h"
#include "compute/entropy_engine.h"

namespace entrowatch::compute {

struct EntropyBenchOptions {
  std::string backend = "cpu";  // auto | cuda | cpu | cpu-reference
  int64_t rows = 256;
  int64_t vocab = 152064;
  common::DType dtype = common::DType::kFloat32;
  int threads = 0;           // CPU engine threads; 0 = one per core
  double min_seconds = 1.0;  // keep timing until this much has elapsed
  int min_iterations = 3;
};

struct AttentionBenchOptions {
  std::string backend = "cpu";
  int64_t heads = 32;
  int64_t kv_heads = 0;  // 0 = heads (no GQA)
  int64_t seq = 4096;    // nq = nk = seq
  int64_t head_dim = 128;
  bool causal = false;
  common::DType dtype = common::DType::kBFloat16;
  int threads = 0;
  double min_seconds = 1.0;
  int min_iterations = 3;
};

struct BenchResult {
  std::string kind;             // "entropy" | "attention"
  std::string backend;          // the engine that ran ("cuda", "cpu", "cpu-reference")
  bool degraded = false;        // CUDA was asked for and the CPU engine ran
  std::string fallback_reason;  // why, when degraded
  std::string dtype;            // "fp32" | "fp16" | "bf16"
  std::string shape;            // e.g. "256x152064" or "H32/KV32 N4096 d128 causal"
  int iterations = 0;
  double ms = 0;           // median wall time of one call
  double gb_per_s = 0;     // input bytes (logits, or q + k) per second at the median
  double items_per_s = 0;  // rows (entropy) or head-queries (attention) per second
};

// "fp32" | "fp16" | "bf16" (also "float32", "float16", "bfloat16").
absl::StatusOr<common::DType> ParseBenchDType(absl::string_view name);

// InvalidArgument for bad options or an unknown backend; any engine error
// otherwise. Allocates the inputs (rows * vocab elements, or q and k).
absl::StatusOr<BenchResult> RunEntropyBench(const EntropyBenchOptions& options);
absl::StatusOr<BenchResult> RunAttentionBench(const AttentionBenchOptions& options);

// The timing part of the two above, on an input the caller made and keeps
// alive (the CLI makes it from a wire report, as the daemon does): the engine
// `options.backend` and `options.threads` select, timed as `options.min_*`
// say; shape and dtype come from `in`.
absl::StatusOr<BenchResult> TimeTokenEntropy(const EntropyBenchOptions& options,
                                             const LogitsInput& in);
absl::StatusOr<BenchResult> TimeAttentionEntropy(const AttentionBenchOptions& options,
                                                 const AttentionInput& in);

// The random input of a bench: `count` values drawn from N(0, stddev) with
// `seed`, as little-endian elements of `dtype`.
std::vector<uint8_t> RandomBenchTensor(common::DType dtype, int64_t count, float stddev,
                                       uint64_t seed);

// One JSON object on one line: kind, backend, degraded, fallback_reason, dtype, shape,
// iterations, ms, gb_per_s, and rows_per_s (entropy) or queries_per_s
// (attention).
std::string BenchResultToJson(const BenchResult& result);

}  // namespace entrowatch::compute
