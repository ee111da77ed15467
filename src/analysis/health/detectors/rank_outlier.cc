// RANK_OUTLIER: within a step, one rank's token entropy, loss or grad norm
// (log) a robust outlier against the other ranks: |x - median| at least z
// times the usual cross-rank spread (1.4826 x the MAD, learned over the
// run), while the rank also moved away from its own baseline. With two ranks
// the median cannot tell which one moved; the own-baseline test names it.
// Info from the first step, the configured severity once the rank stayed
// out escalate_steps consecutive steps. Waits for warm-up.

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "analysis/health/detector.h"
#include "analysis/health/detectors/factories.h"

namespace entrowatch::analysis::detectors {
namespace {

namespace v1 = ::entrowatch::v1;

constexpr size_t kMaxRanks = 1 << 12;
constexpr double kMadToSigma = 1.4826;

enum Signal { kEntropy = 0, kLoss = 1, kLogGrad = 2, kSignals = 3 };
constexpr const char* kSignalNames[] = {"token entropy", "loss", "log grad norm"};

bool Value(const v1::RankSummary& r, int signal, double* out) {
  switch (signal) {
    case kEntropy:
      *out = r.entropy_mean();
      return r.token_count() > 0 && std::isfinite(r.entropy_mean());
    case kLoss:
      *out = r.loss();
      return r.has_loss() && std::isfinite(r.loss());
    default:
      *out = r.has_grad_norm() && r.grad_norm() > 0 ? std::log(r.grad_norm()) : 0;
      return r.has_grad_norm() && r.grad_norm() > 0 && std::isfinite(r.grad_norm());
  }
}

class RankOutlier final : public Detector {
 public:
  v1::Pattern pattern() const override { return v1::RANK_OUTLIER; }
  const config::DetectorCommon& common(const StepContext& ctx, absl::string_view) const override {
    return ctx.thresholds.rank_outlier.common;
  }

  void Observe(const StepContext& ctx, std::vector<Finding>* out) override {
    const auto& c = ctx.thresholds.rank_outlier;
    const v1::StepSummary& step = ctx.step;
    if (step.ranks_size() < 2) {
      return;
    }
    std::map<uint32_t, std::vector<std::string>> flagged;
    std::map<uint32_t, double> largest_z;
    for (int signal = 0; signal < kSignals; ++signal) {
      std::vector<std::pair<uint32_t, double>> values;
      for (const auto& r : step.ranks()) {
        double v = 0;
        if (Value(r, signal, &v)) {
          values.emplace_back(r.rank(), v);
        }
      }
      if (values.size() < 2) {
        continue;
      }
      std::vector<double> xs;
      for (const auto& [rank, v] : values) {
        xs.push_back(v);
      }
      const double median = Median(xs);
      std::vector<double> deviations;
      for (double v : xs) {
        deviations.push_back(std::abs(v - median));
      }
      const double spread_now = kMadToSigma * Median(deviations);
      const auto key = std::make_pair(ctx.phase, signal);
      EwBaseline& spread = spread_[key];
      const double floor = std::max(ctx.params.min_relative_sigma * std::abs(median), 1e-9);
      std::vector<std::pair<uint32_t, double>> candidates;  // rank, own |z|
      if (spread.warm(ctx.params)) {
        const double scale = std::max(spread.mean(), floor);
        for (const auto& [rank, v] : values) {
          const double z = std::abs(v - median) / scale;
          auto own = own_.find({ctx.phase, signal, rank});
          if (z < c.z || own == own_.end() || !own->second.warm(ctx.params)) {
            continue;
          }
          const double own_z = std::abs(own->second.ZScore(v, ctx.params));
          if (own_z >= c.z / 2) {
            candidates.emplace_back(rank, own_z);
          }
        }
      }
      // Two ranks: only the one that moved the most from its own baseline.
      if (values.size() == 2 && candidates.size() == 2) {
        candidates.erase(candidates.begin() +
                         (candidates[0].second >= candidates[1].second ? 1 : 0));
      }
      for (const auto& [rank, own_z] : candidates) {
        double v = 0;
        for (const auto& [r, x] : values) {
          if (r == rank) {
            v = x;
          }
        }
        flagged[rank].push_back(absl::StrCat(kSignalNames[signal], " ", FormatNumber(v),
                                             " vs median ", FormatNumber(median)));
        largest_z[rank] =
            std::max(largest_z[rank], std::abs(v - median) / std::max(spread.mean(), floor));
      }
      if ((!ctx.frozen || !spread.warm(ctx.params)) && candidates.empty() &&
          std::isfinite(spread_now)) {
        spread.Update(spread_now, ctx.params);
      }
      for (const auto& [rank, v] : values) {
        auto own = own_.find({ctx.phase, signal, rank});
        const bool warm = own != own_.end() && own->second.warm(ctx.params);
        if ((ctx.frozen && warm) || flagged.count(rank)) {
          continue;
        }
        if (own_.size() < kMaxRanks * kSignals * 3 || own_.count({ctx.phase, signal, rank})) {
          own_[{ctx.phase, signal, rank}].Update(v, ctx.params);
        }
      }
    }
    for (const auto& r : step.ranks()) {
      Finding f;
      f.subject = absl::StrCat("rank ", r.rank());
      auto it = flagged.find(r.rank());
      f.outcome = it == flagged.end() ? Outcome::kFalse : Outcome::kTrue;
      int& streak = streaks_[{ctx.phase, r.rank()}];
      streak = it == flagged.end() ? 0 : streak + 1;
      if (it != flagged.end()) {
        f.severity =
            streak >= c.escalate_steps ? c.common.severity : config::AnomalySeverity::kInfo;
        f.reason = absl::StrCat("rank ", r.rank(), " is an outlier among ", step.ranks_size(),
                                " ranks for ", streak, " step", streak == 1 ? "" : "s", ": ",
                                absl::StrJoin(it->second, ", "));
        f.evidence.push_back(MakeEvidence("rank_robust_z", largest_z[r.rank()], c.z, "|z|>="));
      }
      out->push_back(std::move(f));
    }
  }

  void Rebase() override {
    spread_.clear();
    own_.clear();
    streaks_.clear();
  }

 private:
  std::map<std::pair<int, uint32_t>, int> streaks_;   // (phase, rank) consecutive outlier steps
  std::map<std::pair<int, int>, EwBaseline> spread_;  // (phase, signal)
  std::map<std::tuple<int, int, uint32_t>, EwBaseline> own_;  // (phase, signal, rank)
};

}  // namespace

std::unique_ptr<Detector> NewRankOutlier() { return std::make_unique<RankOutlier>(); }

}  // namespace entrowatch::analysis::detectors
