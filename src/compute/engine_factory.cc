#include "compute/engine_factory.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "compute/cpu/reference_engine.h"

namespace entrowatch::compute {
namespace {

// The vectorized engine is not built yet: "cpu" serves the reference engine.
EngineSelection CpuSelection() {
  EngineSelection selection;
  selection.engine = std::make_unique<ReferenceEngine>();
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
    return CpuSelection();
  }
  if (options.backend == "cuda" || options.backend == "auto") {
    EngineSelection selection = CpuSelection();
    if (options.backend == "cuda") {
      selection.degraded = true;
      selection.fallback_reason = "this build has no CUDA engine";
    }
    return selection;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("compute.backend \"", options.backend,
                   "\" unknown (expected auto, cuda, cpu or cpu-reference)"));
}

}  // namespace entrowatch::compute
