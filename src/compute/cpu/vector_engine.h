#pragma once

// The vectorized CPU engine: Highway kernels (runtime dispatch) on an
// engine-owned thread pool.

#include <memory>

#include "compute/cpu/thread_pool.h"
#include "compute/entropy_engine.h"

namespace entrowatch::compute {

// Token entropy in one read of the logits with float accumulators
// (vector_kernels.h). Rows are spread over the pool; when there are fewer
// rows than threads, each row is also split into vocabulary chunks whose
// partial accumulators are merged in a fixed order, so results do not depend
// on scheduling. The sampling view (rows with top-k / top-p) sorts the row's
// finite logits in double, as the reference does.
//
// Attention entropy per (head, query) in float: K converted to float and
// transposed once (O(nk * head_dim) memory), the scores of a query against
// a vector of keys at a time streamed through lane-wise online
// accumulators, never the nq x nk matrix; (head, query block) tasks spread
// over the pool.
//
// Thread-safe: concurrent calls share the pool; each call also computes on
// its calling thread.
class VectorEngine final : public EntropyEngine {
 public:
  // threads >= 1: pool size including the calling thread.
  explicit VectorEngine(int threads);
  VectorEngine(const VectorEngine&) = delete;
  VectorEngine& operator=(const VectorEngine&) = delete;

  absl::string_view name() const override { return "cpu"; }
  absl::Status TokenEntropy(const LogitsInput& in, absl::Span<RowEntropy> out) override;
  // InvalidArgument also when q or k holds a NaN or an infinity.
  absl::Status AttentionEntropy(const AttentionInput& in, AttentionOutput* out) override;

  int threads() const { return pool_.threads(); }

 private:
  ThreadPool pool_;
};

}  // namespace entrowatch::compute
