#pragma once

// Health analysis of one training run: baselines, the entropy x grad-norm
// state machine and the anomaly detectors. docs/detectors.md gives the maths,
// the defaults and the mitigations.

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "analysis/health/baseline.h"
#include "analysis/health/detector.h"
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
// calls it under the run's lock. No threads, no I/O.
//
// Incidents are sticky: while a state other than NORMAL, a warning or
// critical anomaly, or extreme single-step evidence is active, the baselines
// stop learning, so the run is judged against its pre-incident self; a state
// is left only when the signals (and the loss) are back inside the
// pre-incident band for exit_steps steps. The new regime is accepted by
// EndIncident or after incidents.relearn_steps frozen steps.
class RunAnalyzer {
 public:
  explicit RunAnalyzer(RunThresholds thresholds, std::vector<config::SignalRule> rules = {});
  RunAnalyzer(const RunAnalyzer&) = delete;
  RunAnalyzer& operator=(const RunAnalyzer&) = delete;

  // One call per finalized step, in finalization order (steps increase).
  // Runs every registered detector, then the state machine (TRAIN and
  // ROLLOUT steps; EVAL steps do not move the state), then updates the
  // baselines of the step's phase unless they are frozen. A step without
  // token entropies (token_count 0) leaves the token baselines and the state
  // machine untouched; its grad norm and attention still count.
  void Observe(const entrowatch::v1::StepSummary& step);

  // Accepts the current regime now: active anomalies end, the state returns
  // to NORMAL and every baseline relearns from the next step (z-score
  // judgements wait for a new warm-up; floors keep judging).
  void EndIncident(absl::string_view reason);

  // The current verdict: state, the last observed step, the step the state
  // began, the reason, the evidence and the recommended action.
  const entrowatch::v1::Verdict& verdict() const { return verdict_; }

  // Anomalies active after the last Observe, ordered by pattern then subject
  // (each with since_step, severity, evidence and recommended action).
  std::vector<entrowatch::v1::Anomaly> ActiveAnomalies() const;

  // Anomalies that became active during the last Observe (for
  // entrowatch_anomalies_total).
  std::vector<entrowatch::v1::Anomaly> NewlyFired() const;

  // Whether the baselines are frozen by an active incident.
  bool frozen() const { return frozen_; }

  // SIGHUP reload: new thresholds and rules apply from the next Observe;
  // baselines, the current state and detector state are kept.
  void UpdateThresholds(RunThresholds thresholds, std::vector<config::SignalRule> rules = {});

  const RunThresholds& thresholds() const { return thresholds_; }

 private:
  // The last states.smoothing_steps steps the state machine judged.
  struct Recent {
    double entropy = 0;
    double normalized = -1;  // < 0: vocabulary unknown
    double log_grad = 0;
    bool has_grad = false;
    double loss = 0;
    bool has_loss = false;
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
    // The median loss is within the pre-incident band (or unknown).
    bool loss_in_band = true;
    std::string loss_text;
    // Entropy, grad norm and loss all inside the pre-incident band: the
    // only steps that count towards leaving a state.
    bool in_band = true;
    std::string band_text;  // what is outside the band
    // The grad level came from this step's extreme value, not the median.
    bool used_extreme = false;
    // This step's own values (not their median) are outside the band.
    bool raw_out = false;
  };

  static Candidate NormalBecause(std::string reason);
  BaselineParams Params() const;
  Candidate Classify(const entrowatch::v1::StepSummary& step, int phase, bool grad_extreme) const;
  void AdvanceState(const entrowatch::v1::StepSummary& step, Candidate candidate);
  void Apply(entrowatch::v1::Pattern pattern, const config::DetectorCommon& common, uint64_t step,
             Finding finding);
  void Rebase(const std::string& why);
  bool IncidentActive() const;

  RunThresholds thresholds_;
  std::vector<config::SignalRule> rules_;
  std::vector<std::unique_ptr<Detector>> detectors_;
  std::array<PhaseBaselines, 3> baselines_;
  std::array<std::deque<Recent>, 3> recent_;
  int64_t steps_observed_ = 0;
  bool frozen_ = false;
  int64_t frozen_steps_ = 0;

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
