// REWARD_HACKING: the reward (a named scalar) rose by min_reward_rise while
// the generated-token entropy (all tokens when none is marked generated) fell
// by entropy_drop of its value, both over window_steps steps. Compares the
// run with itself a window ago, so it needs no warm-up: RL runs collapse
// early.

#include <cmath>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

double EdgeMean(const std::deque<double>& d, bool newest, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    sum += newest ? d[d.size() - 1 - i] : d[i];
  }
  return sum / static_cast<double>(n);
}

class RewardHacking final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::REWARD_HACKING; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.reward_hacking.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.reward_hacking;
    const v1::StepSummary& step = ctx.step;
    auto reward_it = step.scalars().find(c.reward_signal);
    if (reward_it == step.scalars().end() || !std::isfinite(reward_it->second) ||
        step.token_count() == 0) {
      return;
    }
    const bool generated = step.generated_token_count() > 0;
    const double entropy = generated ? step.generated_entropy_mean() : step.entropy_mean();
    if (!std::isfinite(entropy)) {
      return;
    }
    Series& s = series_[ctx.phase];
    s.reward.push_back(reward_it->second);
    s.entropy.push_back(entropy);
    const size_t size = static_cast<size_t>(c.window_steps) + 1;
    while (s.reward.size() > size) {
      s.reward.pop_front();
      s.entropy.pop_front();
    }
    if (s.reward.size() < size) {
      return;
    }
    // Means of the oldest and newest few steps, so one noisy batch does not
    // decide.
    const size_t edge = std::max<size_t>(1, std::min<size_t>(3, size / 3));
    const double reward_then = EdgeMean(s.reward, false, edge);
    const double reward_now = EdgeMean(s.reward, true, edge);
    const double entropy_then = EdgeMean(s.entropy, false, edge);
    const double entropy_now = EdgeMean(s.entropy, true, edge);
    Finding f;
    f.subject = absl::StrCat(c.reward_signal, " ", PhaseIndexName(ctx.phase));
    const double rise = reward_now - reward_then;
    const double drop = entropy_then > 0 ? (entropy_then - entropy_now) / entropy_then : 0;
    f.outcome =
        (rise >= c.min_reward_rise && drop >= c.entropy_drop) ? Outcome::kTrue : Outcome::kFalse;
    if (f.outcome == Outcome::kTrue) {
      f.reason = absl::StrCat(c.reward_signal, " rose from ", FormatNumber(reward_then), " to ",
                              FormatNumber(reward_now), " while ",
                              generated ? "generated-token" : "token", " entropy fell ",
                              FormatNumber(100 * drop), "% (", FormatNumber(entropy_then), " -> ",
                              FormatNumber(entropy_now), " nats) over ", c.window_steps, " steps");
      f.evidence.push_back(MakeEvidence("reward_rise", rise, c.min_reward_rise, ">="));
      f.evidence.push_back(MakeEvidence("entropy_relative_drop", drop, c.entropy_drop, ">="));
    }
    out->push_back(std::move(f));
  }

  void Rebase() override {
    for (Series& s : series_) {
      s = Series{};
    }
  }

 private:
  struct Series {
    std::deque<double> reward;
    std::deque<double> entropy;
  };
  Series series_[3];
};

}  // namespace

std::unique_ptr<Detector> NewRewardHacking() { return std::make_unique<RewardHacking>(); }

}  // namespace entrowatch::analysis::detectors
