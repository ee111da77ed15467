// entrowatch_gpu_bench: the CUDA kernels alone (device-resident inputs,
// CUDA events) and the CUDA engine end to end (bytes in host memory to
// entropies back on the host), one JSON line per figure. Exits 0 with a
// "skipped" line when no device works.

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_format.h"
#include "compute/cuda/cuda_engine.h"
#include "compute/cuda/kernel_timing.h"
#include "compute/engine_bench.h"

namespace entrowatch::compute {
namespace {

void PrintLine(const nlohmann::ordered_json& line) { std::printf("%s\n", line.dump().c_str()); }

void PrintKernel(const char* kind, const std::string& shape, const char* dtype,
                 const absl::StatusOr<double>& ms, double bytes) {
  nlohmann::ordered_json line = {{"figure", "kernel"}, {"kind", kind}, {"shape", shape}};
  if (!ms.ok()) {
    line["error"] = std::string(ms.status().message());
  } else {
    line["dtype"] = dtype;
    line["ms"] = *ms;
    line["tb_per_s"] = bytes / (*ms * 1e9);
  }
  PrintLine(line);
}

int Main() {
  if (CudaDeviceCount() == 0) {
    PrintLine({{"skipped", CudaDeviceDescription()}});
    return 0;
  }
  PrintLine({{"device", CudaDeviceDescription()}});
  struct TokenShape {
    int64_t rows, vocab;
    common::DType dtype;
    const char* name;
  };
  const TokenShape shapes[] = {{4096, 152064, common::DType::kBFloat16, "bf16"},
                               {2048, 152064, common::DType::kFloat32, "fp32"},
                               {16384, 32000, common::DType::kBFloat16, "bf16"},
                               {1024, 256000, common::DType::kBFloat16, "bf16"},
                               {256, 152064, common::DType::kBFloat16, "bf16"}};
  for (const TokenShape& s : shapes) {
    const double bytes = static_cast<double>(s.rows) * s.vocab * common::DTypeSize(s.dtype);
    PrintKernel("entropy", absl::StrFormat("%dx%d", s.rows, s.vocab), s.name,
                TimeTokenKernelMs(s.dtype, s.rows, s.vocab, 50), bytes);
    EntropyBenchOptions options;
    options.backend = "cuda";
    options.rows = s.rows;
    options.vocab = s.vocab;
    options.dtype = s.dtype;
    options.min_seconds = 0.5;
    absl::StatusOr<BenchResult> e2e = RunEntropyBench(options);
    nlohmann::ordered_json line = {{"figure", "end_to_end"}};
    if (e2e.ok()) {
      line.update(nlohmann::ordered_json::parse(BenchResultToJson(*e2e)));
    } else {
      line["error"] = std::string(e2e.status().message());
    }
    PrintLine(line);
  }
  // Shape names as the PyTorch anchors write them (causal, bf16).
  for (int64_t seq : {4096, 8192}) {
    const double bytes = 2.0 * 32 * seq * 128 * 2;
    PrintKernel("attention", absl::StrFormat("B1H32N%dD128", seq), "bf16",
                TimeAttentionKernelMs(common::DType::kBFloat16, 32, 32, seq, 128, true, 20), bytes);
  }
  return 0;
}

}  // namespace
}  // namespace entrowatch::compute

int main() { return entrowatch::compute::Main(); }
