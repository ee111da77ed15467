// KL_EXPLOSION: a named scalar (the KL to the reference policy, `kl` by
// default) far above its baseline in log space, values under min_value
// counting as min_value. Waits for the scalar's warm-up; the baseline does
// not learn while the KL is out.

#include <algorithm>
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

class KlExplosion final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::KL_EXPLOSION; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.kl_explosion.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.kl_explosion;
    auto it = ctx.step.scalars().find(c.signal);
    if (it == ctx.step.scalars().end() || !std::isfinite(it->second)) {
      return;
    }
    const double floor = std::max(c.min_value, 1e-12);
    const double x = std::log(std::max(it->second, floor));
    EwBaseline& baseline = baselines_[ctx.phase];
    Finding f;
    f.subject = absl::StrCat(c.signal, " ", PhaseIndexName(ctx.phase));
    f.outcome = Outcome::kFalse;
    if (baseline.warm(ctx.params)) {
      const double z = baseline.ZScore(x, ctx.params);
      if (z >= c.z && it->second >= c.min_value) {
        f.outcome = Outcome::kTrue;
        f.extreme = true;
        const double reference = std::exp(baseline.mean());
        f.reason = absl::StrCat(c.signal, " ", FormatNumber(it->second), " is ",
                                FormatNumber(it->second / reference), "x its baseline ",
                                FormatNumber(reference), " (log z ", FormatNumber(z), ")");
        f.evidence.push_back(MakeEvidence("kl_log_z", z, c.z, "z>="));
        f.evidence.push_back(MakeEvidence(c.signal, it->second, reference, "baseline"));
      }
    }
    if ((!ctx.frozen || !baseline.warm(ctx.params)) && f.outcome != Outcome::kTrue) {
      baseline.Update(x, ctx.params);
    }
    if (baseline.warm(ctx.params) || f.outcome == Outcome::kTrue) {
      out->push_back(std::move(f));
    }
  }

  void Rebase() override {
    for (EwBaseline& b : baselines_) {
      b = EwBaseline{};
    }
  }

 private:
  EwBaseline baselines_[3];
};

}  // namespace

std::unique_ptr<Detector> NewKlExplosion() { return std::make_unique<KlExplosion>(); }

}  // namespace entrowatch::analysis::detectors
