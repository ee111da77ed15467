#include "analysis/health/run_analyzer.h"

#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;

const double kLogV = std::log(32000.0);

RunThresholds Defaults() { return RunThresholds{"", config::AnalysisThresholds{}}; }

v1::StepSummary Step(uint64_t step, double entropy, double grad, v1::Phase phase = v1::TRAIN) {
  v1::StepSummary s;
  s.set_step(step);
  s.set_phase(phase);
  s.set_token_count(4096);
  s.set_entropy_mean(entropy);
  s.set_entropy_p10(0.7 * entropy);
  s.set_entropy_p50(entropy);
  s.set_entropy_p90(1.3 * entropy);
  s.set_normalized_entropy_mean(entropy / kLogV);
  if (grad > 0) {
    s.set_has_grad_norm(true);
    s.set_grad_norm(grad);
  }
  return s;
}

void AddLayers(v1::StepSummary* s, const std::vector<std::vector<double>>& heads) {
  for (size_t l = 0; l < heads.size(); ++l) {
    auto* layer = s->add_layers();
    layer->set_layer(static_cast<uint32_t>(l));
    double mean = 0;
    for (double h : heads[l]) {
      layer->add_head_mean_entropy(h);
      mean += h;
    }
    mean /= static_cast<double>(heads[l].size());
    double var = 0;
    for (double h : heads[l]) {
      var += (h - mean) * (h - mean);
    }
    layer->set_mean_entropy(mean);
    layer->set_head_variance(var / static_cast<double>(heads[l].size()));
  }
}

// A healthy signal: entropy 3 nats and grad norm 1, with step noise, and a
// U-shaped attention profile of distinct, noisy heads.
class Healthy {
 public:
  explicit Healthy(uint64_t seed) : rng_(seed) {}
  v1::StepSummary Next(uint64_t step, double entropy_shift = 0, double grad_factor = 1,
                       v1::Phase phase = v1::TRAIN) {
    v1::StepSummary s = Step(step, 3.0 + entropy_shift + entropy_noise_(rng_),
                             grad_factor * std::exp(grad_noise_(rng_)), phase);
    std::vector<std::vector<double>> heads;
    for (double layer_mean : {2.6, 1.6, 2.4}) {
      heads.push_back({});
      for (double offset : {-0.3, -0.1, 0.1, 0.3}) {
        heads.back().push_back(layer_mean + offset + head_noise_(rng_));
      }
    }
    AddLayers(&s, heads);
    return s;
  }

 private:
  std::mt19937_64 rng_;
  std::normal_distribution<double> entropy_noise_{0.0, 0.05};
  std::normal_distribution<double> grad_noise_{0.0, 0.1};
  std::normal_distribution<double> head_noise_{0.0, 0.02};
};

std::set<v1::Pattern> Active(const RunAnalyzer& a) {
  std::set<v1::Pattern> out;
  for (const auto& anomaly : a.ActiveAnomalies()) {
    out.insert(anomaly.pattern());
  }
  return out;
}

// Feeds `steps` healthy steps starting at *step.
void Warm(RunAnalyzer& a, Healthy& h, uint64_t* step, int steps = 150) {
  for (int i = 0; i < steps; ++i) {
    a.Observe(h.Next((*step)++));
  }
}

TEST(RunAnalyzerTest, WarmUpThenNormal) {
  RunAnalyzer a(Defaults());
  Healthy h(1);
  EXPECT_EQ(a.verdict().state(), v1::WARMUP);
  for (uint64_t s = 0; s < 50; ++s) {
    a.Observe(h.Next(s));
    EXPECT_EQ(a.verdict().state(), v1::WARMUP) << s;
    EXPECT_EQ(a.verdict().step(), s);
  }
  a.Observe(h.Next(50));
  EXPECT_EQ(a.verdict().state(), v1::NORMAL);
  EXPECT_EQ(a.verdict().since_step(), 50u);
  EXPECT_FALSE(a.verdict().reason().empty());
}

TEST(RunAnalyzerTest, QuietOnLongStationaryRuns) {
  for (uint64_t seed : {11, 12, 13}) {
    RunAnalyzer a(Defaults());
    Healthy h(seed);
    for (uint64_t s = 0; s < 3000; ++s) {
      a.Observe(h.Next(s));
      if (s >= 50) {
        ASSERT_EQ(a.verdict().state(), v1::NORMAL)
            << "seed " << seed << " step " << s << ": " << a.verdict().reason();
        ASSERT_TRUE(a.ActiveAnomalies().empty())
            << "seed " << seed << " step " << s << ": " << a.ActiveAnomalies()[0].reason();
      }
    }
  }
}

struct StateCase {
  double entropy_shift;
  double grad_factor;
  v1::HealthState expected;
};

class StateTest : public ::testing::TestWithParam<StateCase> {};

TEST_P(StateTest, SustainedShiftEntersTheStateWithEvidence) {
  const StateCase c = GetParam();
  RunAnalyzer a(Defaults());
  Healthy h(21);
  uint64_t step = 0;
  Warm(a, h, &step);
  const uint64_t onset = step;
  std::set<std::string> actions;
  for (int i = 0; i < 6; ++i) {
    a.Observe(h.Next(step++, c.entropy_shift, c.grad_factor));
  }
  ASSERT_EQ(a.verdict().state(), c.expected) << a.verdict().reason();
  EXPECT_GE(a.verdict().since_step(), onset);
  EXPECT_LE(a.verdict().since_step(), onset + 2);
  EXPECT_EQ(a.verdict().step(), step - 1);
  EXPECT_GE(a.verdict().evidence_size(), 2);
  EXPECT_FALSE(a.verdict().reason().empty());
  EXPECT_NE(a.verdict().recommended_action(), "None.");
}

INSTANTIATE_TEST_SUITE_P(States, StateTest,
                         ::testing::Values(StateCase{-0.6, 0.3, v1::COMFORT_ZONE},
                                           StateCase{0.6, 3.0, v1::PANIC_ZONE},
                                           StateCase{0.6, 0.3, v1::STAGNATION},
                                           StateCase{-0.6, 3.0, v1::PATHOLOGICAL_CONFIDENCE}),
                         [](const ::testing::TestParamInfo<StateCase>& info) {
                           return v1::HealthState_Name(info.param.expected);
                         });

TEST(RunAnalyzerTest, HysteresisIgnoresShortBlipsAndLeavesAfterExitSteps) {
  RunAnalyzer a(Defaults());
  Healthy h(31);
  uint64_t step = 0;
  Warm(a, h, &step);
  // Two-step blips far out: a median of three never sees them as a level.
  for (int blip = 0; blip < 5; ++blip) {
    a.Observe(h.Next(step++, 2.0, 10.0));
    a.Observe(h.Next(step++, 2.0, 10.0));
    for (int i = 0; i < 10; ++i) {
      a.Observe(h.Next(step++));
      EXPECT_EQ(a.verdict().state(), v1::NORMAL) << a.verdict().reason();
    }
  }
  // Enter PANIC_ZONE, then recover: NORMAL only after exit_steps steps away.
  for (int i = 0; i < 8; ++i) {
    a.Observe(h.Next(step++, 0.6, 3.0));
  }
  ASSERT_EQ(a.verdict().state(), v1::PANIC_ZONE);
  const int exit_steps = config::AnalysisThresholds{}.states.exit_steps;
  int steps_to_leave = 0;
  while (a.verdict().state() == v1::PANIC_ZONE && steps_to_leave < 100) {
    a.Observe(h.Next(step++));
    ++steps_to_leave;
  }
  EXPECT_EQ(a.verdict().state(), v1::NORMAL);
  // The median needs two healthy steps before the candidate turns NORMAL.
  EXPECT_GE(steps_to_leave, exit_steps);
  EXPECT_LE(steps_to_leave, exit_steps + 2);
}

TEST(RunAnalyzerTest, WaveringEntropyUnderExplodingGradStillEntersAState) {
  RunAnalyzer a(Defaults());
  Healthy h(41);
  uint64_t step = 0;
  Warm(a, h, &step);
  // Grad norm x10 while the entropy flips around a slightly lower level.
  for (int i = 0; i < 8; ++i) {
    a.Observe(h.Next(step++, i % 2 == 0 ? -0.12 : -0.04, 10.0));
  }
  EXPECT_EQ(a.verdict().state(), v1::PATHOLOGICAL_CONFIDENCE) << a.verdict().reason();
}

TEST(RunAnalyzerTest, AbsoluteBoundCallsASlowSlideTheBaselineAbsorbs) {
  for (bool absolute : {true, false}) {
    RunThresholds t = Defaults();
    if (!absolute) {
      t.values.states.low_normalized_entropy = 0;
      t.values.entropy_collapse.normalized_floor = 0;
    }
    RunAnalyzer a(t);
    std::mt19937_64 rng(51);
    std::normal_distribution<double> noise(0.0, 0.02);
    bool comfort = false;
    bool collapse = false;
    for (uint64_t s = 0; s < 2000; ++s) {
      // Entropy halves every 300 steps: far slower than the baseline.
      const double entropy = 3.0 * std::exp2(-static_cast<double>(s) / 300) * (1 + noise(rng));
      a.Observe(Step(s, entropy, 1.0 * std::exp(noise(rng))));
      comfort = comfort || a.verdict().state() == v1::COMFORT_ZONE;
      collapse = collapse || Active(a).count(v1::ENTROPY_COLLAPSE) > 0;
    }
    EXPECT_EQ(comfort, absolute);
    EXPECT_EQ(collapse, absolute);
  }
}

TEST(RunAnalyzerTest, StepsWithoutTokensDoNotCorruptBaselines) {
  RunAnalyzer a(Defaults());
  Healthy h(61);
  uint64_t step = 0;
  Warm(a, h, &step);
  for (int i = 0; i < 300; ++i) {
    v1::StepSummary empty;
    empty.set_step(step++);
    empty.set_entropy_mean(i % 2 == 0 ? 0.0 : std::numeric_limits<double>::quiet_NaN());
    a.Observe(empty);
    a.Observe(h.Next(step++));
    ASSERT_EQ(a.verdict().state(), v1::NORMAL) << a.verdict().reason();
    ASSERT_TRUE(a.ActiveAnomalies().empty()) << a.ActiveAnomalies()[0].reason();
  }
}

TEST(RunAnalyzerTest, PhasesKeepTheirOwnBaselines) {
  RunAnalyzer a(Defaults());
  Healthy train(71);
  std::mt19937_64 rng(72);
  std::normal_distribution<double> noise(0.0, 0.05);
  uint64_t step = 0;
  for (int i = 0; i < 600; ++i) {
    a.Observe(train.Next(step++));
    // EVAL entropy sits far below TRAIN's and has no grad norm; ROLLOUT far above.
    a.Observe(Step(step++, 1.0 + noise(rng), 0, v1::EVAL));
    a.Observe(Step(step++, 5.0 + noise(rng), std::exp(noise(rng)), v1::ROLLOUT));
    if (i >= 60) {
      ASSERT_EQ(a.verdict().state(), v1::NORMAL) << a.verdict().reason();
      ASSERT_TRUE(a.ActiveAnomalies().empty()) << a.ActiveAnomalies()[0].reason();
    }
  }
}

TEST(DetectorTest, TokenCollapseOnRelativeDropWithinTheWindow) {
  RunAnalyzer a(Defaults());
  Healthy h(81);
  uint64_t step = 0;
  Warm(a, h, &step);
  const uint64_t onset = step;
  for (int i = 0; i < 5; ++i) {
    a.Observe(h.Next(step++, -2.0));  // 3 -> 1 nat: a 67% drop, still above the floor
  }
  ASSERT_EQ(Active(a).count(v1::ENTROPY_COLLAPSE), 1u);
  bool fired_once = false;
  for (const auto& an : a.ActiveAnomalies()) {
    if (an.pattern() == v1::ENTROPY_COLLAPSE) {
      EXPECT_EQ(an.since_step(), onset);
      EXPECT_EQ(an.severity(), v1::CRITICAL);
      EXPECT_EQ(an.subject(), "token TRAIN");
      EXPECT_FALSE(an.recommended_action().empty());
      EXPECT_EQ(an.evidence(0).signal(), "token_entropy_relative_drop");
      fired_once = true;
    }
  }
  EXPECT_TRUE(fired_once);
}

TEST(DetectorTest, NewlyFiredReportsEachActivationOnce) {
  RunAnalyzer a(Defaults());
  Healthy h(82);
  uint64_t step = 0;
  Warm(a, h, &step);
  int fired = 0;
  for (int i = 0; i < 20; ++i) {
    a.Observe(h.Next(step++, -2.9));
    for (const auto& an : a.NewlyFired()) {
      fired += an.pattern() == v1::ENTROPY_COLLAPSE ? 1 : 0;
    }
  }
  EXPECT_EQ(fired, 1);
  // Clears after clear_steps healthy steps, fires again on a new collapse.
  for (int i = 0; i < 60; ++i) {
    a.Observe(h.Next(step++));
  }
  EXPECT_EQ(Active(a).count(v1::ENTROPY_COLLAPSE), 0u);
  for (int i = 0; i < 5; ++i) {
    a.Observe(h.Next(step++, -2.9));
    for (const auto& an : a.NewlyFired()) {
      fired += an.pattern() == v1::ENTROPY_COLLAPSE ? 1 : 0;
    }
  }
  EXPECT_EQ(fired, 2);
}

TEST(DetectorTest, AttentionCollapseWhenALayersHeadsGoOneHot) {
  RunAnalyzer a(Defaults());
  Healthy h(91);
  uint64_t step = 0;
  Warm(a, h, &step);
  for (int i = 0; i < 3; ++i) {
    v1::StepSummary s = h.Next(step++);
    s.clear_layers();
    AddLayers(&s, {{2.5, 2.0, 2.2, 2.8}, {0.01, 0.02, 0.0, 0.03}});
    a.Observe(s);
  }
  bool found = false;
  for (const auto& an : a.ActiveAnomalies()) {
    if (an.pattern() == v1::ENTROPY_COLLAPSE && an.subject() == "layer 1") {
      found = true;
      EXPECT_NE(an.reason().find("layer 1"), std::string::npos) << an.reason();
    }
  }
  EXPECT_TRUE(found);
}

TEST(DetectorTest, OverloadNeedsUniformlyHighEntropySustained) {
  RunAnalyzer a(Defaults());
  Healthy h(101);
  uint64_t step = 0;
  Warm(a, h, &step);
  const int for_steps = config::AnalysisThresholds{}.entropic_overload.common.for_steps;
  for (int i = 0; i < for_steps - 1; ++i) {
    a.Observe(Step(step++, 0.97 * kLogV, 1.0));
    EXPECT_EQ(Active(a).count(v1::ENTROPIC_OVERLOAD), 0u) << i;
  }
  a.Observe(Step(step++, 0.97 * kLogV, 1.0));
  EXPECT_EQ(Active(a).count(v1::ENTROPIC_OVERLOAD), 1u);
}

TEST(DetectorTest, AttentionLockingOnAFrozenHead) {
  RunAnalyzer a(Defaults());
  Healthy h(111);
  uint64_t step = 0;
  Warm(a, h, &step);
  const int window = config::AnalysisThresholds{}.attention_locking.window_steps;
  for (int i = 0; i < window; ++i) {
    EXPECT_EQ(Active(a).count(v1::ATTENTION_LOCKING), 0u) << i;
    v1::StepSummary s = h.Next(step++);
    s.mutable_layers(2)->set_head_mean_entropy(1, 0.75);
    a.Observe(s);
  }
  ASSERT_EQ(Active(a).count(v1::ATTENTION_LOCKING), 1u);
  EXPECT_NE(a.ActiveAnomalies()[0].reason().find("layer 2 head 1"), std::string::npos)
      << a.ActiveAnomalies()[0].reason();
}

TEST(DetectorTest, DriftDirectionsPerPhase) {
  struct Case {
    v1::Phase phase;
    double slope;  // nats per step
    bool expected;
  };
  for (const Case& c : {Case{v1::TRAIN, +0.002, true}, Case{v1::TRAIN, -0.002, false},
                        Case{v1::EVAL, -0.002, true}, Case{v1::ROLLOUT, -0.002, true}}) {
    RunAnalyzer a(Defaults());
    std::mt19937_64 rng(121);
    std::normal_distribution<double> noise(0.0, 0.05);
    bool drift = false;
    for (uint64_t s = 0; s < 700; ++s) {
      const double trend = s >= 100 ? c.slope * static_cast<double>(s - 100) : 0.0;
      a.Observe(Step(s, 3.0 + trend + noise(rng), std::exp(noise(rng)), c.phase));
      drift = drift || Active(a).count(v1::ENTROPY_DRIFT) > 0;
    }
    EXPECT_EQ(drift, c.expected) << v1::Phase_Name(c.phase) << " slope " << c.slope;
  }
}

TEST(DetectorTest, DriftIgnoresASpike) {
  RunAnalyzer a(Defaults());
  Healthy h(131);
  uint64_t step = 0;
  Warm(a, h, &step);
  for (int i = 0; i < 3; ++i) {
    a.Observe(h.Next(step++, 3.0));
  }
  for (int i = 0; i < 200; ++i) {
    a.Observe(h.Next(step++));
    EXPECT_EQ(Active(a).count(v1::ENTROPY_DRIFT), 0u);
  }
}

TEST(DetectorTest, HeadRedundancyAndFlatProfile) {
  RunAnalyzer a(Defaults());
  Healthy h(141);
  uint64_t step = 0;
  Warm(a, h, &step);
  const auto& t = config::AnalysisThresholds{};
  for (int i = 0;
       i < std::max(t.head_redundancy.common.for_steps, t.flat_layer_profile.common.for_steps);
       ++i) {
    v1::StepSummary s = h.Next(step++);
    s.clear_layers();
    // Layer 1's heads identical; every layer's mean 2.0.
    const double j = 0.001 * (i % 3);
    AddLayers(&s,
              {{1.7 + j, 1.9, 2.1, 2.3 - j}, {2.0 + j, 2.0, 2.0, 2.0 - j}, {1.6, 2.2, 2.1, 2.1}});
    a.Observe(s);
  }
  const auto active = Active(a);
  EXPECT_EQ(active.count(v1::HEAD_REDUNDANCY), 1u);
  EXPECT_EQ(active.count(v1::FLAT_LAYER_PROFILE), 1u);
  for (const auto& an : a.ActiveAnomalies()) {
    if (an.pattern() == v1::HEAD_REDUNDANCY) {
      EXPECT_NE(an.reason().find("layer 1"), std::string::npos) << an.reason();
      EXPECT_EQ(an.reason().find("layer 0"), std::string::npos) << an.reason();
      EXPECT_EQ(an.severity(), v1::INFO);
    }
  }
}

TEST(DetectorTest, GeneratedEntropySpikeOnRolloutsOnly) {
  for (v1::Phase phase : {v1::ROLLOUT, v1::TRAIN}) {
    RunAnalyzer a(Defaults());
    std::mt19937_64 rng(151);
    std::normal_distribution<double> noise(0.0, 0.05);
    bool spike = false;
    for (uint64_t s = 0; s < 120; ++s) {
      v1::StepSummary st = Step(s, 2.0 + noise(rng), std::exp(noise(rng)), phase);
      st.set_generated_token_count(64);
      st.set_generated_entropy_mean((s == 100 ? 3.0 : 1.2) + noise(rng));
      a.Observe(st);
      spike = spike || Active(a).count(v1::GENERATED_ENTROPY_SPIKE) > 0;
    }
    EXPECT_EQ(spike, phase == v1::ROLLOUT) << v1::Phase_Name(phase);
  }
}

TEST(DetectorTest, DisabledDetectorNeverFires) {
  RunThresholds t = Defaults();
  t.values.entropy_collapse.common.enabled = false;
  RunAnalyzer a(t);
  Healthy h(161);
  uint64_t step = 0;
  Warm(a, h, &step);
  for (int i = 0; i < 20; ++i) {
    a.Observe(h.Next(step++, -2.95));
    EXPECT_EQ(Active(a).count(v1::ENTROPY_COLLAPSE), 0u);
  }
}

TEST(RunAnalyzerTest, UpdateThresholdsKeepsBaselinesAndAppliesNewValues) {
  RunAnalyzer a(Defaults());
  Healthy h(171);
  uint64_t step = 0;
  Warm(a, h, &step);
  ASSERT_EQ(a.verdict().state(), v1::NORMAL);
  // Entropy 3 nats is about 0.29 normalized: with the low bound at 0.5 the
  // run is in the comfort zone, without a new warm-up.
  RunThresholds t = Defaults();
  t.values.states.low_normalized_entropy = 0.5;
  t.values.states.high_normalized_entropy = 0.99;
  a.UpdateThresholds(t);
  EXPECT_EQ(a.verdict().state(), v1::NORMAL);
  for (int i = 0; i < 3; ++i) {
    a.Observe(h.Next(step++));
  }
  EXPECT_EQ(a.verdict().state(), v1::COMFORT_ZONE) << a.verdict().reason();
  EXPECT_DOUBLE_EQ(a.thresholds().values.states.low_normalized_entropy, 0.5);
}

TEST(ResolveThresholdsTest, FirstMatchingGlobWins) {
  config::AnalysisConfig cfg;
  cfg.base.warmup_steps = 10;
  config::AnalysisOverride rl{"rl-*", cfg.base};
  rl.thresholds.warmup_steps = 20;
  config::AnalysisOverride rl_exact{"rl-7", cfg.base};
  rl_exact.thresholds.warmup_steps = 30;
  config::AnalysisOverride any_digit{"gpt-[0-9]", cfg.base};
  any_digit.thresholds.warmup_steps = 40;
  cfg.overrides = {rl, rl_exact, any_digit};
  EXPECT_EQ(ResolveThresholds(cfg, "rl-7").values.warmup_steps, 20);
  EXPECT_EQ(ResolveThresholds(cfg, "rl-7").matched_glob, "rl-*");
  EXPECT_EQ(ResolveThresholds(cfg, "gpt-3").values.warmup_steps, 40);
  EXPECT_EQ(ResolveThresholds(cfg, "gpt-35").values.warmup_steps, 10);
  EXPECT_EQ(ResolveThresholds(cfg, "gpt-35").matched_glob, "");
}

}  // namespace
}  // namespace entrowatch::analysis
