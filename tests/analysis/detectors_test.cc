// The detectors added on top of the state machine: extreme single-step
// evidence, floors without warm-up, per-layer attention collapse, logit
// growth, RL signals, per-rank attribution, YAML rules, and the stickiness
// of incidents (frozen baselines, pre-incident band, relearn, EndIncident).

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "analysis/health/run_analyzer.h"
#include "gtest/gtest.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;

const double kLogV = std::log(32000.0);

RunThresholds Defaults() { return RunThresholds{"", config::AnalysisThresholds{}}; }

// A healthy step: entropy 3 nats, grad norm 1, loss 2, each with noise, and
// three layers of four distinct heads.
class Trainer {
 public:
  explicit Trainer(uint64_t seed) : rng_(seed) {}

  v1::StepSummary Next(double entropy_shift = 0, double grad_factor = 1, double loss_factor = 1,
                       v1::Phase phase = v1::TRAIN) {
    v1::StepSummary s;
    s.set_step(step_++);
    s.set_phase(phase);
    s.set_token_count(4096);
    const double entropy = 3.0 + entropy_shift + noise_(rng_) * 0.05;
    s.set_entropy_mean(entropy);
    s.set_entropy_p10(0.7 * entropy);
    s.set_entropy_p50(entropy);
    s.set_entropy_p90(1.3 * entropy);
    s.set_normalized_entropy_mean(entropy / kLogV);
    s.set_has_grad_norm(true);
    s.set_grad_norm(grad_factor * std::exp(0.1 * noise_(rng_)));
    s.set_has_loss(true);
    s.set_loss(loss_factor * (2.0 + 0.04 * noise_(rng_)));
    for (uint32_t l = 0; l < 3; ++l) {
      auto* layer = s.add_layers();
      layer->set_layer(l);
      double mean = 0;
      for (double offset : {-0.3, -0.1, 0.1, 0.3}) {
        const double h = 2.2 + offset + 0.02 * noise_(rng_);
        layer->add_head_mean_entropy(h);
        mean += h / 4;
      }
      layer->set_mean_entropy(mean);
      double var = 0;
      for (double h : layer->head_mean_entropy()) {
        var += (h - mean) * (h - mean) / 4;
      }
      layer->set_head_variance(var);
    }
    return s;
  }

  uint64_t step() const { return step_; }
  double Noise() { return noise_(rng_); }

 private:
  uint64_t step_ = 0;
  std::mt19937_64 rng_;
  std::normal_distribution<double> noise_{0.0, 1.0};
};

// Pattern -> highest severity among its active subjects.
std::map<v1::Pattern, v1::Severity> Active(const RunAnalyzer& a) {
  std::map<v1::Pattern, v1::Severity> out;
  for (const auto& anomaly : a.ActiveAnomalies()) {
    auto& s = out[anomaly.pattern()];
    s = std::max(s, anomaly.severity());
  }
  return out;
}

void Warm(RunAnalyzer& a, Trainer& r, int steps = 120) {
  for (int i = 0; i < steps; ++i) {
    a.Observe(r.Next());
    ASSERT_TRUE(a.ActiveAnomalies().empty())
        << "healthy step " << i << ": " << a.ActiveAnomalies().front().reason();
  }
  ASSERT_EQ(a.verdict().state(), v1::NORMAL);
}

TEST(NonFiniteTest, FiresCriticalAtTheFirstNonFiniteStep) {
  RunAnalyzer a(Defaults());
  Trainer r(1);
  Warm(a, r);
  v1::StepSummary s = r.Next();
  s.set_loss(std::numeric_limits<double>::quiet_NaN());
  a.Observe(s);
  ASSERT_EQ(Active(a).count(v1::NON_FINITE), 1u);
  EXPECT_EQ(Active(a)[v1::NON_FINITE], v1::CRITICAL);
  ASSERT_EQ(a.NewlyFired().size(), 1u);
  EXPECT_EQ(a.NewlyFired()[0].since_step(), s.step());
  EXPECT_NE(a.NewlyFired()[0].reason().find("loss nan"), std::string::npos)
      << a.NewlyFired()[0].reason();

  // An infinite grad norm, persisting: the state follows within enter_steps.
  for (int i = 0; i < 3; ++i) {
    v1::StepSummary inf = r.Next(-0.5);
    inf.set_grad_norm(std::numeric_limits<double>::infinity());
    a.Observe(inf);
  }
  EXPECT_EQ(Active(a)[v1::NON_FINITE], v1::CRITICAL);
  EXPECT_NE(a.verdict().state(), v1::NORMAL) << a.verdict().reason();
}

TEST(NonFiniteTest, FiniteRunsNeverFire) {
  RunAnalyzer a(Defaults());
  Trainer r(2);
  Warm(a, r, 300);
}

TEST(GradNormSpikeTest, IsolatedOutlierIsAShortInfoEventAndNoState) {
  RunAnalyzer a(Defaults());
  Trainer r(3);
  Warm(a, r);
  const uint64_t spike = r.step();
  a.Observe(r.Next(0.3, 8.0, 1.8));  // one bad batch: grad x8, loss x1.8
  auto active = Active(a);
  ASSERT_EQ(active.count(v1::GRAD_NORM_SPIKE), 1u) << "fires at the first offending step";
  EXPECT_EQ(active[v1::GRAD_NORM_SPIKE], v1::INFO);
  ASSERT_EQ(active.count(v1::LOSS_SPIKE), 1u);
  EXPECT_EQ(active[v1::LOSS_SPIKE], v1::INFO);
  EXPECT_EQ(a.ActiveAnomalies()[0].since_step(), spike);
  // The run absorbs it: never more than info, never a state, and it clears.
  for (int i = 0; i < 10; ++i) {
    a.Observe(r.Next());
    EXPECT_EQ(a.verdict().state(), v1::NORMAL) << a.verdict().reason();
    for (const auto& [pattern, severity] : Active(a)) {
      EXPECT_EQ(severity, v1::INFO) << v1::Pattern_Name(pattern);
    }
  }
  EXPECT_TRUE(a.ActiveAnomalies().empty());
}

TEST(GradNormSpikeTest, PersistentSpikeEscalatesAndEntersTheStateMachine) {
  RunAnalyzer a(Defaults());
  Trainer r(4);
  Warm(a, r);
  const auto& t = config::AnalysisThresholds{};
  std::vector<v1::Severity> severities;
  std::vector<v1::HealthState> states;
  for (int i = 0; i < 6; ++i) {
    a.Observe(r.Next(-0.4, 6.0 * (1 + i)));  // an exploding grad norm
    severities.push_back(Active(a)[v1::GRAD_NORM_SPIKE]);
    states.push_back(a.verdict().state());
  }
  EXPECT_EQ(severities[0], v1::INFO);
  EXPECT_EQ(severities[t.grad_norm_spike.escalate_steps - 1], v1::WARNING);
  // The median of three alone needs two steps before a level moves; the
  // extreme value enters at once, so the state follows within enter_steps.
  EXPECT_NE(states[t.states.enter_steps - 1], v1::NORMAL) << a.verdict().reason();
}

TEST(GradNormSpikeTest, BaselineIsFrozenWhileTheSpikeLasts) {
  RunAnalyzer a(Defaults());
  Trainer r(5);
  Warm(a, r);
  // 40 steps at x5: a learning baseline would absorb it and stop firing.
  for (int i = 0; i < 40; ++i) {
    a.Observe(r.Next(0, 5.0));
    ASSERT_EQ(Active(a).count(v1::GRAD_NORM_SPIKE), 1u) << "step " << i;
  }
  EXPECT_EQ(Active(a)[v1::GRAD_NORM_SPIKE], v1::WARNING);
}

TEST(LossSpikeTest, FactorAndZBothNeeded) {
  RunAnalyzer a(Defaults());
  Trainer r(6);
  Warm(a, r);
  a.Observe(r.Next(0, 1, 1.3));  // +30%: many sigmas, but below the factor
  EXPECT_EQ(Active(a).count(v1::LOSS_SPIKE), 0u);
  for (int i = 0; i < 5; ++i) {
    a.Observe(r.Next(0, 1, 2.0));
  }
  EXPECT_EQ(Active(a)[v1::LOSS_SPIKE], v1::WARNING);
}

TEST(FloorTest, CollapseFloorsNeedNoWarmUp) {
  RunAnalyzer a(Defaults());
  Trainer r(7);
  const int for_steps = config::AnalysisThresholds{}.entropy_collapse.common.for_steps;
  for (int i = 0; i < for_steps; ++i) {
    v1::StepSummary s = r.Next(0, 1, 1, v1::ROLLOUT);
    s.set_entropy_mean(0.2);
    s.set_normalized_entropy_mean(0.2 / kLogV);  // 0.019 <= 0.05
    s.mutable_layers(1)->clear_head_mean_entropy();
    for (int h = 0; h < 4; ++h) {
      s.mutable_layers(1)->add_head_mean_entropy(0.01);
    }
    s.mutable_layers(1)->set_mean_entropy(0.01);
    a.Observe(s);
  }
  EXPECT_EQ(a.verdict().state(), v1::WARMUP);
  std::set<std::string> subjects;
  for (const auto& an : a.ActiveAnomalies()) {
    if (an.pattern() == v1::ENTROPY_COLLAPSE) {
      subjects.insert(an.subject());
      EXPECT_EQ(an.since_step(), 0u);
    }
  }
  EXPECT_EQ(subjects, (std::set<std::string>{"layer 1", "token ROLLOUT"}));
}

// An incident during warm-up does not freeze a cold baseline: the run
// still leaves WARMUP and its state is judged.
TEST(FloorTest, WarmUpCompletesUnderAnIncident) {
  RunAnalyzer a(Defaults());
  Trainer r(24);
  for (int i = 0; i < 80; ++i) {
    v1::StepSummary s = r.Next();
    s.set_entropy_mean(0.1);
    s.set_normalized_entropy_mean(0.1 / kLogV);
    a.Observe(s);
  }
  EXPECT_EQ(Active(a)[v1::ENTROPY_COLLAPSE], v1::CRITICAL);
  EXPECT_EQ(a.verdict().state(), v1::COMFORT_ZONE) << a.verdict().reason();
}

TEST(FloorTest, NearUniformStartIsNormalAndZScoresWait) {
  RunAnalyzer a(Defaults());
  Trainer r(8);
  for (int i = 0; i < 30; ++i) {
    v1::StepSummary s = r.Next();
    s.set_entropy_mean(0.99 * kLogV);
    s.set_normalized_entropy_mean(0.99);
    s.set_entropy_p10(0.95 * kLogV);
    a.Observe(s);
  }
  EXPECT_TRUE(a.ActiveAnomalies().empty()) << a.ActiveAnomalies().front().reason();
  EXPECT_EQ(a.verdict().state(), v1::WARMUP);
}

TEST(AttentionCollapseTest, RelativeDropOfALayerNamesLayerAndHeads) {
  RunAnalyzer a(Defaults());
  Trainer r(9);
  Warm(a, r);
  // Layer 2 drops from 2.2 to about 0.8 nats: above the floor, 64% down.
  for (int i = 0; i < 3; ++i) {
    v1::StepSummary s = r.Next();
    auto* layer = s.mutable_layers(2);
    for (int h = 0; h < 4; ++h) {
      layer->set_head_mean_entropy(h, h == 3 ? 2.0 : 0.4);
    }
    layer->set_mean_entropy(0.8);
    a.Observe(s);
  }
  bool found = false;
  for (const auto& an : a.ActiveAnomalies()) {
    if (an.pattern() == v1::ENTROPY_COLLAPSE) {
      found = true;
      EXPECT_EQ(an.subject(), "layer 2");
      EXPECT_NE(an.reason().find("heads below"), std::string::npos) << an.reason();
      EXPECT_NE(an.reason().find("0, 1, 2"), std::string::npos) << an.reason();
    }
  }
  EXPECT_TRUE(found);
}

TEST(AttentionLogitGrowthTest, SustainedGrowthFiresAndStableLogitsDoNot) {
  RunAnalyzer a(Defaults());
  Trainer r(10);
  auto with_logit = [&](double logit) {
    v1::StepSummary s = r.Next();
    for (auto& layer : *s.mutable_layers()) {
      layer.set_max_logit(layer.layer() == 0 ? logit : 5.0 + 0.1 * r.Noise());
    }
    return s;
  };
  for (int i = 0; i < 120; ++i) {
    a.Observe(with_logit(5.0 + 0.1 * r.Noise()));
  }
  EXPECT_EQ(Active(a).count(v1::ATTENTION_LOGIT_GROWTH), 0u);
  double logit = 5.0;
  for (int i = 0; i < 30; ++i) {
    logit *= 1.1;
    a.Observe(with_logit(logit));
  }
  ASSERT_EQ(Active(a).count(v1::ATTENTION_LOGIT_GROWTH), 1u);
  for (const auto& an : a.ActiveAnomalies()) {
    if (an.pattern() == v1::ATTENTION_LOGIT_GROWTH) {
      EXPECT_EQ(an.subject(), "layer 0");
    }
  }
}

v1::StepSummary Rollout(Trainer& r, double generated_entropy, double reward) {
  v1::StepSummary s = r.Next(0, 1, 1, v1::ROLLOUT);
  s.set_generated_token_count(512);
  s.set_generated_entropy_mean(generated_entropy);
  (*s.mutable_scalars())["reward"] = reward;
  return s;
}

TEST(RewardHackingTest, RewardUpWhileGeneratedEntropyCollapses) {
  RunAnalyzer a(Defaults());
  Trainer r(11);
  uint64_t fired = 0;
  for (int i = 0; i < 40 && fired == 0; ++i) {
    // From step 5 on, reward climbs to 1 while entropy falls 2.4 -> 0.2.
    const double progress = std::clamp((i - 5) / 25.0, 0.0, 1.0);
    a.Observe(Rollout(r, 2.4 - 2.2 * progress + 0.02 * r.Noise(), 0.1 + 0.9 * progress));
    if (Active(a).count(v1::REWARD_HACKING)) {
      fired = r.step() - 1;
    }
  }
  EXPECT_GT(fired, 0u);
  EXPECT_LT(fired, 25u) << "before the warm-up of 50 steps ends";
}

TEST(RewardHackingTest, RewardUpWithStableEntropyIsLearning) {
  RunAnalyzer a(Defaults());
  Trainer r(12);
  for (int i = 0; i < 60; ++i) {
    a.Observe(Rollout(r, 2.4 + 0.02 * r.Noise(), 0.1 + 0.015 * i));
    EXPECT_EQ(Active(a).count(v1::REWARD_HACKING), 0u);
  }
}

TEST(KlExplosionTest, FiresOnARunawayKlOnly) {
  RunAnalyzer a(Defaults());
  Trainer r(13);
  auto with_kl = [&](double kl) {
    v1::StepSummary s = r.Next();
    (*s.mutable_scalars())["kl"] = kl;
    return s;
  };
  for (int i = 0; i < 120; ++i) {
    a.Observe(with_kl(0.05 * std::exp(0.2 * r.Noise())));
  }
  EXPECT_EQ(Active(a).count(v1::KL_EXPLOSION), 0u);
  a.Observe(with_kl(2.0));
  a.Observe(with_kl(3.0));
  EXPECT_EQ(Active(a).count(v1::KL_EXPLOSION), 1u);
}

v1::StepSummary WithRanks(Trainer& r, const std::vector<double>& rank_losses) {
  v1::StepSummary s = r.Next();
  for (size_t i = 0; i < rank_losses.size(); ++i) {
    auto* rank = s.add_ranks();
    rank->set_rank(static_cast<uint32_t>(i));
    rank->set_token_count(1024);
    rank->set_entropy_mean(3.0 + 0.05 * r.Noise());
    rank->set_has_loss(true);
    rank->set_loss(rank_losses[i]);
  }
  return s;
}

TEST(RankOutlierTest, NamesTheRankWithABadShard) {
  for (int ranks : {4, 2}) {
    RunAnalyzer a(Defaults());
    Trainer r(14 + ranks);
    std::vector<double> losses(ranks);
    for (int i = 0; i < 120; ++i) {
      for (auto& l : losses) {
        l = 2.0 + 0.04 * r.Noise();
      }
      a.Observe(WithRanks(r, losses));
      ASSERT_EQ(Active(a).count(v1::RANK_OUTLIER), 0u) << ranks << " ranks, step " << i;
    }
    for (int i = 0; i < 8; ++i) {
      for (auto& l : losses) {
        l = 2.0 + 0.04 * r.Noise();
      }
      losses[1] = 4.5 + 0.04 * r.Noise();  // rank 1 reads random characters
      a.Observe(WithRanks(r, losses));
    }
    std::set<std::string> subjects;
    for (const auto& an : a.ActiveAnomalies()) {
      if (an.pattern() == v1::RANK_OUTLIER) {
        subjects.insert(an.subject());
        EXPECT_EQ(an.severity(), v1::WARNING) << "8 steps out: escalated";
        EXPECT_EQ(an.since_step(), 120u) << "info from the first step";
      }
    }
    EXPECT_EQ(subjects, std::set<std::string>{"rank 1"}) << ranks << " ranks";
  }
}

TEST(SignalRuleTest, BoundAndZRules) {
  config::SignalRule clip;
  clip.name = "clip-high";
  clip.signal = "clip_fraction";
  clip.has_bound = true;
  clip.bound = 0.3;
  clip.common.for_steps = 2;
  config::SignalRule length;
  length.name = "length-drop";
  length.signal = "response_length";
  length.above = false;
  length.has_z = true;
  length.z = 5;
  RunAnalyzer a(Defaults(), {clip, length});
  Trainer r(20);
  auto with = [&](double clip_fraction, double response_length) {
    v1::StepSummary s = r.Next();
    (*s.mutable_scalars())["clip_fraction"] = clip_fraction;
    (*s.mutable_scalars())["response_length"] = response_length;
    return s;
  };
  for (int i = 0; i < 120; ++i) {
    a.Observe(with(0.1, 200 + 5 * r.Noise()));
  }
  EXPECT_TRUE(a.ActiveAnomalies().empty());
  a.Observe(with(0.4, 200));
  EXPECT_TRUE(a.ActiveAnomalies().empty()) << "for_steps 2";
  a.Observe(with(0.4, 200));
  ASSERT_EQ(a.ActiveAnomalies().size(), 1u);
  EXPECT_EQ(a.ActiveAnomalies()[0].pattern(), v1::SIGNAL_RULE);
  EXPECT_EQ(a.ActiveAnomalies()[0].subject(), "clip-high");
  for (int i = 0; i < 3; ++i) {
    a.Observe(with(0.1, 40));
  }
  std::set<std::string> subjects;
  for (const auto& an : a.ActiveAnomalies()) {
    subjects.insert(an.subject());
  }
  EXPECT_EQ(subjects.count("length-drop"), 1u);
}

// A run that settles in a worse regime stays flagged until EndIncident; then
// it relearns and the new regime is NORMAL.
TEST(StickinessTest, WorseRegimeStaysFlaggedUntilEndIncident) {
  RunAnalyzer a(Defaults());
  Trainer r(21);
  Warm(a, r);
  for (int i = 0; i < 10; ++i) {
    a.Observe(r.Next(-0.6, 4.0, 2.5));  // the incident
  }
  const v1::HealthState incident = a.verdict().state();
  ASSERT_NE(incident, v1::NORMAL) << a.verdict().reason();
  // Settles: entropy and grad norm back, the loss 30% above its old level.
  for (int i = 0; i < 200; ++i) {
    a.Observe(r.Next(0, 1, 1.3));
    ASSERT_EQ(a.verdict().state(), incident) << "step " << i << ": " << a.verdict().reason();
  }
  EXPECT_TRUE(a.frozen());
  EXPECT_NE(a.verdict().reason().find("pre-incident band"), std::string::npos)
      << a.verdict().reason();

  a.EndIncident("new data mix, expected");
  EXPECT_EQ(a.verdict().state(), v1::NORMAL);
  EXPECT_TRUE(a.ActiveAnomalies().empty());
  EXPECT_FALSE(a.frozen());
  EXPECT_NE(a.verdict().reason().find("new data mix"), std::string::npos);
  for (int i = 0; i < 200; ++i) {
    a.Observe(r.Next(0, 1, 1.3));
    ASSERT_EQ(a.verdict().state(), v1::NORMAL) << "step " << i << ": " << a.verdict().reason();
    ASSERT_TRUE(a.ActiveAnomalies().empty()) << a.ActiveAnomalies().front().reason();
  }
}

TEST(StickinessTest, RecoveryInsideTheBandLeavesAfterExitSteps) {
  RunAnalyzer a(Defaults());
  Trainer r(22);
  Warm(a, r);
  for (int i = 0; i < 10; ++i) {
    a.Observe(r.Next(-0.6, 4.0, 2.5));
  }
  ASSERT_NE(a.verdict().state(), v1::NORMAL);
  int steps = 0;
  while (a.verdict().state() != v1::NORMAL && steps < 50) {
    a.Observe(r.Next());
    ++steps;
  }
  EXPECT_EQ(a.verdict().state(), v1::NORMAL);
  EXPECT_LE(steps, config::AnalysisThresholds{}.states.exit_steps + 3);
}

TEST(StickinessTest, RelearnStepsAcceptsTheRegime) {
  RunThresholds t = Defaults();
  t.values.incidents.relearn_steps = 40;
  RunAnalyzer a(t);
  Trainer r(23);
  Warm(a, r);
  for (int i = 0; i < 10; ++i) {
    a.Observe(r.Next(-0.6, 4.0, 2.5));
  }
  ASSERT_NE(a.verdict().state(), v1::NORMAL);
  int steps = 10;
  while (a.verdict().state() != v1::NORMAL && steps < 200) {
    a.Observe(r.Next(0, 1, 1.3));
    ++steps;
  }
  EXPECT_EQ(a.verdict().state(), v1::NORMAL);
  // relearn_steps frozen steps, counted from the state's entry (within the
  // first 10 steps).
  EXPECT_GE(steps, 40);
  EXPECT_LE(steps, 50);
  EXPECT_NE(a.verdict().reason().find("relearn_steps"), std::string::npos) << a.verdict().reason();
}

}  // namespace
}  // namespace entrowatch::analysis
