// Token entropy: one read of the logits, fp32 accumulators, 16-byte loads,
// split-vocab partials when rows are few. Kernels first, then launchers.

#include <cuda_fp16.h>

#include <cstdint>
#include <cub/block/block_reduce.cuh>

#include "compute/cuda/kernels.cuh"
#include "compute/entropy_math.h"

namespace entrowatch::compute::cuda {
namespace {

template <ElementType kType>
constexpr int kElementBytes = kType == ElementType::kFloat32 ? 4 : 2;
template <ElementType kType>
constexpr int kPerVector = kLoadBytes / kElementBytes<kType>;

__device__ __forceinline__ float Bf16BitsToFloat(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}

__device__ __forceinline__ float HalfBitsToFloat(uint32_t bits16) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

template <ElementType kType>
__device__ __forceinline__ float LoadScalar(const uint8_t* row, int64_t i) {
  if constexpr (kType == ElementType::kFloat32) {
    return reinterpret_cast<const float*>(row)[i];
  } else if constexpr (kType == ElementType::kBFloat16) {
    return Bf16BitsToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
  } else {
    return HalfBitsToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
  }
}

// One 16-byte load into kPerVector floats.
template <ElementType kType>
__device__ __forceinline__ void LoadVector(const uint8_t* p, float* out) {
  if constexpr (kType == ElementType::kFloat32) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
  } else {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      if constexpr (kType == ElementType::kBFloat16) {
        out[2 * w] = Bf16BitsToFloat(words[w] & 0xffffu);
        out[2 * w + 1] = Bf16BitsToFloat(words[w] >> 16);
      } else {
        out[2 * w] = HalfBitsToFloat(words[w] & 0xffffu);
        out[2 * w + 1] = HalfBitsToFloat(words[w] >> 16);
      }
    }
  }
}

// NaN and +Inf are flagged and left out (as -inf) so the accumulator stays
// finite; the row is reported non-finite anyway.
__device__ __forceinline__ float Screen(float z, bool& non_finite) {
  const bool ok = z < INFINITY;
  non_finite = non_finite || !ok;
  return ok ? z : -INFINITY;
}

struct MergePartials {
  float scale2;
  __device__ __forceinline__ DevicePartial operator()(const DevicePartial& a,
                                                      const DevicePartial& b) const {
    EntropyAccumulator<float> x{a.m, a.d, a.u};
    EntropyAccumulator<float> y{b.m, b.d, b.u};
    const EntropyAccumulator<float> merged = Merge(x, y, scale2);
    return {merged.m, merged.d, merged.u, a.non_finite | b.non_finite};
  }
};

// Block b reduces chunk b % splits of row b / splits (tiling in
// entropy_math.h) into partials[b].
template <ElementType kType>
__global__ void __launch_bounds__(kTokenBlockThreads)
    TokenPartialKernel(const uint8_t* logits, int64_t cols, int64_t valid_vocab, int splits,
                       float scale2, DevicePartial* partials) {
  constexpr int kPer = kPerVector<kType>;
  constexpr int kTile = kTokenLoadsPerStep * kPer;
  const int64_t row = blockIdx.x / splits;
  const int chunk = static_cast<int>(blockIdx.x % splits);
  const uint8_t* base = logits + row * cols * kElementBytes<kType>;
  const int64_t misaligned =
      (reinterpret_cast<uintptr_t>(base) % kLoadBytes) / kElementBytes<kType>;
  const int64_t head = min(valid_vocab, misaligned == 0 ? int64_t{0} : kPer - misaligned);
  const int64_t vectors = (valid_vocab - head) / kPer;
  EntropyAccumulator<float> acc;
  bool non_finite = false;
  if (chunk == 0) {
    for (int64_t i = threadIdx.x; i < head; i += kTokenBlockThreads) {
      AccumulateOne(acc, Screen(LoadScalar<kType>(base, i), non_finite), scale2);
    }
  }
  const uint8_t* body = base + head * kElementBytes<kType>;
  const int64_t v_begin = vectors * chunk / splits;
  const int64_t v_end = vectors * (chunk + 1) / splits;
  for (int64_t step = v_begin; step < v_end; step += kTokenBlockThreads * kTokenLoadsPerStep) {
    float tile[kTile];
#pragma unroll
    for (int l = 0; l < kTokenLoadsPerStep; ++l) {
      const int64_t v = step + l * kTokenBlockThreads + threadIdx.x;
      if (v < v_end) {
        LoadVector<kType>(body + v * kLoadBytes, tile + l * kPer);
      } else {
#pragma unroll
        for (int j = 0; j < kPer; ++j) {
          tile[l * kPer + j] = -INFINITY;
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kTile; ++j) {
      tile[j] = Screen(tile[j], non_finite);
    }
    AccumulateTile(acc, tile, kTile, scale2);
  }
  if (chunk == splits - 1) {
    for (int64_t i = head + vectors * kPer + threadIdx.x; i < valid_vocab;
         i += kTokenBlockThreads) {
      AccumulateOne(acc, Screen(LoadScalar<kType>(base, i), non_finite), scale2);
    }
  }
  using BlockReduce = cub::BlockReduce<DevicePartial, kTokenBlockThreads>;
  __shared__ typename BlockReduce::TempStorage storage;
  const DevicePartial mine{acc.m, acc.d, acc.u, non_finite ? 1 : 0};
  const DevicePartial total = BlockReduce(storage).Reduce(mine, MergePartials{scale2});
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = total;
  }
}

// One thread per row: merges the row's chunks in order and finalizes.
template <ElementType kType>
__global__ void TokenFinalizeKernel(const uint8_t* logits, int64_t rows, int64_t cols,
                                    int64_t valid_vocab, int splits, float scale2,
                                    const int32_t* targets, const DevicePartial* partials,
                                    DeviceRow* out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= rows) {
    return;
  }
  EntropyAccumulator<float> acc;
  int32_t non_finite = 0;
  for (int c = 0; c < splits; ++c) {
    const DevicePartial& p = partials[row * splits + c];
    acc = Merge(acc, EntropyAccumulator<float>{p.m, p.d, p.u}, scale2);
    non_finite |= p.non_finite;
  }
  DeviceRow r{kRowOk, 0.0f, 0.0f, 0.0f, 0.0};
  if (non_finite != 0) {
    r.status = kRowNonFinite;
  } else if (acc.d == 0) {
    r.status = kRowAllMasked;
  } else {
    const EntropyStats stats = Finalize(acc, valid_vocab);
    r.entropy = static_cast<float>(stats.entropy);
    r.normalized = static_cast<float>(stats.normalized);
    r.top1_prob = static_cast<float>(stats.top1_prob);
    if (targets != nullptr) {
      const float z = LoadScalar<kType>(logits + row * cols * kElementBytes<kType>, targets[row]);
      r.surprisal = Surprisal(acc, z, scale2);
    }
  }
  out[row] = r;
}

template <ElementType kType>
cudaError_t Launch(const void* logits, int64_t rows, int64_t cols, int64_t valid_vocab,
                   float scale2, const int32_t* targets, int splits, DevicePartial* partials,
                   DeviceRow* out, cudaStream_t stream) {
  const auto* bytes = static_cast<const uint8_t*>(logits);
  TokenPartialKernel<kType>
      <<<static_cast<unsigned>(rows * splits), kTokenBlockThreads, 0, stream>>>(
          bytes, cols, valid_vocab, splits, scale2, partials);
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    return status;
  }
  constexpr int kFinalizeThreads = 128;
  const auto blocks = static_cast<unsigned>((rows + kFinalizeThreads - 1) / kFinalizeThreads);
  TokenFinalizeKernel<kType><<<blocks, kFinalizeThreads, 0, stream>>>(
      bytes, rows, cols, valid_vocab, splits, scale2, targets, partials, out);
  return cudaGetLastError();
}

}  // namespace

int TokenSplits(int64_t rows, int64_t cols, int sms) {
  // Four resident blocks per SM keep enough 16-byte loads in flight; a chunk
  // shorter than four block steps spends more on its reduction than it reads.
  const int64_t wanted = (4 * static_cast<int64_t>(sms) + rows - 1) / rows;
  const int64_t min_chunk_bytes = int64_t{4} * kTokenBlockThreads * kTokenLoadsPerStep * kLoadBytes;
  const int64_t most = cols * 4 / min_chunk_bytes;  // fp32 worst case
  const int64_t splits = wanted < most ? wanted : most;
  return splits < 1 ? 1 : static_cast<int>(splits > 1024 ? 1024 : splits);
}

cudaError_t LaunchTokenEntropy(ElementType type, const void* logits, int64_t rows, int64_t cols,
                               int64_t valid_vocab, float scale2, const int32_t* targets,
                               int splits, DevicePartial* partials, DeviceRow* out,
                               cudaStream_t stream) {
  if (rows < 1 || valid_vocab < 1 || valid_vocab > cols || splits < 1 ||
      rows * splits > 0x7fffffff || reinterpret_cast<uintptr_t>(logits) % kLoadBytes != 0) {
    return cudaErrorInvalidValue;
  }
  switch (type) {
    case ElementType::kFloat32:
      return Launch<ElementType::kFloat32>(logits, rows, cols, valid_vocab, scale2, targets, splits,
                                           partials, out, stream);
    case ElementType::kFloat16:
      return Launch<ElementType::kFloat16>(logits, rows, cols, valid_vocab, scale2, targets, splits,
                                           partials, out, stream);
    case ElementType::kBFloat16:
      return Launch<ElementType::kBFloat16>(logits, rows, cols, valid_vocab, scale2, targets,
                                            splits, partials, out, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace entrowatch::compute::cuda
