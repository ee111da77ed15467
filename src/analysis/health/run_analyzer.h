#pragma once

// Health analysis of one training run: baselines, the entropy x grad-norm
// state machine and the anomaly detectors. docs/detectors.md gives the maths,
// the defaults and the mitigations.

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "analysis/health/baseline.h"
#include "config/analysis_config.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::analysis {

// Thresholds resolved for one run (base config + the first matching run-id
// glob override).
struct RunThresholds {
  std::string matched_glob;  // the override that applied; "" for the base
  config::AnalysisThresholds values;
};

// Returns the base thresholds with the first override whose glob (fnmatch(3))
// matches run_id applied. Thread-safe (pure).
RunThresholds ResolveThresholds(const config::AnalysisConfig& cfg, absl::string_view run_id);

// Health state and anomaly detection of one run. Not thread-safe: the daemon
// calls it under the run's lock. Copyable value state, no threads, no I/O.
class RunAnalyzer {
 public:
  explicit RunAnalyzer(RunThresholds thresholds);

  // One call per finalized step, in finalization order (steps increase).
  // Updates the baselines of the step's phase, the state machine (TRAIN and
  // ROLLOUT steps; EVAL steps do not move the state) and every detector. A
  // step without token entropies (token_count 0) leaves the token baselines
  // and the state machine untouched; its grad norm and attention still count.
  void Observe(const entrowatch::v1::StepSummary& step);

  // The current verdict: state, the last observed step, the step the state
  // began, the reason, the evidence and the recommended action.
  const entrowatch::v1::Verdict& verdict() const { return verdict_; }

  // Anomalies active after the last Observe, ordered by pattern then subject
  // (each with since_step, evidence and recommended action).
  std::vector<entrowatch::v1::Anomaly> ActiveAnomalies() const;

  // Anomalies that became active during the last Observe (for
  // entrowatch_anomalies_total).
  std::vector<entrowatch::v1::Anomaly> NewlyFired() const;

  // SIGHUP reload: new thresholds apply from the next Observe; baselines,
  // the current state and detector state are kept.
  void UpdateThresholds(RunThresholds thresholds);

  const RunThresholds& thresholds() const { return thresholds_; }

 private:
  // Per-phase signal baselines and trend state (TRAIN, EVAL, ROLLOUT).
  struct PhaseState {
    EwBaseline entropy;                           // step mean token entropy (nats)
    EwBaseline log_grad_norm;                     // log of the global grad norm
    EwBaseline generated;                         // mean entropy of generated tokens
    std::deque<double> entropy_baseline_history;  // baseline mean after each step
    // The last states.smoothing_steps steps the state machine judged.
    struct Recent {
      double entropy = 0;
      double normalized = -1;  // < 0: vocabulary unknown
      double log_grad = 0;
      bool has_grad = false;
    };
    std::deque<Recent> recent;
    // Page-Hinkley state on the step mean entropy.
    int64_t drift_count = 0;
    double drift_mean = 0;
    double drift_up = 0;
    double drift_up_min = 0;
    double drift_down = 0;
    double drift_down_min = 0;
  };

  // Outcome of one detector on one step.
  enum class Outcome { kSkip, kFalse, kTrue };
  struct Finding {
    Outcome outcome = Outcome::kSkip;
    std::string reason;
    std::vector<entrowatch::v1::Evidence> evidence;
  };

  // Debounced on/off state of one (pattern, subject).
  struct Track {
    int true_streak = 0;
    int false_streak = 0;
    uint64_t streak_start = 0;
    bool active = false;
    entrowatch::v1::Anomaly anomaly;
  };

  // Candidate state of one step and why.
  struct Candidate {
    entrowatch::v1::HealthState state = entrowatch::v1::NORMAL;
    std::string reason;
    std::vector<entrowatch::v1::Evidence> evidence;
  };

  BaselineParams Params() const;
  Candidate Classify(const entrowatch::v1::StepSummary& step, const PhaseState& phase) const;
  void AdvanceState(const entrowatch::v1::StepSummary& step, Candidate candidate);

  Finding TokenCollapse(const entrowatch::v1::StepSummary& step, const PhaseState& phase) const;
  Finding AttentionCollapse(const entrowatch::v1::StepSummary& step) const;
  Finding Overload(const entrowatch::v1::StepSummary& step, const PhaseState& phase) const;
  Finding Drift(const entrowatch::v1::StepSummary& step, PhaseState& phase);
  Finding Locking(const entrowatch::v1::StepSummary& step);
  Finding HeadRedundancy(const entrowatch::v1::StepSummary& step) const;
  Finding FlatProfile(const entrowatch::v1::StepSummary& step) const;
  Finding GeneratedSpike(const entrowatch::v1::StepSummary& step, const PhaseState& phase) const;

  void Apply(entrowatch::v1::Pattern pattern, const std::string& subject,
             const config::DetectorCommon& common, uint64_t step, Finding finding);

  RunThresholds thresholds_;
  std::array<PhaseState, 3> phases_;
  int64_t steps_observed_ = 0;
  // Rolling per-(layer, head) entropies for ATTENTION_LOCKING; head -1 is the
  // layer mean.
  std::map<std::pair<uint32_t, int>, std::deque<double>> attention_history_;

  entrowatch::v1::Verdict verdict_;
  // Hysteresis: the current run of identical candidates, the current run of
  // abnormal candidates (and their states, newest last), and the steps since
  // the candidate last matched the current state.
  entrowatch::v1::HealthState same_state_ = entrowatch::v1::NORMAL;
  int same_length_ = 0;
  uint64_t same_start_ = 0;
  std::deque<Candidate> abnormal_run_;
  uint64_t abnormal_start_ = 0;
  int away_length_ = 0;

  std::map<std::pair<entrowatch::v1::Pattern, std::string>, Track> tracks_;
  std::vector<entrowatch::v1::Anomaly> newly_fired_;
};

}  // namespace entrowatch::analysis
