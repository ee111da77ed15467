// GENERATED_ENTROPY_SPIKE: on ROLLOUT steps, generated-token entropy far
// above its baseline (the policy is guessing).

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class GeneratedEntropySpike final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::GENERATED_ENTROPY_SPIKE; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.generated_entropy_spike.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.generated_entropy_spike;
    const v1::StepSummary& step = ctx.step;
    const EwBaseline& generated = ctx.baselines.generated;
    if (ctx.phase != kRolloutPhase ||
        step.generated_token_count() < static_cast<uint64_t>(c.min_tokens) ||
        !std::isfinite(step.generated_entropy_mean()) || !generated.warm(ctx.params)) {
      return;
    }
    Finding f;
    f.subject = "generated ROLLOUT";
    const double x = step.generated_entropy_mean();
    const double z = generated.ZScore(x, ctx.params);
    const double increase = x - generated.mean();
    f.outcome = (z >= c.z && increase >= c.min_increase_nats) ? Outcome::kTrue : Outcome::kFalse;
    if (f.outcome == Outcome::kTrue) {
      f.reason = absl::StrCat("generated-token entropy ", FormatNumber(x), " nats is ",
                              FormatNumber(z), " sigmas (", FormatNumber(increase),
                              " nats) above its baseline ", FormatNumber(generated.mean()));
      f.evidence.push_back(MakeEvidence("generated_entropy_mean_z", z, c.z, "z>="));
      f.evidence.push_back(
          MakeEvidence("generated_entropy_increase_nats", increase, c.min_increase_nats, ">="));
    }
    out->push_back(std::move(f));
  }
};

}  // namespace

std::unique_ptr<Detector> NewGeneratedEntropySpike() {
  return std::make_unique<GeneratedEntropySpike>();
}

}  // namespace entrowatch::analysis::detectors
