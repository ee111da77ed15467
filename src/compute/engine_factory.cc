#include "compute/engine_factory.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "compute/cpu/reference_engine.h"
#include "compute/cpu/vector_engine.h"
#include "compute/degrading_engine.h"
#if defined(ENTROWATCH_WITH_CUDA)
#include "compute/cuda/cuda_engine.h"
#endif

namespace entrowatch::compute {
namespace {

EngineSelection CpuSelection(int threads) {
  if (threads == 0) {
    threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  EngineSelection selection;
  selection.engine = std::make_unique<VectorEngine>(threads);
  selection.backend = "cpu";
  return selection;
}

}  // namespace

absl::StatusOr<EngineSelection> CreateEngine(const EngineOptions& options) {
  if (options.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compute.threads ", options.threads, " must be >= 0 (0 = one per core)"));
  }
  if (options.cuda_pool_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("compute.cuda_pool_bytes ", options.cuda_pool_bytes, " must be positive"));
  }
  if (options.backend == "cpu-reference") {
    EngineSelection selection;
    selection.engine = std::make_unique<ReferenceEngine>();
    selection.backend = "cpu-reference";
    return selection;
  }
  if (options.backend == "cpu") {
    return CpuSelection(options.threads);
  }
  if (options.backend == "cuda" || options.backend == "auto") {
#if defined(ENTROWATCH_WITH_CUDA)
    absl::StatusOr<std::unique_ptr<EntropyEngine>> cuda = CreateCudaEngine(options.cuda_pool_bytes);
    if (cuda.ok()) {
      EngineSelection selection;
      selection.engine = std::make_unique<DegradingEngine>(std::move(cuda).value(),
                                                           CpuSelection(options.threads).engine);
      selection.backend = "cuda";
      return selection;
    }
    if (absl::IsInvalidArgument(cuda.status())) {
      return cuda.status();
    }
    EngineSelection selection = CpuSelection(options.threads);
    selection.degraded = true;
    selection.fallback_reason = std::string(cuda.status().message());
    return selection;
#else
    EngineSelection selection = CpuSelection(options.threads);
    if (options.backend == "cuda") {
      selection.degraded = true;
      selection.fallback_reason = "this build has no CUDA engine";
    }
    return selection;
#endif
  }
  return absl::InvalidArgumentError(
      absl::StrCat("compute.backend \"", options.backend,
                   "\" unknown (expected auto, cuda, cpu or cpu-reference)"));
}

}  // namespace entrowatch::compute
