#include "compute/engine_bench.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/half.h"
#include "common/status_macros.h"
#include "compute/engine_factory.h"

namespace entrowatch::compute {
namespace {

using common::DType;

absl::string_view ShortName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "fp32";
    case DType::kFloat16:
      return "fp16";
    case DType::kBFloat16:
      return "bf16";
  }
  return "?";
}

// Runs `call` once to warm up, then until both minimums are met; returns the
// median duration in milliseconds and the number of timed calls.
template <typename Call>
absl::Status TimeCalls(double min_seconds, int min_iterations, Call call, double* median_ms,
                       int* iterations) {
  RETURN_IF_ERROR(call());
  std::vector<double> ms;
  const auto start = std::chrono::steady_clock::now();
  while (static_cast<int>(ms.size()) < std::max(1, min_iterations) ||
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
             min_seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(call());
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  *median_ms = ms[ms.size() / 2];
  *iterations = static_cast<int>(ms.size());
  return absl::OkStatus();
}

absl::StatusOr<EngineSelection> MakeEngine(const std::string& backend, int threads) {
  EngineOptions options;
  options.backend = backend;
  options.threads = threads;
  return CreateEngine(options);
}

}  // namespace

std::vector<uint8_t> RandomBenchTensor(DType dtype, int64_t count, float stddev, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<uint8_t> bytes(count * common::DTypeSize(dtype));
  for (int64_t i = 0; i < count; ++i) {
    const float v = normal(rng);
    if (dtype == DType::kFloat32) {
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h =
          dtype == DType::kFloat16 ? common::FloatToHalf(v) : common::FloatToBFloat16(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

absl::StatusOr<DType> ParseBenchDType(absl::string_view name) {
  if (name == "fp32" || name == "float32") {
    return DType::kFloat32;
  }
  if (name == "fp16" || name == "float16") {
    return DType::kFloat16;
  }
  if (name == "bf16" || name == "bfloat16") {
    return DType::kBFloat16;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype \"", name, "\" unknown (expected fp32, fp16 or bf16)"));
}

absl::StatusOr<BenchResult> RunEntropyBench(const EntropyBenchOptions& options) {
  if (options.rows < 1 || options.vocab < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("rows ", options.rows, " and vocab ", options.vocab, " must be positive"));
  }
  const std::vector<uint8_t> logits =
      RandomBenchTensor(options.dtype, options.rows * options.vocab, 3.0f, 1);
  LogitsInput in;
  in.logits = {options.dtype, options.rows, options.vocab, logits.data()};
  in.valid_vocab = options.vocab;
  return TimeTokenEntropy(options, in);
}

absl::StatusOr<BenchResult> TimeTokenEntropy(const EntropyBenchOptions& options,
                                             const LogitsInput& in) {
  ASSIGN_OR_RETURN(EngineSelection selection, MakeEngine(options.backend, options.threads));
  std::vector<RowEntropy> out(in.logits.rows);
  BenchResult result;
  result.kind = "entropy";
  result.backend = selection.backend;
  result.degraded = selection.degraded;
  result.fallback_reason = selection.fallback_reason;
  result.dtype = std::string(ShortName(in.logits.dtype));
  result.shape = absl::StrCat(in.logits.rows, "x", in.logits.cols);
  RETURN_IF_ERROR(TimeCalls(
      options.min_seconds, options.min_iterations,
      [&] { return selection.engine->TokenEntropy(in, absl::MakeSpan(out)); }, &result.ms,
      &result.iterations));
  result.gb_per_s = static_cast<double>(in.logits.bytes()) / (result.ms * 1e6);
  result.items_per_s = static_cast<double>(in.logits.rows) / (result.ms * 1e-3);
  return result;
}

absl::StatusOr<BenchResult> RunAttentionBench(const AttentionBenchOptions& options) {
  const int64_t kv_heads = options.kv_heads == 0 ? options.heads : options.kv_heads;
  if (options.heads < 1 || kv_heads < 1 || options.seq < 1 || options.head_dim < 1) {
    return absl::InvalidArgumentError("heads, kv-heads, seq and head-dim must be positive");
  }
  const std::vector<uint8_t> q =
      RandomBenchTensor(options.dtype, options.heads * options.seq * options.head_dim, 1.0f, 2);
  const std::vector<uint8_t> k =
      RandomBenchTensor(options.dtype, kv_heads * options.seq * options.head_dim, 1.0f, 3);
  AttentionInput in;
  in.dtype = options.dtype;
  in.q = q.data();
  in.k = k.data();
  in.heads = options.heads;
  in.kv_heads = kv_heads;
  in.nq = options.seq;
  in.nk = options.seq;
  in.head_dim = options.head_dim;
  in.causal = options.causal;
  return TimeAttentionEntropy(options, in);
}

absl::StatusOr<BenchResult> TimeAttentionEntropy(const AttentionBenchOptions& options,
                                                 const AttentionInput& in) {
  ASSIGN_OR_RETURN(EngineSelection selection, MakeEngine(options.backend, options.threads));
  AttentionOutput out;
  BenchResult result;
  result.kind = "attention";
  result.backend = selection.backend;
  result.degraded = selection.degraded;
  result.fallback_reason = selection.fallback_reason;
  result.dtype = std::string(ShortName(in.dtype));
  result.shape = absl::StrCat("H", in.heads, "/KV", in.kv_heads, " N", in.nk, " d", in.head_dim,
                              in.causal ? " causal" : "");
  RETURN_IF_ERROR(TimeCalls(
      options.min_seconds, options.min_iterations,
      [&] { return selection.engine->AttentionEntropy(in, &out); }, &result.ms,
      &result.iterations));
  const size_t bytes = static_cast<size_t>((in.heads * in.nq + in.kv_heads * in.nk) * in.head_dim) *
                       common::DTypeSize(in.dtype);
  result.gb_per_s = static_cast<double>(bytes) / (result.ms * 1e6);
  result.items_per_s = static_cast<double>(in.heads * in.nq) / (result.ms * 1e-3);
  return result;
}

std::string BenchResultToJson(const BenchResult& result) {
  const nlohmann::ordered_json json = {
      {"kind", result.kind},
      {"backend", result.backend},
      {"degraded", result.degraded},
      {"fallback_reason", result.fallback_reason},
      {"dtype", result.dtype},
      {"shape", result.shape},
      {"iterations", result.iterations},
      {"ms", result.ms},
      {"gb_per_s", result.gb_per_s},
      {result.kind == "attention" ? "queries_per_s" : "rows_per_s", result.items_per_s}};
  return json.dump();
}

}  // namespace entrowatch::compute
