#pragma once

// Kernel-only timings of the CUDA engine's kernels on device-resident inputs
// (no host copies), for the GPU benchmarks beside the end-to-end engine
// figures. CUDA types stay out of this header.

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/tensor_view.h"

namespace entrowatch::compute {

// Kernel-only milliseconds per launch of the token-entropy kernels on random
// rows x vocab logits of `dtype` (split count as the engine chooses): the
// median over `iterations` samples, each a run of back-to-back launches
// between CUDA events after the L2 is flushed, as the PyTorch anchors are
// timed. InvalidArgument when the logits fit in the L2 (the figure would
// measure the cache); Unavailable without a device.
absl::StatusOr<double> TimeTokenKernelMs(common::DType dtype, int64_t rows, int64_t vocab,
                                         int iterations);

// The same for the attention-entropy kernel on random q [heads, seq, d] and
// k [kv_heads, seq, d].
absl::StatusOr<double> TimeAttentionKernelMs(common::DType dtype, int64_t heads, int64_t kv_heads,
                                             int64_t seq, int64_t head_dim, bool causal,
                                             int iterations);

}  // namespace entrowatch::compute
