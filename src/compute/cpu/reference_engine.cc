#include "compute/cpu/reference_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "compute/entropy_math.h"
#include "compute/input_checks.h"

namespace entrowatch::compute {
namespace {

RowEntropy ComputeRow(const LogitsInput& in, int64_t r, std::vector<double>& scratch) {
  const void* row = in.logits.row(r);
  const double beta = 1.0 / static_cast<double>(in.temperature);
  const double scale2 = Log2Scale(beta);
  RowEntropy out;
  EntropyAccumulator<double> acc;
  for (int64_t c = 0; c < in.valid_vocab; ++c) {
    const float z = common::LoadAsFloat(in.logits.dtype, row, c);
    if (std::isnan(z) || z == INFINITY) {
      out.status = RowStatus::kNonFinite;
      return out;
    }
    AccumulateOne(acc, static_cast<double>(z), scale2);
  }
  if (acc.d == 0) {
    out.status = RowStatus::kAllMasked;
    return out;
  }
  const EntropyStats stats = Finalize(acc, in.valid_vocab);
  out.entropy = stats.entropy;
  out.normalized = stats.normalized;
  out.top1_prob = stats.top1_prob;
  if (!in.target_ids.empty()) {
    const float z_target = common::LoadAsFloat(in.logits.dtype, row, in.target_ids[r]);
    out.surprisal = Surprisal(acc, static_cast<double>(z_target), scale2);
  }
  if (in.sampling()) {
    scratch.clear();
    for (int64_t c = 0; c < in.valid_vocab; ++c) {
      const float z = common::LoadAsFloat(in.logits.dtype, row, c);
      if (z != -INFINITY) {
        scratch.push_back(beta * static_cast<double>(z));
      }
    }
    std::sort(scratch.begin(), scratch.end(), std::greater<double>());
    const SampledStats sampled =
        FilterSorted(scratch.data(), static_cast<int64_t>(scratch.size()), in.top_k, in.top_p);
    out.final_entropy = sampled.entropy;
    out.effective_vocab = sampled.effective_vocab;
    out.final_top1_prob = sampled.top1_prob;
  }
  return out;
}

absl::Status CheckFinite(common::DType dtype, const void* data, int64_t count, const char* what) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(common::LoadAsFloat(dtype, data, i))) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention ", what, " element ", i, " is not finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReferenceEngine::TokenEntropy(const LogitsInput& in, absl::Span<RowEntropy> out) {
  RETURN_IF_ERROR(CheckLogitsInput(in, out.size()));
  std::vector<double> scratch;
  for (int64_t r = 0; r < in.logits.rows; ++r) {
    out[r] = ComputeRow(in, r, scratch);
  }
  return absl::OkStatus();
}

absl::Status ReferenceEngine::AttentionEntropy(const AttentionInput& in, AttentionOutput* out) {
  RETURN_IF_ERROR(CheckAttentionInput(in));
  const int64_t d = in.head_dim;
  RETURN_IF_ERROR(CheckFinite(in.dtype, in.q, in.heads * in.nq * d, "q"));
  RETURN_IF_ERROR(CheckFinite(in.dtype, in.k, in.kv_heads * in.nk * d, "k"));
  const double scale = EffectiveScale(in);
  const int64_t group = in.heads / in.kv_heads;
  out->shannon.assign(in.heads * in.nq, 0.0f);
  out->renyi2.assign(in.heads * in.nq, 0.0f);
  out->max_logit.assign(in.heads, 0.0f);
  std::vector<double> query(d);
  for (int64_t h = 0; h < in.heads; ++h) {
    const int64_t kv = h / group;
    double head_max = -INFINITY;
    for (int64_t i = 0; i < in.nq; ++i) {
      for (int64_t c = 0; c < d; ++c) {
        query[c] = common::LoadAsFloat(in.dtype, in.q, (h * in.nq + i) * d + c);
      }
      const int64_t keys = in.causal ? in.nk - in.nq + i + 1 : in.nk;
      AttentionAccumulator<double> acc;
      for (int64_t j = 0; j < keys; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) {
          dot += query[c] * common::LoadAsFloat(in.dtype, in.k, (kv * in.nk + j) * d + c);
        }
        AccumulateOne(acc, scale * dot);
        head_max = std::max(head_max, scale * dot);
      }
      const AttentionStats stats = FinalizeAttention(acc, keys);
      out->shannon[h * in.nq + i] = static_cast<float>(stats.shannon);
      out->renyi2[h * in.nq + i] = static_cast<float>(stats.renyi2);
    }
    out->max_logit[h] = static_cast<float>(head_max);
  }
  return absl::OkStatus();
}

}  // namespace entrowatch::compute
