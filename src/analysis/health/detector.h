#pragma once

// The interface every anomaly detector implements, the per-phase baselines
// they read, and the one registration table (detector_registry.cc). A new
// detector touches its own file, the table, its config section and defaults,
// its entrowatch.v1.Pattern value and its docs/detectors.md entry.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "analysis/health/baseline.h"
#include "config/analysis_config.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::analysis {

enum PhaseIndex { kTrainPhase = 0, kEvalPhase = 1, kRolloutPhase = 2 };

int PhaseIndexOf(entrowatch::v1::Phase phase);
const char* PhaseIndexName(int index);

// Baselines of one phase (TRAIN, EVAL, ROLLOUT). They learn from every step
// except while an incident is active (frozen), so a detector comparing with
// them compares with the pre-incident run.
struct PhaseBaselines {
  EwBaseline entropy;                           // step mean token entropy (nats)
  EwBaseline log_grad_norm;                     // log of the global grad norm
  EwBaseline generated;                         // mean entropy of generated tokens
  EwBaseline loss;                              // step loss
  EwBaseline learning_rate;                     // reported learning rate (when > 0)
  std::deque<double> entropy_baseline_history;  // entropy baseline mean after each step
};

// What a detector sees of one finalized step.
struct StepContext {
  const entrowatch::v1::StepSummary& step;
  int phase = kTrainPhase;
  const PhaseBaselines& baselines;  // of the step's phase, before this step
  const config::AnalysisThresholds& thresholds;
  const std::vector<config::SignalRule>& rules;
  BaselineParams params;
  bool tokens_warm = false;     // the phase's token baseline is past warm-up
  bool attention_warm = false;  // the run is past warm_up steps
  bool frozen = false;          // an incident is active: learn nothing new
};

// Outcome of one detector on one subject for one step.
enum class Outcome { kSkip, kFalse, kTrue };

struct Finding {
  Outcome outcome = Outcome::kSkip;
  std::string subject;
  std::string reason;
  std::vector<entrowatch::v1::Evidence> evidence;
  // Severity of this step's evidence when the detector grades it (info for
  // an isolated extreme, escalating when it persists); unset: the configured
  // severity.
  std::optional<config::AnomalySeverity> severity;
  // Extreme single-step evidence that also freezes the baselines and enters
  // the state machine (a grad-norm spike, a non-finite value).
  bool extreme = false;
};

class Detector {
 public:
  virtual ~Detector() = default;

  virtual entrowatch::v1::Pattern pattern() const = 0;
  // The shared settings (enabled, severity, for_steps, clear_steps) of one
  // subject; rules have one per subject.
  virtual const config::DetectorCommon& common(const StepContext& ctx,
                                               absl::string_view subject) const = 0;
  // Judges one step: one finding per subject judged (none: skipped).
  virtual void Observe(const StepContext& ctx, std::vector<Finding>* out) = 0;
  // Forgets what the detector learned (EndIncident, relearn_steps).
  virtual void Rebase() {}
};

// The registration table: one fresh instance of every detector, in table
// order.
std::vector<std::unique_ptr<Detector>> MakeDetectors();

// Shared helpers of the detector files.
std::string FormatNumber(double v);
entrowatch::v1::Evidence MakeEvidence(absl::string_view signal, double value, double threshold,
                                      absl::string_view comparison);
// Normalized entropy of a step when the vocabulary was known.
bool NormalizedEntropy(const entrowatch::v1::StepSummary& step, double* out);
bool UsableGradNorm(const entrowatch::v1::StepSummary& step);
bool UsableLoss(const entrowatch::v1::StepSummary& step);
// Joins subjects, naming at most four and counting the rest.
std::string NameSubjects(const std::vector<std::string>& subjects);
// Median of a non-empty sample.
double Median(std::vector<double> values);

}  // namespace entrowatch::analysis
