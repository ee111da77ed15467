// Summaries (ReportSummary) pooled by the StepAggregator against the exact
// statistics of the same values: counts, means and per-rank figures within
// float rounding, p10/p50/p90 within the stated histogram bound, on the real
// traces of tests/data and on adversarial inputs.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "analysis/aggregation/trace_ranks.h"
#include "analysis/step_aggregator.h"
#include "gtest/gtest.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;

constexpr double kThreshold = 0.8;

// numpy.quantile's default (linear) method in float64.
double ReferenceQuantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// The stated bound: one bin width, plus float rounding at a bin edge.
double BinWidth(uint32_t vocab) {
  return std::log(static_cast<double>(vocab)) / kEntropyHistogramBins;
}

struct Values {
  std::vector<float> h;
  std::vector<bool> generated;
};

// Float64 reference of the pooled token statistics of `values`.
struct Reference {
  explicit Reference(const Values& v, uint32_t vocab) {
    const double log_v = std::log(static_cast<double>(vocab));
    std::vector<double> all(v.h.begin(), v.h.end());
    for (size_t i = 0; i < v.h.size(); ++i) {
      mean += v.h[i];
      normalized += std::min(1.0, v.h[i] / log_v);
      high += static_cast<float>(std::min(1.0, v.h[i] / log_v)) >= kThreshold ? 1 : 0;
      if (v.generated[i]) {
        generated += v.h[i];
        ++generated_count;
      }
    }
    const double n = static_cast<double>(v.h.size());
    mean /= n;
    normalized /= n;
    high /= n;
    generated = generated_count > 0 ? generated / static_cast<double>(generated_count) : 0;
    p10 = ReferenceQuantile(all, 0.1);
    p50 = ReferenceQuantile(all, 0.5);
    p90 = ReferenceQuantile(all, 0.9);
  }
  double mean = 0, normalized = 0, high = 0, generated = 0, p10 = 0, p50 = 0, p90 = 0;
  uint64_t generated_count = 0;
};

// Deals `v` round-robin to `ranks` pseudo-ranks, each sending a summary only
// (some ranks get nothing when ranks > values).
std::vector<ReportContribution> SummaryContributions(const Values& v, uint32_t vocab,
                                                     uint32_t ranks, uint64_t step) {
  std::vector<ReportContribution> out(ranks);
  std::vector<Values> dealt(ranks);
  for (size_t i = 0; i < v.h.size(); ++i) {
    dealt[i % ranks].h.push_back(v.h[i]);
    dealt[i % ranks].generated.push_back(v.generated[i]);
  }
  for (uint32_t r = 0; r < ranks; ++r) {
    out[r].step = step;
    out[r].rank = r;
    out[r].world_size = ranks;
    *out[r].summary.add_entropy() =
        SummarizeEntropies(dealt[r].h, vocab, kThreshold, dealt[r].generated);
  }
  return out;
}

v1::StepSummary Pool(std::vector<ReportContribution> contributions) {
  StepAggregator agg({kThreshold, absl::Seconds(30)});
  for (auto& c : contributions) {
    EXPECT_TRUE(agg.Add(std::move(c), absl::ZeroDuration()));
  }
  agg.FinalizeAll();
  auto steps = agg.TakeFinalized();
  EXPECT_EQ(steps.size(), 1u);
  return steps.empty() ? v1::StepSummary() : steps[0];
}

// Largest quantile error seen, relative to the bound, over every check.
double worst_error_nats = 0;
double worst_error_bins = 0;

void ExpectMatches(const v1::StepSummary& s, const Values& v, uint32_t vocab,
                   const std::string& what) {
  const Reference ref(v, vocab);
  ASSERT_EQ(s.token_count(), v.h.size()) << what;
  EXPECT_NEAR(s.entropy_mean(), ref.mean, 1e-9 * std::max(1.0, ref.mean)) << what;
  EXPECT_NEAR(s.normalized_entropy_mean(), ref.normalized, 1e-6) << what;
  EXPECT_NEAR(s.high_entropy_ratio(), ref.high, 1e-12) << what;
  EXPECT_EQ(s.generated_token_count(), ref.generated_count) << what;
  EXPECT_NEAR(s.generated_entropy_mean(), ref.generated, 1e-9 * std::max(1.0, ref.generated))
      << what;
  const double bound = BinWidth(vocab) * (1 + 1e-6);
  for (auto [got, want, name] :
       {std::tuple{s.entropy_p10(), ref.p10, "p10"}, std::tuple{s.entropy_p50(), ref.p50, "p50"},
        std::tuple{s.entropy_p90(), ref.p90, "p90"}}) {
    const double error = std::abs(got - want);
    EXPECT_LE(error, bound) << what << " " << name << " " << got << " vs exact " << want;
    worst_error_nats = std::max(worst_error_nats, error);
    worst_error_bins = std::max(worst_error_bins, error / BinWidth(vocab));
  }
}

Values TraceValues(const std::vector<v1::Report>& reports, uint32_t* vocab) {
  Values v;
  for (const v1::Report& r : reports) {
    for (const auto& block : r.token_entropies()) {
      *vocab = block.vocab_size();
      for (int i = 0; i < block.values_size(); ++i) {
        v.h.push_back(block.values(i));
        v.generated.push_back(block.token_kinds_size() > 0 &&
                              block.token_kinds(i) == v1::GENERATED);
      }
    }
  }
  return v;
}

// Every step of every real trace, and every trace pooled whole, split into
// pseudo-ranks that each send a summary: the pooled statistics equal the
// exact ones (quantiles within one bin width).
TEST(SummaryMergeTest, RealTracesSplitIntoRanksMatchExactPooledStatistics) {
  size_t traces = 0;
  for (const std::string& name : testing::TraceNames()) {
    const auto trace = testing::LoadTrace(name);
    uint32_t vocab = 0;
    const Values whole = TraceValues(trace, &vocab);
    if (whole.h.empty()) {
      continue;
    }
    ++traces;
    for (uint32_t ranks : {7u, 64u}) {
      ExpectMatches(Pool(SummaryContributions(whole, vocab, ranks, 1)), whole, vocab,
                    name + " whole, ranks " + std::to_string(ranks));
    }
    for (const auto& step : testing::GroupBySteps(trace)) {
      const Values v = TraceValues(step, &vocab);
      if (!v.h.empty()) {
        ExpectMatches(Pool(SummaryContributions(v, vocab, 4, step[0].step())), v, vocab,
                      name + " step " + std::to_string(step[0].step()));
      }
    }
  }
  EXPECT_GE(traces, 20u);
  std::printf("largest quantile error: %.6f nats, %.3f bin widths\n", worst_error_nats,
              worst_error_bins);
}

// The merge a job does (MergeEntropySummary) then one report equals the
// daemon pooling the per-rank summaries.
TEST(SummaryMergeTest, JobSideMergeEqualsDaemonSidePooling) {
  uint32_t vocab = 0;
  const Values v = TraceValues(testing::LoadTrace("real-rl-collapse"), &vocab);
  ASSERT_FALSE(v.h.empty());
  auto per_rank = SummaryContributions(v, vocab, 16, 3);
  ReportContribution merged;
  merged.step = 3;
  merged.world_size = 1;
  v1::EntropySummary job;
  for (const auto& c : per_rank) {
    MergeEntropySummary(c.summary.entropy(0), &job);
  }
  EXPECT_EQ(job.high_entropy_threshold(), static_cast<float>(kThreshold));
  *merged.summary.add_entropy() = job;
  const v1::StepSummary a = Pool(std::move(per_rank));
  std::vector<ReportContribution> one;
  one.push_back(std::move(merged));
  const v1::StepSummary b = Pool(std::move(one));
  EXPECT_GT(a.generated_token_count(), 0u);
  EXPECT_EQ(a.token_count(), b.token_count());
  EXPECT_NEAR(a.entropy_mean(), b.entropy_mean(), 1e-12);
  EXPECT_EQ(a.entropy_p10(), b.entropy_p10());
  EXPECT_EQ(a.entropy_p50(), b.entropy_p50());
  EXPECT_EQ(a.entropy_p90(), b.entropy_p90());
  EXPECT_EQ(a.high_entropy_ratio(), b.high_entropy_ratio());
  EXPECT_NEAR(a.generated_entropy_mean(), b.generated_entropy_mean(), 1e-12);
  ExpectMatches(b, v, vocab, "job-side merge");
}

Values Uniform(size_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Values v;
  for (size_t i = 0; i < n; ++i) {
    v.h.push_back(static_cast<float>(u(rng)));
    v.generated.push_back(i % 3 == 0);
  }
  return v;
}

TEST(SummaryMergeTest, AdversarialValues) {
  const uint32_t vocab = 152064;
  const float log_v = static_cast<float>(std::log(static_cast<double>(vocab)));
  const double width = BinWidth(vocab);
  struct Case {
    std::string name;
    Values v;
  };
  std::vector<Case> cases;
  cases.push_back({"all equal", Values{std::vector<float>(1000, 3.25f), std::vector<bool>(1000)}});
  // Distinct values inside one bin.
  cases.push_back({"one bin", Uniform(1000, 5 * width + 1e-6, 6 * width - 1e-6, 1)});
  cases.push_back({"zeros", Values{std::vector<float>(500, 0.0f), std::vector<bool>(500, true)}});
  cases.push_back({"at ln V", Values{std::vector<float>(300, log_v), std::vector<bool>(300)}});
  Values edges;
  for (int i = 0; i < 999; ++i) {
    edges.h.push_back(i % 3 == 0 ? 0.0f : (i % 3 == 1 ? log_v : std::nextafter(log_v, 100.0f)));
    edges.generated.push_back(false);
  }
  cases.push_back({"0, ln V and above by one ulp", edges});
  cases.push_back({"single value", Values{{1.5f}, {true}}});
  // Values on bin edges, where float rounding decides the bin.
  Values on_edges;
  for (int b = 0; b < kEntropyHistogramBins; b += 7) {
    on_edges.h.push_back(static_cast<float>(b * width));
    on_edges.generated.push_back(false);
  }
  cases.push_back({"bin edges", on_edges});
  // Bimodal: a large gap between p10 and p90.
  Values bimodal = Uniform(400, 0.0, 0.01, 2);
  const Values top = Uniform(600, 11.0, 11.9, 3);
  bimodal.h.insert(bimodal.h.end(), top.h.begin(), top.h.end());
  bimodal.generated.insert(bimodal.generated.end(), top.generated.begin(), top.generated.end());
  cases.push_back({"bimodal", bimodal});
  for (const Case& c : cases) {
    // 37 ranks: some get nothing when there are fewer values (empty summaries).
    ExpectMatches(Pool(SummaryContributions(c.v, vocab, 37, 1)), c.v, vocab, c.name);
  }
  // Identical values come back exactly: the estimate is clamped to [min, max].
  const auto s = Pool(SummaryContributions(cases[0].v, vocab, 5, 1));
  EXPECT_EQ(s.entropy_p10(), 3.25);
  EXPECT_EQ(s.entropy_p90(), 3.25);
}

TEST(SummaryMergeTest, EmptySummariesAloneGiveAnEmptyStep) {
  auto contributions = SummaryContributions(Values{}, 32000, 4, 9);
  const v1::StepSummary s = Pool(std::move(contributions));
  EXPECT_TRUE(s.complete());
  EXPECT_EQ(s.ranks_reported(), 4u);
  EXPECT_EQ(s.token_count(), 0u);
  EXPECT_EQ(s.entropy_p50(), 0);
}

// Raw values and summaries of the same step pool alike.
TEST(SummaryMergeTest, RawAndSummarizedRanksOfOneStepPoolTogether) {
  const uint32_t vocab = 32000;
  const double log_v = std::log(32000.0);
  const Values v = Uniform(3000, 0.5, 9.5, 4);
  auto contributions = SummaryContributions(v, vocab, 6, 2);
  // Ranks 0 and 3 send their values raw instead.
  for (uint32_t r : {0u, 3u}) {
    ReportContribution& c = contributions[r];
    const v1::EntropySummary summary = c.summary.entropy(0);
    c.summary.clear_entropy();
    for (size_t i = r; i < v.h.size(); i += 6) {
      c.entropies.push_back(v.h[i]);
      c.normalized.push_back(static_cast<float>(std::min(1.0, v.h[i] / log_v)));
      c.generated.push_back(v.generated[i]);
    }
    ASSERT_EQ(c.entropies.size(), summary.count());
  }
  const v1::StepSummary s = Pool(std::move(contributions));
  ExpectMatches(s, v, vocab, "raw and summaries");
  ASSERT_EQ(s.ranks_size(), 6);
  for (int r = 0; r < 6; ++r) {
    double sum = 0;
    size_t n = 0;
    for (size_t i = r; i < v.h.size(); i += 6, ++n) {
      sum += v.h[i];
    }
    EXPECT_EQ(s.ranks(r).token_count(), n);
    EXPECT_NEAR(s.ranks(r).entropy_mean(), sum / n, 1e-9) << r;
  }
}

// Summaries of two vocabularies pool on the larger one's grid, within 1.5
// of its bin widths.
TEST(SummaryMergeTest, TwoVocabulariesPoolWithinOneAndAHalfBins) {
  const Values small = Uniform(2000, 0.0, std::log(96.0), 5);
  const Values large = Uniform(2000, 0.0, std::log(32000.0), 6);
  std::vector<ReportContribution> contributions(2);
  for (uint32_t r = 0; r < 2; ++r) {
    contributions[r].rank = r;
    contributions[r].world_size = 2;
    const Values& v = r == 0 ? small : large;
    *contributions[r].summary.add_entropy() =
        SummarizeEntropies(v.h, r == 0 ? 96 : 32000, kThreshold, v.generated);
  }
  const v1::StepSummary s = Pool(std::move(contributions));
  std::vector<double> all(small.h.begin(), small.h.end());
  all.insert(all.end(), large.h.begin(), large.h.end());
  for (auto [got, q] : {std::pair{s.entropy_p10(), 0.1}, std::pair{s.entropy_p50(), 0.5},
                        std::pair{s.entropy_p90(), 0.9}}) {
    EXPECT_LE(std::abs(got - ReferenceQuantile(all, q)), 1.5 * BinWidth(32000)) << q;
  }
  EXPECT_EQ(s.token_count(), 4000u);
}

// With another threshold than the daemon's, the high-entropy count is read
// from the histogram: off by at most the straddling bin.
TEST(SummaryMergeTest, HighEntropyCountAtAnotherThresholdIsEstimatedFromBins) {
  const uint32_t vocab = 32000;
  const double log_v = std::log(32000.0);
  const Values v = Uniform(5000, 0.0, log_v, 7);
  const v1::EntropySummary s = SummarizeEntropies(v.h, vocab, 0.5, v.generated);
  for (double threshold : {0.0, 0.25, 0.8, 0.8001, 0.95, 1.0}) {
    int64_t exact = 0;
    for (float h : v.h) {
      exact += static_cast<float>(std::min(1.0, h / log_v)) >= threshold ? 1 : 0;
    }
    const int straddling =
        std::min(kEntropyHistogramBins - 1, static_cast<int>(threshold * kEntropyHistogramBins));
    EXPECT_LE(std::abs(HighEntropyCount(s, threshold) - static_cast<double>(exact)),
              static_cast<double>(s.histogram(straddling)))
        << threshold;
  }
  EXPECT_EQ(HighEntropyCount(s, 0.5), static_cast<double>(s.high_entropy_count()));
}

// Merging summaries counted at different thresholds keeps no count.
TEST(SummaryMergeTest, MergeOfDifferentThresholdsDropsTheCount) {
  const Values v = Uniform(100, 0.0, 4.0, 8);
  v1::EntropySummary into = SummarizeEntropies(v.h, 96, 0.8, v.generated);
  MergeEntropySummary(SummarizeEntropies(v.h, 96, 0.8, v.generated), &into);
  EXPECT_EQ(into.high_entropy_threshold(), 0.8f);
  EXPECT_EQ(into.count(), 200u);
  MergeEntropySummary(SummarizeEntropies(v.h, 96, 0.5, v.generated), &into);
  EXPECT_EQ(into.high_entropy_threshold(), 0);
  EXPECT_EQ(into.high_entropy_count(), 0u);
  EXPECT_EQ(into.count(), 300u);
}

// A job-level aggregate stands for every rank it lists: the step completes,
// and loss, grad norm, per-rank figures, named scalars and attention means
// equal those of the same ranks reporting one by one.
TEST(SummaryMergeTest, AggregateOfRanksEqualsTheRanksReportingThemselves) {
  const auto trace = testing::LoadTrace("real-two-rank-bad-shard");
  const auto steps = testing::GroupBySteps(trace);
  ASSERT_GT(steps.size(), 10u);
  for (size_t i = 0; i < steps.size(); i += 37) {
    std::vector<v1::Report> per_rank = steps[i];
    (*per_rank[0].mutable_scalars()->mutable_values())["reward"] = 1.0;
    (*per_rank[1].mutable_scalars()->mutable_values())["reward"] = 2.0;
    per_rank[1].mutable_grad()->set_global_norm(per_rank[0].grad().global_norm() * 3);
    // The daemon's own conversion of a raw report, reduced to what the
    // traces carry.
    auto contribution = [](const v1::Report& r) {
      ReportContribution c;
      c.step = r.step();
      c.rank = r.rank();
      c.world_size = r.world_size();
      for (const auto& block : r.token_entropies()) {
        for (float h : block.values()) {
          c.entropies.push_back(h);
          c.normalized.push_back(static_cast<float>(
              std::min(1.0, h / std::log(static_cast<double>(block.vocab_size())))));
          c.generated.push_back(false);
        }
      }
      for (const auto& block : r.attention_entropies()) {
        auto& heads = c.layers[block.layer()];
        heads.resize(block.head_entropy_size());
        for (int h = 0; h < block.head_entropy_size(); ++h) {
          heads[h].sum += block.head_entropy(h);
          heads[h].count += 1;
        }
      }
      c.has_grad = r.has_grad();
      c.grad_norm = r.grad().global_norm();
      c.has_loss = r.scalars().has_loss();
      c.loss = r.scalars().loss();
      c.learning_rate = r.scalars().learning_rate();
      c.scalars.insert(r.scalars().values().begin(), r.scalars().values().end());
      c.summary = r.summary();
      return c;
    };
    std::vector<ReportContribution> raw;
    for (const auto& r : per_rank) {
      raw.push_back(contribution(r));
    }
    std::vector<ReportContribution> aggregated;
    aggregated.push_back(contribution(testing::AggregateRanks(per_rank, kThreshold)));
    ASSERT_TRUE(aggregated[0].entropies.empty());
    ASSERT_FALSE(aggregated[0].has_grad);
    StepAggregator agg({kThreshold, absl::Seconds(30)});
    ASSERT_TRUE(agg.Add(std::move(aggregated[0]), absl::ZeroDuration()));
    auto finalized = agg.TakeFinalized();
    ASSERT_EQ(finalized.size(), 1u) << "an aggregate of every rank completes its step";
    const v1::StepSummary b = finalized[0];
    const v1::StepSummary a = Pool(std::move(raw));
    EXPECT_TRUE(b.complete());
    EXPECT_EQ(b.ranks_reported(), a.ranks_reported());
    EXPECT_EQ(b.token_count(), a.token_count());
    EXPECT_NEAR(b.entropy_mean(), a.entropy_mean(), 1e-9);
    EXPECT_NEAR(b.normalized_entropy_mean(), a.normalized_entropy_mean(), 1e-6);
    EXPECT_NEAR(b.high_entropy_ratio(), a.high_entropy_ratio(), 1e-12);
    EXPECT_LE(std::abs(b.entropy_p50() - a.entropy_p50()), BinWidth(96));
    EXPECT_EQ(b.grad_norm(), a.grad_norm());
    EXPECT_EQ(b.grad_norm_disagreements(), 1u);
    EXPECT_EQ(b.grad_norm_disagreements(), a.grad_norm_disagreements());
    EXPECT_EQ(b.has_loss(), a.has_loss());
    EXPECT_NEAR(b.loss(), a.loss(), 1e-12);
    EXPECT_DOUBLE_EQ(b.learning_rate(), a.learning_rate());
    EXPECT_DOUBLE_EQ(b.scalars().at("reward"), 1.5);
    EXPECT_DOUBLE_EQ(a.scalars().at("reward"), 1.5);
    ASSERT_EQ(b.ranks_size(), a.ranks_size());
    for (int r = 0; r < a.ranks_size(); ++r) {
      EXPECT_EQ(b.ranks(r).rank(), a.ranks(r).rank());
      EXPECT_EQ(b.ranks(r).token_count(), a.ranks(r).token_count());
      EXPECT_NEAR(b.ranks(r).entropy_mean(), a.ranks(r).entropy_mean(), 1e-9);
      EXPECT_EQ(b.ranks(r).grad_norm(), a.ranks(r).grad_norm());
      EXPECT_EQ(b.ranks(r).loss(), a.ranks(r).loss());
    }
    ASSERT_EQ(b.layers_size(), a.layers_size());
    ASSERT_GT(a.layers_size(), 0);
    for (int l = 0; l < a.layers_size(); ++l) {
      EXPECT_NEAR(b.layers(l).mean_entropy(), a.layers(l).mean_entropy(), 1e-9);
      EXPECT_NEAR(b.layers(l).head_variance(), a.layers(l).head_variance(), 1e-9);
      ASSERT_EQ(b.layers(l).head_mean_entropy_size(), a.layers(l).head_mean_entropy_size());
      for (int h = 0; h < a.layers(l).head_mean_entropy_size(); ++h) {
        EXPECT_NEAR(b.layers(l).head_mean_entropy(h), a.layers(l).head_mean_entropy(h), 1e-9);
      }
    }
  }
}

}  // namespace
}  // namespace entrowatch::analysis
