// ENTROPY_DRIFT: Page-Hinkley on the step mean token entropy, in units of
// the baseline's sigma, per phase and in the directions configured for it.
// Waits for warm-up.

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

class EntropyDrift final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::ENTROPY_DRIFT; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.entropy_drift.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    if (!ctx.tokens_warm) {
      return;
    }
    const auto& c = ctx.thresholds.entropy_drift;
    const int index = ctx.phase;
    const config::DriftDirection direction =
        index == kEvalPhase ? c.eval : (index == kRolloutPhase ? c.rollout : c.train);
    Finding f;
    f.subject = absl::StrCat("token ", PhaseIndexName(index));
    f.outcome = Outcome::kFalse;
    if (direction == config::DriftDirection::kNone) {
      out->push_back(std::move(f));
      return;
    }
    // Page-Hinkley against the plain mean since the last alarm (which, unlike
    // the moving baseline, does not follow a slow trend).
    State& st = states_[index];
    const double x = ctx.step.entropy_mean();
    ++st.count;
    st.mean += (x - st.mean) / static_cast<double>(st.count);
    const double u =
        std::clamp((x - st.mean) / ctx.baselines.entropy.sigma(ctx.params), -c.clip_z, c.clip_z);
    st.up += u - c.delta;
    st.up_min = std::min(st.up_min, st.up);
    st.down += -u - c.delta;
    st.down_min = std::min(st.down_min, st.down);
    const double up = st.up - st.up_min;
    const double down = st.down - st.down_min;
    const bool want_up =
        direction == config::DriftDirection::kUp || direction == config::DriftDirection::kBoth;
    const bool want_down =
        direction == config::DriftDirection::kDown || direction == config::DriftDirection::kBoth;
    const bool rising = want_up && up >= c.lambda;
    const bool falling = !rising && want_down && down >= c.lambda;
    if (rising || falling) {
      f.outcome = Outcome::kTrue;
      const double statistic = rising ? up : down;
      f.reason = absl::StrCat(rising ? "rising" : "falling", " trend of ", PhaseIndexName(index),
                              " token entropy: Page-Hinkley statistic ", FormatNumber(statistic),
                              " >= ", FormatNumber(c.lambda), " sigmas (mean since the last alarm ",
                              FormatNumber(st.mean), " nats, now ", FormatNumber(x), ")");
      f.evidence.push_back(MakeEvidence(rising ? "page_hinkley_up" : "page_hinkley_down", statistic,
                                        c.lambda, ">="));
      f.evidence.push_back(
          MakeEvidence("token_entropy_mean_nats", x, st.mean, "mean since last alarm"));
      st = State{};
    }
    out->push_back(std::move(f));
  }

  void Rebase() override { states_ = {}; }

 private:
  struct State {
    int64_t count = 0;
    double mean = 0;
    double up = 0;
    double up_min = 0;
    double down = 0;
    double down_min = 0;
  };
  std::array<State, 3> states_;
};

}  // namespace

std::unique_ptr<Detector> NewEntropyDrift() { return std::make_unique<EntropyDrift>(); }

}  // namespace entrowatch::analysis::detectors
