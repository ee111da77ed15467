#pragma once

// Chooses and builds the entropy engine from the `compute` config section.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compute/entropy_engine.h"

namespace entrowatch::compute {

struct EngineOptions {
  std::string backend = "auto";  // auto | cuda | cpu | cpu-reference
  int threads = 0;               // CPU engine threads; 0 = one per core
  int64_t cuda_pool_bytes = 256 << 20;
};

struct EngineSelection {
  std::unique_ptr<EntropyEngine> engine;
  std::string backend;          // "cuda" | "cpu" | "cpu-reference"
  bool degraded = false;        // CUDA was wanted (cuda, or auto on a CUDA build), CPU is used
  std::string fallback_reason;  // why CUDA is not used; empty when not degraded
};

// Builds the engine for `options.backend`:
//   cpu-reference  the float64 reference engine;
//   cpu            the vectorized CPU engine;
//   cuda           the CUDA engine, behind a DegradingEngine that moves to the
//                  CPU engine for good on a device failure at run time; when
//                  the build has no CUDA or no device works, the CPU engine
//                  with degraded = true and the reason;
//   auto           cuda when this build has CUDA and a device works, else cpu
//                  (degraded only when the build has CUDA: a GPU was expected).
// The caller logs a warning and sets its metric when degraded. Returns
// InvalidArgument for an unknown backend, negative threads or a pool size
// below what the CUDA engine accepts. The returned engine allows concurrent calls.
absl::StatusOr<EngineSelection> CreateEngine(const EngineOptions& options);

}  // namespace entrowatch::compute
