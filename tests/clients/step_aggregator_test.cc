#include "entrowatch/client/step_aggregator.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "aggregation_inputs.h"
#include "fake_monitor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::client {
namespace {

using ::entrowatch::testing::AggregationOptions;
using ::entrowatch::testing::FakeMonitor;
using ::entrowatch::testing::FakeMonitorOptions;
using ::entrowatch::testing::MakeStep;
using ::entrowatch::testing::RankData;
using ::testing::HasSubstr;

constexpr int kRanks = ::entrowatch::testing::kAggregationRanks;
constexpr uint32_t kVocab = ::entrowatch::testing::kAggregationVocab;
constexpr uint32_t kLayers = ::entrowatch::testing::kAggregationLayers;
constexpr uint32_t kHeads = ::entrowatch::testing::kAggregationHeads;
constexpr float kThreshold = ::entrowatch::testing::kAggregationThreshold;

// Linear-interpolated quantile of the pooled values, as the daemon computes
// it from raw reports.
double ExactQuantile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
}

// The k-th smallest value (0-based) read from a histogram: a point inside
// the bin that holds it, clamped to [min, max], so within one bin width.
double OrderStatistic(const v1::EntropySummary& e, uint64_t k) {
  const double width = std::log(static_cast<double>(e.vocab_size())) / e.histogram_size();
  uint64_t below = 0;
  for (int b = 0; b < e.histogram_size(); ++b) {
    const uint64_t n = e.histogram(b);
    if (k < below + n) {
      const double x =
          (b + (static_cast<double>(k - below) + 0.5) / static_cast<double>(n)) * width;
      return std::clamp<double>(x, e.min(), e.max());
    }
    below += n;
  }
  return e.max();
}

// The linear-interpolated quantile from a histogram: interpolating between
// two order statistics that are each within one bin width keeps the error
// within one bin width, even where neighbouring values lie bins apart.
double HistogramQuantile(const v1::EntropySummary& e, double q) {
  const double pos = q * static_cast<double>(e.count() - 1);
  const auto lo = static_cast<uint64_t>(std::floor(pos));
  const uint64_t hi = std::min(lo + 1, e.count() - 1);
  const double at_lo = OrderStatistic(e, lo);
  return at_lo + (OrderStatistic(e, hi) - at_lo) * (pos - static_cast<double>(lo));
}

// Checks `report` against the pooled float64 statistics of `ranks`.
void ExpectPooled(const v1::Report& report, const std::vector<RankData>& ranks, uint64_t step) {
  const double log_v = std::log(static_cast<double>(kVocab));
  EXPECT_EQ(report.run_id(), "run-a");
  EXPECT_EQ(report.rank(), 0u);
  EXPECT_EQ(report.world_size(), static_cast<uint32_t>(kRanks));
  EXPECT_EQ(report.step(), step);
  EXPECT_FALSE(report.has_grad()) << "an aggregate carries grad norms in summary.ranks only";
  EXPECT_FALSE(report.scalars().has_loss());
  EXPECT_EQ(report.scalars().learning_rate(), 3e-4);

  std::vector<double> pooled;
  double sum = 0, sum_squares = 0, generated_sum = 0;
  uint64_t high = 0, generated = 0;
  std::vector<uint64_t> histogram(kEntropyHistogramBins, 0);
  for (const RankData& d : ranks) {
    for (size_t i = 0; i < d.entropies.size(); ++i) {
      const double h = d.entropies[i];
      pooled.push_back(h);
      sum += h;
      sum_squares += h * h;
      if (static_cast<float>(std::min(1.0, h / log_v)) >= kThreshold) {
        ++high;
      }
      if (!d.generated.empty() && d.generated[i] != 0) {
        ++generated;
        generated_sum += h;
      }
      const double b = std::floor(h / log_v * kEntropyHistogramBins);
      ++histogram[static_cast<size_t>(std::min<double>(kEntropyHistogramBins - 1, b))];
    }
  }
  ASSERT_EQ(report.summary().entropy_size(), 1);
  const v1::EntropySummary& e = report.summary().entropy(0);
  EXPECT_EQ(e.vocab_size(), kVocab);
  EXPECT_EQ(e.count(), pooled.size());
  EXPECT_NEAR(e.sum(), sum, 1e-12 * sum);
  EXPECT_NEAR(e.sum_squares(), sum_squares, 1e-12 * sum_squares);
  EXPECT_EQ(e.min(), *std::min_element(pooled.begin(), pooled.end()));
  EXPECT_EQ(e.max(), *std::max_element(pooled.begin(), pooled.end()));
  EXPECT_EQ(std::vector<uint64_t>(e.histogram().begin(), e.histogram().end()), histogram);
  EXPECT_EQ(e.high_entropy_threshold(), kThreshold);
  EXPECT_EQ(e.high_entropy_count(), high);
  EXPECT_GT(high, 0u);
  EXPECT_EQ(e.generated_count(), generated);
  EXPECT_NEAR(e.generated_sum(), generated_sum, 1e-12 * generated_sum);
  // The proto's stated quantile error: one bin width.
  for (double q : {0.10, 0.50, 0.90}) {
    EXPECT_NEAR(HistogramQuantile(e, q), ExactQuantile(pooled, q), log_v / kEntropyHistogramBins)
        << "q " << q;
  }

  ASSERT_EQ(report.summary().attention_size(), static_cast<int>(kLayers));
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    const v1::AttentionSummary& a = report.summary().attention(layer);
    EXPECT_EQ(a.layer(), layer);
    std::vector<double> head_sums(kHeads, 0);
    std::vector<uint64_t> head_counts(kHeads, 0);
    std::optional<float> max_logit;
    for (const RankData& d : ranks) {
      if (auto it = d.heads.find(layer); it != d.heads.end()) {
        for (size_t h = 0; h < it->second.size(); ++h) {
          head_sums[h] += it->second[h];
          ++head_counts[h];
        }
      }
      if (auto it = d.max_logits.find(layer); it != d.max_logits.end()) {
        max_logit = std::max(max_logit.value_or(it->second), it->second);
      }
    }
    ASSERT_EQ(a.head_entropy_sum_size(), static_cast<int>(kHeads));
    ASSERT_EQ(a.head_count_size(), static_cast<int>(kHeads));
    for (uint32_t h = 0; h < kHeads; ++h) {
      EXPECT_NEAR(a.head_entropy_sum(h), head_sums[h], 1e-12 * head_sums[h]);
      EXPECT_EQ(a.head_count(h), head_counts[h]);
    }
    ASSERT_EQ(a.has_max_logit(), max_logit.has_value()) << "layer " << layer;
    if (max_logit) {
      EXPECT_EQ(a.max_logit(), *max_logit);
    }
  }

  ASSERT_EQ(report.summary().ranks_size(), kRanks);
  for (int r = 0; r < kRanks; ++r) {
    const v1::RankSummary& s = report.summary().ranks(r);
    const RankData& d = ranks[r];
    EXPECT_EQ(s.rank(), static_cast<uint32_t>(r));
    EXPECT_EQ(s.token_count(), d.entropies.size());
    double rank_sum = 0;
    for (float h : d.entropies) {
      rank_sum += h;
    }
    const double mean = d.entropies.empty() ? 0 : rank_sum / d.entropies.size();
    EXPECT_NEAR(s.entropy_mean(), mean, 1e-12 * mean);
    EXPECT_EQ(s.has_grad_norm(), d.grad_norm.has_value());
    EXPECT_EQ(s.grad_norm(), d.grad_norm.value_or(0));
    EXPECT_EQ(s.has_loss(), d.loss.has_value());
    EXPECT_EQ(s.loss(), d.loss.value_or(0));
  }
}

StepAggregatorOptions Options() { return AggregationOptions("run-a"); }

// A job of kRanks threads over a CpuCollectiveGroup; rank 0 streams to a
// FakeMonitor.
class StepAggregatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    monitor_ = FakeMonitor::Start(FakeMonitorOptions{});
    ASSERT_NE(monitor_, nullptr);
    StreamClientOptions client_options;
    client_options.target = monitor_->address();
    client_ = StreamClient::Create(client_options).value();
    CpuCollectiveOptions group_options;
    group_options.timeout = absl::Seconds(20);
    group_ = CpuCollectiveGroup::Create(kRanks, group_options).value();
  }

  std::unique_ptr<StepAggregator> MakeAggregator(int rank,
                                                 StepAggregatorOptions options = Options()) {
    return StepAggregator::Create(group_->member(rank), options,
                                  rank == 0 ? client_.get() : nullptr)
        .value();
  }

  // Runs body(rank, aggregator) on one thread per rank.
  void OnEveryRank(const std::function<void(int, StepAggregator*)>& body,
                   const std::function<StepAggregatorOptions(int)>& options = {}) {
    std::vector<std::unique_ptr<StepAggregator>> aggregators;
    for (int r = 0; r < kRanks; ++r) {
      aggregators.push_back(MakeAggregator(r, options ? options(r) : Options()));
    }
    std::vector<std::thread> threads;
    for (int r = 0; r < kRanks; ++r) {
      threads.emplace_back(body, r, aggregators[r].get());
    }
    for (std::thread& t : threads) {
      t.join();
    }
  }

  std::unique_ptr<FakeMonitor> monitor_;
  std::unique_ptr<StreamClient> client_;
  std::unique_ptr<CpuCollectiveGroup> group_;
};

TEST_F(StepAggregatorTest, EveryRankGetsThePooledStatisticsOfAllRanks) {
  constexpr int kSteps = 3;
  std::vector<std::vector<RankData>> data;
  for (int s = 0; s < kSteps; ++s) {
    data.push_back(MakeStep(100 + s));
  }
  std::vector<std::vector<v1::Report>> reports(kRanks);
  OnEveryRank([&](int r, StepAggregator* aggregator) {
    for (int s = 0; s < kSteps; ++s) {
      absl::StatusOr<v1::Report> report = aggregator->Aggregate(data[s][r].Input(s + 1));
      ASSERT_TRUE(report.ok()) << report.status();
      reports[r].push_back(*std::move(report));
    }
  });
  for (int s = 0; s < kSteps; ++s) {
    SCOPED_TRACE(::testing::Message() << "step " << s + 1);
    ExpectPooled(reports[0][s], data[s], s + 1);
    // The size the README states: packed histogram counts plus ~40 B a rank.
    EXPECT_LT(reports[0][s].ByteSizeLong(), 6 * 1024 + 40 * kRanks + 512);
    for (int r = 1; r < kRanks; ++r) {
      EXPECT_EQ(reports[r][s].SerializeAsString(), reports[0][s].SerializeAsString())
          << "rank " << r << " differs from rank 0";
    }
  }
  EXPECT_EQ(client_->Stats().enqueued, 0u) << "Aggregate() sends nothing";
}

TEST_F(StepAggregatorTest, OnlyRankZeroSendsOneReportPerStep) {
  constexpr int kSteps = 5;
  std::vector<std::vector<RankData>> data;
  for (int s = 0; s < kSteps; ++s) {
    data.push_back(MakeStep(200 + s));
  }
  OnEveryRank([&](int r, StepAggregator* aggregator) {
    for (int s = 0; s < kSteps; ++s) {
      const absl::Status status = aggregator->ReportStep(data[s][r].Input(s + 1));
      ASSERT_TRUE(status.ok()) << status;
    }
  });
  ASSERT_TRUE(client_->Flush(absl::Now() + absl::Seconds(20)).ok());
  const std::vector<v1::Report> received = monitor_->received();
  ASSERT_EQ(received.size(), static_cast<size_t>(kSteps));
  for (int s = 0; s < kSteps; ++s) {
    SCOPED_TRACE(::testing::Message() << "step " << s + 1);
    ExpectPooled(received[s], data[s], s + 1);
  }
}

TEST_F(StepAggregatorTest, InvalidInputOnOneRankFailsTheStepOnEveryRank) {
  const std::vector<RankData> good = MakeStep(300);
  std::vector<RankData> bad = good;
  bad[1].entropies[7] = std::nanf("");
  std::vector<absl::Status> first(kRanks), second(kRanks), third(kRanks);
  OnEveryRank([&](int r, StepAggregator* aggregator) {
    first[r] = aggregator->ReportStep(bad[r].Input(1));
    second[r] = aggregator->ReportStep(good[r].Input(2));
    RankStepInput no_heads = good[r].Input(3);
    if (r == 3) {
      no_heads.attention[0].head_entropy = {};
    }
    third[r] = aggregator->ReportStep(no_heads);
  });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(first[r].code(), absl::StatusCode::kInvalidArgument) << first[r];
    EXPECT_TRUE(second[r].ok()) << second[r];
    EXPECT_EQ(third[r].code(), absl::StatusCode::kInvalidArgument) << third[r];
  }
  EXPECT_THAT(third[3].message(), HasSubstr("attention[0] has no heads"));
  EXPECT_THAT(first[1].message(), HasSubstr("token_entropies[7] = nan"));
  EXPECT_THAT(first[0].message(), HasSubstr("rank 1's input for step 1 was invalid"));
  ASSERT_TRUE(client_->Flush(absl::Now() + absl::Seconds(20)).ok());
  const std::vector<v1::Report> received = monitor_->received();
  ASSERT_EQ(received.size(), 1u);
  ExpectPooled(received[0], good, 2);
}

TEST_F(StepAggregatorTest, RanksDisagreeingOnTheStepOrTheOptionsAllFail) {
  const std::vector<RankData> data = MakeStep(400);
  std::vector<absl::Status> steps(kRanks);
  OnEveryRank([&](int r, StepAggregator* aggregator) {
    steps[r] = aggregator->Aggregate(data[r].Input(r == 3 ? 5 : 4)).status();
  });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(steps[r].code(), absl::StatusCode::kInvalidArgument) << steps[r];
    EXPECT_THAT(steps[r].message(), HasSubstr("disagree on the step"));
  }
  std::vector<absl::Status> layouts(kRanks);
  OnEveryRank(
      [&](int r, StepAggregator* aggregator) {
        layouts[r] = aggregator->Aggregate(data[r].Input(6)).status();
      },
      [](int r) {
        StepAggregatorOptions options = Options();
        options.vocab_size = r == 2 ? 50000 : kVocab;
        return options;
      });
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(layouts[r].code(), absl::StatusCode::kInvalidArgument) << layouts[r];
    EXPECT_THAT(layouts[r].message(), HasSubstr("disagree on the StepAggregatorOptions"));
  }
}

TEST_F(StepAggregatorTest, NoTokensAndNoAttentionSendOnlyTheRanks) {
  std::vector<v1::Report> reports(kRanks);
  OnEveryRank([&](int r, StepAggregator* aggregator) {
    RankStepInput in;
    in.step = 9;
    in.grad_norm = r == 2 ? std::nan("") : 1.0;  // NON_FINITE evidence passes through
    absl::StatusOr<v1::Report> report = aggregator->Aggregate(in);
    ASSERT_TRUE(report.ok()) << report.status();
    reports[r] = *report;
  });
  const v1::ReportSummary& summary = reports[0].summary();
  EXPECT_EQ(summary.entropy_size(), 0);
  EXPECT_EQ(summary.attention_size(), 0);
  ASSERT_EQ(summary.ranks_size(), kRanks);
  EXPECT_TRUE(std::isnan(summary.ranks(2).grad_norm()));
  EXPECT_EQ(summary.ranks(1).grad_norm(), 1.0);
  EXPECT_FALSE(reports[0].scalars().has_learning_rate());
}

TEST(StepAggregatorCreateTest, RejectsBadOptions) {
  auto group = CpuCollectiveGroup::Create(2).value();
  StepAggregatorOptions options = Options();
  options.vocab_size = 1;
  EXPECT_THAT(StepAggregator::Create(group->member(1), options, nullptr).status().message(),
              HasSubstr("vocab_size must be >= 2"));
  options = Options();
  options.attention_heads = 0;
  EXPECT_THAT(StepAggregator::Create(group->member(1), options, nullptr).status().message(),
              HasSubstr("both be 0"));
  EXPECT_THAT(StepAggregator::Create(group->member(0), Options(), nullptr).status().message(),
              HasSubstr("rank 0 needs a StreamClient"));
  EXPECT_TRUE(StepAggregator::Create(group->member(1), Options(), nullptr).ok());
}

}  // namespace
}  // namespace entrowatch::client
