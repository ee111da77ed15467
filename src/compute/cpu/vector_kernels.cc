// Compiled once per Highway target (foreach_target re-includes this file).

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "compute/cpu/vector_kernels.cc"
#include "compute/cpu/vector_kernels.h"

#include <limits>

#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace entrowatch::compute {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// exp2 arguments are clamped here: 2^-125 is a normal float that vanishes
// next to any sum holding its maximum (>= 1), and masked (-inf) columns
// land here without producing 0 * inf.
constexpr float kExp2Floor = -125.0f;
constexpr int kVectorsPerGroup = 4;

// 2^t for t in [kExp2Floor, 0]: t = n + f with f in [-0.5, 0.5], 2^f by
// Cephes' exp2f polynomial (relative error ~2e-8), 2^n into the exponent.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Exp2NonPositive(D d, V t) {
  const hn::RebindToSigned<D> di;
  const V n = hn::Round(t);
  const V f = hn::Sub(t, n);
  V p = hn::Set(d, 1.535336188319500e-4f);
  p = hn::MulAdd(p, f, hn::Set(d, 1.339887440266574e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 9.618437357674640e-3f));
  p = hn::MulAdd(p, f, hn::Set(d, 5.550332471162809e-2f));
  p = hn::MulAdd(p, f, hn::Set(d, 2.402264791363012e-1f));
  p = hn::MulAdd(p, f, hn::Set(d, 6.931472028550421e-1f));
  p = hn::MulAdd(p, f, hn::Set(d, 1.0f));
  const auto exponent = hn::ShiftLeft<23>(hn::ConvertTo(di, n));
  return hn::BitCast(d, hn::Add(hn::BitCast(di, p), exponent));
}

// Loads four vectors of logits starting at element i. Named outputs rather
// than an array, so they stay in registers.
template <class D, class V = hn::Vec<D>>
HWY_INLINE void LoadGroup(D d, const float* row, int64_t i, V& z0, V& z1, V& z2, V& z3) {
  const int64_t n = hn::Lanes(d);
  z0 = hn::LoadU(d, row + i);
  z1 = hn::LoadU(d, row + i + n);
  z2 = hn::LoadU(d, row + i + 2 * n);
  z3 = hn::LoadU(d, row + i + 3 * n);
}

template <class D, class V = hn::Vec<D>>
HWY_INLINE void LoadGroup(D d, const hwy::float16_t* row, int64_t i, V& z0, V& z1, V& z2, V& z3) {
  const hn::Rebind<hwy::float16_t, D> dh;
  const int64_t n = hn::Lanes(d);
  z0 = hn::PromoteTo(d, hn::LoadU(dh, row + i));
  z1 = hn::PromoteTo(d, hn::LoadU(dh, row + i + n));
  z2 = hn::PromoteTo(d, hn::LoadU(dh, row + i + 2 * n));
  z3 = hn::PromoteTo(d, hn::LoadU(dh, row + i + 3 * n));
}

// bf16 is the upper half of a float: one full-width load gives two vectors
// (even and odd elements), and the order of elements does not matter here.
// HWY_SCALAR has single-lane vectors only and promotes element by element.
template <class D, class V = hn::Vec<D>>
HWY_INLINE void LoadGroup(D d, const hwy::bfloat16_t* row, int64_t i, V& z0, V& z1, V& z2, V& z3) {
  const int64_t n = hn::Lanes(d);
#if HWY_TARGET == HWY_SCALAR
  const hn::Rebind<hwy::bfloat16_t, D> dbf;
  z0 = hn::PromoteTo(d, hn::LoadU(dbf, row + i));
  z1 = hn::PromoteTo(d, hn::LoadU(dbf, row + i + n));
  z2 = hn::PromoteTo(d, hn::LoadU(dbf, row + i + 2 * n));
  z3 = hn::PromoteTo(d, hn::LoadU(dbf, row + i + 3 * n));
#else
  const hn::Repartition<uint16_t, D> du16;
  const hn::RebindToUnsigned<D> du32;
  const auto high = hn::Set(du32, 0xFFFF0000u);
  const auto* bits = reinterpret_cast<const uint16_t*>(row);
  const auto w0 = hn::BitCast(du32, hn::LoadU(du16, bits + i));
  const auto w1 = hn::BitCast(du32, hn::LoadU(du16, bits + i + 2 * n));
  z0 = hn::BitCast(d, hn::ShiftLeft<16>(w0));
  z1 = hn::BitCast(d, hn::And(w0, high));
  z2 = hn::BitCast(d, hn::ShiftLeft<16>(w1));
  z3 = hn::BitCast(d, hn::And(w1, high));
#endif
}

// Folds one vector of logits into a lane accumulator pair against the lanes'
// current maximum m; returns t (NaN exactly for NaN / +Inf logits).
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Fold(D d, V z, V m, V scale, V floor, V& sum_d, V& sum_u) {
  const V t = hn::Mul(hn::Sub(z, m), scale);
  const V clamped = hn::Max(t, floor);
  const V e = Exp2NonPositive(d, clamped);
  sum_d = hn::Add(sum_d, e);
  sum_u = hn::MulAdd(e, clamped, sum_u);
  return t;
}

inline float ScalarLoad(const float* row, int64_t i) { return row[i]; }
inline float ScalarLoad(const hwy::float16_t* row, int64_t i) {
  return common::HalfToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
}
inline float ScalarLoad(const hwy::bfloat16_t* row, int64_t i) {
  return common::BFloat16ToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
}

template <typename Element>
HWY_INLINE ChunkPartial AccumulateT(const Element* row, int64_t begin, int64_t end, float scale2) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const int64_t group = kVectorsPerGroup * static_cast<int64_t>(hn::Lanes(d));
  const V scale = hn::Set(d, scale2);
  const V floor = hn::Set(d, kExp2Floor);
  // Lanes start at the lowest finite value rather than -inf so that
  // (z - m) never computes -inf - (-inf).
  V m = hn::Set(d, hwy::LowestValue<float>());
  // Four accumulator pairs, one per vector of a group, so consecutive adds do
  // not wait on each other.
  V d0 = hn::Zero(d), d1 = hn::Zero(d), d2 = hn::Zero(d), d3 = hn::Zero(d);
  V u0 = hn::Zero(d), u1 = hn::Zero(d), u2 = hn::Zero(d), u3 = hn::Zero(d);
  // t <= 0 or -inf for every valid logit; NaN exactly when z is NaN or +Inf.
  // Summing t keeps that NaN without a compare per vector.
  V sum_t = hn::Zero(d);
  int64_t i = begin;
  for (; i + group <= end; i += group) {
    V z0, z1, z2, z3;
    LoadGroup(d, row, i, z0, z1, z2, z3);
    const V new_m = hn::Max(m, hn::Max(hn::Max(z0, z1), hn::Max(z2, z3)));
    if (!hn::AllFalse(d, hn::Gt(new_m, m))) {
      const V shift = hn::Max(hn::Mul(hn::Sub(m, new_m), scale), floor);
      const V s = Exp2NonPositive(d, shift);
      u0 = hn::Mul(s, hn::MulAdd(d0, shift, u0));
      u1 = hn::Mul(s, hn::MulAdd(d1, shift, u1));
      u2 = hn::Mul(s, hn::MulAdd(d2, shift, u2));
      u3 = hn::Mul(s, hn::MulAdd(d3, shift, u3));
      d0 = hn::Mul(d0, s);
      d1 = hn::Mul(d1, s);
      d2 = hn::Mul(d2, s);
      d3 = hn::Mul(d3, s);
      m = new_m;
    }
    const V t0 = Fold(d, z0, m, scale, floor, d0, u0);
    const V t1 = Fold(d, z1, m, scale, floor, d1, u1);
    const V t2 = Fold(d, z2, m, scale, floor, d2, u2);
    const V t3 = Fold(d, z3, m, scale, floor, d3, u3);
    sum_t = hn::Add(sum_t, hn::Add(hn::Add(t0, t1), hn::Add(t2, t3)));
  }
  ChunkPartial out;
  const V lane_d = hn::Add(hn::Add(d0, d1), hn::Add(d2, d3));
  const V lane_u = hn::Add(hn::Add(u0, u1), hn::Add(u2, u3));
  out.non_finite = !hn::AllFalse(d, hn::IsNaN(sum_t));
  const float row_m = hn::GetLane(hn::MaxOfLanes(d, m));
  if (i > begin && row_m > hwy::LowestValue<float>()) {
    const V shift = hn::Max(hn::Mul(hn::Sub(m, hn::Set(d, row_m)), scale), floor);
    const V s = Exp2NonPositive(d, shift);
    out.acc.m = row_m;
    out.acc.d = hn::GetLane(hn::SumOfLanes(d, hn::Mul(lane_d, s)));
    out.acc.u = hn::GetLane(hn::SumOfLanes(d, hn::Mul(s, hn::MulAdd(lane_d, shift, lane_u))));
  }
  EntropyAccumulator<float> tail;
  for (; i < end; ++i) {
    const float z = ScalarLoad(row, i);
    if (z != z || z == std::numeric_limits<float>::infinity()) {
      out.non_finite = true;
    } else {
      AccumulateOne(tail, z, scale2);
    }
  }
  out.acc = Merge(out.acc, tail, scale2);
  return out;
}

ChunkPartial AccumulateFloat32(const void* row, int64_t begin, int64_t end, float scale2) {
  return AccumulateT(static_cast<const float*>(row), begin, end, scale2);
}
ChunkPartial AccumulateFloat16(const void* row, int64_t begin, int64_t end, float scale2) {
  return AccumulateT(static_cast<const hwy::float16_t*>(row), begin, end, scale2);
}
ChunkPartial AccumulateBFloat16(const void* row, int64_t begin, int64_t end, float scale2) {
  return AccumulateT(static_cast<const hwy::bfloat16_t*>(row), begin, end, scale2);
}

// Scores of one query against `keys` keys held in blocks of
// kAttentionKeyBlock keys, each block transposed ([d][kAttentionKeyBlock],
// layout in vector_kernels.h): one broadcast-FMA per (dimension, vector of
// keys) with four independent chains, then lane-wise online accumulators with
// the same exp2 as the token path, merged at the end.
void AccumulateScores(const float* q, const float* k_blocks, int64_t keys, int64_t dim, float scale,
                      AttentionAccumulator<float>* acc) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  const int64_t n = hn::Lanes(d);
  const V log2e = hn::Set(d, static_cast<float>(kLog2e));
  const V floor = hn::Set(d, kExp2Floor);
  const V scale_v = hn::Set(d, scale);
  const V masked = hn::Set(d, -std::numeric_limits<float>::infinity());
  V m = hn::Set(d, hwy::LowestValue<float>());
  V sum_d = hn::Zero(d);
  V sum_u = hn::Zero(d);
  V sum_q = hn::Zero(d);
  for (int64_t j0 = 0; j0 < keys; j0 += n) {
    const float* column =
        k_blocks + (j0 / kAttentionKeyBlock) * dim * kAttentionKeyBlock + j0 % kAttentionKeyBlock;
    // Four named chains (an array would live on the stack).
    V chain0 = hn::Zero(d);
    V chain1 = hn::Zero(d);
    V chain2 = hn::Zero(d);
    V chain3 = hn::Zero(d);
    int64_t c = 0;
    for (; c + 4 <= dim; c += 4) {
      const float* rows = column + c * kAttentionKeyBlock;
      chain0 = hn::MulAdd(hn::Set(d, q[c]), hn::LoadU(d, rows), chain0);
      chain1 = hn::MulAdd(hn::Set(d, q[c + 1]), hn::LoadU(d, rows + kAttentionKeyBlock), chain1);
      chain2 =
          hn::MulAdd(hn::Set(d, q[c + 2]), hn::LoadU(d, rows + 2 * kAttentionKeyBlock), chain2);
      chain3 =
          hn::MulAdd(hn::Set(d, q[c + 3]), hn::LoadU(d, rows + 3 * kAttentionKeyBlock), chain3);
    }
    for (; c < dim; ++c) {
      chain0 = hn::MulAdd(hn::Set(d, q[c]), hn::LoadU(d, column + c * kAttentionKeyBlock), chain0);
    }
    const V dot = hn::Add(hn::Add(chain0, chain1), hn::Add(chain2, chain3));
    V score = hn::Mul(dot, scale_v);
    if (j0 + n > keys) {
      score = hn::IfThenElse(hn::FirstN(d, static_cast<size_t>(keys - j0)), score, masked);
    }
    const V new_m = hn::Max(m, score);
    const V shift = hn::Max(hn::Mul(hn::Sub(m, new_m), log2e), floor);
    const V r = Exp2NonPositive(d, shift);
    sum_u = hn::Mul(r, hn::MulAdd(sum_d, shift, sum_u));
    sum_d = hn::Mul(sum_d, r);
    sum_q = hn::Mul(sum_q, hn::Mul(r, r));
    m = new_m;
    const V t = hn::Max(hn::Mul(hn::Sub(score, m), log2e), floor);
    const V e = Exp2NonPositive(d, t);
    sum_d = hn::Add(sum_d, e);
    sum_u = hn::MulAdd(e, t, sum_u);
    sum_q = hn::MulAdd(e, e, sum_q);
  }
  const float row_m = hn::GetLane(hn::MaxOfLanes(d, m));
  const V shift = hn::Max(hn::Mul(hn::Sub(m, hn::Set(d, row_m)), log2e), floor);
  const V r = Exp2NonPositive(d, shift);
  acc->h.m = row_m;
  acc->h.d = hn::GetLane(hn::SumOfLanes(d, hn::Mul(sum_d, r)));
  acc->h.u = hn::GetLane(hn::SumOfLanes(d, hn::Mul(r, hn::MulAdd(sum_d, shift, sum_u))));
  acc->q = hn::GetLane(hn::SumOfLanes(d, hn::Mul(sum_q, hn::Mul(r, r))));
}

}  // namespace HWY_NAMESPACE
}  // namespace entrowatch::compute
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace entrowatch::compute {

HWY_EXPORT(AccumulateFloat32);
HWY_EXPORT(AccumulateFloat16);
HWY_EXPORT(AccumulateBFloat16);
HWY_EXPORT(AccumulateScores);

ChunkPartial AccumulateLogits(common::DType dtype, const void* row, int64_t begin, int64_t end,
                              float scale2) {
  switch (dtype) {
    case common::DType::kFloat32:
      return HWY_DYNAMIC_DISPATCH(AccumulateFloat32)(row, begin, end, scale2);
    case common::DType::kFloat16:
      return HWY_DYNAMIC_DISPATCH(AccumulateFloat16)(row, begin, end, scale2);
    case common::DType::kBFloat16:
      return HWY_DYNAMIC_DISPATCH(AccumulateBFloat16)(row, begin, end, scale2);
  }
  return {};
}

void AccumulateAttentionScores(const float* q, const float* k_blocks, int64_t keys, int64_t d,
                               float scale, AttentionAccumulator<float>* acc) {
  HWY_DYNAMIC_DISPATCH(AccumulateScores)(q, k_blocks, keys, d, scale, acc);
}

}  // namespace entrowatch::compute
#endif  // HWY_ONCE
