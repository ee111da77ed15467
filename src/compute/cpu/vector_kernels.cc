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

// Loads kVectorsPerGroup vectors of logits starting at element i.
template <class D>
HWY_INLINE void LoadGroup(D d, const float* row, int64_t i, hn::Vec<D>* z) {
  const int64_t n = hn::Lanes(d);
  for (int k = 0; k < kVectorsPerGroup; ++k) {
    z[k] = hn::LoadU(d, row + i + k * n);
  }
}

template <class D>
HWY_INLINE void LoadGroup(D d, const hwy::float16_t* row, int64_t i, hn::Vec<D>* z) {
  const hn::Rebind<hwy::float16_t, D> dh;
  const int64_t n = hn::Lanes(d);
  for (int k = 0; k < kVectorsPerGroup; ++k) {
    z[k] = hn::PromoteTo(d, hn::LoadU(dh, row + i + k * n));
  }
}

// bf16 is the upper half of a float: one full-width load gives two vectors
// (even and odd elements), and the order of elements does not matter here.
// HWY_SCALAR has single-lane vectors only and promotes element by element.
template <class D>
HWY_INLINE void LoadGroup(D d, const hwy::bfloat16_t* row, int64_t i, hn::Vec<D>* z) {
  const int64_t n = hn::Lanes(d);
#if HWY_TARGET == HWY_SCALAR
  const hn::Rebind<hwy::bfloat16_t, D> dbf;
  for (int k = 0; k < kVectorsPerGroup; ++k) {
    z[k] = hn::PromoteTo(d, hn::LoadU(dbf, row + i + k * n));
  }
#else
  const hn::Repartition<uint16_t, D> du16;
  const hn::RebindToUnsigned<D> du32;
  const auto high = hn::Set(du32, 0xFFFF0000u);
  const auto* bits = reinterpret_cast<const uint16_t*>(row);
  for (int k = 0; k < kVectorsPerGroup; k += 2) {
    const auto w = hn::BitCast(du32, hn::LoadU(du16, bits + i + k * n));
    z[k] = hn::BitCast(d, hn::ShiftLeft<16>(w));
    z[k + 1] = hn::BitCast(d, hn::And(w, high));
  }
#endif
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
  V sum_d[kVectorsPerGroup];
  V sum_u[kVectorsPerGroup];
  for (int k = 0; k < kVectorsPerGroup; ++k) {
    sum_d[k] = hn::Zero(d);
    sum_u[k] = hn::Zero(d);
  }
  // t <= 0 or -inf for every valid logit; NaN exactly when z is NaN or +Inf.
  // Summing t keeps that NaN without a compare per vector.
  V sum_t = hn::Zero(d);
  int64_t i = begin;
  for (; i + group <= end; i += group) {
    V z[kVectorsPerGroup];
    LoadGroup(d, row, i, z);
    const V group_max = hn::Max(hn::Max(z[0], z[1]), hn::Max(z[2], z[3]));
    const V new_m = hn::Max(m, group_max);
    if (!hn::AllFalse(d, hn::Gt(new_m, m))) {
      const V shift = hn::Max(hn::Mul(hn::Sub(m, new_m), scale), floor);
      const V s = Exp2NonPositive(d, shift);
      for (int k = 0; k < kVectorsPerGroup; ++k) {
        sum_u[k] = hn::Mul(s, hn::MulAdd(sum_d[k], shift, sum_u[k]));
        sum_d[k] = hn::Mul(sum_d[k], s);
      }
      m = new_m;
    }
    V t[kVectorsPerGroup];
    for (int k = 0; k < kVectorsPerGroup; ++k) {
      t[k] = hn::Mul(hn::Sub(z[k], m), scale);
    }
    sum_t = hn::Add(sum_t, hn::Add(hn::Add(t[0], t[1]), hn::Add(t[2], t[3])));
    for (int k = 0; k < kVectorsPerGroup; ++k) {
      const V clamped = hn::Max(t[k], floor);
      const V e = Exp2NonPositive(d, clamped);
      sum_d[k] = hn::Add(sum_d[k], e);
      sum_u[k] = hn::MulAdd(e, clamped, sum_u[k]);
    }
  }
  ChunkPartial out;
  const V lane_d = hn::Add(hn::Add(sum_d[0], sum_d[1]), hn::Add(sum_d[2], sum_d[3]));
  const V lane_u = hn::Add(hn::Add(sum_u[0], sum_u[1]), hn::Add(sum_u[2], sum_u[3]));
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

void AccumulateScores(const float* q, const float* k, int64_t keys, int64_t dim, float scale,
                      AttentionAccumulator<float>* acc) {
  const hn::ScalableTag<float> d;
  const int64_t n = hn::Lanes(d);
  constexpr int64_t kTile = 64;
  float scores[kTile];
  for (int64_t j0 = 0; j0 < keys; j0 += kTile) {
    const int64_t count = keys - j0 < kTile ? keys - j0 : kTile;
    for (int64_t j = 0; j < count; ++j) {
      const float* key = k + (j0 + j) * dim;
      auto dot = hn::Zero(d);
      int64_t c = 0;
      for (; c + n <= dim; c += n) {
        dot = hn::MulAdd(hn::LoadU(d, q + c), hn::LoadU(d, key + c), dot);
      }
      float sum = hn::GetLane(hn::SumOfLanes(d, dot));
      for (; c < dim; ++c) {
        sum += q[c] * key[c];
      }
      scores[j] = scale * sum;
    }
    for (int64_t j = 0; j < count; ++j) {
      AccumulateOne(*acc, scores[j]);
    }
  }
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace entrowatch::compute
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace entrowatch::compute {

HWY_EXPORT(AccumulateFloat32);
HWY_EXPORT(AccumulateFloat16);
HWY_EXPORT(AccumulateBFloat16);
HWY_EXPORT(AccumulateScores);
HWY_EXPORT(TargetName);

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

void AccumulateAttentionScores(const float* q, const float* k, int64_t keys, int64_t d, float scale,
                               AttentionAccumulator<float>* acc) {
  HWY_DYNAMIC_DISPATCH(AccumulateScores)(q, k, keys, d, scale, acc);
}

absl::string_view VectorTargetName() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }

}  // namespace entrowatch::compute
#endif  // HWY_ONCE
