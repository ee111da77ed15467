// Fused attention entropy, FlashAttention style: the nq x nk score matrix
// never exists. Only QK^T and the online statistics are needed (no PV
// product), so a block streams K tiles through shared memory and keeps one
// accumulator (m, d, u, q) per query (entropy_math.h): Shannon and Renyi-2
// from the same pass, one exp2 per score.
//
// Two kernels, one idea each:
// - AttentionTensorCoreKernel (fp16 / bf16): QK^T on the tensor cores (WMMA
//   16x16x16, fp32 accumulation), 128 queries per block (32 per warp, one
//   per lane), 64-key tiles, causal tiles a warp cannot see skipped;
// - AttentionScalarKernel (fp32): CUDA-core FMAs on converted tiles, since
//   fp32 inputs would lose precision on 16-bit tensor-core inputs.
// Kernels first, then the launcher.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <cub/warp/warp_reduce.cuh>
#include <type_traits>

#include "compute/cuda/kernels.cuh"
#include "compute/entropy_math.h"

namespace entrowatch::compute::cuda {
namespace {

namespace wmma = nvcuda::wmma;

// ---- tensor-core kernel (fp16 / bf16) ----------------------------------

constexpr int kTcWarps = 4;
constexpr int kTcThreads = kTcWarps * 32;
constexpr int kFrag = 16;                              // WMMA tile edge
constexpr int kTcRowFrags = 2;                         // 16-row fragments per warp
constexpr int kTcRowsPerWarp = kTcRowFrags * kFrag;    // 32: one query per lane
constexpr int kTcQueries = kTcWarps * kTcRowsPerWarp;  // 128 queries per block
constexpr int kTcKeys = 64;                            // keys per shared-memory tile
constexpr int kTcKeyFrags = kTcKeys / kFrag;           // column fragments per warp
constexpr int kTcPart = 32;                            // scores a lane folds at a time
constexpr int kScoreStride = kTcKeys + 4;              // floats; see the bank note below
constexpr int kRowPad = 8;                             // elements: rows stay 16-byte multiples

// Head dim rounded up to the WMMA k step; padding columns hold zeros.
__host__ __device__ constexpr int PaddedDim(int head_dim) {
  return (head_dim + kFrag - 1) / kFrag * kFrag;
}
__host__ __device__ constexpr int TileStride(int head_dim) { return PaddedDim(head_dim) + kRowPad; }

// Shared memory: Q tile [128][stride] and K tile [64][stride] of 16-bit
// elements, then per warp a [32][kScoreStride] float score tile.
__host__ __device__ constexpr size_t TensorCoreSharedBytes(int head_dim) {
  return size_t{2} * (kTcQueries + kTcKeys) * TileStride(head_dim) +
         sizeof(float) * kTcWarps * kTcRowsPerWarp * kScoreStride;
}

template <ElementType kType>
using Element16 = std::conditional_t<kType == ElementType::kBFloat16, __nv_bfloat16, __half>;

// Copies rows [first, first + kRows) of a [count][head_dim] 16-bit matrix
// into a shared tile of `stride` elements per row, XOR-ing every element with
// `flip` (0x8000 negates it exactly); missing rows and the padding columns
// become zeros. 16-byte copies when rows are 16-byte multiples.
template <int kRows>
__device__ __forceinline__ void LoadTile16(uint16_t* tile, const uint16_t* src, int64_t first,
                                           int64_t count, int head_dim, int stride, uint16_t flip) {
  const uint32_t flip2 = flip * 0x10001u;
  const int padded = PaddedDim(head_dim);
  if (head_dim % 8 == 0) {
    const int chunks = padded / 8;  // 16-byte chunks per tile row
    for (int i = threadIdx.x; i < kRows * chunks; i += kTcThreads) {
      const int r = i / chunks;
      const int c = (i - r * chunks) * 8;
      uint4 v = {0, 0, 0, 0};
      if (first + r < count && c < head_dim) {
        v = __ldg(reinterpret_cast<const uint4*>(src + (first + r) * head_dim + c));
        v.x ^= flip2;
        v.y ^= flip2;
        v.z ^= flip2;
        v.w ^= flip2;
      }
      *reinterpret_cast<uint4*>(tile + r * stride + c) = v;
    }
  } else {
    for (int i = threadIdx.x; i < kRows * padded; i += kTcThreads) {
      const int r = i / padded;
      const int c = i - r * padded;
      tile[r * stride + c] = first + r < count && c < head_dim
                                 ? static_cast<uint16_t>(src[(first + r) * head_dim + c] ^ flip)
                                 : uint16_t{0};
    }
  }
}

// Folds kTcPart scores (raw dot products; masked ones -inf) into `h` and
// `collision`: the part's maximum, one rescale at most, then one exp2 per
// score. scale2 = |scale| * log2(e).
__device__ __forceinline__ void FoldScores(const float* x, float part_max, float scale2,
                                           EntropyAccumulator<float>& h, float& collision) {
  if (part_max == -INFINITY) {
    return;  // nothing visible in this part
  }
  if (part_max > h.m) {
    const float shift = ClampExp2Arg(scale2 * (h.m - part_max));  // the floor when empty
    const float s = FastExp2(shift);
    h.u = s * (h.u + h.d * shift);
    h.d *= s;
    collision *= s * s;
    h.m = part_max;
  }
#pragma unroll
  for (int j = 0; j < kTcPart; ++j) {
    // Masked scores give the floor: exp2 flushes to 0, 0 * floor adds 0.
    const float t = fmaxf(scale2 * (x[j] - h.m), Exp2ArgFloor<float>());
    const float e = FastExp2(t);
    h.d += e;
    h.u = fmaf(e, t, h.u);
    collision = fmaf(e, e, collision);
  }
}

// Grid: (query blocks, heads). Warp w owns queries first + 32w .. +31 (two
// 16-row fragments, so each K fragment loaded from shared memory feeds two
// mma); lane l owns query first + 32w + l and folds its row of every score
// tile.
template <ElementType kType>
__global__ void __launch_bounds__(kTcThreads)
    AttentionTensorCoreKernel(const uint16_t* q, const uint16_t* k, int64_t heads, int64_t kv_heads,
                              int64_t nq, int64_t nk, int head_dim, bool causal, float scale,
                              float* shannon, float* renyi2, float* row_max) {
  using T = Element16<kType>;
  extern __shared__ __align__(128) unsigned char shared[];
  const int stride = TileStride(head_dim);
  uint16_t* q_tile = reinterpret_cast<uint16_t*>(shared);
  uint16_t* k_tile = q_tile + kTcQueries * stride;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  float* scores =
      reinterpret_cast<float*>(k_tile + kTcKeys * stride) + warp * kTcRowsPerWarp * kScoreStride;

  const int64_t head = blockIdx.y;
  const int64_t kv_head = head / (heads / kv_heads);
  const int64_t first_query = static_cast<int64_t>(blockIdx.x) * kTcQueries;
  // A negative scale is applied to Q (negation is exact in 16 bits), so the
  // scores below are |scale| * dot and their maximum is the maximum dot.
  const uint16_t flip = scale < 0 ? 0x8000 : 0;
  const float abs_scale = fabsf(scale);
  LoadTile16<kTcQueries>(q_tile, q + head * nq * head_dim, first_query, nq, head_dim, stride, flip);

  // Keys visible to query i: [0, nk - nq + i] when causal, else all.
  const int64_t causal_offset = causal ? nk - nq + 1 : nk;
  const int64_t block_last = min(nq, first_query + kTcQueries) - 1;
  const int64_t key_end = causal ? block_last + causal_offset : nk;
  const int64_t warp_first = first_query + warp * kTcRowsPerWarp;
  const int64_t warp_last = min(nq, warp_first + kTcRowsPerWarp) - 1;  // < warp_first: no rows
  const int64_t warp_key_end = causal ? warp_last + causal_offset : nk;

  const int64_t query = warp_first + lane;
  const int64_t visible = min(causal ? query + causal_offset : nk, nk);
  // Scores stay raw dot products: t = scale2 * (dot - m) with scale folded
  // into scale2, as the token path does with temperature.
  const float scale2 = abs_scale * static_cast<float>(kLog2e);
  EntropyAccumulator<float> h;
  float collision = 0;
  // Lane l reads column (j + l) % 32 of each 32-column part of its row: with
  // a row stride of 68 floats, bank (5l + j) % 32 differs for all 32 lanes.
  const float* my_row = scores + lane * kScoreStride;

  for (int64_t key0 = 0; key0 < key_end; key0 += kTcKeys) {
    __syncthreads();  // every warp is done with the previous K tile
    LoadTile16<kTcKeys>(k_tile, k + kv_head * nk * head_dim, key0, nk, head_dim, stride, 0);
    __syncthreads();  // the K tile is complete
    if (warp_last < warp_first || key0 >= warp_key_end) {
      continue;  // a causal tile this warp's queries cannot see (warp-uniform)
    }
    wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc[kTcRowFrags][kTcKeyFrags];
#pragma unroll
    for (int r = 0; r < kTcRowFrags; ++r) {
#pragma unroll
      for (int n = 0; n < kTcKeyFrags; ++n) {
        wmma::fill_fragment(acc[r][n], 0.0f);
      }
    }
    for (int c = 0; c < PaddedDim(head_dim); c += kFrag) {
      wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::row_major> a[kTcRowFrags];
#pragma unroll
      for (int r = 0; r < kTcRowFrags; ++r) {
        wmma::load_matrix_sync(
            a[r],
            reinterpret_cast<const T*>(q_tile + (warp * kTcRowsPerWarp + r * kFrag) * stride + c),
            stride);
      }
#pragma unroll
      for (int n = 0; n < kTcKeyFrags; ++n) {
        // K^T as a column-major matrix_b: element (c', key) at key * stride + c'.
        wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::col_major> b;
        wmma::load_matrix_sync(b, reinterpret_cast<const T*>(k_tile + n * kFrag * stride + c),
                               stride);
#pragma unroll
        for (int r = 0; r < kTcRowFrags; ++r) {
          wmma::mma_sync(acc[r][n], a[r], b, acc[r][n]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kTcRowFrags; ++r) {
#pragma unroll
      for (int n = 0; n < kTcKeyFrags; ++n) {
        wmma::store_matrix_sync(scores + r * kFrag * kScoreStride + n * kFrag, acc[r][n],
                                kScoreStride, wmma::mem_row_major);
      }
    }
    __syncwarp();  // the warp's score tile is complete
#pragma unroll
    for (int part = 0; part < kTcKeys / kTcPart; ++part) {
      const float* mine = my_row + part * kTcPart;
      const int64_t limit = visible - (key0 + part * kTcPart);  // columns < limit are visible
      float x[kTcPart];
      float part_max = -INFINITY;
      if (limit >= kTcPart) {  // every column visible: no mask
#pragma unroll
        for (int j = 0; j < kTcPart; ++j) {
          x[j] = mine[(j + lane) % kTcPart];
          part_max = fmaxf(part_max, x[j]);
        }
      } else {  // the causal diagonal or the last keys
#pragma unroll
        for (int j = 0; j < kTcPart; ++j) {
          const int col = (j + lane) % kTcPart;
          const float score = mine[col];
          x[j] = col < limit ? score : -INFINITY;
          part_max = fmaxf(part_max, x[j]);
        }
      }
      FoldScores(x, part_max, scale2, h, collision);
    }
    __syncwarp();  // scores read before the next tile overwrites them
  }

  if (query <= warp_last) {
    AttentionAccumulator<float> total;
    total.h = h;
    total.q = collision;
    const AttentionStats stats = FinalizeAttention(total, visible);
    shannon[head * nq + query] = static_cast<float>(stats.shannon);
    renyi2[head * nq + query] = static_cast<float>(stats.renyi2);
    row_max[head * nq + query] = h.m * abs_scale;
  }
}

// ---- scalar kernel (fp32) ----------------------------------------------

constexpr int kWarps = 4;
constexpr int kQueriesPerWarp = 4;
constexpr int kQueries = kWarps * kQueriesPerWarp;  // per block
constexpr int kKeys = kAttentionTileKeys;           // per shared-memory tile
constexpr int kKeysPerLane = kKeys / kWarpLanes;

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
// different banks). Lane l of the warp owning a query folds keys
// tile + l + 32 j (tiling in entropy_math.h).
__global__ void __launch_bounds__(kWarps * 32)
    AttentionScalarKernel(const float* q, const float* k, int64_t heads, int64_t kv_heads,
                          int64_t nq, int64_t nk, int head_dim, bool causal, float scale,
                          float* shannon, float* renyi2, float* row_max) {
  extern __shared__ float shared_f32[];
  float* q_tile = shared_f32;                        // [kQueries][head_dim]
  float* k_tile = shared_f32 + kQueries * head_dim;  // [kKeys][head_dim + 1]
  const int k_stride = head_dim + 1;
  const int64_t head = blockIdx.y;
  const int64_t kv_head = head / (heads / kv_heads);
  const int64_t first_query = static_cast<int64_t>(blockIdx.x) * kQueries;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;

  for (int r = 0; r < kQueries; ++r) {
    const int64_t query = first_query + r;
    for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
      q_tile[r * head_dim + c] = query < nq ? q[(head * nq + query) * head_dim + c] : 0.0f;
    }
  }
  const int64_t last_query = min(nq, first_query + kQueries) - 1;
  const int64_t key_end = causal ? nk - nq + last_query + 1 : nk;

  AttentionAccumulator<float> acc[kQueriesPerWarp];
  for (int64_t key0 = 0; key0 < key_end; key0 += kKeys) {
    __syncthreads();  // every warp is done with the previous fp32 K tile
    for (int r = 0; r < kKeys; ++r) {
      const int64_t key = key0 + r;
      for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
        k_tile[r * k_stride + c] = key < nk ? k[(kv_head * nk + key) * head_dim + c] : 0.0f;
      }
    }
    __syncthreads();  // the fp32 K tile is complete
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

// ---- launchers ---------------------------------------------------------

template <ElementType kType>
cudaError_t LaunchTensorCore(const void* q, const void* k, int64_t heads, int64_t kv_heads,
                             int64_t nq, int64_t nk, int64_t head_dim, bool causal, float scale,
                             float* shannon, float* renyi2, float* row_max, cudaStream_t stream) {
  const size_t shared_bytes = TensorCoreSharedBytes(static_cast<int>(head_dim));
  cudaError_t status = cudaFuncSetAttribute(AttentionTensorCoreKernel<kType>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(shared_bytes));
  if (status != cudaSuccess) {
    return status;
  }
  const dim3 grid(static_cast<unsigned>((nq + kTcQueries - 1) / kTcQueries),
                  static_cast<unsigned>(heads));
  AttentionTensorCoreKernel<kType><<<grid, kTcThreads, shared_bytes, stream>>>(
      static_cast<const uint16_t*>(q), static_cast<const uint16_t*>(k), heads, kv_heads, nq, nk,
      static_cast<int>(head_dim), causal, scale, shannon, renyi2, row_max);
  return cudaGetLastError();
}

cudaError_t LaunchScalar(const void* q, const void* k, int64_t heads, int64_t kv_heads, int64_t nq,
                         int64_t nk, int64_t head_dim, bool causal, float scale, float* shannon,
                         float* renyi2, float* row_max, cudaStream_t stream) {
  const size_t shared_bytes = sizeof(float) * (kQueries * head_dim + kKeys * (head_dim + 1));
  cudaError_t status =
      cudaFuncSetAttribute(AttentionScalarKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(shared_bytes));
  if (status != cudaSuccess) {
    return status;
  }
  const dim3 grid(static_cast<unsigned>((nq + kQueries - 1) / kQueries),
                  static_cast<unsigned>(heads));
  AttentionScalarKernel<<<grid, kWarps * 32, shared_bytes, stream>>>(
      static_cast<const float*>(q), static_cast<const float*>(k), heads, kv_heads, nq, nk,
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
      (nq + kQueries - 1) / kQueries > 0x7fffffff ||
      reinterpret_cast<uintptr_t>(q) % kLoadBytes != 0 ||
      reinterpret_cast<uintptr_t>(k) % kLoadBytes != 0) {
    return cudaErrorInvalidValue;
  }
  switch (type) {
    case ElementType::kFloat32:
      return LaunchScalar(q, k, heads, kv_heads, nq, nk, head_dim, causal, scale, shannon, renyi2,
                          row_max, stream);
    case ElementType::kFloat16:
      return LaunchTensorCore<ElementType::kFloat16>(
          q, k, heads, kv_heads, nq, nk, head_dim, causal, scale, shannon, renyi2, row_max, stream);
    case ElementType::kBFloat16:
      return LaunchTensorCore<ElementType::kBFloat16>(
          q, k, heads, kv_heads, nq, nk, head_dim, causal, scale, shannon, renyi2, row_max, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace entrowatch::compute::cuda
