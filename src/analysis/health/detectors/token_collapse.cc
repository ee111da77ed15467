// ENTROPY_COLLAPSE on token entropy: the normalized floor from the first step
// of every phase, the relative drop against the baseline of window_steps
// steps ago as soon as the phase has window_steps steps.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class TokenCollapse final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::ENTROPY_COLLAPSE; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.entropy_collapse.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const v1::StepSummary& step = ctx.step;
    if (step.token_count() == 0 || !std::isfinite(step.entropy_mean())) {
      return;
    }
    const auto& c = ctx.thresholds.entropy_collapse;
    Finding f;
    f.subject = absl::StrCat("token ", PhaseIndexName(ctx.phase));
    f.outcome = Outcome::kFalse;
    double normalized = 0;
    if (NormalizedEntropy(step, &normalized) && normalized <= c.normalized_floor) {
      f.outcome = Outcome::kTrue;
      f.reason = absl::StrCat("normalized token entropy ", FormatNumber(normalized), " <= floor ",
                              FormatNumber(c.normalized_floor));
      f.evidence.push_back(
          MakeEvidence("normalized_entropy_mean", normalized, c.normalized_floor, "<="));
      out->push_back(std::move(f));
      return;
    }
    const auto& history = ctx.baselines.entropy_baseline_history;
    // Not a z-score: the run against itself window_steps steps earlier, judged
    // as soon as that far back exists (RL runs collapse within the warm-up;
    // training from scratch drops at most about 40% within 20 steps).
    if (history.size() >= static_cast<size_t>(c.window_steps) && history.front() > 0) {
      const double reference = history.front();
      const double drop = (reference - step.entropy_mean()) / reference;
      if (drop >= c.relative_drop) {
        f.outcome = Outcome::kTrue;
        f.reason = absl::StrCat("token entropy ", FormatNumber(step.entropy_mean()), " nats is ",
                                FormatNumber(100 * drop), "% below the baseline of ",
                                history.size(), " steps ago (", FormatNumber(reference), " nats)");
        f.evidence.push_back(
            MakeEvidence("token_entropy_relative_drop", drop, c.relative_drop, ">="));
        f.evidence.push_back(
            MakeEvidence("token_entropy_mean_nats", step.entropy_mean(), reference, "baseline"));
      }
    }
    out->push_back(std::move(f));
  }
};

}  // namespace

std::unique_ptr<Detector> NewTokenCollapse() { return std::make_unique<TokenCollapse>(); }

}  // namespace entrowatch::analysis::detectors
