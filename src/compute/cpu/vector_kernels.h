#pragma once

// Highway kernels of the vectorized CPU engine, dispatched at run time to
// the best instruction set of the host (AVX-512, AVX2, SSE4, ...). Stateless
// and thread-safe.

#include <cstdint>

#include "common/tensor_view.h"
#include "compute/entropy_math.h"

namespace entrowatch::compute {

struct ChunkPartial {
  EntropyAccumulator<float> acc;  // m in logit units, d and u as entropy_math.h
  bool non_finite = false;        // a NaN or +Inf among the columns read
};

// Columns [begin, end) of one row of `dtype` logits with scale2 =
// Log2Scale(1 / temperature), in one read: lane-wise online accumulators in
// float, merged across lanes at the end. Partials of disjoint column ranges
// merge with Merge(a, b, scale2).
ChunkPartial AccumulateLogits(common::DType dtype, const void* row, int64_t begin, int64_t end,
                              float scale2);

// Sets `acc` to the accumulator of the `keys` scores scale * (q . k_j) of
// one query (d floats). Keys are stored in blocks of kAttentionKeyBlock, each
// block transposed: dimension c of key j at
// k_blocks[((j / kAttentionKeyBlock) * d + c) * kAttentionKeyBlock +
// j % kAttentionKeyBlock], the last block padded (padding is read, its
// values ignored). keys >= 1.
constexpr int64_t kAttentionKeyBlock = 64;
void AccumulateAttentionScores(const float* q, const float* k_blocks, int64_t keys, int64_t d,
                               float scale, AttentionAccumulator<float>* acc);

}  // namespace entrowatch::compute
