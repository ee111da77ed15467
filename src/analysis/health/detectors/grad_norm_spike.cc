// GRAD_NORM_SPIKE: log(grad norm) z sigmas above the phase's baseline and
// at least min_ratio times its grad norm; the baseline does not learn while
// the spike lasts. Fires at the first offending step as
// info; takes its configured severity once the spike persisted
// escalate_steps consecutive steps (an isolated outlier batch the run
// absorbs at once stays an info event and clears).

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

class GradNormSpike final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::GRAD_NORM_SPIKE; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.grad_norm_spike.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.grad_norm_spike;
    const EwBaseline& baseline = ctx.baselines.log_grad_norm;
    if (!UsableGradNorm(ctx.step) || !baseline.warm(ctx.params)) {
      return;
    }
    const double x = std::log(ctx.step.grad_norm());
    const double z = baseline.ZScore(x, ctx.params);
    Finding f;
    f.subject = absl::StrCat("grad norm ", PhaseIndexName(ctx.phase));
    const double ratio = std::exp(x - baseline.mean());
    const bool offending = !(z < c.z || ratio < c.min_ratio);
    const int streak = streak_.Judge(ctx.phase, offending, c.escalate_steps, c.common.severity, &f);
    if (streak == 0) {
      out->push_back(std::move(f));
      return;
    }
    const double reference = std::exp(baseline.mean());
    f.reason = absl::StrCat("grad norm ", FormatNumber(ctx.step.grad_norm()), " is ",
                            FormatNumber(ctx.step.grad_norm() / reference), "x its baseline ",
                            FormatNumber(reference), " (log z ", FormatNumber(z), "), ", streak,
                            " consecutive step", streak == 1 ? "" : "s");
    f.evidence.push_back(MakeEvidence("log_grad_norm_z", z, c.z, "z>="));
    f.evidence.push_back(MakeEvidence("grad_norm", ctx.step.grad_norm(), reference, "baseline"));
    out->push_back(std::move(f));
  }

  void Rebase() override { streak_.Reset(); }

 private:
  SpikeStreak streak_;
};

}  // namespace

std::unique_ptr<Detector> NewGradNormSpike() { return std::make_unique<GradNormSpike>(); }

}  // namespace entrowatch::analysis::detectors
