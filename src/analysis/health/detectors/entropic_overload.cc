// ENTROPIC_OVERLOAD: token entropy uniformly high (normalized mean and p10
// above their ceilings) or far above its baseline. Waits for warm-up.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class EntropicOverload final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::ENTROPIC_OVERLOAD; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.entropic_overload.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    if (!ctx.tokens_warm) {
      return;
    }
    const v1::StepSummary& step = ctx.step;
    const auto& c = ctx.thresholds.entropic_overload;
    Finding f;
    f.subject = absl::StrCat("token ", PhaseIndexName(ctx.phase));
    f.outcome = Outcome::kFalse;
    double normalized = 0;
    if (NormalizedEntropy(step, &normalized) && step.entropy_mean() > 0) {
      const double p10_normalized = step.entropy_p10() * normalized / step.entropy_mean();
      if (normalized >= c.normalized_ceiling && p10_normalized >= c.p10_normalized_ceiling) {
        f.outcome = Outcome::kTrue;
        f.reason = absl::StrCat(
            "token entropy uniformly high: normalized mean ", FormatNumber(normalized),
            " >= ", FormatNumber(c.normalized_ceiling), ", normalized p10 ",
            FormatNumber(p10_normalized), " >= ", FormatNumber(c.p10_normalized_ceiling));
        f.evidence.push_back(
            MakeEvidence("normalized_entropy_mean", normalized, c.normalized_ceiling, ">="));
        f.evidence.push_back(
            MakeEvidence("normalized_entropy_p10", p10_normalized, c.p10_normalized_ceiling, ">="));
        out->push_back(std::move(f));
        return;
      }
    }
    const double z = ctx.baselines.entropy.ZScore(step.entropy_mean(), ctx.params);
    if (z >= c.z) {
      f.outcome = Outcome::kTrue;
      f.reason = absl::StrCat("token entropy ", FormatNumber(step.entropy_mean()), " nats is ",
                              FormatNumber(z), " sigmas above its baseline ",
                              FormatNumber(ctx.baselines.entropy.mean()));
      f.evidence.push_back(MakeEvidence("token_entropy_mean_z", z, c.z, "z>="));
    }
    out->push_back(std::move(f));
  }
};

}  // namespace

std::unique_ptr<Detector> NewEntropicOverload() { return std::make_unique<EntropicOverload>(); }

}  // namespace entrowatch::analysis::detectors
