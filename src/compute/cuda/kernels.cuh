#pragma once

// Kernel launchers of the CUDA engine. Each launcher owns its grid maths,
// checks its preconditions and returns the launch error; all work is
// enqueued on `stream` (nothing here synchronizes).

#include <cuda_runtime.h>

#include <cstdint>

namespace entrowatch::compute::cuda {

// Mirrors common::DType without its headers (nvcc sees no Abseil/protobuf).
enum class ElementType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Mirrors RowStatus.
constexpr int32_t kRowOk = 0;
constexpr int32_t kRowNonFinite = 1;
constexpr int32_t kRowAllMasked = 2;

// One row's statistics as the finalize kernel leaves them in device memory.
struct DeviceRow {
  int32_t status;  // RowStatus
  float entropy;
  float normalized;
  float top1_prob;
  double surprisal;  // beyond the float range for targets far below the maximum
};

// Partial accumulator of one split-vocab chunk of a row.
struct DevicePartial {
  float m;
  float d;
  float u;
  int32_t non_finite;
};

// Split-vocab chunks per row for `rows` rows of `cols` columns on a device
// with `sms` multiprocessors: enough blocks to fill the device when rows are
// few, never chunks shorter than a few steps of the block.
int TokenSplits(int64_t rows, int64_t cols, int sms);

// logits: rows x cols of `type` on the device, 16-byte aligned; targets:
// rows entries or nullptr; partials: rows * splits; out: rows.
cudaError_t LaunchTokenEntropy(ElementType type, const void* logits, int64_t rows, int64_t cols,
                               int64_t valid_vocab, float scale2, const int32_t* targets,
                               int splits, DevicePartial* partials, DeviceRow* out,
                               cudaStream_t stream);

// q: heads x nq x d, k: kv_heads x nk x d of `type` on the device; shannon,
// renyi2 and row_max (each query's largest score, from the same pass):
// heads * nq floats. head_dim <= kMaxAttentionHeadDim.
constexpr int kMaxAttentionHeadDim = 256;
cudaError_t LaunchAttentionEntropy(ElementType type, const void* q, const void* k, int64_t heads,
                                   int64_t kv_heads, int64_t nq, int64_t nk, int64_t head_dim,
                                   bool causal, float scale, float* shannon, float* renyi2,
                                   float* row_max, cudaStream_t stream);

}  // namespace entrowatch::compute::cuda
