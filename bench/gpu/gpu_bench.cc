// entrowatch_gpu_bench: the CUDA kernels alone (device-resident inputs,
// CUDA events) and the CUDA engine end to end (bytes in host memory to
// entropies back on the host), one JSON line per figure. Exits 0 with a
// "skipped" line when no device works.

#include <cstdio>
#include <string>

#include "absl/strings/str_format.h"
#include "compute/cuda/cuda_engine.h"
#include "compute/cuda/kernel_timing.h"
#include "compute/engine_bench.h"

namespace entrowatch::compute {
namespace {

void PrintKernel(const char* kind, const std::string& shape, const char* dtype,
                 const absl::StatusOr<double>& ms, double bytes) {
  if (!ms.ok()) {
    std::printf(
        "{\"figure\": \"kernel\", \"kind\": \"%s\", \"shape\": \"%s\", \"error\": \"%s\"}\n", kind,
        shape.c_str(), std::string(ms.status().message()).c_str());
    return;
  }
  std::printf(
      "{\"figure\": \"kernel\", \"kind\": \"%s\", \"shape\": \"%s\", \"dtype\": \"%s\", "
      "\"ms\": %.4f, \"tb_per_s\": %.3f}\n",
      kind, shape.c_str(), dtype, *ms, bytes / (*ms * 1e9));
}

int Main() {
  if (CudaDeviceCount() == 0) {
    std::printf("{\"skipped\": \"%s\"}\n", CudaDeviceDescription().c_str());
    return 0;
  }
  std::printf("{\"device\": \"%s\"}\n", CudaDeviceDescription().c_str());
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
    if (e2e.ok()) {
      std::printf("{\"figure\": \"end_to_end\", %s\n", BenchResultToJson(*e2e).substr(1).c_str());
    } else {
      std::printf("{\"figure\": \"end_to_end\", \"error\": \"%s\"}\n",
                  std::string(e2e.status().message()).c_str());
    }
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
