#pragma once

// Test inputs and naive float64 definitions the compute engines are checked
// against: two passes over materialized probabilities, written from the
// definitions (and PyTorch's filters), sharing no code with the engines.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common/half.h"
#include "common/tensor_view.h"
#include "compute/entropy_engine.h"

namespace entrowatch::compute::testing {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Row-major [rows, cols] tensor of `dtype` elements; Set rounds to the dtype.
class TestMatrix {
 public:
  TestMatrix(common::DType dtype, int64_t rows, int64_t cols)
      : dtype_(dtype), rows_(rows), cols_(cols), bytes_(rows * cols * common::DTypeSize(dtype)) {}

  void Set(int64_t r, int64_t c, float value) {
    const int64_t i = r * cols_ + c;
    switch (dtype_) {
      case common::DType::kFloat32:
        std::memcpy(bytes_.data() + 4 * i, &value, 4);
        break;
      case common::DType::kFloat16: {
        const uint16_t h = common::FloatToHalf(value);
        std::memcpy(bytes_.data() + 2 * i, &h, 2);
        break;
      }
      case common::DType::kBFloat16: {
        const uint16_t h = common::FloatToBFloat16(value);
        std::memcpy(bytes_.data() + 2 * i, &h, 2);
        break;
      }
    }
  }
  float Get(int64_t r, int64_t c) const {
    return common::LoadAsFloat(dtype_, bytes_.data(), r * cols_ + c);
  }
  common::MatrixView view() const { return {dtype_, rows_, cols_, bytes_.data()}; }
  const void* data() const { return bytes_.data(); }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }

 private:
  common::DType dtype_;
  int64_t rows_;
  int64_t cols_;
  std::vector<uint8_t> bytes_;
};

struct NaiveRow {
  RowStatus status = RowStatus::kOk;
  double entropy = 0;
  double normalized = 0;
  double top1_prob = 0;
  double surprisal = 0;
  double final_entropy = 0;
  int64_t effective_vocab = 0;
  double final_top1_prob = 0;
};

// -sum p log p over the finite entries of `x` (already temperature-scaled),
// the maximum probability, and the probabilities themselves.
inline double NaiveEntropy(const std::vector<double>& x, double* top1,
                           std::vector<double>* probs = nullptr) {
  double max = -std::numeric_limits<double>::infinity();
  for (double v : x) {
    max = std::max(max, v);
  }
  double sum = 0;
  for (double v : x) {
    sum += std::exp(v - max);
  }
  double h = 0;
  double best = 0;
  if (probs != nullptr) {
    probs->clear();
  }
  for (double v : x) {
    const double p = std::exp(v - max) / sum;
    if (p > 0) {
      h -= p * std::log(p);
    }
    best = std::max(best, p);
    if (probs != nullptr) {
      probs->push_back(p);
    }
  }
  *top1 = best;
  return h;
}

// Two passes in float64 straight from the definitions; the sampling view
// follows PyTorch's apply_top_k / apply_top_p on the scaled logits.
inline NaiveRow NaiveTokenEntropy(const TestMatrix& m, int64_t r, int64_t valid_vocab,
                                  double temperature, int32_t target, uint32_t top_k,
                                  double top_p) {
  NaiveRow out;
  std::vector<double> x;
  for (int64_t c = 0; c < valid_vocab; ++c) {
    const float z = m.Get(r, c);
    if (std::isnan(z) || z == kInf) {
      out.status = RowStatus::kNonFinite;
      return out;
    }
    x.push_back(static_cast<double>(z) / temperature);
  }
  if (std::all_of(x.begin(), x.end(), [](double v) { return std::isinf(v); })) {
    out.status = RowStatus::kAllMasked;
    return out;
  }
  std::vector<double> probs;
  out.entropy = NaiveEntropy(x, &out.top1_prob, &probs);
  out.normalized = valid_vocab > 1 ? out.entropy / std::log(static_cast<double>(valid_vocab)) : 0;
  if (target >= 0) {
    // log-sum-exp form: -log p underflows to inf long before the surprisal
    // itself leaves the float64 range.
    const double max = *std::max_element(x.begin(), x.end());
    double sum = 0;
    for (double v : x) {
      sum += std::exp(v - max);
    }
    out.surprisal = std::log(sum) + (max - x[target]);
  }
  // apply_top_k: entries below the k-th largest value become -inf.
  std::vector<double> filtered = x;
  if (top_k > 0 && top_k < x.size()) {
    std::vector<double> sorted = x;
    std::sort(sorted.begin(), sorted.end(), std::greater<double>());
    const double kth = sorted[top_k - 1];
    for (double& v : filtered) {
      v = v < kth ? -std::numeric_limits<double>::infinity() : v;
    }
  }
  // apply_top_p: remove sorted entries whose cumulative probability before
  // them already exceeds p; the first is always kept.
  if (top_p < 1) {
    double unused;
    std::vector<double> p;
    NaiveEntropy(filtered, &unused, &p);
    std::vector<int64_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
    double cumulative = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      const bool remove = i > 0 && cumulative > top_p;
      cumulative += p[order[i]];
      if (remove) {
        filtered[order[i]] = -std::numeric_limits<double>::infinity();
      }
    }
  }
  std::vector<double> final_probs;
  out.final_entropy = NaiveEntropy(filtered, &out.final_top1_prob, &final_probs);
  out.effective_vocab =
      std::count_if(filtered.begin(), filtered.end(), [](double v) { return std::isfinite(v); });
  return out;
}

struct NaiveAttention {
  std::vector<double> shannon;
  std::vector<double> renyi2;
  std::vector<double> max_logit;  // per head
};

// Materializes every score row in float64 (small shapes only).
inline NaiveAttention NaiveAttentionEntropy(const AttentionInput& in) {
  NaiveAttention out;
  const int64_t d = in.head_dim;
  const double scale = in.scale == 0 ? 1.0 / std::sqrt(static_cast<double>(d)) : in.scale;
  const int64_t group = in.heads / in.kv_heads;
  for (int64_t h = 0; h < in.heads; ++h) {
    out.max_logit.push_back(-std::numeric_limits<double>::infinity());
    for (int64_t i = 0; i < in.nq; ++i) {
      const int64_t keys = in.causal ? in.nk - in.nq + i + 1 : in.nk;
      std::vector<double> scores(keys);
      for (int64_t j = 0; j < keys; ++j) {
        double dot = 0;
        for (int64_t c = 0; c < d; ++c) {
          dot += static_cast<double>(common::LoadAsFloat(in.dtype, in.q, (h * in.nq + i) * d + c)) *
                 common::LoadAsFloat(in.dtype, in.k, ((h / group) * in.nk + j) * d + c);
        }
        scores[j] = scale * dot;
        out.max_logit.back() = std::max(out.max_logit.back(), scores[j]);
      }
      double top1;
      std::vector<double> p;
      out.shannon.push_back(NaiveEntropy(scores, &top1, &p));
      double collision = 0;
      for (double v : p) {
        collision += v * v;
      }
      out.renyi2.push_back(-std::log(collision));
    }
  }
  return out;
}

inline void FillNormal(TestMatrix& m, std::mt19937_64& rng, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  for (int64_t r = 0; r < m.rows(); ++r) {
    for (int64_t c = 0; c < m.cols(); ++c) {
      m.Set(r, c, normal(rng));
    }
  }
}

}  // namespace entrowatch::compute::testing
