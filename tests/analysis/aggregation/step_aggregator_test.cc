#include "analysis/step_aggregator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace entrowatch::analysis {
namespace {

ReportContribution Tokens(uint64_t step, uint32_t rank, uint32_t world,
                          std::vector<float> entropies, double log_v = std::log(100.0)) {
  ReportContribution c;
  c.step = step;
  c.rank = rank;
  c.world_size = world;
  for (float h : entropies) {
    c.normalized.push_back(static_cast<float>(h / log_v));
    c.generated.push_back(false);
  }
  c.entropies = std::move(entropies);
  return c;
}

// numpy.quantile's default (linear) method in float64.
double ReferenceQuantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * (v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

TEST(StepAggregatorTest, PoolsTokensOfAllRanksAndMatchesFloat64Reference) {
  StepAggregator agg({0.5, absl::Seconds(30)});
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.0f, 4.6f);
  std::vector<double> all;
  for (uint32_t rank = 0; rank < 3; ++rank) {
    std::vector<float> h(100 + rank * 17);
    for (float& x : h) {
      x = u(rng);
      all.push_back(x);
    }
    ASSERT_TRUE(agg.Add(Tokens(5, rank, 3, h), absl::ZeroDuration()));
    if (rank < 2) {
      EXPECT_TRUE(agg.TakeFinalized().empty());
    }
  }
  auto steps = agg.TakeFinalized();
  ASSERT_EQ(steps.size(), 1u);
  const auto& s = steps[0];
  EXPECT_TRUE(s.complete());
  EXPECT_EQ(s.token_count(), all.size());
  double mean = 0;
  int high = 0;
  for (double h : all) {
    mean += h;
    high += h / std::log(100.0) >= 0.5 ? 1 : 0;
  }
  mean /= all.size();
  EXPECT_NEAR(s.entropy_mean(), mean, 1e-9);
  EXPECT_NEAR(s.entropy_p10(), ReferenceQuantile(all, 0.1), 1e-6);
  EXPECT_NEAR(s.entropy_p50(), ReferenceQuantile(all, 0.5), 1e-6);
  EXPECT_NEAR(s.entropy_p90(), ReferenceQuantile(all, 0.9), 1e-6);
  EXPECT_NEAR(s.high_entropy_ratio(), static_cast<double>(high) / all.size(), 1e-12);
}

TEST(StepAggregatorTest, GradNormTakesMaxAndCountsDisagreements) {
  StepAggregator agg({0.8, absl::Seconds(30)});
  for (uint32_t rank = 0; rank < 4; ++rank) {
    ReportContribution c = Tokens(1, rank, 4, {});
    c.has_grad = true;
    c.grad_norm = rank == 2 ? 0.5 : 2.0;
    c.has_loss = true;
    c.loss = 1.0 + rank;
    agg.Add(std::move(c), absl::ZeroDuration());
  }
  auto steps = agg.TakeFinalized();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].grad_norm(), 2.0);
  EXPECT_EQ(steps[0].grad_norm_disagreements(), 1u);
  EXPECT_EQ(steps[0].loss(), 2.5);
  EXPECT_EQ(agg.grad_norm_disagreements(), 1u);
}

TEST(StepAggregatorTest, KeepsPerRankFiguresNamedScalarsAndMaxLogits) {
  StepAggregator agg({0.8, absl::Seconds(30)});
  for (uint32_t rank = 0; rank < 3; ++rank) {
    ReportContribution c = Tokens(4, rank, 3, {1.0f + rank, 2.0f + rank});
    c.has_grad = true;
    c.grad_norm = 0.5;
    c.has_loss = true;
    c.loss = rank == 1 ? 4.0 : 2.0;
    c.scalars["reward"] = 0.1 * rank;
    if (rank == 2) {
      c.scalars["kl"] = 0.3;
    }
    c.AddMaxLogit(0, 3.0 + rank);
    c.AddMaxLogit(0, 1.0);  // the maximum wins
    c.layers[0].resize(1);
    c.layers[0][0] = {1.0, 1};
    agg.Add(std::move(c), absl::ZeroDuration());
  }
  auto steps = agg.TakeFinalized();
  ASSERT_EQ(steps.size(), 1u);
  const auto& s = steps[0];
  ASSERT_EQ(s.ranks_size(), 3);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(s.ranks(r).rank(), static_cast<uint32_t>(r));
    EXPECT_EQ(s.ranks(r).token_count(), 2u);
    EXPECT_DOUBLE_EQ(s.ranks(r).entropy_mean(), 1.5 + r);
    EXPECT_TRUE(s.ranks(r).has_loss());
    EXPECT_DOUBLE_EQ(s.ranks(r).loss(), r == 1 ? 4.0 : 2.0);
    EXPECT_DOUBLE_EQ(s.ranks(r).grad_norm(), 0.5);
  }
  EXPECT_NEAR(s.scalars().at("reward"), 0.1, 1e-12);  // mean over the three ranks
  EXPECT_DOUBLE_EQ(s.scalars().at("kl"), 0.3);        // mean over the one that sent it
  ASSERT_EQ(s.layers_size(), 1);
  ASSERT_TRUE(s.layers(0).has_max_logit());
  EXPECT_DOUBLE_EQ(s.layers(0).max_logit(), 5.0);
}

TEST(StepAggregatorTest, NonFiniteLossAndGradNormStayInTheStep) {
  StepAggregator agg({0.8, absl::Seconds(30)});
  for (uint32_t rank = 0; rank < 2; ++rank) {
    ReportContribution c = Tokens(1, rank, 2, {1.0f});
    c.has_grad = true;
    c.grad_norm = rank == 1 ? std::numeric_limits<double>::infinity() : 1.0;
    c.has_loss = true;
    c.loss = rank == 0 ? std::nan("") : 2.0;
    agg.Add(std::move(c), absl::ZeroDuration());
  }
  auto steps = agg.TakeFinalized();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_TRUE(std::isinf(steps[0].grad_norm()));
  EXPECT_TRUE(std::isnan(steps[0].loss()));
  EXPECT_TRUE(std::isnan(steps[0].ranks(0).loss()));
  EXPECT_TRUE(std::isinf(steps[0].ranks(1).grad_norm()));
}

TEST(StepAggregatorTest, TimeoutFinalizesIncompleteStepOnTheMonotonicClock) {
  StepAggregator agg({0.8, absl::Seconds(2)});
  agg.Add(Tokens(1, 0, 2, {1.0f}), absl::Seconds(10));
  agg.Sweep(absl::Seconds(11.9));
  EXPECT_TRUE(agg.TakeFinalized().empty());
  agg.Sweep(absl::Seconds(12));
  auto steps = agg.TakeFinalized();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_FALSE(steps[0].complete());
  EXPECT_EQ(steps[0].ranks_reported(), 1u);
}

TEST(StepAggregatorTest, LateReportsAreNotFoldedIn) {
  StepAggregator agg({0.8, absl::Seconds(2)});
  ASSERT_TRUE(agg.Add(Tokens(4, 0, 1, {1.0f}), absl::ZeroDuration()));
  EXPECT_EQ(agg.TakeFinalized().size(), 1u);
  EXPECT_FALSE(agg.Add(Tokens(4, 0, 1, {2.0f}), absl::ZeroDuration()));
  EXPECT_FALSE(agg.Add(Tokens(3, 0, 1, {2.0f}), absl::ZeroDuration()));
  EXPECT_TRUE(agg.Add(Tokens(5, 0, 1, {2.0f}), absl::ZeroDuration()));
}

TEST(StepAggregatorTest, CompletingAStepFinalizesEarlierPendingStepsFirst) {
  StepAggregator agg({0.8, absl::Seconds(60)});
  agg.Add(Tokens(1, 0, 2, {1.0f}), absl::ZeroDuration());  // rank 1 never reports step 1
  agg.Add(Tokens(2, 0, 2, {1.0f}), absl::ZeroDuration());
  agg.Add(Tokens(2, 1, 2, {1.0f}), absl::ZeroDuration());
  auto steps = agg.TakeFinalized();
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].step(), 1u);
  EXPECT_FALSE(steps[0].complete());
  EXPECT_EQ(steps[1].step(), 2u);
  EXPECT_TRUE(steps[1].complete());
  EXPECT_EQ(agg.pending_steps(), 0u);
}

TEST(StepAggregatorTest, LayersAverageHeadsAndReportInterHeadVariance) {
  StepAggregator agg({0.8, absl::Seconds(60)});
  for (uint32_t rank = 0; rank < 2; ++rank) {
    ReportContribution c = Tokens(1, rank, 2, {});
    // Head means over ranks: head 0 = 1.0, head 1 = 3.0.
    c.layers[3] = {HeadAccum{rank == 0 ? 0.5 : 1.5, 1}, HeadAccum{6.0, 2}};
    agg.Add(std::move(c), absl::ZeroDuration());
  }
  auto steps = agg.TakeFinalized();
  ASSERT_EQ(steps.size(), 1u);
  ASSERT_EQ(steps[0].layers_size(), 1);
  const auto& l = steps[0].layers(0);
  EXPECT_EQ(l.layer(), 3u);
  EXPECT_DOUBLE_EQ(l.head_mean_entropy(0), 1.0);
  EXPECT_DOUBLE_EQ(l.head_mean_entropy(1), 3.0);
  EXPECT_DOUBLE_EQ(l.mean_entropy(), 2.0);
  EXPECT_DOUBLE_EQ(l.head_variance(), 1.0);
}

TEST(StepAggregatorTest, FinalizeAllEndsEveryPendingStep) {
  StepAggregator agg({0.8, absl::Seconds(60)});
  agg.Add(Tokens(7, 0, 4, {1.0f}), absl::ZeroDuration());
  agg.Add(Tokens(8, 0, 4, {1.0f}), absl::ZeroDuration());
  agg.FinalizeAll();
  EXPECT_EQ(agg.TakeFinalized().size(), 2u);
  EXPECT_EQ(agg.max_finalized_step(), 8u);
}

TEST(QuantileTest, EdgeCases) {
  std::vector<float> one = {3.0f};
  EXPECT_EQ(Quantile(one, 0.9), 3.0);
  std::vector<float> none;
  EXPECT_EQ(Quantile(none, 0.5), 0.0);
}

}  // namespace
}  // namespace entrowatch::analysis
