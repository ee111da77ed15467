#pragma once

// The entropy math every engine shares: the CPU reference (in double), the
// vectorized CPU engine's tails and merges (in float) and the CUDA kernels
// (in float, on the device). Everything here is EW_HD (host and device under
// nvcc, plain inline otherwise) and free of CUDA headers, so the CPU tests
// exercise the arithmetic the kernels run, with their tiling.
//
// Entropy of p = softmax(beta * z) over a row of logits z (beta = 1 /
// temperature), in one pass, in base 2 so that each element costs one exp2
// with the scale folded in: with scale2 = beta * log2(e) and
// t = scale2 * (z - m), carry m = running max of z, d = sum 2^t and
// u = sum 2^t * t; then H = ln d - ln 2 * u / d (nats) and p(argmax) = 1 / d.
// m stays in logit units and differences are taken before scaling, so huge
// logits (1e4 and up) lose no precision: z - m is exact for nearby values,
// while scale2 * z - scale2 * m is not. Partial triples over disjoint parts of
// a row merge associatively, so a row may be split across threads or thread
// blocks in any order.

#include <math.h>

#include <cstdint>

#include "common/half.h"

namespace entrowatch::compute {

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

EW_HD float MathExp2(float x) { return exp2f(x); }

// exp2 for the kernels' per-element loops: one ex2.approx.ftz instruction on
// the device (relative error about 2^-22; results below 2^-126 flush to 0,
// which drops terms that are 0 at float precision anyway). The exact exp2f
// costs several more instructions to handle subnormals. CPU code gets exp2f
// (the emulated device gets the flushing model from its headers).
#if defined(__CUDA_ARCH__)
__device__ __forceinline__ float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
#elif defined(EW_EMULATED_CUDA)
inline float FastExp2(float x) { return EmuExp2Ftz(x); }
#else
inline float FastExp2(float x) { return exp2f(x); }
#endif
EW_HD double MathExp2(double x) { return exp2(x); }
EW_HD float MathLog(float x) { return logf(x); }
EW_HD double MathLog(double x) { return log(x); }

template <typename T>
EW_HD T NegativeInfinity() {
  return static_cast<T>(-INFINITY);
}

// Floor for exp2 arguments: 2^floor is exactly 0 in T, and clamping keeps
// t finite, so a vanished term adds 0 * floor = 0 instead of 0 * -inf = NaN
// (a row spanning more than FLT_MAX / scale2, or a tiny temperature).
template <typename T>
EW_HD T Exp2ArgFloor() {
  return sizeof(T) == sizeof(float) ? static_cast<T>(-200) : static_cast<T>(-2000);
}

template <typename T>
EW_HD T ClampExp2Arg(T t) {
  return t < Exp2ArgFloor<T>() ? Exp2ArgFloor<T>() : t;
}

// scale2 for a temperature's beta = 1 / temperature.
template <typename T>
EW_HD T Log2Scale(T beta) {
  return beta * static_cast<T>(kLog2e);
}

// The CUDA token-entropy kernel's tiling, shared with the CPU tests that
// replay it. A block of kTokenBlockThreads threads walks a row, or one of the
// row's split-vocab chunks: at each step thread i loads kTokenLoadsPerStep
// 16-byte vectors (vector s * kTokenBlockThreads * kTokenLoadsPerStep +
// l * kTokenBlockThreads + i, so every load instruction is coalesced) and
// folds their values in the way AccumulateTile does (tile maximum, one
// rescale at most, one exp2 per element; the kernel takes the maximum on
// packed words and uses the flushing exp2); elements before the first
// 16-byte boundary of the row and after its last whole vector go through
// AccumulateOne; the threads' accumulators merge in a block reduction.
constexpr int kTokenBlockThreads = 256;
constexpr int kTokenLoadsPerStep = 4;
constexpr int kLoadBytes = 16;

// The CUDA fp32 attention kernel's tiling, likewise replayed on the CPU: keys go
// through shared memory kAttentionTileKeys at a time; lane l of the warp that
// owns a query folds keys tile + l + kWarpLanes * j (j <
// kAttentionTileKeys / kWarpLanes) into its own accumulator, and the lanes'
// accumulators merge in a warp reduction at the end.
constexpr int kWarpLanes = 32;
constexpr int kAttentionTileKeys = 64;

// Online softmax-entropy accumulator over a set of logits. Empty when d == 0
// (m is then -inf and u is 0).
template <typename T>
struct EntropyAccumulator {
  T m = NegativeInfinity<T>();
  T d = 0;
  T u = 0;
};

// Rescales a non-empty accumulator to a larger maximum m_new.
template <typename T>
EW_HD void Rescale(EntropyAccumulator<T>& acc, T m_new, T scale2) {
  if (acc.d != 0) {
    const T shift = ClampExp2Arg(scale2 * (acc.m - m_new));  // <= 0
    const T s = MathExp2(shift);
    acc.u = s * (acc.u + acc.d * shift);
    acc.d = acc.d * s;
  }
  acc.m = m_new;
}

// Adds one logit. z must be finite or -inf (a masked token, skipped).
template <typename T>
EW_HD void AccumulateOne(EntropyAccumulator<T>& acc, T z, T scale2) {
  if (z == NegativeInfinity<T>()) {
    return;
  }
  if (z > acc.m) {
    // The new element contributes 2^0 = 1 and t = 0.
    Rescale(acc, z, scale2);
    acc.d += T(1);
  } else {
    const T t = ClampExp2Arg(scale2 * (z - acc.m));
    const T e = MathExp2(t);
    acc.d += e;
    acc.u += e * t;
  }
}

// Adds a tile of n logits (finite or -inf) the way a kernel thread handles
// the values of its 16-byte loads: the tile maximum first, one rescale at
// most, then one exp2 per element against the running maximum.
template <typename T>
EW_HD void AccumulateTile(EntropyAccumulator<T>& acc, const T* z, int n, T scale2) {
  T tile_max = NegativeInfinity<T>();
  for (int i = 0; i < n; ++i) {
    tile_max = z[i] > tile_max ? z[i] : tile_max;
  }
  if (tile_max == NegativeInfinity<T>()) {
    return;
  }
  if (tile_max > acc.m) {
    Rescale(acc, tile_max, scale2);
  }
  for (int i = 0; i < n; ++i) {
    if (z[i] != NegativeInfinity<T>()) {
      const T t = ClampExp2Arg(scale2 * (z[i] - acc.m));
      const T e = MathExp2(t);
      acc.d += e;
      acc.u += e * t;
    }
  }
}

// Associative, commutative merge of two partial accumulators of the same row
// (same scale2).
template <typename T>
EW_HD EntropyAccumulator<T> Merge(const EntropyAccumulator<T>& a, const EntropyAccumulator<T>& b,
                                  T scale2) {
  if (a.d == 0) {
    return b;
  }
  if (b.d == 0) {
    return a;
  }
  EntropyAccumulator<T> out;
  out.m = a.m > b.m ? a.m : b.m;
  const T shift_a = ClampExp2Arg(scale2 * (a.m - out.m));
  const T shift_b = ClampExp2Arg(scale2 * (b.m - out.m));
  const T sa = MathExp2(shift_a);
  const T sb = MathExp2(shift_b);
  out.d = a.d * sa + b.d * sb;
  out.u = sa * (a.u + a.d * shift_a) + sb * (b.u + b.d * shift_b);
  return out;
}

struct EntropyStats {
  double entropy = 0;
  double normalized = 0;
  double top1_prob = 0;
};

// Entropy (nats), normalized entropy and top-1 probability of a non-empty
// accumulator over `valid_vocab` columns. The entropy is clamped to
// [0, ln valid_vocab], the range rounding can leave by a few ulps.
template <typename T>
EW_HD EntropyStats Finalize(const EntropyAccumulator<T>& acc, int64_t valid_vocab) {
  EntropyStats out;
  const double log_v = log(static_cast<double>(valid_vocab));
  double h = static_cast<double>(MathLog(acc.d)) - kLn2 * static_cast<double>(acc.u / acc.d);
  h = h < 0 ? 0 : h;
  h = h > log_v ? log_v : h;
  out.entropy = h;
  out.normalized = valid_vocab > 1 ? h / log_v : 0;
  out.top1_prob = 1.0 / static_cast<double>(acc.d);
  return out;
}

// -ln p(target) for a target whose logit is z_target; +inf when the target
// is masked (-inf). The gap scale2 * (m - z_target) is taken in double: in
// float it overflows (logits near +-3e38, or a temperature near 1e-6 with
// large logits) where the surprisal itself is finite. Once per row.
template <typename T>
EW_HD double Surprisal(const EntropyAccumulator<T>& acc, T z_target, T scale2) {
  if (z_target == NegativeInfinity<T>()) {
    return static_cast<double>(INFINITY);
  }
  const double gap =
      static_cast<double>(scale2) * (static_cast<double>(acc.m) - static_cast<double>(z_target));
  const double s = static_cast<double>(MathLog(acc.d)) + kLn2 * gap;
  return s < 0 ? 0 : s;
}

// Attention accumulator over already scaled scores x (scale2 = log2 e): the
// entropy triple plus q = sum 2^(2t) for the Renyi order-2 (collision)
// entropy -ln sum p^2 = 2 ln d - ln q.
template <typename T>
struct AttentionAccumulator {
  EntropyAccumulator<T> h;
  T q = 0;
};

template <typename T>
EW_HD void AccumulateOne(AttentionAccumulator<T>& acc, T x) {
  const T scale2 = static_cast<T>(kLog2e);
  if (x == NegativeInfinity<T>()) {
    return;
  }
  if (x > acc.h.m) {
    const T s = acc.h.d == 0 ? T(0) : MathExp2(scale2 * (acc.h.m - x));
    acc.q = acc.q * s * s + T(1);
  } else {
    const T e = MathExp2(scale2 * (x - acc.h.m));
    acc.q += e * e;
  }
  AccumulateOne(acc.h, x, scale2);
}

template <typename T>
EW_HD AttentionAccumulator<T> Merge(const AttentionAccumulator<T>& a,
                                    const AttentionAccumulator<T>& b) {
  const T scale2 = static_cast<T>(kLog2e);
  if (a.h.d == 0) {
    return b;
  }
  if (b.h.d == 0) {
    return a;
  }
  AttentionAccumulator<T> out;
  out.h = Merge(a.h, b.h, scale2);
  const T sa = MathExp2(scale2 * (a.h.m - out.h.m));
  const T sb = MathExp2(scale2 * (b.h.m - out.h.m));
  out.q = a.q * sa * sa + b.q * sb * sb;
  return out;
}

struct AttentionStats {
  double shannon = 0;
  double renyi2 = 0;
};

// Entropies of a non-empty accumulator over `keys` keys, clamped to
// [0, ln keys] (Renyi-2 never exceeds Shannon in exact arithmetic).
template <typename T>
EW_HD AttentionStats FinalizeAttention(const AttentionAccumulator<T>& acc, int64_t keys) {
  AttentionStats out;
  const double log_n = log(static_cast<double>(keys));
  const double log_d = static_cast<double>(MathLog(acc.h.d));
  double h = log_d - kLn2 * static_cast<double>(acc.h.u / acc.h.d);
  double h2 = 2 * log_d - static_cast<double>(MathLog(acc.q));
  h = h < 0 ? 0 : (h > log_n ? log_n : h);
  h2 = h2 < 0 ? 0 : (h2 > h ? h : h2);
  out.shannon = h;
  out.renyi2 = h2;
  return out;
}

// The sampling view's filters, defined as in PyTorch's apply_top_k (ties with
// the k-th value kept) and apply_top_p (smallest prefix of the probabilities
// in descending order whose cumulative sum exceeds p; top-1 always kept),
// applied in that order to the temperature-scaled logits.
struct SampledStats {
  double entropy = 0;
  int64_t effective_vocab = 0;  // tokens left with nonzero probability
  double top1_prob = 0;
};

// Number of leading entries of `x_desc` (n >= 1 scaled logits, descending)
// that top-k keeps: k plus the entries tied with the k-th; n when off.
template <typename T>
EW_HD int64_t TopKCount(const T* x_desc, int64_t n, uint32_t top_k) {
  if (top_k == 0 || static_cast<int64_t>(top_k) >= n) {
    return n;
  }
  const T kth = x_desc[top_k - 1];
  int64_t kept = top_k;
  while (kept < n && x_desc[kept] == kth) {
    ++kept;
  }
  return kept;
}

// Number of leading entries of `x_desc` (descending, the top-k survivors)
// that top-p keeps: up to and including the first whose cumulative
// probability, renormalized over the n entries, exceeds p.
template <typename T>
EW_HD int64_t TopPCount(const T* x_desc, int64_t n, float top_p) {
  if (top_p >= 1.0f) {
    return n;
  }
  const T scale2 = static_cast<T>(kLog2e);
  T total = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += MathExp2(scale2 * (x_desc[i] - x_desc[0]));
  }
  T cumulative = 0;
  for (int64_t i = 0; i < n; ++i) {
    cumulative += MathExp2(scale2 * (x_desc[i] - x_desc[0])) / total;
    if (cumulative > static_cast<T>(top_p)) {
      return i + 1;
    }
  }
  return n;
}

// `x_desc` holds the row's n >= 1 finite scaled logits (masked tokens have
// zero probability before and after filtering), sorted in descending order;
// only the first TopKCount entries are read, so a caller may sort only that
// prefix. top_k 0 = off, top_p >= 1 = off.
template <typename T>
EW_HD SampledStats FilterSorted(const T* x_desc, int64_t n, uint32_t top_k, float top_p) {
  const int64_t kept = TopPCount(x_desc, TopKCount(x_desc, n, top_k), top_p);
  EntropyAccumulator<T> acc;
  AccumulateTile(acc, x_desc, static_cast<int>(kept), static_cast<T>(kLog2e));
  const EntropyStats stats = Finalize(acc, kept);
  SampledStats out;
  out.entropy = stats.entropy;
  out.effective_vocab = kept;
  out.top1_prob = stats.top1_prob;
  return out;
}

}  // namespace entrowatch::compute
