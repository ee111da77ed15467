#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "config/yaml_reader.h"

namespace entrowatch::config {

// Severity names as in entrowatch.v1.Severity (kept as a plain enum so the
// config library does not depend on the wire API).
enum class AnomalySeverity { kInfo, kWarning, kCritical };

// Which direction of a slow trend ENTROPY_DRIFT reports for one phase.
enum class DriftDirection { kNone, kUp, kDown, kBoth };

// Settings every anomaly detector shares.
struct DetectorCommon {
  bool enabled = true;
  AnomalySeverity severity = AnomalySeverity::kWarning;
  int for_steps = 3;    // condition true this many consecutive steps before firing
  int clear_steps = 5;  // condition false this many consecutive steps before clearing
};

// Every threshold of the health analysis. docs/detectors.md explains each one;
// config/entrowatch.yaml documents the defaults below.
struct AnalysisThresholds {
  // Baselines: exponentially weighted mean and variance per run, phase and signal.
  int warmup_steps = 50;        // steps with a signal before it is judged
  double half_life_steps = 50;  // weight of a step halves after this many steps
  double winsorize_z = 4;       // a step moves the baseline as if at most this many sigmas away
  double min_relative_sigma = 0.02;  // sigma floor, relative to |mean| (noise-free signals)

  // The health state machine (TRAIN and ROLLOUT steps).
  struct States {
    int enter_steps = 3;  // consecutive steps a candidate state needs before it is entered
    int exit_steps = 5;   // consecutive steps away from a state before it is left
    // Levels are judged on the median of the last this many steps, so a
    // single-step spike never moves a level.
    int smoothing_steps = 3;
    double entropy_z = 3;    // |z| of the step's mean token entropy for LOW / HIGH
    double grad_norm_z = 3;  // |z| of log(grad norm) for LOW / HIGH
    // When hypot(entropy z, grad z) >= joint_z, each signal needs only
    // |z| >= confirm_z to take a side (strong joint evidence).
    double joint_z = 4.5;
    double confirm_z = 1;
    // Absolute bounds on normalized entropy (H / log V): they override the
    // z-score, so a run that drifted slowly to near-zero entropy is still LOW.
    double low_normalized_entropy = 0.1;
    double high_normalized_entropy = 0.95;
    // A reported learning rate at or below this fraction of its baseline,
    // with entropy not falling and no high grad norm, is STAGNATION: the
    // model barely updates (0 disables).
    double lr_collapse_ratio = 0.01;
  } states;

  struct EntropyCollapse {
    DetectorCommon common{true, AnomalySeverity::kCritical, 3, 5};
    double normalized_floor = 0.05;         // normalized token entropy at or below: collapsed
    double relative_drop = 0.6;             // or a drop of this fraction of the baseline...
    int window_steps = 20;                  // ...within this many steps
    double attention_floor_nats = 0.05;     // a head at or below is near one-hot
    double attention_head_fraction = 0.75;  // fraction of a layer's heads near one-hot
    // Or a layer's mean attention entropy fell by this fraction of its
    // baseline of window_steps steps ago.
    double attention_relative_drop = 0.5;
  } entropy_collapse;

  struct EntropicOverload {
    DetectorCommon common{true, AnomalySeverity::kWarning, 10, 5};
    double normalized_ceiling = 0.9;       // normalized mean token entropy at or above
    double p10_normalized_ceiling = 0.75;  // and its 10th percentile (uniformly high)
    double z = 6;  // or the step mean this many baseline sigmas above the baseline
  } entropic_overload;

  struct AttentionLocking {
    DetectorCommon common{true, AnomalySeverity::kWarning, 1, 5};
    int window_steps = 20;       // rolling window of per-head entropies
    double epsilon_nats = 1e-4;  // rolling standard deviation below: frozen
  } attention_locking;

  struct EntropyDrift {
    DetectorCommon common{true, AnomalySeverity::kWarning, 1, 20};
    double delta = 0.5;  // Page-Hinkley tolerance per step, in baseline sigmas
    double lambda = 25;  // Page-Hinkley alarm threshold, in baseline sigmas
    double clip_z = 3;   // one step contributes at most this much: a spike is not a drift
    DriftDirection train = DriftDirection::kUp;
    DriftDirection eval = DriftDirection::kBoth;
    DriftDirection rollout = DriftDirection::kBoth;
  } entropy_drift;

  struct HeadRedundancy {
    DetectorCommon common{true, AnomalySeverity::kInfo, 20, 5};
    double max_relative_std = 0.002;  // std of head entropies / their mean, at or below
  } head_redundancy;

  struct FlatLayerProfile {
    DetectorCommon common{true, AnomalySeverity::kInfo, 20, 5};
    int min_layers = 3;                  // profiles with fewer layers are not judged
    double max_relative_spread = 0.005;  // (max - min) / mean of layer entropies, at or below
  } flat_layer_profile;

  struct GeneratedEntropySpike {
    DetectorCommon common{true, AnomalySeverity::kWarning, 1, 3};
    double z = 4;                    // z of the generated-token mean entropy (ROLLOUT)
    double min_increase_nats = 0.1;  // and at least this far above the baseline
    int min_tokens = 8;              // steps with fewer generated tokens are not judged
  } generated_entropy_spike;

  // Incidents: while a state other than NORMAL or a warning/critical anomaly
  // is active the baselines stop learning; the run leaves a state only back
  // inside the pre-incident band.
  struct Incidents {
    // Consecutive frozen steps after which the current regime is accepted
    // (the baselines are rebased as by EndIncident); 0: only EndIncident.
    int relearn_steps = 1000;
    // Leaving a state also needs the median loss of the last smoothing_steps
    // steps at most this many pre-incident sigmas above the loss baseline.
    double loss_band_z = 3;
  } incidents;

  // Non-finite loss or grad norm: fires at the first such step.
  struct NonFinite {
    DetectorCommon common{true, AnomalySeverity::kCritical, 1, 3};
  } non_finite;

  // Single-step extremes: they fire at the first offending step as info and
  // take their configured severity once the evidence persists for
  // escalate_steps consecutive steps.
  struct GradNormSpike {
    DetectorCommon common{true, AnomalySeverity::kWarning, 1, 3};
    double z = 3.5;          // z of log(grad norm) against the (frozen) baseline
    double min_ratio = 2;    // and at least this many times the baseline's grad norm
    int escalate_steps = 3;  // consecutive offending steps before the configured severity
  } grad_norm_spike;

  struct LossSpike {
    DetectorCommon common{true, AnomalySeverity::kWarning, 1, 3};
    double factor = 1.5;  // loss at or above factor x its (frozen) baseline mean
    double z = 4;         // and at least this many baseline sigmas above it
    int escalate_steps = 3;
  } loss_spike;

  struct AttentionLogitGrowth {
    DetectorCommon common{true, AnomalySeverity::kWarning, 3, 5};
    double growth_factor = 2;  // max logit at or above this x its value window_steps ago
    int window_steps = 20;
    double min_logit = 20;  // and at least this large (smaller logits grow while learning)
  } attention_logit_growth;

  // ROLLOUT: the reward signal rose while generated-token entropy fell.
  struct RewardHacking {
    DetectorCommon common{true, AnomalySeverity::kWarning, 1, 5};
    std::string reward_signal = "reward";  // named scalar
    int window_steps = 10;                 // compared with this many steps earlier
    double min_reward_rise = 0.05;         // reward up by at least this (absolute)
    double entropy_drop = 0.4;             // generated entropy down by this fraction
  } reward_hacking;

  // A named scalar (KL to the reference policy) far above its baseline.
  struct KlExplosion {
    DetectorCommon common{true, AnomalySeverity::kWarning, 2, 5};
    std::string signal = "kl";
    double z = 6;             // z of log(kl) against its (frozen) baseline
    double min_value = 0.01;  // values below are never explosive
  } kl_explosion;

  // One rank's entropy, loss or grad norm a robust outlier against the others.
  struct RankOutlier {
    DetectorCommon common{true, AnomalySeverity::kWarning, 1, 5};
    double z = 6;            // robust z against the ranks' median and the usual spread
    int escalate_steps = 5;  // info until the rank stayed out this many steps
  } rank_outlier;
};

// A YAML rule on a named scalar (`analysis.rules`), raising SIGNAL_RULE with
// the rule name as subject.
struct SignalRule {
  std::string name;
  std::string signal;
  bool above = true;  // direction: above (true) or below
  bool has_bound = false;
  double bound = 0;  // absolute bound
  bool has_z = false;
  double z = 0;  // z against the signal's baseline (after warm-up)
  DetectorCommon common{true, AnomalySeverity::kWarning, 3, 5};
};

// A per-run override: the first entry whose glob matches a run id applies.
struct AnalysisOverride {
  std::string run_glob;           // fnmatch(3) pattern on the run id
  AnalysisThresholds thresholds;  // the base with the override's keys applied
};

// Thresholds of the health analysis (the `analysis:` section).
struct AnalysisConfig {
  AnalysisThresholds base;
  std::vector<SignalRule> rules;
  std::vector<AnalysisOverride> overrides;
};

// Whether name is a valid named-scalar name: 1-128 characters from
// A-Z a-z 0-9 _ . / : - (as in entrowatch.v1.Scalars.values).
bool ValidSignalName(absl::string_view name);

// Parses the `analysis:` mapping into *out (which holds the defaults on entry).
// Errors name the key, its line and what was expected.
absl::Status ParseAnalysisConfig(YamlMap& node, AnalysisConfig* out);

}  // namespace entrowatch::config
