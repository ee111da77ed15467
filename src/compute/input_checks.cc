#include "compute/input_checks.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace entrowatch::compute {

absl::Status CheckLogitsInput(const LogitsInput& in, size_t out_rows) {
  const common::MatrixView& m = in.logits;
  if (m.rows < 0 || m.cols < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits shape [", m.rows, ", ", m.cols, "]: need rows >= 0, vocab >= 1"));
  }
  if (static_cast<size_t>(m.rows) != out_rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("output has ", out_rows, " rows, logits have ", m.rows));
  }
  if (m.rows > 0 && m.data == nullptr) {
    return absl::InvalidArgumentError("logits data is null");
  }
  if (in.valid_vocab < 1 || in.valid_vocab > m.cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("valid_vocab ", in.valid_vocab, " outside [1, ", m.cols, "]"));
  }
  if (!(in.temperature >= kMinTemperature) || !std::isfinite(in.temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature ", in.temperature, " must be finite and >= ", kMinTemperature));
  }
  if (!(in.top_p > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_p ", in.top_p, " must be positive (>= 1 disables it)"));
  }
  if (!in.target_ids.empty()) {
    if (in.target_ids.size() != static_cast<size_t>(m.rows)) {
      return absl::InvalidArgumentError(
          absl::StrCat("target_ids has ", in.target_ids.size(), " entries for ", m.rows, " rows"));
    }
    for (size_t r = 0; r < in.target_ids.size(); ++r) {
      const int32_t t = in.target_ids[r];
      if (t < 0 || t >= in.valid_vocab) {
        return absl::InvalidArgumentError(
            absl::StrCat("target_ids[", r, "] = ", t, " outside [0, ", in.valid_vocab, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckAttentionInput(const AttentionInput& in) {
  if (in.heads < 1 || in.kv_heads < 1 || in.nq < 1 || in.nk < 1 || in.head_dim < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention sizes must be positive: heads ", in.heads, ", kv_heads ",
                     in.kv_heads, ", nq ", in.nq, ", nk ", in.nk, ", head_dim ", in.head_dim));
  }
  if (in.heads % in.kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("heads ", in.heads, " is not a multiple of kv_heads ", in.kv_heads));
  }
  if (in.causal && in.nq > in.nk) {
    return absl::InvalidArgumentError(
        absl::StrCat("causal attention needs nq <= nk, got nq ", in.nq, ", nk ", in.nk));
  }
  if (in.q == nullptr || in.k == nullptr) {
    return absl::InvalidArgumentError("attention q or k data is null");
  }
  if (!std::isfinite(in.scale)) {
    return absl::InvalidArgumentError(absl::StrCat("attention scale ", in.scale, " is not finite"));
  }
  return absl::OkStatus();
}

float EffectiveScale(const AttentionInput& in) {
  return in.scale == 0 ? 1.0f / std::sqrt(static_cast<float>(in.head_dim)) : in.scale;
}

namespace {

// Largest |value| of a tensor, or an error naming the first non-finite one.
absl::StatusOr<double> MaxAbs(common::DType dtype, const void* data, int64_t n,
                              absl::string_view name) {
  double max_abs = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = common::LoadAsFloat(dtype, data, i);
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": element ", i, " is NaN or infinite"));
    }
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(v)));
  }
  return max_abs;
}

}  // namespace

absl::Status CheckAttentionValues(const AttentionInput& in) {
  absl::StatusOr<double> q = MaxAbs(in.dtype, in.q, in.heads * in.nq * in.head_dim, "q");
  if (!q.ok()) {
    return q.status();
  }
  absl::StatusOr<double> k = MaxAbs(in.dtype, in.k, in.kv_heads * in.nk * in.head_dim, "k");
  if (!k.ok()) {
    return k.status();
  }
  // Engines take the dot product in float before applying the scale, so both
  // the dot product and the scaled score must stay far from FLT_MAX.
  const double dot_bound = *q * *k * static_cast<double>(in.head_dim);
  const double bound = dot_bound * EffectiveScale(in);
  if (bound > 1e30) {
    return absl::InvalidArgumentError(
        absl::StrCat("q and k: scores could reach ", bound, " (max|q| ", *q, ", max|k| ", *k,
                     "): beyond the 1e30 that float arithmetic handles safely"));
  }
  if (dot_bound > 1e30) {
    return absl::InvalidArgumentError(absl::StrCat(
        "q and k: dot products could reach ", dot_bound, " before the scale (max|q| ", *q,
        ", max|k| ", *k, "): beyond the 1e30 that float arithmetic handles safely"));
  }
  return absl::OkStatus();
}

}  // namespace entrowatch::compute
