#pragma once

// The float64 reference engine: the definition every other engine is tested
// against. Scalar and simple on purpose; correctness over speed.

#include "compute/entropy_engine.h"

namespace entrowatch::compute {

// Token entropy in one pass per row with the online (m, d, u) accumulator in
// double (entropy_math.h), any input dtype; the sampling view sorts the
// row's finite logits. Attention entropy per (head, query) streams the keys
// through the same accumulator (plus the Renyi-2 sum), O(head_dim) memory per
// query, never the nq x nk matrix. Stateless: concurrent calls are safe.
class ReferenceEngine final : public EntropyEngine {
 public:
  ReferenceEngine() = default;
  ReferenceEngine(const ReferenceEngine&) = delete;
  ReferenceEngine& operator=(const ReferenceEngine&) = delete;

  absl::string_view name() const override { return "cpu-reference"; }
  absl::Status TokenEntropy(const LogitsInput& in, absl::Span<RowEntropy> out) override;
  // InvalidArgument also when q or k holds a NaN or an infinity.
  absl::Status AttentionEntropy(const AttentionInput& in, AttentionOutput* out) override;
};

}  // namespace entrowatch::compute
