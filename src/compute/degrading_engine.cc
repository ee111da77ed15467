#include "compute/degrading_engine.h"

#include <utility>

namespace entrowatch::compute {

DegradingEngine::DegradingEngine(std::unique_ptr<EntropyEngine> primary,
                                 std::unique_ptr<EntropyEngine> fallback)
    : primary_(std::move(primary)), fallback_(std::move(fallback)) {}

absl::string_view DegradingEngine::name() const {
  return degraded() ? fallback_->name() : primary_->name();
}

bool DegradingEngine::Degrade(const absl::Status& status) {
  if (status.ok() || absl::IsInvalidArgument(status)) {
    return false;
  }
  if (absl::IsResourceExhausted(status)) {
    return true;
  }
  absl::MutexLock lock(&mu_);
  if (!degraded_.load()) {
    failure_ = status.ToString();
    degraded_.store(true);
  }
  return true;
}

std::string DegradingEngine::failure() const {
  absl::MutexLock lock(&mu_);
  return failure_;
}

absl::Status DegradingEngine::TokenEntropy(const LogitsInput& in, absl::Span<RowEntropy> out) {
  if (!degraded()) {
    absl::Status status = primary_->TokenEntropy(in, out);
    if (!Degrade(status)) {
      return status;
    }
  }
  return fallback_->TokenEntropy(in, out);
}

absl::Status DegradingEngine::AttentionEntropy(const AttentionInput& in, AttentionOutput* out) {
  if (!degraded()) {
    absl::Status status = primary_->AttentionEntropy(in, out);
    if (!Degrade(status)) {
      return status;
    }
  }
  return fallback_->AttentionEntropy(in, out);
}

}  // namespace entrowatch::compute
