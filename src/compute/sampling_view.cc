#include "compute/sampling_view.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace entrowatch::compute {
namespace {

constexpr int64_t kFirstPrefix = 1024;

// True when the descending prefix x[0, sorted) already holds the entry at
// which the cumulative probability over x[0, n) first exceeds top_p, with
// one entry to spare so that a different summation order of the total
// cannot move the cut past the prefix.
bool PrefixHoldsNucleus(const std::vector<double>& x, int64_t sorted, double total, float top_p) {
  double cumulative = 0;
  for (int64_t i = 0; i + 1 < sorted; ++i) {
    cumulative += MathExp2(kLog2e * (x[i] - x[0])) / total;
    if (cumulative > static_cast<double>(top_p)) {
      return true;
    }
  }
  return false;
}

}  // namespace

SampledStats SamplingView(const LogitsInput& in, int64_t r, std::vector<double>& x) {
  const void* row = in.logits.row(r);
  const double beta = 1.0 / static_cast<double>(in.temperature);
  x.clear();
  for (int64_t c = 0; c < in.valid_vocab; ++c) {
    const float z = common::LoadAsFloat(in.logits.dtype, row, c);
    if (z != -INFINITY) {
      x.push_back(beta * static_cast<double>(z));
    }
  }
  auto begin = x.begin();
  int64_t candidates = static_cast<int64_t>(x.size());
  if (candidates == 0) {
    return SampledStats();
  }
  if (in.top_k > 0 && static_cast<int64_t>(in.top_k) < candidates) {
    // The k largest and every entry tied with the k-th, in any order.
    std::nth_element(begin, begin + in.top_k - 1, x.end(), std::greater<double>());
    const double kth = x[in.top_k - 1];
    candidates =
        std::partition(begin + in.top_k, x.end(), [kth](double v) { return v >= kth; }) - begin;
  }
  if (in.top_p < 1.0f) {
    const double max = *std::max_element(begin, begin + candidates);
    double total = 0;
    for (int64_t i = 0; i < candidates; ++i) {
      total += MathExp2(kLog2e * (x[i] - max));
    }
    int64_t sorted = 0;
    for (int64_t want = kFirstPrefix;; want *= 4) {
      want = std::min(want, candidates);
      std::nth_element(begin + sorted, begin + want - 1, begin + candidates,
                       std::greater<double>());
      std::sort(begin + sorted, begin + want, std::greater<double>());
      sorted = want;
      if (sorted == candidates || PrefixHoldsNucleus(x, sorted, total, in.top_p)) {
        break;
      }
    }
  }
  // Top-k is already applied: FilterSorted applies top-p to the descending
  // prefix, or accumulates every candidate (order does not matter) without it.
  return FilterSorted(x.data(), candidates, 0, in.top_p);
}

}  // namespace entrowatch::compute
