#include "analysis/health/baseline.h"

#include <algorithm>
#include <cmath>

namespace entrowatch::analysis {
namespace {

constexpr double kAbsoluteSigmaFloor = 1e-9;

}  // namespace

void EwBaseline::Update(double x, const BaselineParams& params) {
  if (count_ >= params.warmup_steps && count_ >= 2) {
    const double limit = params.winsorize_z * sigma(params);
    x = std::clamp(x, mean_ - limit, mean_ + limit);
  }
  ++count_;
  const double alpha =
      std::max(1.0 - std::exp2(-1.0 / params.half_life_steps), 1.0 / static_cast<double>(count_));
  const double diff = x - mean_;
  const double increment = alpha * diff;
  mean_ += increment;
  variance_ = (1.0 - alpha) * (variance_ + diff * increment);
}

double EwBaseline::sigma(const BaselineParams& params) const {
  return std::max(
      {std::sqrt(variance_), params.min_relative_sigma * std::abs(mean_), kAbsoluteSigmaFloor});
}

double EwBaseline::ZScore(double x, const BaselineParams& params) const {
  return (x - mean_) / sigma(params);
}

}  // namespace entrowatch::analysis
