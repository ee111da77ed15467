// Fused attention entropy, FlashAttention style: a block owns kQueries
// queries of one head, streams K through shared memory kKeys rows at a time,
// and keeps an online (m, d, u, q) accumulator per query and lane (tiling in
// entropy_math.h); the nq x nk score matrix never exists. Kernel first, then
// the launcher.

#include <cuda_fp16.h>

#include <cstdint>
#include <cub/warp/warp_reduce.cuh>

#include "compute/cuda/kernels.cuh"
#include "compute/entropy_math.h"

namespace entrowatch::compute::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kQueriesPerWarp = 4;
constexpr int kQueries = kWarps * kQueriesPerWarp;  // per block
constexpr int kKeys = kAttentionTileKeys;           // per shared-memory tile
constexpr int kKeysPerLane = kKeys / kWarpLanes;

template <ElementType kType>
__device__ __forceinline__ float Load(const uint8_t* data, int64_t i) {
  if constexpr (kType == ElementType::kFloat32) {
    return reinterpret_cast<const float*>(data)[i];
  } else if constexpr (kType == ElementType::kBFloat16) {
    return __uint_as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(data)[i]) << 16);
  } else {
    return __half2float(__ushort_as_half(reinterpret_cast<const uint16_t*>(data)[i]));
  }
}

struct AttentionPartial {
  float m;
  float d;
  float u;
  float q;
};

struct MergeAttention {
  __device__ __forceinline__ AttentionPartial operator()(const AttentionPartial& a,
                                                         const AttentionPartial& b) const {
    AttentionAccumulator<float> x;
    x.h = {a.m, a.d, a.u};
    x.q = a.q;
    AttentionAccumulator<float> y;
    y.h = {b.m, b.d, b.u};
    y.q = b.q;
    const AttentionAccumulator<float> r = Merge(x, y);
    return {r.h.m, r.h.d, r.h.u, r.q};
  }
};

// Grid: (query blocks, heads). Shared memory: kQueries query rows and kKeys
// key rows (padded by one float so lanes reading different keys hit
// different banks), converted to float.
template <ElementType kType>
__global__ void __launch_bounds__(kWarps * 32)
    AttentionEntropyKernel(const uint8_t* q, const uint8_t* k, int64_t heads, int64_t kv_heads,
                           int64_t nq, int64_t nk, int head_dim, bool causal, float scale,
                           float* shannon, float* renyi2, float* row_max) {
  extern __shared__ float shared[];
  float* q_tile = shared;                        // [kQueries][head_dim]
  float* k_tile = shared + kQueries * head_dim;  // [kKeys][head_dim + 1]
  const int k_stride = head_dim + 1;
  const int64_t head = blockIdx.y;
  const int64_t kv_head = head / (heads / kv_heads);
  const int64_t first_query = static_cast<int64_t>(blockIdx.x) * kQueries;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;

  for (int i = threadIdx.x; i < kQueries * head_dim; i += blockDim.x) {
    const int64_t query = first_query + i / head_dim;
    q_tile[i] = query < nq ? Load<kType>(q, (head * nq + query) * head_dim + i % head_dim) : 0.0f;
  }
  // Last key any query of this block sees.
  const int64_t last_query = min(nq, first_query + kQueries) - 1;
  const int64_t key_end = causal ? nk - nq + last_query + 1 : nk;

  AttentionAccumulator<float> acc[kQueriesPerWarp];
  for (int64_t key0 = 0; key0 < key_end; key0 += kKeys) {
    __syncthreads();
    for (int i = threadIdx.x; i < kKeys * head_dim; i += blockDim.x) {
      const int64_t key = key0 + i / head_dim;
      k_tile[(i / head_dim) * k_stride + i % head_dim] =
          key < nk ? Load<kType>(k, (kv_head * nk + key) * head_dim + i % head_dim) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kQueriesPerWarp; ++w) {
      const int local = warp * kQueriesPerWarp + w;
      const int64_t query = first_query + local;
      if (query >= nq) {
        continue;
      }
      const int64_t visible = causal ? nk - nq + query + 1 : nk;
#pragma unroll
      for (int j = 0; j < kKeysPerLane; ++j) {
        const int key_local = lane + kWarpLanes * j;
        const int64_t key = key0 + key_local;
        if (key < visible) {
          float dot = 0.0f;
          const float* qr = q_tile + local * head_dim;
          const float* kr = k_tile + key_local * k_stride;
          for (int c = 0; c < head_dim; ++c) {
            dot = fmaf(qr[c], kr[c], dot);
          }
          AccumulateOne(acc[w], scale * dot);
        }
      }
    }
  }

  using WarpReduce = cub::WarpReduce<AttentionPartial>;
  __shared__ typename WarpReduce::TempStorage storage[kWarps];
#pragma unroll
  for (int w = 0; w < kQueriesPerWarp; ++w) {
    const AttentionPartial mine{acc[w].h.m, acc[w].h.d, acc[w].h.u, acc[w].q};
    const AttentionPartial total = WarpReduce(storage[warp]).Reduce(mine, MergeAttention{});
    __syncwarp();
    const int64_t query = first_query + warp * kQueriesPerWarp + w;
    if (lane == 0 && query < nq) {
      AttentionAccumulator<float> row;
      row.h = {total.m, total.d, total.u};
      row.q = total.q;
      const int64_t visible = causal ? nk - nq + query + 1 : nk;
      const AttentionStats stats = FinalizeAttention(row, visible);
      shannon[head * nq + query] = static_cast<float>(stats.shannon);
      renyi2[head * nq + query] = static_cast<float>(stats.renyi2);
      row_max[head * nq + query] = total.m;
    }
  }
}

template <ElementType kType>
cudaError_t Launch(const void* q, const void* k, int64_t heads, int64_t kv_heads, int64_t nq,
                   int64_t nk, int64_t head_dim, bool causal, float scale, float* shannon,
                   float* renyi2, float* row_max, cudaStream_t stream) {
  const size_t shared_bytes = sizeof(float) * (kQueries * head_dim + kKeys * (head_dim + 1));
  cudaError_t status = cudaFuncSetAttribute(AttentionEntropyKernel<kType>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(shared_bytes));
  if (status != cudaSuccess) {
    return status;
  }
  const dim3 grid(static_cast<unsigned>((nq + kQueries - 1) / kQueries),
                  static_cast<unsigned>(heads));
  AttentionEntropyKernel<kType><<<grid, kWarps * 32, shared_bytes, stream>>>(
      static_cast<const uint8_t*>(q), static_cast<const uint8_t*>(k), heads, kv_heads, nq, nk,
      static_cast<int>(head_dim), causal, scale, shannon, renyi2, row_max);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchAttentionEntropy(ElementType type, const void* q, const void* k, int64_t heads,
                                   int64_t kv_heads, int64_t nq, int64_t nk, int64_t head_dim,
                                   bool causal, float scale, float* shannon, float* renyi2,
                                   float* row_max, cudaStream_t stream) {
  if (heads < 1 || kv_heads < 1 || heads % kv_heads != 0 || nq < 1 || nk < 1 ||
      (causal && nq > nk) || head_dim < 1 || head_dim > kMaxAttentionHeadDim || heads > 65535 ||
      (nq + kQueries - 1) / kQueries > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  switch (type) {
    case ElementType::kFloat32:
      return Launch<ElementType::kFloat32>(q, k, heads, kv_heads, nq, nk, head_dim, causal, scale,
                                           shannon, renyi2, row_max, stream);
    case ElementType::kFloat16:
      return Launch<ElementType::kFloat16>(q, k, heads, kv_heads, nq, nk, head_dim, causal, scale,
                                           shannon, renyi2, row_max, stream);
    case ElementType::kBFloat16:
      return Launch<ElementType::kBFloat16>(q, k, heads, kv_heads, nq, nk, head_dim, causal, scale,
                                            shannon, renyi2, row_max, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace entrowatch::compute::cuda
