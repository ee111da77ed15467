#include "config/analysis_config.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "config/config.h"
#include "gtest/gtest.h"

namespace entrowatch::config {
namespace {

std::string Describe(const DetectorCommon& c) {
  return absl::StrCat(c.enabled, "/", static_cast<int>(c.severity), "/", c.for_steps, "/",
                      c.clear_steps);
}

// Every field, so two threshold sets compare equal only when all agree.
std::string Describe(const AnalysisThresholds& t) {
  const auto& s = t.states;
  return absl::StrCat(
      t.warmup_steps, " ", t.half_life_steps, " ", t.winsorize_z, " ", t.min_relative_sigma, " | ",
      s.enter_steps, " ", s.exit_steps, " ", s.smoothing_steps, " ", s.entropy_z, " ",
      s.grad_norm_z, " ", s.joint_z, " ", s.confirm_z, " ", s.low_normalized_entropy, " ",
      s.high_normalized_entropy, " | ", Describe(t.entropy_collapse.common), " ",
      t.entropy_collapse.normalized_floor, " ", t.entropy_collapse.relative_drop, " ",
      t.entropy_collapse.window_steps, " ", t.entropy_collapse.attention_floor_nats, " ",
      t.entropy_collapse.attention_head_fraction, " | ", Describe(t.entropic_overload.common), " ",
      t.entropic_overload.normalized_ceiling, " ", t.entropic_overload.p10_normalized_ceiling, " ",
      t.entropic_overload.z, " | ", Describe(t.attention_locking.common), " ",
      t.attention_locking.window_steps, " ", t.attention_locking.epsilon_nats, " | ",
      Describe(t.entropy_drift.common), " ", t.entropy_drift.delta, " ", t.entropy_drift.lambda,
      " ", t.entropy_drift.clip_z, " ", static_cast<int>(t.entropy_drift.train), " ",
      static_cast<int>(t.entropy_drift.eval), " ", static_cast<int>(t.entropy_drift.rollout), " | ",
      Describe(t.head_redundancy.common), " ", t.head_redundancy.max_relative_std, " | ",
      Describe(t.flat_layer_profile.common), " ", t.flat_layer_profile.min_layers, " ",
      t.flat_layer_profile.max_relative_spread, " | ", Describe(t.generated_entropy_spike.common),
      " ", t.generated_entropy_spike.z, " ", t.generated_entropy_spike.min_increase_nats, " ",
      t.generated_entropy_spike.min_tokens, " | ", s.lr_collapse_ratio, " ",
      t.entropy_collapse.attention_relative_drop, " | ", t.incidents.relearn_steps, " ",
      t.incidents.loss_band_z, " | ", Describe(t.non_finite.common), " | ",
      Describe(t.grad_norm_spike.common), " ", t.grad_norm_spike.z, " ",
      t.grad_norm_spike.min_ratio, " ", t.grad_norm_spike.escalate_steps, " | ",
      Describe(t.loss_spike.common), " ", t.loss_spike.factor, " ", t.loss_spike.z, " ",
      t.loss_spike.escalate_steps, " | ", Describe(t.attention_logit_growth.common), " ",
      t.attention_logit_growth.growth_factor, " ", t.attention_logit_growth.window_steps, " ",
      t.attention_logit_growth.min_logit, " | ", Describe(t.reward_hacking.common), " ",
      t.reward_hacking.reward_signal, " ", t.reward_hacking.window_steps, " ",
      t.reward_hacking.min_reward_rise, " ", t.reward_hacking.entropy_drop, " | ",
      Describe(t.kl_explosion.common), " ", t.kl_explosion.signal, " ", t.kl_explosion.z, " ",
      t.kl_explosion.min_value, " | ", Describe(t.rank_outlier.common), " ", t.rank_outlier.z, " ",
      t.rank_outlier.escalate_steps);
}

TEST(AnalysisConfigTest, ShippedYamlDocumentsExactlyTheDefaults) {
  auto c = LoadConfigFile(ENTROWATCH_CONFIG_FILE);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(Describe(c->analysis.base), Describe(AnalysisThresholds{}));
  EXPECT_TRUE(c->analysis.overrides.empty());
  EXPECT_TRUE(c->analysis.rules.empty());
}

TEST(AnalysisConfigTest, ParsesRulesIncidentsAndTheNewDetectors) {
  auto c = ParseConfig(R"(
analysis:
  incidents: {relearn_steps: 0, loss_band_z: 2}
  detectors:
    grad_norm_spike: {z: 5, min_ratio: 3, escalate_steps: 2}
    kl_explosion: {signal: "actor/ppo_kl"}
    reward_hacking: {reward_signal: "critic/rewards/mean", window_steps: 8}
  rules:
    - name: clip-high
      signal: clip_fraction
      bound: 0.3
      for_steps: 5
      severity: info
    - name: length-drop
      signal: response_length
      direction: below
      z: 4
  overrides:
    - run: "rl-*"
      incidents: {relearn_steps: 50}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& t = c->analysis.base;
  EXPECT_EQ(t.incidents.relearn_steps, 0);
  EXPECT_DOUBLE_EQ(t.incidents.loss_band_z, 2);
  EXPECT_DOUBLE_EQ(t.grad_norm_spike.z, 5);
  EXPECT_DOUBLE_EQ(t.grad_norm_spike.min_ratio, 3);
  EXPECT_EQ(t.grad_norm_spike.escalate_steps, 2);
  EXPECT_EQ(t.kl_explosion.signal, "actor/ppo_kl");
  EXPECT_EQ(t.reward_hacking.reward_signal, "critic/rewards/mean");
  EXPECT_EQ(t.reward_hacking.window_steps, 8);
  ASSERT_EQ(c->analysis.rules.size(), 2u);
  const SignalRule& clip = c->analysis.rules[0];
  EXPECT_EQ(clip.name, "clip-high");
  EXPECT_TRUE(clip.above);
  EXPECT_TRUE(clip.has_bound);
  EXPECT_FALSE(clip.has_z);
  EXPECT_DOUBLE_EQ(clip.bound, 0.3);
  EXPECT_EQ(clip.common.for_steps, 5);
  EXPECT_EQ(clip.common.severity, AnomalySeverity::kInfo);
  const SignalRule& length = c->analysis.rules[1];
  EXPECT_FALSE(length.above);
  EXPECT_TRUE(length.has_z);
  EXPECT_DOUBLE_EQ(length.z, 4);
  ASSERT_EQ(c->analysis.overrides.size(), 1u);
  EXPECT_EQ(c->analysis.overrides[0].thresholds.incidents.relearn_steps, 50);
  EXPECT_DOUBLE_EQ(c->analysis.overrides[0].thresholds.incidents.loss_band_z, 2);
}

TEST(AnalysisConfigTest, ParsesEveryKindOfValue) {
  auto c = ParseConfig(R"(
analysis:
  baseline: {warmup_steps: 20, half_life_steps: 12.5}
  states: {enter_steps: 2, low_normalized_entropy: 0.2}
  detectors:
    entropy_drift: {severity: critical, train: both, eval: none, rollout: down}
    head_redundancy: {enabled: false}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto& t = c->analysis.base;
  EXPECT_EQ(t.warmup_steps, 20);
  EXPECT_DOUBLE_EQ(t.half_life_steps, 12.5);
  EXPECT_EQ(t.states.enter_steps, 2);
  EXPECT_DOUBLE_EQ(t.states.low_normalized_entropy, 0.2);
  EXPECT_EQ(t.entropy_drift.common.severity, AnomalySeverity::kCritical);
  EXPECT_EQ(t.entropy_drift.train, DriftDirection::kBoth);
  EXPECT_EQ(t.entropy_drift.eval, DriftDirection::kNone);
  EXPECT_EQ(t.entropy_drift.rollout, DriftDirection::kDown);
  EXPECT_FALSE(t.head_redundancy.common.enabled);
  EXPECT_EQ(t.states.exit_steps, AnalysisThresholds{}.states.exit_steps);
}

TEST(AnalysisConfigTest, OverridesStartFromTheWholeBaseWhateverTheKeyOrder) {
  auto c = ParseConfig(R"(
analysis:
  overrides:
    - run: "rl-*"
      detectors:
        entropy_drift: {train: both}
    - run: "sweep-??"
      baseline: {warmup_steps: 5}
  baseline: {warmup_steps: 80}
  detectors:
    entropy_collapse: {normalized_floor: 0.02}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->analysis.overrides.size(), 2u);
  const auto& rl = c->analysis.overrides[0];
  EXPECT_EQ(rl.run_glob, "rl-*");
  EXPECT_EQ(rl.thresholds.entropy_drift.train, DriftDirection::kBoth);
  EXPECT_EQ(rl.thresholds.warmup_steps, 80);
  EXPECT_DOUBLE_EQ(rl.thresholds.entropy_collapse.normalized_floor, 0.02);
  const auto& sweep = c->analysis.overrides[1];
  EXPECT_EQ(sweep.thresholds.warmup_steps, 5);
  EXPECT_EQ(sweep.thresholds.entropy_drift.train, DriftDirection::kUp);
}

struct BadCase {
  std::string yaml;
  std::string expected;  // a substring of the error: key path and line
};

class AnalysisConfigErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(AnalysisConfigErrorTest, NamesKeyAndLine) {
  auto c = ParseConfig(GetParam().yaml, "test.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(c.status().message()).find(GetParam().expected), std::string::npos)
      << c.status();
}

INSTANTIATE_TEST_SUITE_P(
    Errors, AnalysisConfigErrorTest,
    ::testing::Values(
        BadCase{"analysis:\n  baseline:\n    warmup_step: 3\n",
                "unknown key 'analysis.baseline.warmup_step' (line 3)"},
        BadCase{"analysis:\n  baseline:\n    half_life_steps: 0\n",
                "analysis.baseline.half_life_steps (line 3): expected a value in [1, 1e+06]"},
        BadCase{"analysis:\n  states:\n    entropy_z: lots\n",
                "analysis.states.entropy_z (line 3): expected a number"},
        BadCase{"analysis:\n  states:\n    low_normalized_entropy: 0.5\n"
                "    high_normalized_entropy: 0.4\n",
                "analysis.states.high_normalized_entropy (line 4): expected a value above"},
        BadCase{"analysis:\n  detectors:\n    entropy_drift:\n      severity: loud\n",
                "analysis.detectors.entropy_drift.severity (line 4): expected info, warning or "
                "critical"},
        BadCase{"analysis:\n  detectors:\n    entropy_drift:\n      eval: sideways\n",
                "analysis.detectors.entropy_drift.eval (line 4): expected none, up, down or both"},
        BadCase{"analysis:\n  detectors:\n    entropic_overload:\n      for_steps: 0\n",
                "analysis.detectors.entropic_overload.for_steps (line 4)"},
        BadCase{"analysis:\n  detectors:\n    no_such_detector: {}\n",
                "unknown key 'analysis.detectors.no_such_detector' (line 3)"},
        BadCase{"analysis:\n  overrides:\n    - detectors: {}\n",
                "analysis.overrides[0].run (line 3): expected a non-empty run-id glob"},
        BadCase{"analysis:\n  overrides:\n    - run: x\n      overrides: []\n",
                "unknown key 'analysis.overrides[0].overrides' (line 4)"},
        BadCase{"analysis:\n  overrides:\n    - run: x\n      states: {exit_steps: -1}\n",
                "analysis.overrides[0].states.exit_steps (line 4)"},
        BadCase{"analysis:\n  incidents:\n    relearn_steps: -5\n",
                "analysis.incidents.relearn_steps (line 3): expected a value in [0, 100000000]"},
        BadCase{"analysis:\n  detectors:\n    grad_norm_spike:\n      min_ratio: 0.5\n",
                "analysis.detectors.grad_norm_spike.min_ratio (line 4): expected a value in"},
        BadCase{"analysis:\n  detectors:\n    kl_explosion:\n      signal: \"k l\"\n",
                "analysis.detectors.kl_explosion.signal (line 4): expected a named-scalar name"},
        BadCase{"analysis:\n  rules:\n    - signal: kl\n      bound: 1\n",
                "analysis.rules[0].name (line 3): expected a rule name"},
        BadCase{"analysis:\n  rules:\n    - name: r\n      signal: kl\n",
                "analysis.rules[0].signal (line 4): expected a rule with a bound"},
        BadCase{"analysis:\n  rules:\n    - name: r\n      signal: kl\n      bound: 1\n"
                "      direction: sideways\n",
                "analysis.rules[0].direction (line 6): expected above or below"},
        BadCase{"analysis:\n  rules:\n    - name: r\n      signal: kl\n      bound: 1\n"
                "    - name: r\n      signal: kl\n      z: 3\n",
                "analysis.rules[1].name (line 6): rule name 'r' is used twice"},
        BadCase{"analysis:\n  rules:\n    - name: r\n      signal: kl\n      z: 3\n"
                "      window: 4\n",
                "unknown key 'analysis.rules[0].window' (line 6)"}));

}  // namespace
}  // namespace entrowatch::config
