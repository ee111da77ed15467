#pragma once

// The entropy math every engine shares: the CPU reference (in double), the
// vectorized CPU engine's scalar tails and merges (in float) and the CUDA
// kernels (in float, on the device). Everything here is EW_HD (host and
// device under nvcc, plain inline otherwise) and free of CUDA headers, so the
// CPU tests exercise exactly the arithmetic the kernels run, with their
// tiling.
//
// Entropy of p = softmax(beta * z) over a row of logits z (beta = 1 /
// temperature), in one pass: carry m = running max of z, d = sum exp(t) and
// u = sum exp(t) * t with t = beta * (z - m); then H = log d - u / d and
// p(argmax) = 1 / d. m stays in logit units and differences are taken before
// scaling, so huge logits (1e4 and up) lose no precision: z - m is exact for
// nearby values, while beta * z - beta * m is not. Partial triples over
// disjoint parts of a row merge associatively, so a row may be split across
// threads or thread blocks in any order.

#include <math.h>

#include <cstdint>

#include "common/half.h"

namespace entrowatch::compute {

EW_HD float MathExp(float x) { return expf(x); }
EW_HD double MathExp(double x) { return exp(x); }
EW_HD float MathLog(float x) { return logf(x); }
EW_HD double MathLog(double x) { return log(x); }

template <typename T>
EW_HD T NegativeInfinity() {
  return static_cast<T>(-INFINITY);
}

// Online softmax-entropy accumulator over a set of logits. Empty when d == 0
// (m is then -inf and u is 0).
template <typename T>
struct EntropyAccumulator {
  T m = NegativeInfinity<T>();
  T d = 0;
  T u = 0;
};

// Adds one logit. z must be finite or -inf (a masked token, skipped).
template <typename T>
EW_HD void AccumulateOne(EntropyAccumulator<T>& acc, T z, T beta) {
  if (z == NegativeInfinity<T>()) {
    return;
  }
  if (z > acc.m) {
    // Rescale the sums to the new maximum; the new element contributes
    // exp(0) = 1 and t = 0.
    if (acc.d == 0) {
      acc.u = 0;
      acc.d = 1;
    } else {
      const T shift = beta * (acc.m - z);
      const T s = MathExp(shift);
      acc.u = s * (acc.u + acc.d * shift);
      acc.d = acc.d * s + T(1);
    }
    acc.m = z;
  } else {
    const T t = beta * (z - acc.m);
    const T e = MathExp(t);
    acc.d += e;
    acc.u += e * t;
  }
}

// Associative, commutative merge of two partial accumulators of the same row
// (same beta).
template <typename T>
EW_HD EntropyAccumulator<T> Merge(const EntropyAccumulator<T>& a, const EntropyAccumulator<T>& b,
                                  T beta) {
  if (a.d == 0) {
    return b;
  }
  if (b.d == 0) {
    return a;
  }
  EntropyAccumulator<T> out;
  out.m = a.m > b.m ? a.m : b.m;
  const T shift_a = beta * (a.m - out.m);
  const T shift_b = beta * (b.m - out.m);
  const T sa = MathExp(shift_a);
  const T sb = MathExp(shift_b);
  out.d = a.d * sa + b.d * sb;
  out.u = sa * (a.u + a.d * shift_a) + sb * (b.u + b.d * shift_b);
  return out;
}

// One tile of logits (finite or -inf) as a kernel thread or a CPU vector
// lane group handles it: the tile maximum first, then one exp per element
// against it, so a tile costs n exps instead of an exp per rescale.
template <typename T>
EW_HD EntropyAccumulator<T> AccumulateTile(const T* z, int n, T beta) {
  EntropyAccumulator<T> tile;
  for (int i = 0; i < n; ++i) {
    tile.m = z[i] > tile.m ? z[i] : tile.m;
  }
  if (tile.m == NegativeInfinity<T>()) {
    return tile;
  }
  for (int i = 0; i < n; ++i) {
    if (z[i] != NegativeInfinity<T>()) {
      const T t = beta * (z[i] - tile.m);
      const T e = MathExp(t);
      tile.d += e;
      tile.u += e * t;
    }
  }
  return tile;
}

struct EntropyStats {
  double entropy = 0;
  double normalized = 0;
  double top1_prob = 0;
};

// Entropy, normalized entropy and top-1 probability of a non-empty
// accumulator over `valid_vocab` columns. The entropy is clamped to
// [0, log valid_vocab], the range rounding can leave by a few ulps.
template <typename T>
EW_HD EntropyStats Finalize(const EntropyAccumulator<T>& acc, int64_t valid_vocab) {
  EntropyStats out;
  const double log_v = log(static_cast<double>(valid_vocab));
  double h = static_cast<double>(MathLog(acc.d) - acc.u / acc.d);
  h = h < 0 ? 0 : h;
  h = h > log_v ? log_v : h;
  out.entropy = h;
  out.normalized = valid_vocab > 1 ? h / log_v : 0;
  out.top1_prob = 1.0 / static_cast<double>(acc.d);
  return out;
}

// -log p(target) for a target whose logit is z_target; +inf when the target
// is masked (-inf).
template <typename T>
EW_HD double Surprisal(const EntropyAccumulator<T>& acc, T z_target, T beta) {
  if (z_target == NegativeInfinity<T>()) {
    return static_cast<double>(INFINITY);
  }
  const double s =
      static_cast<double>(MathLog(acc.d)) + static_cast<double>(beta * (acc.m - z_target));
  return s < 0 ? 0 : s;
}

// Attention accumulator over already scaled scores x (beta = 1): the entropy
// triple plus q = sum exp(2 (x - m)) for the Renyi order-2 (collision)
// entropy -log sum p^2 = 2 log d - log q.
template <typename T>
struct AttentionAccumulator {
  EntropyAccumulator<T> h;
  T q = 0;
};

template <typename T>
EW_HD void AccumulateOne(AttentionAccumulator<T>& acc, T x) {
  if (x == NegativeInfinity<T>()) {
    return;
  }
  if (x > acc.h.m) {
    const T s = acc.h.d == 0 ? T(0) : MathExp(acc.h.m - x);
    acc.q = acc.q * s * s + T(1);
  } else {
    const T e = MathExp(x - acc.h.m);
    acc.q += e * e;
  }
  AccumulateOne(acc.h, x, T(1));
}

template <typename T>
EW_HD AttentionAccumulator<T> Merge(const AttentionAccumulator<T>& a,
                                    const AttentionAccumulator<T>& b) {
  if (a.h.d == 0) {
    return b;
  }
  if (b.h.d == 0) {
    return a;
  }
  AttentionAccumulator<T> out;
  out.h = Merge(a.h, b.h, T(1));
  const T sa = MathExp(a.h.m - out.h.m);
  const T sb = MathExp(b.h.m - out.h.m);
  out.q = a.q * sa * sa + b.q * sb * sb;
  return out;
}

struct AttentionStats {
  double shannon = 0;
  double renyi2 = 0;
};

// Entropies of a non-empty accumulator over `keys` keys, clamped to
// [0, log keys] (Renyi-2 never exceeds Shannon in exact arithmetic).
template <typename T>
EW_HD AttentionStats FinalizeAttention(const AttentionAccumulator<T>& acc, int64_t keys) {
  AttentionStats out;
  const double log_n = log(static_cast<double>(keys));
  const double log_d = static_cast<double>(MathLog(acc.h.d));
  double h = log_d - static_cast<double>(acc.h.u / acc.h.d);
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

// `x_desc` holds the row's n >= 1 finite scaled logits (masked tokens have
// zero probability before and after filtering), sorted in descending order;
// with top-k only its first min(n, top_k + ties) entries are read, so a
// caller may sort only that prefix. top_k 0 = off, top_p >= 1 = off.
template <typename T>
EW_HD SampledStats FilterSorted(const T* x_desc, int64_t n, uint32_t top_k, float top_p) {
  int64_t kept = n;
  if (top_k > 0 && static_cast<int64_t>(top_k) < n) {
    const T kth = x_desc[top_k - 1];
    kept = top_k;
    while (kept < n && x_desc[kept] == kth) {
      ++kept;
    }
  }
  if (top_p < 1.0f) {
    T total = 0;
    for (int64_t i = 0; i < kept; ++i) {
      total += MathExp(x_desc[i] - x_desc[0]);
    }
    T cumulative = 0;
    for (int64_t i = 0; i < kept; ++i) {
      cumulative += MathExp(x_desc[i] - x_desc[0]) / total;
      if (cumulative > static_cast<T>(top_p)) {
        kept = i + 1;
        break;
      }
    }
  }
  EntropyAccumulator<T> acc;
  for (int64_t i = 0; i < kept; ++i) {
    AccumulateOne(acc, x_desc[i], T(1));
  }
  const EntropyStats stats = Finalize(acc, kept);
  SampledStats out;
  out.entropy = stats.entropy;
  out.effective_vocab = kept;
  out.top1_prob = stats.top1_prob;
  return out;
}

}  // namespace entrowatch::compute
