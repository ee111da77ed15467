// LOSS_SPIKE: the step loss at least `factor` times its baseline mean (and
// `z` baseline sigmas above it), against a baseline that does not learn
// while the spike lasts. Info at the first offending step, the configured
// severity once it persisted escalate_steps consecutive steps.

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"
#include "analysis/health/detectors/spike_streak.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class LossSpike final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::LOSS_SPIKE; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.loss_spike.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.loss_spike;
    const EwBaseline& baseline = ctx.baselines.loss;
    // A ratio to the baseline means something only for a positive loss (a
    // policy-gradient loss changes sign).
    if (!UsableLoss(ctx.step) || !baseline.warm(ctx.params) || baseline.mean() <= 0) {
      return;
    }
    const double loss = ctx.step.loss();
    const double ratio = loss / baseline.mean();
    const double z = baseline.ZScore(loss, ctx.params);
    Finding f;
    f.subject = absl::StrCat("loss ", PhaseIndexName(ctx.phase));
    const bool offending = !(ratio < c.factor || z < c.z);
    const int streak = streak_.Judge(ctx.phase, offending, c.escalate_steps, c.common.severity, &f);
    if (streak == 0) {
      out->push_back(std::move(f));
      return;
    }
    f.reason =
        absl::StrCat("loss ", FormatNumber(loss), " is ", FormatNumber(ratio), "x its baseline ",
                     FormatNumber(baseline.mean()), " (z ", FormatNumber(z), "), ", streak,
                     " consecutive step", streak == 1 ? "" : "s");
    f.evidence.push_back(MakeEvidence("loss_ratio", ratio, c.factor, ">="));
    f.evidence.push_back(MakeEvidence("loss", loss, baseline.mean(), "baseline"));
    out->push_back(std::move(f));
  }

  void Rebase() override { streak_.Reset(); }

 private:
  SpikeStreak streak_;
};

}  // namespace

std::unique_ptr<Detector> NewLossSpike() { return std::make_unique<LossSpike>(); }

}  // namespace entrowatch::analysis::detectors
