#include "analysis/health/baseline.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace entrowatch::analysis {
namespace {

// Float64 reference: weights w_i = prod of (1 - alpha_j) for j > i, with
// alpha_j = max(1 - 2^(-1/h), 1/j); mean and variance as weighted moments.
void Reference(const std::vector<double>& xs, double half_life, double* mean, double* var) {
  const size_t n = xs.size();
  std::vector<double> w(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const auto alpha = [&](size_t j) {
      return std::max(1.0 - std::exp2(-1.0 / half_life), 1.0 / static_cast<double>(j + 1));
    };
    double wi = alpha(i);
    for (size_t j = i + 1; j < n; ++j) {
      wi *= 1.0 - alpha(j);
    }
    w[i] = wi;
  }
  double m = 0;
  double total = 0;
  for (size_t i = 0; i < n; ++i) {
    m += w[i] * xs[i];
    total += w[i];
  }
  EXPECT_NEAR(total, 1.0, 1e-12);
  double v = 0;
  for (size_t i = 0; i < n; ++i) {
    v += w[i] * (xs[i] - m) * (xs[i] - m);
  }
  *mean = m;
  *var = v;
}

TEST(EwBaselineTest, MatchesFloat64WeightedMomentsOnRandomInput) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(3.0, 0.7);
  BaselineParams p;
  p.half_life_steps = 12;
  p.warmup_steps = 1 << 30;  // no winsorizing: compare the pure estimator
  p.min_relative_sigma = 0;
  EwBaseline b;
  std::vector<double> xs;
  for (int i = 0; i < 300; ++i) {
    xs.push_back(noise(rng) + (i > 150 ? 2.0 : 0.0));
    b.Update(xs.back(), p);
    if (i % 37 == 0 || i == 299) {
      double mean = 0;
      double var = 0;
      Reference(xs, p.half_life_steps, &mean, &var);
      EXPECT_NEAR(b.mean(), mean, 1e-9) << i;
      EXPECT_NEAR(b.sigma(p), std::sqrt(var), 1e-9 * std::sqrt(var) + 2e-9) << i;
    }
  }
}

TEST(EwBaselineTest, WarmUpIsAPlainRunningMean) {
  BaselineParams p;
  p.half_life_steps = 1000;
  EwBaseline b;
  const std::vector<double> xs = {1, 5, 9, 2};
  for (double x : xs) {
    b.Update(x, p);
  }
  EXPECT_DOUBLE_EQ(b.mean(), 17.0 / 4);
  EXPECT_EQ(b.count(), 4);
  EXPECT_FALSE(b.warm(p));
}

TEST(EwBaselineTest, WinsorizingBoundsTheEffectOfOneHugeOutlier) {
  BaselineParams p;
  p.half_life_steps = 10;
  p.warmup_steps = 20;
  p.winsorize_z = 4;
  EwBaseline b;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(2.0, 0.1);
  for (int i = 0; i < 100; ++i) {
    b.Update(noise(rng), p);
  }
  const double before = b.mean();
  const double sigma = b.sigma(p);
  b.Update(1e6, p);
  const double alpha = 1.0 - std::exp2(-1.0 / p.half_life_steps);
  EXPECT_LE(b.mean() - before, alpha * p.winsorize_z * sigma + 1e-12);
  EXPECT_GT(b.mean(), before);
}

TEST(EwBaselineTest, SigmaFloorKeepsConstantSignalsFromExplodingZ) {
  BaselineParams p;
  p.min_relative_sigma = 0.02;
  EwBaseline b;
  for (int i = 0; i < 100; ++i) {
    b.Update(5.0, p);
  }
  EXPECT_DOUBLE_EQ(b.sigma(p), 0.1);
  EXPECT_NEAR(b.ZScore(5.3, p), 3.0, 1e-9);
}

// The analyzer feeds entropies (0..~12 nats) and log grad norms, which for
// any finite double lie within +-745.
TEST(EwBaselineTest, ExtremeLogGradNormsStayFinite) {
  BaselineParams p;
  p.half_life_steps = 3;
  p.warmup_steps = 2;
  EwBaseline b;
  for (double x : {std::log(1e-300), std::log(1e300), std::log(4.9e-324), 0.0, 709.0}) {
    b.Update(x, p);
    EXPECT_TRUE(std::isfinite(b.mean()));
    EXPECT_TRUE(std::isfinite(b.sigma(p)));
  }
}

}  // namespace
}  // namespace entrowatch::analysis
