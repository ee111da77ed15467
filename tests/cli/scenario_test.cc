#include "cli/scenario.h"

#include <cmath>
#include <random>
#include <vector>

#include "common/half.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace entrowatch::cli {
namespace {

// Naive two-pass float64 entropy of softmax(z), independent of the code
// under test.
double ReferenceEntropy(const std::vector<double>& z) {
  double max = z[0];
  for (double v : z) {
    max = std::max(max, v);
  }
  std::vector<double> p(z.size());
  double sum = 0;
  for (size_t i = 0; i < z.size(); ++i) {
    p[i] = std::exp(z[i] - max);
    sum += p[i];
  }
  double h = 0;
  for (double& v : p) {
    v /= sum;
    if (v > 0) {
      h -= v * std::log(v);
    }
  }
  return h;
}

std::vector<double> Decode(const std::vector<uint16_t>& bits) {
  std::vector<double> z;
  for (uint16_t b : bits) {
    z.push_back(common::BFloat16ToFloat(b));
  }
  return z;
}

std::vector<double> DecodeRow(const std::string& data, size_t row, size_t vocab) {
  std::vector<double> z;
  for (size_t i = 0; i < vocab; ++i) {
    const size_t at = 2 * (row * vocab + i);
    const uint16_t bits = static_cast<uint8_t>(data[at]) |
                          static_cast<uint16_t>(static_cast<uint8_t>(data[at + 1])) << 8;
    z.push_back(common::BFloat16ToFloat(bits));
  }
  return z;
}

TEST(BFloat16RowWithEntropyTest, HitsTheTargetOnRandomRows) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int vocab : {2, 64, 4096, 50257}) {
    const double log_v = std::log(static_cast<double>(vocab));
    for (double fraction : {0.001, 0.01, 0.1, 0.3, 0.5, 0.8, 0.95, 0.999}) {
      std::vector<double> base(vocab);
      for (double& z : base) {
        z = normal(rng);
      }
      const double target = fraction * log_v;
      const double h = ReferenceEntropy(Decode(BFloat16RowWithEntropy(base, target)));
      EXPECT_NEAR(h, target, 0.01 * target + 1e-3) << "vocab " << vocab << " target " << target;
    }
  }
}

TEST(BFloat16RowWithEntropyTest, AdversarialRows) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int vocab = 1024;
  const double log_v = std::log(1024.0);

  // Heavy-tailed logits (one huge outlier): the low targets need a tiny beta.
  std::vector<double> outlier(vocab);
  for (double& z : outlier) {
    z = normal(rng);
  }
  outlier[17] = 1e4;
  for (double target : {0.5, 3.0, 6.0}) {
    const double h = ReferenceEntropy(Decode(BFloat16RowWithEntropy(outlier, target)));
    EXPECT_NEAR(h, target, 0.01 * target + 1e-3);
  }

  // Targets outside [0, log V] are clamped to the reachable range.
  std::vector<double> base(vocab);
  for (double& z : base) {
    z = normal(rng);
  }
  EXPECT_NEAR(ReferenceEntropy(Decode(BFloat16RowWithEntropy(base, log_v + 5))), log_v, 1e-9);
  EXPECT_LT(ReferenceEntropy(Decode(BFloat16RowWithEntropy(base, -1.0))), 1e-3);

  // A four-way tie at the top can never go below log 4: the closest is kept.
  std::vector<double> tie(vocab, -1.0);
  for (int i = 0; i < 4; ++i) {
    tie[i] = 2.0;
  }
  EXPECT_NEAR(ReferenceEntropy(Decode(BFloat16RowWithEntropy(tie, 0.1))), std::log(4.0), 1e-3);
}

TEST(ScenarioTest, NamesRoundTripAndUnknownNamesListTheKnownOnes) {
  EXPECT_EQ(AllScenarios().size(), 9u);
  for (const ScenarioInfo& info : AllScenarios()) {
    auto scenario = ScenarioFromName(info.name);
    ASSERT_TRUE(scenario.ok());
    EXPECT_EQ(*scenario, info.scenario);
    EXPECT_EQ(ScenarioName(info.scenario), info.name);
    EXPECT_FALSE(info.description.empty());
  }
  auto unknown = ScenarioFromName("melting");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), ::testing::HasSubstr("pathological_confidence"));
}

SimulationOptions Options(Scenario scenario) {
  SimulationOptions options;
  options.scenario = scenario;
  options.steps = 120;
  options.onset_step = 60;
  options.ranks = 2;
  options.vocab = 1024;
  options.tokens_per_rank = 128;
  options.logits_every = 10;
  options.logits_rows = 32;
  return options;
}

double MeanTokenEntropy(const v1::Report& report) {
  double sum = 0;
  for (float v : report.token_entropies(0).values()) {
    sum += v;
  }
  return sum / report.token_entropies(0).values_size();
}

TEST(ScenarioTest, ReportsAreWellFormedAndLogitsMatchTheStepEntropy) {
  for (const ScenarioInfo& info : AllScenarios()) {
    const SimulationOptions options = Options(info.scenario);
    ScenarioGenerator generator(options);
    const double log_v = std::log(static_cast<double>(options.vocab));
    for (int64_t step : {1, 10, 59, 60, 70, 120}) {
      for (uint32_t rank = 0; rank < options.ranks; ++rank) {
        const v1::Report report = generator.MakeReport(step, rank);
        const StepSignals signals = generator.Signals(step);
        SCOPED_TRACE(testing::Message() << info.name << " step " << step << " rank " << rank);
        EXPECT_EQ(report.run_id(), options.run_id);
        EXPECT_EQ(report.world_size(), options.ranks);
        EXPECT_EQ(report.rank(), rank);
        EXPECT_EQ(report.step(), static_cast<uint64_t>(step));
        EXPECT_EQ(report.seq(), 0u);
        ASSERT_EQ(report.token_entropies_size(), 1);
        EXPECT_EQ(report.token_entropies(0).values_size(), options.tokens_per_rank);
        for (float v : report.token_entropies(0).values()) {
          ASSERT_GE(v, 0.0f);
          ASSERT_LE(v, log_v);
        }
        EXPECT_NEAR(MeanTokenEntropy(report), signals.entropy_mean,
                    0.1 * signals.entropy_mean + 0.02);
        EXPECT_EQ(report.grad().global_norm(), signals.grad_norm);
        EXPECT_GT(report.grad().global_norm(), 0);
        EXPECT_EQ(report.attention_entropies_size(), options.layers);
        for (const v1::AttentionEntropies& layer : report.attention_entropies()) {
          EXPECT_EQ(layer.head_entropy_size(), options.heads);
        }
        if (step % options.logits_every != 0) {
          EXPECT_EQ(report.logits_size(), 0);
          continue;
        }
        ASSERT_EQ(report.logits_size(), 1);
        const v1::Tensor& t = report.logits(0).logits();
        EXPECT_EQ(t.dtype(), v1::BFLOAT16);
        ASSERT_EQ(t.shape_size(), 2);
        EXPECT_EQ(t.shape(0), static_cast<uint64_t>(options.logits_rows));
        EXPECT_EQ(t.shape(1), options.vocab);
        ASSERT_EQ(t.data().size(), 2u * options.logits_rows * options.vocab);
        double row_mean = 0;
        for (int row = 0; row < options.logits_rows; ++row) {
          const double h = ReferenceEntropy(DecodeRow(t.data(), row, options.vocab));
          EXPECT_GE(h, 0);
          EXPECT_LE(h, log_v);
          row_mean += h / options.logits_rows;
        }
        // Rows are drawn from the same spread as the token entropies.
        EXPECT_NEAR(row_mean, signals.entropy_mean, 0.35 * signals.entropy_mean + 0.05);
      }
    }
  }
}

TEST(ScenarioTest, IsDeterministicAndRanksShareTheGradNorm) {
  ScenarioGenerator a(Options(Scenario::kPanic));
  ScenarioGenerator b(Options(Scenario::kPanic));
  EXPECT_EQ(a.MakeReport(30, 1).SerializeAsString(), b.MakeReport(30, 1).SerializeAsString());
  EXPECT_EQ(a.MakeReport(30, 0).grad().global_norm(), a.MakeReport(30, 1).grad().global_norm());
  EXPECT_NE(a.MakeReport(30, 0).token_entropies(0).values(0),
            a.MakeReport(30, 1).token_entropies(0).values(0));
}

// Mean of a signal over steps [first, last].
template <typename F>
double Average(const ScenarioGenerator& g, int64_t first, int64_t last, F f) {
  double sum = 0;
  for (int64_t s = first; s <= last; ++s) {
    sum += f(g.Signals(s));
  }
  return sum / static_cast<double>(last - first + 1);
}

TEST(ScenarioTest, EachPathologyShowsAfterItsOnsetOnly) {
  auto entropy = [](const StepSignals& s) { return s.entropy_mean; };
  auto grad = [](const StepSignals& s) { return s.grad_norm; };
  auto loss = [](const StepSignals& s) { return s.loss; };
  const double log_v = std::log(1024.0);
  struct Expect {
    Scenario scenario;
    double entropy_ratio_min, entropy_ratio_max;  // late mean / warm-up mean
    double grad_ratio_min, grad_ratio_max;
  };
  const std::vector<Expect> expectations = {
      {Scenario::kHealthy, 0.8, 1.05, 0.8, 1.25},
      {Scenario::kEntropyCollapse, 0.0, 0.05, 0.8, 1.25},
      {Scenario::kPanic, 1.6, 2.2, 6.0, 10.0},
      {Scenario::kStagnation, 1.5, 2.1, 0.0, 0.1},
      {Scenario::kPathologicalConfidence, 0.1, 0.25, 6.0, 10.0},
      {Scenario::kComfortZone, 0.1, 0.25, 0.0, 0.15},
      {Scenario::kOverload, 0.95 * log_v / 2.6, 1.0 * log_v / 2.3, 0.8, 1.25},
      {Scenario::kAttentionLocking, 0.8, 1.05, 0.8, 1.25},
  };
  for (const Expect& e : expectations) {
    ScenarioGenerator g(Options(e.scenario));
    SCOPED_TRACE(ScenarioName(e.scenario));
    const double warm_entropy = Average(g, 1, 59, entropy);
    const double warm_grad = Average(g, 1, 59, grad);
    const double late_entropy = Average(g, 100, 120, entropy);
    const double late_grad = Average(g, 100, 120, grad);
    EXPECT_GE(late_entropy / warm_entropy, e.entropy_ratio_min);
    EXPECT_LE(late_entropy / warm_entropy, e.entropy_ratio_max);
    EXPECT_GE(late_grad / warm_grad, e.grad_ratio_min);
    EXPECT_LE(late_grad / warm_grad, e.grad_ratio_max);
  }
  // Before the onset every scenario is the healthy run.
  ScenarioGenerator healthy(Options(Scenario::kHealthy));
  for (const ScenarioInfo& info : AllScenarios()) {
    ScenarioGenerator g(Options(info.scenario));
    for (int64_t s = 1; s < 60; ++s) {
      EXPECT_EQ(g.Signals(s).entropy_mean, healthy.Signals(s).entropy_mean) << info.name;
      EXPECT_EQ(g.Signals(s).grad_norm, healthy.Signals(s).grad_norm) << info.name;
    }
  }
  ScenarioGenerator panic(Options(Scenario::kPanic));
  EXPECT_GT(Average(panic, 100, 120, loss), Average(healthy, 100, 120, loss) + 1.0);
  ScenarioGenerator comfort(Options(Scenario::kComfortZone));
  EXPECT_LT(Average(comfort, 110, 120, loss), 0.3);
  // Drift: a steady rise, no jump.
  ScenarioGenerator drift(Options(Scenario::kDrift));
  EXPECT_GT(Average(drift, 110, 120, entropy), Average(drift, 55, 60, entropy) + 0.5);
  for (int64_t s = 61; s <= 120; ++s) {
    EXPECT_LT(std::abs(drift.Signals(s).entropy_mean - drift.Signals(s - 1).entropy_mean), 0.2);
  }
}

TEST(ScenarioTest, AttentionLockingFreezesOneLayerFromTheOnset) {
  ScenarioGenerator g(Options(Scenario::kAttentionLocking));
  const int locked = g.options().layers / 2;
  const StepSignals at_onset = g.Signals(60);
  for (int64_t s = 61; s <= 120; ++s) {
    const StepSignals later = g.Signals(s);
    EXPECT_EQ(later.head_entropy[locked], at_onset.head_entropy[locked]);
    EXPECT_NE(later.head_entropy[0], at_onset.head_entropy[0]);
  }
  EXPECT_NE(g.Signals(59).head_entropy[locked], g.Signals(58).head_entropy[locked]);
}

}  // namespace
}  // namespace entrowatch::cli
