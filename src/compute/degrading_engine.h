#pragma once

// Runs a device engine and falls back to a CPU engine for good on the first
// device failure, so a CUDA fault at run time degrades instead of crashing.

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "compute/entropy_engine.h"

namespace entrowatch::compute {

// Forwards calls to `primary`. InvalidArgument (the caller's fault) is
// returned as is; ResourceExhausted (an input too large for the device pool)
// sends that one call to `fallback`; any other error is a device failure:
// that call and every later one go to `fallback`, and degraded() is true.
// name() is the engine serving calls. Thread-safe when both engines are.
class DegradingEngine final : public EntropyEngine {
 public:
  DegradingEngine(std::unique_ptr<EntropyEngine> primary, std::unique_ptr<EntropyEngine> fallback);
  DegradingEngine(const DegradingEngine&) = delete;
  DegradingEngine& operator=(const DegradingEngine&) = delete;

  absl::string_view name() const override;
  absl::Status TokenEntropy(const LogitsInput& in, absl::Span<RowEntropy> out) override;
  absl::Status AttentionEntropy(const AttentionInput& in, AttentionOutput* out) override;
  bool degraded() const override { return degraded_.load(); }

  // The primary's error that caused the fallback; empty while not degraded.
  std::string failure() const;

 private:
  // Records a device failure; true when the call should go to the fallback.
  bool Degrade(const absl::Status& status);

  const std::unique_ptr<EntropyEngine> primary_;
  const std::unique_ptr<EntropyEngine> fallback_;
  std::atomic<bool> degraded_{false};
  mutable absl::Mutex mu_;
  std::string failure_ ABSL_GUARDED_BY(mu_);
};

}  // namespace entrowatch::compute
