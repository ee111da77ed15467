// SIGNAL_RULE: the YAML rules of `analysis.rules` on named scalars. Each rule
// has a direction (above or below), an absolute bound and/or a z against the
// scalar's baseline (after warm-up; the baseline does not learn while the
// rule holds or an incident is active); the subject is the rule's name.

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class SignalRules final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::SIGNAL_RULE; }
  const config::DetectorCommon& common(const StepContext& ctx,
                                       absl::string_view subject) const override {
    for (const auto& rule : ctx.rules) {
      if (rule.name == subject) {
        return rule.common;
      }
    }
    return disabled_;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    for (const config::SignalRule& rule : ctx.rules) {
      auto it = ctx.step.scalars().find(rule.signal);
      if (it == ctx.step.scalars().end() || !std::isfinite(it->second)) {
        continue;
      }
      const double v = it->second;
      EwBaseline& baseline = baselines_[{rule.name, ctx.phase}];
      Finding f;
      f.subject = rule.name;
      f.outcome = Outcome::kFalse;
      const char* word = rule.above ? "above" : "below";
      if (rule.has_bound && (rule.above ? v >= rule.bound : v <= rule.bound)) {
        f.outcome = Outcome::kTrue;
        f.reason = absl::StrCat("rule ", rule.name, ": ", rule.signal, " ", FormatNumber(v),
                                " at or ", word, " ", FormatNumber(rule.bound));
        f.evidence.push_back(MakeEvidence(rule.signal, v, rule.bound, rule.above ? ">=" : "<="));
      } else if (rule.has_z && baseline.warm(ctx.params)) {
        const double z = baseline.ZScore(v, ctx.params);
        if (rule.above ? z >= rule.z : z <= -rule.z) {
          f.outcome = Outcome::kTrue;
          f.reason = absl::StrCat("rule ", rule.name, ": ", rule.signal, " ", FormatNumber(v),
                                  " is ", FormatNumber(std::abs(z)), " sigmas ", word,
                                  " its baseline ", FormatNumber(baseline.mean()));
          f.evidence.push_back(MakeEvidence(absl::StrCat(rule.signal, "_z"), z,
                                            rule.above ? rule.z : -rule.z,
                                            rule.above ? "z>=" : "z<="));
        }
      }
      if ((!ctx.frozen || !baseline.warm(ctx.params)) && f.outcome != Outcome::kTrue) {
        baseline.Update(v, ctx.params);
      }
      out->push_back(std::move(f));
    }
  }

  void Rebase() override { baselines_.clear(); }

 private:
  config::DetectorCommon disabled_{false, config::AnomalySeverity::kWarning, 1, 1};
  std::map<std::pair<std::string, int>, EwBaseline> baselines_;
};

}  // namespace

std::unique_ptr<Detector> NewSignalRules() { return std::make_unique<SignalRules>(); }

}  // namespace entrowatch::analysis::detectors
