// CPU engine micro-benchmarks: token entropy per dtype and shape, and the
// read-only floor (a max over the same bytes) measured in the same binary.
// Bytes/s counts the logits read once.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/half.h"
#include "compute/cpu/reference_engine.h"
#include "compute/cpu/vector_engine.h"

namespace entrowatch::compute {
namespace {

using common::DType;

std::vector<uint8_t> RandomLogits(DType dtype, int64_t rows, int64_t vocab) {
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<uint8_t> bytes(rows * vocab * common::DTypeSize(dtype));
  for (int64_t i = 0; i < rows * vocab; ++i) {
    const float z = normal(rng);
    if (dtype == DType::kFloat32) {
      reinterpret_cast<float*>(bytes.data())[i] = z;
    } else if (dtype == DType::kFloat16) {
      reinterpret_cast<uint16_t*>(bytes.data())[i] = common::FloatToHalf(z);
    } else {
      reinterpret_cast<uint16_t*>(bytes.data())[i] = common::FloatToBFloat16(z);
    }
  }
  return bytes;
}

// Args: dtype (0 fp32, 1 fp16, 2 bf16), rows, vocab, threads (0 = reference).
void BM_TokenEntropy(benchmark::State& state) {
  const auto dtype = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1);
  const int64_t vocab = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const std::vector<uint8_t> logits = RandomLogits(dtype, rows, vocab);
  std::unique_ptr<EntropyEngine> engine;
  if (threads == 0) {
    engine = std::make_unique<ReferenceEngine>();
  } else {
    engine = std::make_unique<VectorEngine>(threads);
  }
  LogitsInput in;
  in.logits = {dtype, rows, vocab, logits.data()};
  in.valid_vocab = vocab;
  std::vector<RowEntropy> out(rows);
  for (auto _ : state) {
    const absl::Status status = engine->TokenEntropy(in, absl::MakeSpan(out));
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(logits.size()));
  state.SetLabel(std::string(engine->name()));
}

// The memory floor: one read-only pass (an XOR of 64-bit words, which the
// compiler vectorizes) over the same number of bytes.
void BM_ReadFloor(benchmark::State& state) {
  const int64_t rows = state.range(0);
  const int64_t vocab = state.range(1);
  const std::vector<uint8_t> logits = RandomLogits(DType::kFloat32, rows, vocab);
  const auto* words = reinterpret_cast<const uint64_t*>(logits.data());
  const size_t count = logits.size() / sizeof(uint64_t);
  for (auto _ : state) {
    uint64_t acc = 0;
    for (size_t i = 0; i < count; ++i) {
      acc ^= words[i];
    }
    benchmark::DoNotOptimize(acc);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(logits.size()));
}

BENCHMARK(BM_TokenEntropy)
    ->ArgNames({"dtype", "rows", "vocab", "threads"})
    ->Args({0, 256, 152064, 1})
    ->Args({2, 256, 152064, 1})
    ->Args({1, 256, 152064, 1})
    ->Args({0, 256, 152064, 2})
    ->Args({2, 256, 152064, 2})
    ->Args({0, 1, 152064, 2})
    ->Args({2, 4096, 32000, 2})
    ->Args({0, 16, 152064, 0})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ReadFloor)->Args({256, 152064})->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace entrowatch::compute

BENCHMARK_MAIN();
