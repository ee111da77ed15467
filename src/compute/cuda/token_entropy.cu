// Token entropy: one read of the logits, fp32 accumulators, 16-byte loads,
// split-vocab partials when rows are few. Kernels first, then launchers.
//
// The main loop is built to stay under the memory floor: per element one
// conversion, one subtract, one multiply, one clamp, one ex2.approx.ftz and
// two adds; the tile maximum runs on packed bf16x2 / f16x2 words with
// NaN-propagating max, which screens the tile for NaN / +Inf as well, so no
// instruction is spent per element on screening or on masked (-inf) logits.
// bench/gpu/count_ptx.py counts what nvcc emits (bench/RESULTS.md).

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

// Marks a branch the main loop rarely takes (a tile raising the running
// maximum, a non-finite tile) with a PTX comment, so that
// bench/gpu/count_ptx.py can leave it out of the steady-state count. Emits
// no instruction.
__device__ __forceinline__ void ColdPath() {
#if defined(__CUDA_ARCH__)
  asm volatile("// entrowatch: cold path");
#endif
}

// Bits of a 16-byte vector whose values are all -inf (stands in for the
// vectors past a chunk's end).
template <ElementType kType>
constexpr uint32_t kMaskedWord = kType == ElementType::kFloat32   ? 0xff800000u
                                 : kType == ElementType::kFloat16 ? 0xfc00fc00u
                                                                  : 0xff80ff80u;

// Maximum that propagates NaN (max.NaN, sm_80+): a NaN anywhere makes the
// result NaN, and +Inf makes it +Inf, so a tile's maximum screens the tile
// for non-finite values at no extra cost.
__device__ __forceinline__ float MaxNaN(float a, float b) {
#if defined(__CUDA_ARCH__)
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
#else
  return a != a || b != b ? __uint_as_float(0x7fffffffu) : (a > b ? a : b);
#endif
}

// The same on a word of two packed 16-bit values: one instruction per two
// elements (max.NaN.bf16x2 / max.NaN.f16x2).
template <ElementType kType>
__device__ __forceinline__ uint32_t MaxNaN2(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  if constexpr (kType == ElementType::kBFloat16) {
    asm("max.NaN.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  } else {
    asm("max.NaN.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  }
  return r;
#else
  uint32_t r = 0;
  for (int shift = 0; shift < 32; shift += 16) {
    const uint32_t x = (a >> shift) & 0xffffu;
    const uint32_t y = (b >> shift) & 0xffffu;
    const float fx = kType == ElementType::kBFloat16 ? Bf16BitsToFloat(x) : HalfBitsToFloat(x);
    const float fy = kType == ElementType::kBFloat16 ? Bf16BitsToFloat(y) : HalfBitsToFloat(y);
    const uint32_t nan = kType == ElementType::kBFloat16 ? 0x7fffu : 0x7fffu;
    r |= (fx != fx || fy != fy ? nan : (fx >= fy ? x : y)) << shift;
  }
  return r;
#endif
}

// The two values of a packed word: the low half, then the high half.
template <ElementType kType>
__device__ __forceinline__ void Unpack(uint32_t w, float& lo, float& hi) {
  if constexpr (kType == ElementType::kBFloat16) {
    lo = __uint_as_float(w << 16);
    hi = __uint_as_float(w & 0xffff0000u);
  } else {
    lo = HalfBitsToFloat(w & 0xffffu);
    hi = HalfBitsToFloat(w >> 16);
  }
}

// NaN-propagating maximum of a thread's tile of loaded vectors.
template <ElementType kType>
__device__ __forceinline__ float TileMax(const uint4* raw) {
  if constexpr (kType == ElementType::kFloat32) {
    float m = __uint_as_float(raw[0].x);
#pragma unroll
    for (int l = 0; l < kTokenLoadsPerStep; ++l) {
      const uint32_t w[4] = {raw[l].x, raw[l].y, raw[l].z, raw[l].w};
#pragma unroll
      for (int i = l == 0 ? 1 : 0; i < 4; ++i) {
        m = MaxNaN(m, __uint_as_float(w[i]));
      }
    }
    return m;
  } else {
    uint32_t m = raw[0].x;
#pragma unroll
    for (int l = 0; l < kTokenLoadsPerStep; ++l) {
      const uint32_t w[4] = {raw[l].x, raw[l].y, raw[l].z, raw[l].w};
#pragma unroll
      for (int i = l == 0 ? 1 : 0; i < 4; ++i) {
        m = MaxNaN2<kType>(m, w[i]);
      }
    }
    float lo, hi;
    Unpack<kType>(m, lo, hi);
    return MaxNaN(lo, hi);
  }
}

// Adds one finite or -inf logit to an accumulator whose maximum m is at
// least z and finite: no branch, one exp2 (ex2.approx.ftz). A masked logit
// gives the floor: exp2 flushes to 0 and 0 * floor adds 0.
__device__ __forceinline__ void AddBelowMax(EntropyAccumulator<float>& acc, float z, float scale2) {
  const float t = fmaxf(scale2 * (z - acc.m), Exp2ArgFloor<float>());
  const float e = FastExp2(t);
  acc.d += e;
  acc.u = fmaf(e, t, acc.u);
}

// Folds a thread's tile (kTokenLoadsPerStep 16-byte vectors) into `acc`:
// the tile maximum first (which also screens it), one rescale at most, then
// one AddBelowMax per element. A tile with NaN or +Inf is flagged and left
// out; a tile of -inf only adds nothing.
template <ElementType kType>
__device__ __forceinline__ void AccumulateVectors(EntropyAccumulator<float>& acc, const uint4* raw,
                                                  float scale2, bool& non_finite) {
  const float tile_max = TileMax<kType>(raw);
  if (!(tile_max > -INFINITY && tile_max < INFINITY)) {
    ColdPath();
    non_finite = non_finite || tile_max != -INFINITY;
    return;
  }
  if (tile_max > acc.m) {
    ColdPath();
    Rescale(acc, tile_max, scale2);
  }
#pragma unroll
  for (int l = 0; l < kTokenLoadsPerStep; ++l) {
    const uint32_t w[4] = {raw[l].x, raw[l].y, raw[l].z, raw[l].w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (kType == ElementType::kFloat32) {
        AddBelowMax(acc, __uint_as_float(w[i]), scale2);
      } else {
        float lo, hi;
        Unpack<kType>(w[i], lo, hi);
        AddBelowMax(acc, lo, scale2);
        AddBelowMax(acc, hi, scale2);
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
  constexpr int64_t kStep = kTokenBlockThreads * kTokenLoadsPerStep;  // vectors per block step
  int64_t step = v_begin;
  // Whole steps: every load in bounds, no per-load check.
  for (; step + kStep <= v_end; step += kStep) {
    uint4 raw[kTokenLoadsPerStep];
#pragma unroll
    for (int l = 0; l < kTokenLoadsPerStep; ++l) {
      raw[l] = __ldg(reinterpret_cast<const uint4*>(
          body + (step + l * kTokenBlockThreads + threadIdx.x) * kLoadBytes));
    }
    AccumulateVectors<kType>(acc, raw, scale2, non_finite);
  }
  // The last, partial step: vectors past the chunk read as -inf.
  if (step < v_end) {
    uint4 raw[kTokenLoadsPerStep];
#pragma unroll
    for (int l = 0; l < kTokenLoadsPerStep; ++l) {
      const int64_t v = step + l * kTokenBlockThreads + threadIdx.x;
      raw[l] = v < v_end ? __ldg(reinterpret_cast<const uint4*>(body + v * kLoadBytes))
                         : uint4{kMaskedWord<kType>, kMaskedWord<kType>, kMaskedWord<kType>,
                                 kMaskedWord<kType>};
    }
    AccumulateVectors<kType>(acc, raw, scale2, non_finite);
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
