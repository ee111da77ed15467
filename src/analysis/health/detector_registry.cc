#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis {
namespace {

namespace v1 = ::entrowatch::v1;

// Subjects named in one reason; the rest are counted.
constexpr size_t kMaxNamedSubjects = 4;

}  // namespace

// The registration table. Order matters only for the order of evaluation
// within a step (each detector has its own tracks).
std::vector<std::unique_ptr<Detector>> MakeDetectors() {
  using Factory = std::unique_ptr<Detector> (*)();
  static constexpr Factory kTable[] = {
      detectors::NewTokenCollapse,    detectors::NewAttentionCollapse,
      detectors::NewEntropicOverload, detectors::NewEntropyDrift,
      detectors::NewAttentionLocking, detectors::NewHeadRedundancy,
      detectors::NewFlatLayerProfile, detectors::NewGeneratedEntropySpike,
      detectors::NewNonFinite,        detectors::NewGradNormSpike,
      detectors::NewLossSpike,        detectors::NewAttentionLogitGrowth,
      detectors::NewRewardHacking,    detectors::NewKlExplosion,
      detectors::NewRankOutlier,      detectors::NewSignalRules,
  };
  std::vector<std::unique_ptr<Detector>> out;
  for (Factory f : kTable) {
    out.push_back(f());
  }
  return out;
}

int PhaseIndexOf(v1::Phase phase) {
  switch (phase) {
    case v1::EVAL:
      return kEvalPhase;
    case v1::ROLLOUT:
      return kRolloutPhase;
    default:
      return kTrainPhase;
  }
}

const char* PhaseIndexName(int index) {
  static constexpr const char* kNames[] = {"TRAIN", "EVAL", "ROLLOUT"};
  return kNames[index];
}

std::string FormatNumber(double v) { return absl::StrFormat("%.4g", v); }

v1::Evidence MakeEvidence(absl::string_view signal, double value, double threshold,
                          absl::string_view comparison) {
  v1::Evidence e;
  e.set_signal(std::string(signal));
  e.set_value(value);
  e.set_threshold(threshold);
  e.set_comparison(std::string(comparison));
  return e;
}

// The aggregator leaves normalized entropy 0 when the vocabulary was
// unknown, which cannot be told from a true zero unless the raw entropy is
// zero too.
bool NormalizedEntropy(const v1::StepSummary& step, double* out) {
  if (step.normalized_entropy_mean() > 0 || step.entropy_mean() <= 0) {
    *out = step.normalized_entropy_mean();
    return true;
  }
  return false;
}

bool UsableGradNorm(const v1::StepSummary& step) {
  return step.has_grad_norm() && step.grad_norm() > 0 && std::isfinite(step.grad_norm());
}

bool UsableLoss(const v1::StepSummary& step) {
  return step.has_loss() && std::isfinite(step.loss());
}

std::string NameSubjects(const std::vector<std::string>& subjects) {
  if (subjects.size() <= kMaxNamedSubjects) {
    return absl::StrJoin(subjects, ", ");
  }
  std::vector<std::string> named(subjects.begin(), subjects.begin() + kMaxNamedSubjects);
  return absl::StrCat(absl::StrJoin(named, ", "), " and ", subjects.size() - kMaxNamedSubjects,
                      " more");
}

double Median(std::vector<double> values) {
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  if (values.size() % 2 == 1) {
    return values[mid];
  }
  const double upper = values[mid];
  return (upper + *std::max_element(values.begin(), values.begin() + mid)) / 2;
}

}  // namespace entrowatch::analysis
