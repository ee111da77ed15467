#pragma once

// Kernel-only timings of the CUDA engine's kernels on device-resident inputs
// (no host copies), for the GPU benchmarks beside the end-to-end engine
// figures. CUDA types stay out of this header.

#include <cstdint>

#include "absl/status/statusor.h"
#include "common/tensor_view.h"

namespace entrowatch::compute {

// Median milliseconds of `iterations` launches, timed with CUDA events, of
// the token-entropy kernels on random rows x vocab logits of `dtype` (split
// count as the engine chooses). Unavailable without a device.
absl::StatusOr<double> TimeTokenKernelMs(common::DType dtype, int64_t rows, int64_t vocab,
                                         int iterations);

// The same for the attention-entropy kernel on random q [heads, seq, d] and
// k [kv_heads, seq, d].
absl::StatusOr<double> TimeAttentionKernelMs(common::DType dtype, int64_t heads, int64_t kv_heads,
                                             int64_t seq, int64_t head_dim, bool causal,
                                             int iterations);

}  // namespace entrowatch::compute
